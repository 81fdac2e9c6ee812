"""Argument checks of the datamodule and the cold start: settings, example ids, positions, probabilities.

Each check raises with a message that names the argument, the value received and what to pass
instead; the conversions return int64 / float64 CPU tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from activelab_lightning.scoring._validation import check_probability_values

if TYPE_CHECKING:
    from activelab_lightning.store import AnnotationStore

__all__ = [
    "IdsLike",
    "ProbsLike",
    "RestoredState",
    "as_example_ids",
    "as_labeled_positions",
    "as_pred_probs",
    "check_pred_ids",
    "check_settings",
    "check_state",
    "check_true_labels",
    "infer_pred_ids",
]

#: ``(n,)`` integer example ids (positions in the base dataset), or positions / a bool mask.
IdsLike = Tensor | np.ndarray | Sequence[int]
#: ``(n, K)`` probabilities: a tensor, an array or nested rows.
ProbsLike = Tensor | np.ndarray | Sequence[Sequence[float]]

_STORE_METHODS = ("label_matrix", "labeled_ids", "unlabeled_ids", "add_annotations", "num_examples")


def check_settings(
    store: AnnotationStore,
    num_examples: int,
    *,
    batch_size: object,
    inference_batch_size: object,
    num_workers: object,
    consensus_method: object,
    input_fn: object,
    batch_fn: object,
) -> None:
    """The ``ActiveDataModule`` constructor's checks, in order (``num_examples = len(dataset)``).

    Raises:
        TypeError: ``store`` is not ``AnnotationStore``-like; ``input_fn`` / ``batch_fn`` not callable.
        ValueError: ``store.num_examples != num_examples``, bad batch sizes, workers or method.
    """
    for name in _STORE_METHODS:
        if not hasattr(store, name):
            raise TypeError(
                f"store must be an AnnotationStore, got {type(store).__name__} (no {name!r}); create one with "
                "AnnotationStore(path, num_examples=len(dataset), class_names=[...])."
            )
    if store.num_examples != num_examples:
        raise ValueError(
            f"store.num_examples={store.num_examples} but len(dataset)={num_examples}; the store must describe this "
            "dataset (example id i is dataset[i])."
        )
    for name, value in (("batch_size", batch_size), ("inference_batch_size", inference_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}.")
    if consensus_method not in ("best_quality", "majority_vote"):
        raise ValueError(
            f"consensus_method must be 'best_quality' or 'majority_vote', got {consensus_method!r}."
        )
    if input_fn is not None and not callable(input_fn):
        raise TypeError(f"input_fn must be a callable item -> x, got {input_fn!r}.")
    if batch_fn is not None and not callable(batch_fn):
        raise TypeError(f"batch_fn must be a callable (x, y) -> batch, got {batch_fn!r}.")


def as_example_ids(example_ids: IdsLike, name: str, num_examples: int) -> Tensor:
    """Validate example ids against ``0..num_examples-1``.

    Args:
        example_ids: ``(n,)`` integer ids.
        name: Argument name for the error messages.
        num_examples: ``N``, the size of the id space.

    Returns:
        ``(n,)`` int64 CPU ids, in the given order.

    Raises:
        ValueError: Not a 1-D integer sequence, or an id outside ``0..N-1``.
    """
    ids = torch.as_tensor(example_ids)
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of integer example ids, got dtype {ids.dtype}, shape "
            f"{tuple(ids.shape)}."
        )
    ids = ids.to(torch.int64).cpu()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_examples):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise ValueError(f"{name} contains {bad}, outside 0..{num_examples - 1}.")
    return ids


def check_true_labels(true_labels: IdsLike | None, n: int) -> Tensor | None:
    """``(N,)`` int64 CPU ground truth, or None.

    Raises:
        ValueError: Not an ``(N,)`` integer class vector.
    """
    if true_labels is None:
        return None
    t = torch.as_tensor(true_labels)
    if t.is_floating_point() or t.dtype == torch.bool or t.shape != (n,):
        raise ValueError(
            f"true_labels must be an (N,) = ({n},) integer class vector, got dtype {t.dtype}, shape "
            f"{tuple(t.shape)}."
        )
    return t.to(torch.int64).cpu()


def as_labeled_positions(positions: IdsLike, num_labeled: int) -> Tensor:
    """``(m,)`` int64 positions into ``labeled_ids`` from positions or an ``(num_labeled,)`` bool mask.

    Raises:
        ValueError: A mask of the wrong shape, non-integer or non-1-D positions, or out of range.
    """
    pos = torch.as_tensor(positions)
    if pos.dtype == torch.bool:
        if pos.shape != (num_labeled,):
            raise ValueError(
                f"a bool positions mask must have shape {(num_labeled,)}, got {tuple(pos.shape)}."
            )
        pos = torch.nonzero(pos).reshape(-1)
    if pos.is_floating_point() or pos.ndim != 1:
        raise ValueError(
            f"positions must be 1-D integer positions into labeled_ids, got {pos.dtype}, {tuple(pos.shape)}."
        )
    pos = pos.to(torch.int64).cpu()
    if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= num_labeled):
        raise ValueError(
            f"positions must lie in 0..{num_labeled - 1} (positions into labeled_ids, not example ids)."
        )
    return pos


def as_pred_probs(pred_probs: ProbsLike, num_classes: int) -> Tensor:
    """``(n, K)`` float64 CPU probabilities (``refresh``'s ``pred_probs_labeled``).

    Raises:
        ValueError: Not an ``(n, K)`` float array, or rows that are not probabilities.
    """
    probs = torch.as_tensor(pred_probs)
    if probs.ndim != 2 or probs.shape[1] != num_classes or not probs.is_floating_point():
        raise ValueError(
            f"pred_probs_labeled must be an (n, K) float array with K = {num_classes} classes, got "
            f"dtype {probs.dtype}, shape {tuple(probs.shape)}."
        )
    probs = probs.detach().to(device="cpu", dtype=torch.float64)
    try:
        check_probability_values(probs, "pred_probs_labeled")
    except ValueError as err:
        raise ValueError(
            "pred_probs_labeled rows must be probabilities (finite, non-negative, summing to 1); apply "
            f"softmax to logits. {err}"
        ) from None
    return probs


def check_pred_ids(example_ids: IdsLike, num_rows: int, num_examples: int) -> Tensor:
    """``(n,)`` int64 ids given for the ``n = num_rows`` rows of ``refresh``'s ``pred_probs_labeled``.

    Raises:
        ValueError: Bad ids, not one per row, or repeated ids.
    """
    ids = as_example_ids(example_ids, "example_ids", num_examples)
    if ids.numel() != num_rows:
        raise ValueError(f"example_ids has {ids.numel()} ids but pred_probs_labeled has {num_rows} rows.")
    if torch.unique(ids).numel() != ids.numel():
        raise ValueError("example_ids must be distinct: one row of pred_probs_labeled per example.")
    return ids


def infer_pred_ids(num_rows: int, *, labeled_now: Tensor, labeled_before: Tensor) -> Tensor:
    """The ids of ``num_rows`` probability rows given without ``example_ids``.

    Args:
        num_rows: ``n``, the number of rows.
        labeled_now: ``(a,)`` labeled ids in the store now (preferred when ``n == a``).
        labeled_before: ``(b,)`` labeled ids as of the last refresh.

    Raises:
        ValueError: ``n`` matches neither alignment.
    """
    if num_rows == labeled_now.numel():
        return labeled_now
    if num_rows == labeled_before.numel():
        return labeled_before
    raise ValueError(
        f"pred_probs_labeled has {num_rows} rows but there are {labeled_now.numel()} labeled examples "
        f"now ({labeled_before.numel()} before this refresh); pass example_ids= to say which examples "
        "the rows belong to."
    )


class RestoredState(NamedTuple):
    """The tensors of a datamodule ``state_dict`` (``n`` labeled of ``N`` examples, ``p`` rows)."""

    labeled: Tensor  #: ``(n,)`` int64 labeled ids
    unlabeled: Tensor  #: ``(N - n,)`` int64 the other ids, sorted
    consensus: Tensor  #: ``(n,)`` int64 consensus labels
    soft: Tensor  #: ``(n, K)`` float32 soft labels
    pred_ids: Tensor | None  #: ``(p,)`` int64 ids of the last probabilities
    pred_probs: Tensor | None  #: ``(p, K)`` float64 the last probabilities


def check_state(
    state_dict: Mapping[str, Any], *, state_format: int, num_examples: int, num_classes: int
) -> RestoredState:
    """The tensors of a datamodule state, checked against this datamodule's format and sizes.

    Raises:
        ValueError: Another format, dataset size or class count, or inconsistent shapes.
    """
    fmt = state_dict.get("format")
    if fmt != state_format:
        raise ValueError(f"unknown ActiveDataModule state format {fmt!r} (expected {state_format}).")
    for key, mine in (("num_examples", num_examples), ("num_classes", num_classes)):
        if int(state_dict[key]) != mine:
            raise ValueError(f"state_dict has {key}={state_dict[key]} but this datamodule has {mine}.")
    labeled = torch.as_tensor(state_dict["labeled_ids"], dtype=torch.int64)
    consensus = torch.as_tensor(state_dict["consensus_labels"], dtype=torch.int64)
    soft = torch.as_tensor(state_dict["soft_labels"], dtype=torch.float32)
    if consensus.shape != labeled.shape or soft.shape != (labeled.numel(), num_classes):
        raise ValueError(
            f"inconsistent state_dict: {labeled.numel()} labeled ids, consensus shape {tuple(consensus.shape)}, "
            f"soft labels shape {tuple(soft.shape)}."
        )
    mask = torch.ones(num_examples, dtype=torch.bool)
    mask[labeled] = False
    pred_ids, pred_probs = state_dict.get("pred_ids"), state_dict.get("pred_probs")
    return RestoredState(
        labeled,
        torch.nonzero(mask).reshape(-1),
        consensus,
        soft,
        None if pred_ids is None else torch.as_tensor(pred_ids, dtype=torch.int64),
        None if pred_probs is None else torch.as_tensor(pred_probs, dtype=torch.float64),
    )
