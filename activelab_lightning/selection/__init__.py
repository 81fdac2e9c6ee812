"""Selection: from scores to label requests (the step after scoring, before the oracle).

* :mod:`~activelab_lightning.selection.strategies` — the strategy registry and the strategies
  (ActiveLab, its ensemble, and the baselines);
* :mod:`~activelab_lightning.selection.lowest` — lowest-``k`` over labeled ∪ unlabeled, streaming,
  tie-break by example id;
* :mod:`~activelab_lightning.selection.rank` — one round's ranking: the strategy fitted on the labeled
  pool, the unlabeled pool streamed past it into the lowest-``k``;
* :mod:`~activelab_lightning.selection.requests` — round seeds, pool subsamples, label requests.
"""

from activelab_lightning.selection.lowest import LowestK, select_lowest
from activelab_lightning.selection.rank import RankedPools, rank_pools
from activelab_lightning.selection.requests import make_requests, round_seed, subsample_ids
from activelab_lightning.selection.strategies import (
    ScoringContext,
    Strategy,
    available_strategies,
    get_strategy,
    register_strategy,
)

__all__ = [
    "LowestK",
    "RankedPools",
    "ScoringContext",
    "Strategy",
    "available_strategies",
    "get_strategy",
    "make_requests",
    "rank_pools",
    "register_strategy",
    "round_seed",
    "select_lowest",
    "subsample_ids",
]
