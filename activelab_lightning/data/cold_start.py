"""The cold start: which examples start labeled, and with which labels.

:func:`initial_annotations` turns the datamodule's ``initial_labeled`` / ``initial_labels`` /
``initial_annotator_ids`` arguments into the :class:`~activelab_lightning.records.Annotation` s to
write to the store (``source="initial"``), one of four ways:

* nothing (``initial_labels=None``): the labeled set is whatever the store holds;
* a sequence of ``Annotation`` (optionally restricted to a draw, :func:`draw_initial`);
* an ``(N,)`` / ``(N, M)`` label array or DataFrame (:func:`annotations_from_array`);
* an oracle, asked once per drawn example not labeled yet, with round :data:`INITIAL_ROUND`
  (:func:`ask_oracle`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch
from torch import Tensor

from activelab_lightning.data._checks import IdsLike, as_example_ids
from activelab_lightning.errors import WaitingForLabels
from activelab_lightning.oracles.base import Oracle
from activelab_lightning.records import Annotation, LabelRequest

if TYPE_CHECKING:
    from activelab_lightning.store import AnnotationStore

__all__ = [
    "INITIAL_ROUND",
    "InitialLabeled",
    "InitialLabels",
    "LabelFrame",
    "annotations_from_array",
    "as_initial",
    "ask_oracle",
    "draw_initial",
    "initial_annotations",
]

#: Round of the :class:`LabelRequest` s sent to an oracle for the cold-start labels.
INITIAL_ROUND = -1


class LabelFrame(Protocol):
    """A pandas-``DataFrame``-like label table: its ``columns`` name the annotators."""

    @property
    def columns(self) -> Any: ...

    def to_numpy(self, *args: Any, **kwargs: Any) -> Any: ...


#: ``initial_labeled``: a number of examples to draw, or the ids to label.
InitialLabeled = int | Sequence[int] | Tensor
#: ``initial_labels``: annotations, an ``(N,)`` / ``(N, M)`` label array (or frame), or an oracle.
InitialLabels = (
    Sequence[Annotation]
    | Tensor
    | np.ndarray
    | LabelFrame
    | Sequence[float]
    | Sequence[Sequence[float]]
    | Oracle
)


def draw_initial(
    initial_labeled: InitialLabeled, candidates: Tensor, *, num_examples: int, seed: int
) -> Tensor:
    """The cold-start ids: a seeded draw of ``n`` among ``candidates``, or the given ids.

    Args:
        initial_labeled: ``n`` (a draw of ``n`` ids, sorted) or ``(m,)`` ids (returned as given).
        candidates: ``(c,)`` int64 ids that can be labeled.
        num_examples: ``N``, the size of the id space.
        seed: Seeds the draw.

    Returns:
        ``(n,)`` int64 ids.

    Raises:
        ValueError: ``n`` outside ``1..c``, bad ids, or ids that are not candidates.
    """
    if isinstance(initial_labeled, numbers.Integral) and not isinstance(initial_labeled, bool):
        n = int(initial_labeled)
        if not 0 < n <= candidates.numel():
            raise ValueError(
                f"initial_labeled={n} must be between 1 and the {candidates.numel()} examples that "
                "initial_labels can label."
            )
        g = torch.Generator()
        g.manual_seed(seed)
        return candidates[torch.randperm(candidates.numel(), generator=g)[:n]].sort().values
    ids = as_example_ids(cast(IdsLike, initial_labeled), "initial_labeled", num_examples)
    missing = ids[~torch.isin(ids, candidates)]
    if missing.numel():
        raise ValueError(
            f"initial_labeled contains ids {missing[:5].tolist()} that initial_labels has no label for."
        )
    return ids


def initial_annotations(
    store: AnnotationStore,
    initial_labeled: InitialLabeled | None,
    initial_labels: InitialLabels | None,
    annotator_ids: Sequence[str] | None,
    *,
    seed: int,
) -> list[Annotation]:
    """The cold-start annotations to write to ``store`` (see the module docstring).

    Args:
        store: The annotation store (an oracle cold start reads its label counts, and writes the
            answers it got before raising :class:`WaitingForLabels`).
        initial_labeled: The datamodule's ``initial_labeled``.
        initial_labels: The datamodule's ``initial_labels``.
        annotator_ids: The datamodule's ``initial_annotator_ids``.
        seed: Seeds the draw.

    Returns:
        The annotations, ``source="initial"`` for arrays and oracle answers (empty: nothing to add).

    Raises:
        ValueError: Bad cold-start arguments.
        TypeError: A sequence mixing ``Annotation`` with other values.
        WaitingForLabels: The oracle left requests pending.
    """
    num_examples = int(store.num_examples)
    if initial_labels is None:
        if initial_labeled is not None:
            raise ValueError(
                f"initial_labeled={initial_labeled!r} needs initial_labels: an (N,) / (N, M) label array, a "
                "sequence of Annotation, or an oracle that labels the drawn examples."
            )
        return []
    if callable(getattr(initial_labels, "request", None)):
        return ask_oracle(store, initial_labeled, cast(Oracle, initial_labels), seed=seed)
    if (
        isinstance(initial_labels, (list, tuple))
        and initial_labels
        and isinstance(initial_labels[0], Annotation)
    ):
        anns = list(initial_labels)
        bad = [a for a in anns if not isinstance(a, Annotation)]
        if bad:
            raise TypeError(f"initial_labels mixes Annotation with {type(bad[0]).__name__}: {bad[0]!r}.")
        if initial_labeled is None:
            return anns
        have = as_example_ids(
            torch.tensor(sorted({a.example_id for a in anns})), "initial_labels example ids", num_examples
        )
        keep = set(draw_initial(initial_labeled, have, num_examples=num_examples, seed=seed).tolist())
        return [a for a in anns if a.example_id in keep]
    return annotations_from_array(
        initial_labeled, initial_labels, annotator_ids, num_examples=num_examples, seed=seed
    )


def annotations_from_array(
    initial_labeled: InitialLabeled | None,
    labels: Any,
    annotator_ids: Sequence[str] | None,
    *,
    num_examples: int,
    seed: int,
) -> list[Annotation]:
    """Annotations of an ``(N,)`` label vector or ``(N, M)`` label matrix (row i is example i).

    Args:
        initial_labeled: None (every example with a label) or a draw / ids among those.
        labels: ``(N,)`` or ``(N, M)`` class indices; NaN, or -1 in an integer matrix, for missing.
            A :class:`LabelFrame` (pandas DataFrame) names the annotators by its columns.
        annotator_ids: Ids of the ``M`` columns (default ``"initial"`` / ``"initial-<j>"``).
        num_examples: ``N``.
        seed: Seeds the draw.

    Returns:
        One ``source="initial"`` annotation per present entry of the selected rows.

    Raises:
        ValueError: Wrong shape, non-integer labels, wrong number of annotator ids.
    """
    # a pandas DataFrame (as cleanlab takes): its columns name the annotators
    if hasattr(labels, "to_numpy") and hasattr(labels, "columns"):
        if annotator_ids is None:
            annotator_ids = [str(c) for c in labels.columns]
        labels = labels.to_numpy(dtype="float64")
    t = torch.as_tensor(labels)
    vector = t.ndim == 1
    if vector:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] != num_examples:
        raise ValueError(
            f"initial_labels must be an (N,) vector or (N, M) matrix with N = {num_examples} rows (row i "
            f"is example i), a sequence of Annotation, or an oracle; got shape {tuple(torch.as_tensor(labels).shape)}."
        )
    present = ~torch.isnan(t) if t.is_floating_point() else t >= 0
    if t.is_floating_point():
        vals = t[present]
        if bool((vals != vals.floor()).any()):
            raise ValueError("initial_labels must hold integer class indices (NaN for missing).")
    t = torch.where(present, t, torch.zeros((), dtype=t.dtype)).to(torch.int64)
    if annotator_ids is None:
        names = ["initial"] if vector else [f"initial-{j}" for j in range(t.shape[1])]
    else:
        names = [str(a) for a in annotator_ids]
        if len(names) != t.shape[1] or len(set(names)) != len(names):
            raise ValueError(
                f"initial_annotator_ids must give {t.shape[1]} distinct ids (one per column of initial_labels), "
                f"got {list(annotator_ids)!r}."
            )
    candidates = torch.nonzero(present.any(1)).reshape(-1)
    ids = (
        candidates
        if initial_labeled is None
        else draw_initial(initial_labeled, candidates, num_examples=num_examples, seed=seed)
    )
    rows, cols = torch.nonzero(present[ids], as_tuple=True)
    ex = ids[rows]
    return [
        Annotation(example_id=e, annotator_id=names[c], label=lab, round=None, source="initial")
        for e, c, lab in zip(ex.tolist(), cols.tolist(), t[ex, cols].tolist())
    ]


def ask_oracle(
    store: AnnotationStore, initial_labeled: InitialLabeled | None, oracle: Oracle, *, seed: int
) -> list[Annotation]:
    """Ask ``oracle`` for the drawn examples ``store`` has no label for yet (round :data:`INITIAL_ROUND`).

    Args:
        store: The annotation store; a re-run does not ask again for examples it labels.
        initial_labeled: ``n`` (a seeded draw) or the ids to label.
        oracle: Anything with ``request(requests) -> OracleResponse``.
        seed: Seeds the draw.

    Returns:
        The answers as ``source="initial"`` annotations (empty if nothing needed asking).

    Raises:
        ValueError: ``initial_labeled`` is None, or a bad draw.
        WaitingForLabels: Some requests are pending; the answers received are written to
            ``store`` first.
    """
    if initial_labeled is None:
        raise ValueError(
            "initial_labels is an oracle: pass initial_labeled=n (a seeded random draw) or the ids to label."
        )
    num_examples = int(store.num_examples)
    ids = draw_initial(initial_labeled, torch.arange(num_examples), num_examples=num_examples, seed=seed)
    have = store.label_counts()[ids] > 0  # a re-run does not ask again
    requests = [
        LabelRequest(example_id=i, score=float("nan"), kind="new", round=INITIAL_ROUND)
        for i in ids[~have].tolist()
    ]
    if not requests:
        return []
    response = oracle.request(requests)
    if response.pending:
        answered = [as_initial(a) for a in response.annotations]
        if answered:
            store.add_annotations(answered)
        raise WaitingForLabels(INITIAL_ROUND, len(response.pending), str(getattr(oracle, "where", "") or ""))
    return [as_initial(a) for a in response.annotations]


def as_initial(a: Annotation) -> Annotation:
    """``a`` as a cold-start annotation: ``round=None``, ``source="initial"``."""
    return Annotation(
        example_id=a.example_id, annotator_id=a.annotator_id, label=a.label, round=None, source="initial"
    )
