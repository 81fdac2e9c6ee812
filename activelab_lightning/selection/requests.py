"""Round seeds, pool subsamples and the label requests a selection turns into.

* :func:`round_seed`: each round's seed, a fixed function of ``(seed, round)`` (a resumed run draws
  what the interrupted one would have);
* :func:`subsample_ids`: a seeded subset of a huge unlabeled pool;
* :func:`make_requests`: the selection as :class:`~activelab_lightning.records.LabelRequest`
  objects (``"new"`` vs ``"relabel"``, with the annotators who already labeled each example).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from activelab_lightning.records import LabelRequest

__all__ = ["make_requests", "round_seed", "subsample_ids"]

_MASK64 = (1 << 64) - 1


def round_seed(base_seed: int, round: int) -> int:
    """The seed of one round, a fixed function of ``(base_seed, round)``.

    A resumed run therefore draws exactly what the interrupted one drew (random scores, pool
    subsamples, simulated annotators), whatever happened in between. SplitMix64 finaliser, kept
    in ``[0, 2**63)`` so it fits ``torch.Generator.manual_seed`` and SQLite integers.

    Example::

        >>> round_seed(0, 3) == round_seed(0, 3) != round_seed(0, 4)
        True
    """
    if round < 0:
        raise ValueError(f"Expected `round` to be >= 0, but got {round}.")
    z = (int(base_seed) * 0x9E3779B97F4A7C15 + (int(round) + 1) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def subsample_ids(ids: torch.Tensor, size: int, *, generator: torch.Generator) -> torch.Tensor:
    """A seeded random subset of ``size`` example ids, in ascending order (all of them if fewer).

    Example::

        >>> subsample_ids(torch.arange(10), 3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3])
    """
    if size <= 0:
        raise ValueError(f"Expected `size` to be > 0, but got {size}.")
    if ids.numel() <= size:
        return ids
    keep = torch.randperm(ids.numel(), generator=generator)[:size]
    return ids[keep].sort().values


def make_requests(
    example_ids: Sequence[int] | torch.Tensor,
    scores: Sequence[float] | torch.Tensor,
    *,
    round: int,
    existing_annotators: Sequence[Sequence[str]],
) -> list[LabelRequest]:
    """One :class:`LabelRequest` per selected example, in selection order.

    Args:
        example_ids: ``(k,)`` selected example ids (unique).
        scores: ``(k,)`` their scores.
        round: The round making the requests.
        existing_annotators: For each example, the annotators who already labeled it (e.g. from
            ``AnnotationStore.annotators_of``); non-empty means the request is a ``"relabel"``.

    Example::

        >>> [r.kind for r in make_requests([3, 7], [0.1, 0.2], round=0, existing_annotators=[(), ("a",)])]
        ['new', 'relabel']
    """
    ids = [int(i) for i in torch.as_tensor(example_ids).tolist()]
    values = [float(s) for s in torch.as_tensor(scores, dtype=torch.float64).tolist()]
    if not (len(ids) == len(values) == len(existing_annotators)):
        raise ValueError(
            f"Expected as many scores and annotator lists as example ids ({len(ids)}), but got "
            f"{len(values)} scores and {len(existing_annotators)} annotator lists."
        )
    if len(set(ids)) != len(ids):
        raise ValueError("Expected unique example ids: one request per example per round.")
    return [
        LabelRequest(
            example_id=i,
            score=s,
            kind="relabel" if len(existing) else "new",
            round=int(round),
            existing_annotators=tuple(str(a) for a in existing),
        )
        for i, s, existing in zip(ids, values, existing_annotators)
    ]
