"""Input checks and conversion for the scoring functions.

Every public scoring function funnels its arguments through this module, so that bad input
fails early with a message that names the argument, the value received and what to do instead
(never a numpy/torch traceback from deep inside the math).

Conventions:

* Probability arrays become floating tensors: ``float64`` on CPU by default (parity with
  cleanlab), the input's own floating dtype on an accelerator.
* Label matrices ``(N, M)`` use NaN for "annotator j did not label example i" (as cleanlab);
  internally they become a :class:`LabelMatrix` -- an ``int64`` index matrix with ``-1`` for
  missing entries plus a boolean mask. Annotators (columns) with no label at all are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ROW_SUM_TOL",
    "ArrayLike",
    "LabelMatrix",
    "TemperatureObjective",
    "as_label_matrix",
    "as_probabilities",
    "as_tensor",
    "astype",
    "check_objective",
    "check_probability_values",
    "check_same_rows",
    "make_generator",
    "row_sum_tolerance",
]

ArrayLike = Any  # torch.Tensor | numpy.ndarray | pandas.DataFrame | nested sequences
TemperatureObjective = Literal["class-position", "cleanlab-2.9"]
_OBJECTIVES = ("class-position", "cleanlab-2.9")
#: The one probability tolerance of the package: a row of probabilities must have no negative entry
#: and sum to 1 within ``ROW_SUM_TOL`` -- or within the machine epsilon of the dtype it was
#: computed in when that is coarser (bfloat16: ``2**-7``), see :func:`row_sum_tolerance`. Loose
#: enough for float16/32 softmax outputs, tight enough to catch logits and log-probabilities.
ROW_SUM_TOL = 1e-3
_ROW_SUM_TOL = ROW_SUM_TOL


def row_sum_tolerance(dtype: torch.dtype | None = None) -> float:
    """How far a row of probabilities computed in ``dtype`` may sum from 1: ``max(1e-3, eps(dtype))``.

    Example::

        >>> row_sum_tolerance(torch.float32), row_sum_tolerance(torch.bfloat16)
        (0.001, 0.0078125)
    """
    if dtype is None or not dtype.is_floating_point:
        return ROW_SUM_TOL
    return max(ROW_SUM_TOL, float(torch.finfo(dtype).eps))


_MAX_LISTED = 5


def _preview(idx: Tensor) -> str:
    items = idx.flatten().tolist()
    text = ", ".join(str(v) for v in items[:_MAX_LISTED])
    return text + (f", ... ({len(items)} in total)" if len(items) > _MAX_LISTED else "")


def check_objective(value: object, name: str = "temperature_objective") -> TemperatureObjective:
    """Return ``value`` if it is a known temperature objective, else raise ``ValueError``."""
    if value not in _OBJECTIVES:
        raise ValueError(
            f"{name} must be one of {_OBJECTIVES!r}, got {value!r}. Use 'class-position' (the "
            "paper's objective, default) or 'cleanlab-2.9' to reproduce cleanlab 2.9.0 exactly."
        )
    return value  # type: ignore[return-value]


def as_tensor(x: ArrayLike, name: str, *, device: torch.device | str | None = None) -> Tensor:
    """Convert a tensor, numpy array, pandas object or nested list to a tensor (no copy if possible).

    Raises:
        TypeError: ``x`` is None, a string, or holds non-numeric values.
    """
    if isinstance(x, Tensor):
        return x if device is None else x.to(device)
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array of numbers, got {type(x).__name__}.")
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):  # pandas DataFrame / Series
        try:
            x = x.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name} must hold numbers (NaN for missing), but its values could not be cast "
                f"to float: {err}. Encode class names as integers 0..K-1 first."
            ) from None
    arr = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must hold numbers (NaN for missing), got an array of dtype "
                f"{arr.dtype} (e.g. {arr.flat[0]!r} at position 0). Encode class names as "
                "integers 0..K-1 first."
            ) from None
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t if device is None else t.to(device)


_NUMPY_DTYPES = {
    torch.float64: np.float64,
    torch.float32: np.float32,
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.uint8: np.uint8,
}


def astype(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)``, via numpy for CPU tensors (same values; several times faster there)."""
    if t.device.type != "cpu" or dtype not in _NUMPY_DTYPES or t.dtype == dtype or t.requires_grad:
        return t.to(dtype)
    return torch.from_numpy(t.numpy().astype(_NUMPY_DTYPES[dtype]))


def _float_dtype(t: Tensor, dtype: torch.dtype | None) -> torch.dtype:
    if dtype is not None:
        return dtype
    if t.device.type == "cpu" or not t.is_floating_point():
        return torch.float64 if t.device.type == "cpu" else torch.float32
    return t.dtype


def as_probabilities(
    x: ArrayLike,
    name: str,
    *,
    ndim: int = 2,
    num_rows: int | None = None,
    num_classes: int | None = None,
    allow_empty: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    check_values: bool = True,
) -> Tensor:
    """Validate predicted class probabilities and return them as a floating tensor.

    Args:
        x: ``(N, K)`` (``ndim=2``) or ``(P, N, K)`` (``ndim=3``, an ensemble) probabilities.
        name: Argument name used in error messages.
        ndim: Expected number of dimensions.
        num_rows: If given, the required ``N``.
        num_classes: If given, the required ``K`` (e.g. that of the labeled pred_probs).
        allow_empty: Accept ``N = 0`` (unlabeled pools may be empty).
        dtype: Output dtype; default float64 on CPU, the input's floating dtype elsewhere.
        device: Output device; default the input's.
        check_values: Check the values (finite, >= 0, rows sum to 1). ``False`` checks only
            the type and shape; the caller must then check the values itself (e.g. inside a
            blocked pass over the data) and call :func:`check_probability_values` on failure.

    Returns:
        The probabilities, same shape.

    Raises:
        TypeError: Not an array of numbers.
        ValueError: Wrong ndim/shape, fewer than 2 classes, no rows, NaN/inf, negative values,
            or rows that do not sum to 1.
    """
    t = as_tensor(x, name, device=device)
    t = t.to(_float_dtype(t, dtype))
    if t.ndim != ndim:
        hint = (
            " For an ensemble of P models use activelab_scores_ensemble / a (P, N, K) array."
            if t.ndim == 3
            else " For a single model use the non-ensemble function with an (N, K) array."
            if t.ndim == 2 and ndim == 3
            else ""
        )
        want = "(N, K)" if ndim == 2 else "(P, N, K)"
        raise ValueError(
            f"{name} must be a {ndim}-D array of shape {want}, got shape {tuple(t.shape)}.{hint}"
        )
    if ndim == 3 and t.shape[0] == 0:
        raise ValueError(f"{name} has no models (shape {tuple(t.shape)}); pass at least one (N, K) slice.")
    k = t.shape[-1]
    if k < 2:
        raise ValueError(
            f"{name} has K = {k} class column(s) (shape {tuple(t.shape)}); ActiveLab needs at "
            "least 2 classes. Pass one probability column per class."
        )
    n = t.shape[-2]
    if n == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one example, or None.")
    if num_rows is not None and n != num_rows:
        raise ValueError(
            f"{name} has {n} rows (shape {tuple(t.shape)}) but labels has {num_rows} rows; "
            "row i of both must describe the same example."
        )
    if num_classes is not None and k != num_classes:
        raise ValueError(
            f"{name} has K = {k} classes (shape {tuple(t.shape)}) but the labeled pred_probs have "
            f"K = {num_classes}; both must come from the same model head."
        )
    if check_values:
        check_probability_values(t, name)
    return t


def check_probability_values(t: Tensor, name: str, *, computed_in: torch.dtype | None = None) -> None:
    """Raise ``ValueError`` unless ``t`` (``(..., K)``) is finite, non-negative, rows summing to 1.

    Rows must sum to 1 within :func:`row_sum_tolerance` of ``computed_in`` (default ``t``'s dtype):
    ``1e-3``, or bfloat16's epsilon for bfloat16 outputs. The message names the first offending
    entry or row.
    """
    if t.numel() == 0:
        return
    tol = row_sum_tolerance(computed_in if computed_in is not None else t.dtype)
    sums = t.sum(-1)
    if float(t.amin()) >= 0 and bool(((sums - 1).abs() <= tol).all()):
        return  # fast path: one min and one sum (a NaN min fails ">= 0", inf fails the sum)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        where = bad.nonzero()[0].tolist()
        raise ValueError(
            f"{name} contains non-finite values (e.g. {t[tuple(where)].item()} at index "
            f"{tuple(where)}); pass finite probabilities (check the model for NaN outputs)."
        )
    neg = t < 0
    if bool(neg.any()):
        where = neg.nonzero()[0].tolist()
        raise ValueError(
            f"{name} contains negative values (e.g. {t[tuple(where)].item()} at index "
            f"{tuple(where)}); pass probabilities in [0, 1] (did you pass logits? apply softmax)."
        )
    off = (sums - 1).abs() > tol
    where = off.nonzero()[0].tolist()
    raise ValueError(
        f"rows of {name} must sum to 1, but row {tuple(where)} sums to "
        f"{sums[tuple(where)].item():.6g}; did you pass logits? Apply softmax over the class "
        "dimension first."
    )


@dataclass(frozen=True)
class LabelMatrix:
    """A validated ``(N, M)`` multi-annotator label matrix.

    Attributes:
        index: ``(N, M')`` int64 class index, 0 where missing -- gather-safe; always combine
            with ``mask`` (kept annotators only).
        mask: ``(N, M')`` bool, True where annotator j labeled example i.
        columns: ``(M',)`` int64, position of each kept annotator in the input's columns.
        num_input_columns: ``M``, the number of columns of the input (dropped ones included).
        num_annotations: ``(N,)`` int64, labels per example (all >= 1).
    """

    index: Tensor
    mask: Tensor
    columns: Tensor
    num_input_columns: int
    num_annotations: Tensor

    @cached_property
    def maskf(self) -> Tensor:
        """``mask`` as float64 (cached; used in matrix-vector products)."""
        return astype(self.mask, torch.float64)

    @cached_property
    def mask_t(self) -> Tensor:
        """``(M', N)`` contiguous transpose of ``mask`` (fast per-annotator rows)."""
        return self.mask.T.contiguous()

    @cached_property
    def maskf_t(self) -> Tensor:
        """``(M', N)`` float64 ``mask_t``."""
        return astype(self.mask_t, torch.float64)

    @cached_property
    def index_t(self) -> Tensor:
        """``(M', N)`` contiguous transpose of ``index``."""
        return self.index.T.contiguous()

    @property
    def num_examples(self) -> int:
        return self.index.shape[0]

    @property
    def num_annotators(self) -> int:
        return self.index.shape[1]

    @property
    def max_label(self) -> int:
        return int(self.index.max().item())


def _raise_bad_labels(vals: Tensor, name: str, num_classes: int | None) -> None:
    """Explain why the present (non-NaN) labels ``vals`` are invalid (error path only)."""
    inf = torch.isinf(vals)
    if bool(inf.any()):
        raise ValueError(
            f"{name} contains {vals[inf][0].item()}; use NaN for a missing label and class "
            "indices 0..K-1 otherwise."
        )
    frac = vals != torch.floor(vals)
    if bool(frac.any()):
        raise ValueError(
            f"{name} must hold integer class indices (NaN for missing), got {vals[frac][0].item()}; "
            "encode classes as 0..K-1 (did you pass probabilities instead of labels?)."
        )
    if bool((vals < 0).any()):
        raise ValueError(
            f"{name} must hold class indices >= 0 (NaN for missing), got {vals.min().item():g}. "
            "Use NaN, not -1, for missing labels."
        )
    last = "K-1" if num_classes is None else num_classes - 1
    raise ValueError(
        f"{name} contains class {vals.max().item():g} but pred_probs has only K = "
        f"{num_classes} classes (valid labels are 0..{last}); check the class "
        "encoding or the model's output size."
    )


def as_label_matrix(
    labels: ArrayLike,
    name: str = "labels",
    *,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
) -> LabelMatrix:
    """Validate a NaN-padded ``(N, M)`` label matrix; drop annotators that labeled nothing.

    Args:
        labels: ``(N, M)`` numbers, ``labels[i, j]`` = class given by annotator j to example i,
            NaN if annotator j did not label example i.
        name: Argument name for error messages.
        num_classes: If given, labels must be ``< num_classes``.
        device: Device of the returned tensors.

    Raises:
        TypeError: Not numeric.
        ValueError: Wrong ndim, empty, inf, non-integer or negative labels, labels ``>= K``, or
            examples with no label at all.
    """
    t = as_tensor(labels, name)
    if not t.is_floating_point():
        t = astype(t, torch.float64)
    if t.ndim != 2:
        hint = " For one label per example pass labels[:, None] (an (N, 1) matrix)." if t.ndim == 1 else ""
        raise ValueError(
            f"{name} must be a 2-D (N examples, M annotators) matrix with NaN for missing "
            f"labels, got shape {tuple(t.shape)}.{hint}"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(t.shape)}); pass at least one labeled example and one "
            "annotator column (or labels=None to score unlabeled examples only)."
        )
    present = ~torch.isnan(t)
    # missing -> class 0: gather-safe, always used together with the mask
    v = torch.nan_to_num(t, nan=0.0, posinf=float("inf"), neginf=float("-inf"))
    upper = float("inf") if num_classes is None else num_classes
    lo, hi = torch.aminmax(v)
    index = astype(v, torch.int64) if float(lo) >= 0 and float(hi) < upper else None
    if index is None or not torch.equal(astype(index, v.dtype), v):  # range, then integrality
        _raise_bad_labels(t[present], name, num_classes)
    assert index is not None
    n_per_row = present.view(torch.uint8).sum(1, dtype=torch.int64)
    if not bool((n_per_row > 0).all()):
        empty_rows = (n_per_row == 0).nonzero().flatten()
        raise ValueError(
            f"{name} has examples with no label at all (rows {_preview(empty_rows)}); remove them "
            "from the labeled set and pass their pred_probs as pred_probs_unlabeled instead."
        )
    keep = present.any(0)
    columns = keep.nonzero().flatten().cpu()
    if not bool(keep.all()):
        index = index[:, keep]
        present = present[:, keep]
    if device is not None:
        index, present, n_per_row = index.to(device), present.to(device), n_per_row.to(device)
    return LabelMatrix(
        index=index,
        mask=present,
        columns=columns,
        num_input_columns=int(keep.shape[0]),
        num_annotations=n_per_row.to(torch.int64),
    )


def check_same_rows(n_labels: int, n_probs: int, name: str = "pred_probs") -> None:
    """Raise if labels and pred_probs disagree on the number of examples."""
    if n_labels != n_probs:
        raise ValueError(
            f"{name} has {n_probs} rows but labels has {n_labels} rows; row i of both must "
            "describe the same example."
        )


def make_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """Return an explicit CPU generator: the given one, or a new one seeded with ``generator`` (default 0).

    The scoring functions never touch a global RNG; ``None`` means "seed 0", so results are
    reproducible by default.
    """
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        generator = 0
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}.")
    g = torch.Generator()
    g.manual_seed(generator)
    return g
