"""Plain records exchanged between the stages of one active-learning round.

Every record carries **stable example ids** (positions in the base dataset), never positions
inside a pool. They are frozen dataclasses so they can be hashed, compared and sent across
DDP ranks with ``broadcast_object_list``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Annotation", "LabelRequest", "OracleResponse", "RequestKind", "RoundRecord", "RoundSummary"]

RequestKind = Literal["new", "relabel"]


@dataclass(frozen=True)
class LabelRequest:
    """One request for one more label of one example.

    Args:
        example_id: Position of the example in the base dataset.
        score: The acquisition score that selected it (lower = more in need of a label).
        kind: ``"new"`` if the example had no label yet, ``"relabel"`` otherwise.
        round: Index of the active-learning round that made the request.
        existing_annotators: Ids of the annotators who already labeled this example; an oracle
            must not ask them again.

    Example::

        >>> LabelRequest(example_id=7, score=0.31, kind="relabel", round=2, existing_annotators=("ann-3",)).request_id
        'r2:e7'
    """

    example_id: int
    score: float
    kind: RequestKind
    round: int
    existing_annotators: tuple[str, ...] = ()

    @property
    def request_id(self) -> str:
        """Deterministic id of this request: one request per example per round."""
        return f"r{self.round}:e{self.example_id}"


@dataclass(frozen=True)
class Annotation:
    """One label given by one annotator to one example.

    Args:
        example_id: Position of the example in the base dataset.
        annotator_id: Who gave the label (a name, an e-mail, ``"sim-03"``...).
        label: Class index in ``0 .. K-1``.
        round: Round whose request this answers; ``None`` for imported / initial labels.
        source: Where it came from, e.g. ``"oracle:simulated"``, ``"import"``, ``"initial"``.
        request_id: The :attr:`LabelRequest.request_id` it answers, if any.
    """

    example_id: int
    annotator_id: str
    label: int
    round: int | None = None
    source: str = "import"
    request_id: str | None = None


@dataclass(frozen=True)
class OracleResponse:
    """What an oracle returns for a batch of requests.

    Args:
        annotations: The answers collected so far.
        pending: Requests asked but not answered yet (human annotators are slow).
        exhausted: Requests that cannot be answered: no annotator is left for that example.
    """

    annotations: tuple[Annotation, ...]
    pending: tuple[LabelRequest, ...] = ()
    exhausted: tuple[LabelRequest, ...] = ()


@dataclass(frozen=True)
class RoundRecord:
    """The durable record of one acquisition round."""

    round: int
    seed: int
    selected_ids: tuple[int, ...]
    status: Literal["requested", "completed"]


@dataclass(frozen=True)
class RoundSummary:
    """Everything one acquisition round reports (the input of :mod:`activelab_lightning.reporting`).

    Args:
        round: Round index (the x-axis of every chart: a fresh Trainer resets ``global_step``).
        strategy: Name of the acquisition strategy.
        num_annotations: Annotations in the store after the round.
        num_labeled: Examples with at least one label after the round.
        num_unlabeled: Examples with no label after the round.
        requests: The round's label requests (in selection order).
        answers: The annotations the oracle returned this round.
        num_pending: Requests still waiting for an answer.
        num_exhausted: Requests no annotator could answer.
        num_replaced: Requests added within the round for the next-best candidates, one per
            exhausted request, so the round still spends its ``query_size``.
        num_skipped: Examples selection skipped because an oracle had reported them exhausted.
        labeled_scores: ``(n_labeled,)`` scores of the labeled pool before the round (float64).
        unlabeled_scores: ``(n_unlabeled,)`` scores of the unlabeled pool (may be a sample).
        consensus_accuracy: Accuracy of the consensus labels against ground truth, if known.
        model_weight: CROWDLAB model weight (mean over members for ensembles), if computed.
        mean_annotator_weight: Mean CROWDLAB annotator weight, if computed.
        annotator_stats: Rows ``{"annotator_id", "quality", "agreement", "worst_class", "num_labeled"}``.
        metrics: Further scalars, e.g. ``{"test/acc": 0.93}``.
        seconds: Wall time of the acquisition.
    """

    round: int
    strategy: str
    num_annotations: int
    num_labeled: int
    num_unlabeled: int
    requests: tuple[LabelRequest, ...]
    answers: tuple[Annotation, ...]
    num_pending: int = 0
    num_exhausted: int = 0
    num_replaced: int = 0
    num_skipped: int = 0
    labeled_scores: object | None = None
    unlabeled_scores: object | None = None
    consensus_accuracy: float | None = None
    model_weight: float | None = None
    mean_annotator_weight: float | None = None
    annotator_stats: tuple[dict, ...] = ()
    metrics: dict[str, float] | None = None
    seconds: float = 0.0

    def scalars(self) -> dict[str, float | int | None]:
        """The round's scalar fields: the common core of history rows, logger metrics and the round log.

        Example::

            >>> RoundSummary(round=0, strategy="random", num_annotations=3, num_labeled=2, num_unlabeled=5,
            ...              requests=(), answers=()).scalars()["num_annotations"]
            3
        """
        return {
            "round": self.round,
            "num_annotations": self.num_annotations,
            "num_labeled": self.num_labeled,
            "num_unlabeled": self.num_unlabeled,
            "num_requests": len(self.requests),
            "num_new": self.num_new,
            "num_relabel": self.num_relabel,
            "num_answers": len(self.answers),
            "num_pending": self.num_pending,
            "num_exhausted": self.num_exhausted,
            "num_replaced": self.num_replaced,
            "num_skipped": self.num_skipped,
            "consensus_accuracy": self.consensus_accuracy,
            "model_weight": self.model_weight,
            "mean_annotator_weight": self.mean_annotator_weight,
            "seconds": self.seconds,
        }

    @property
    def num_new(self) -> int:
        """Requests for examples that had no label."""
        return sum(r.kind == "new" for r in self.requests)

    @property
    def num_relabel(self) -> int:
        """Requests for one more label of an already-labeled example."""
        return sum(r.kind == "relabel" for r in self.requests)
