"""One round's ranking: the strategy fitted on the labeled pool, the unlabeled pool streamed past it.

:func:`rank_pools` is the scoring → selection hand-off of a round: it fits the strategy on the
labeled pool, scores the unlabeled batches as they arrive (or all at once for strategies that are
not streaming), and keeps the ``k`` lowest over both pools in a :class:`LowestK` (together with
each unlabeled candidate's probabilities, which the datamodule refresh needs for the new examples).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
from torch import Tensor

from activelab_lightning.selection.lowest import LowestK
from activelab_lightning.selection.strategies import ScoringContext, Strategy

__all__ = ["RankedPools", "rank_pools"]

#: At most this many unlabeled scores are kept for the round's report (histograms, quantiles).
MAX_REPORTED_UNLABELED_SCORES = 100_000


@dataclasses.dataclass
class RankedPools:
    """The result of :func:`rank_pools`.

    Attributes:
        top: The ``k`` lowest over labeled ∪ unlabeled (``top.extras_of(ids)`` gives the selected
            unlabeled examples' ``(m, K)`` probabilities).
        labeled_scores: ``(n,)`` scores of the labeled pool.
        unlabeled_scores: Up to :data:`MAX_REPORTED_UNLABELED_SCORES` unlabeled scores (None if none).
    """

    top: LowestK
    labeled_scores: Tensor | None
    unlabeled_scores: Tensor | None


def rank_pools(
    strategy: Strategy,
    ctx: ScoringContext | None,
    unlabeled: Iterable[tuple[Tensor, Tensor]],
    k: int,
    *,
    exclude: Tensor | None = None,
) -> RankedPools:
    """Fit ``strategy`` on ``ctx`` and stream ``unlabeled`` past it, keeping the ``k`` lowest.

    Examples in ``exclude`` (e.g. exhausted for the oracle) are scored like any other -- the
    labeled pool's scores and the strategy's fit still use them -- but never selected.

    Args:
        strategy: A fresh strategy.
        ctx: The labeled pool's scoring context; ``None`` on DDP ranks other than 0, which only
            drain ``unlabeled`` (the inference behind it is collective) and score nothing.
        unlabeled: ``(ids (b,), probs (b, K) or (P, b, K))`` batches of the unlabeled pool.
        k: Candidates to keep (the round's requests plus any reserve for replacements).
        exclude: ``(e,)`` example ids that must not be selected.

    Returns:
        A :class:`RankedPools` (empty on ranks other than 0).
    """
    top = LowestK(k)
    skip = exclude if exclude is not None and exclude.numel() else None

    def keep(ids: Tensor, scores: Tensor, extras: Tensor | None = None) -> None:
        if skip is not None:
            mask = ~torch.isin(ids, skip)
            ids, scores = ids[mask], scores[mask]
            extras = extras[mask] if extras is not None else None
        top.update(ids, scores, extras)

    labeled_scores = None
    if ctx is not None:
        labeled_scores = strategy.fit(ctx)  # (0,) on a cold start: only new labels then
        keep(ctx.labeled_ids, labeled_scores)
    reported: list[Tensor] = []
    pending: list[tuple[Tensor, Tensor]] = []
    use_probs = strategy.input != "none"
    for ids, probs in unlabeled:
        if ctx is None:
            continue
        if not strategy.streaming:
            pending.append((ids, probs))
            continue
        scores = strategy.score_unlabeled(ids, probs if use_probs else None)
        keep(ids, scores, probs if probs.ndim == 2 else probs.mean(dim=0))
        if sum(s.numel() for s in reported) < MAX_REPORTED_UNLABELED_SCORES:
            reported.append(scores)
    if ctx is not None and pending:
        ids = torch.cat([p[0] for p in pending])
        probs = torch.cat([p[1] for p in pending], dim=-2)
        scores = strategy.score_unlabeled(ids, probs if use_probs else None)
        keep(ids, scores, probs if probs.ndim == 2 else probs.mean(dim=0))
        reported.append(scores)
    return RankedPools(top, labeled_scores, torch.cat(reported) if reported else None)
