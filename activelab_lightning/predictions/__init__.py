"""Pool predictions: the model's probabilities over the labeled and unlabeled pools, by example id.

The second step of a round (model → **pool predictions** → scores → selection → ...):

* :mod:`~activelab_lightning.predictions.inference` — the acquisition's own inference loop (eval
  mode, ``inference_mode``, module device, train mode restored, output checks);
* :mod:`~activelab_lightning.predictions.distributed` — DDP sharding of a pool and the by-id gather;
* :mod:`~activelab_lightning.predictions.features` — penultimate features captured in the same pass;
* :mod:`~activelab_lightning.predictions.crossfit` — cross-fitted heads: out-of-sample labeled-pool
  probabilities from one fit;
* :mod:`~activelab_lightning.predictions.pools` — the callback's labeled / unlabeled passes
  (heads fit, batches re-cut to a fixed size).
"""

from activelab_lightning.predictions.crossfit import (
    DEFAULT_L2_GRID,
    OUT_OF_SAMPLE_METHODS,
    CrossFitHeads,
    fit_crossfit_heads,
    stratified_folds,
)
from activelab_lightning.predictions.distributed import shard_positions, unshard_batch
from activelab_lightning.predictions.features import (
    capture_inputs,
    find_head,
    heads_predict_fn,
    with_features_predict_fn,
)
from activelab_lightning.predictions.inference import (
    PoolSource,
    PredictFn,
    collect_predictions,
    iter_predictions,
    predict_proba_batches,
)

__all__ = [
    "DEFAULT_L2_GRID",
    "OUT_OF_SAMPLE_METHODS",
    "CrossFitHeads",
    "PoolSource",
    "PredictFn",
    "capture_inputs",
    "collect_predictions",
    "find_head",
    "fit_crossfit_heads",
    "heads_predict_fn",
    "iter_predictions",
    "predict_proba_batches",
    "shard_positions",
    "stratified_folds",
    "unshard_batch",
    "with_features_predict_fn",
]
