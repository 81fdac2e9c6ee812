"""Plain records exchanged between the stages of one active-learning round.

Every record carries **stable example ids** (positions in the base dataset), never positions
inside a pool. They are frozen dataclasses so they can be hashed, compared and sent across
DDP ranks with ``broadcast_object_list``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RequestKind", "LabelRequest", "Annotation", "OracleResponse", "RoundRecord"]

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
