"""The data side of active learning: :class:`ActiveDataModule` and its parts.

* :mod:`~activelab_lightning.data.datamodule` -- ``ActiveDataModule``: labeled / unlabeled views,
  refresh, loaders, ``state_dict``;
* :mod:`~activelab_lightning.data.consensus` -- consensus targets as a pure function of the
  annotations and the latest probabilities (majority vote / CROWDLAB);
* :mod:`~activelab_lightning.data.cold_start` -- the initial labels (a draw, an array, annotations
  or an oracle);
* :mod:`~activelab_lightning.data.loaders` -- the training and pool ``DataLoader`` s, the default
  ``input_fn`` / ``batch_fn``;
* :mod:`~activelab_lightning.data.samplers` -- seeded sharded samplers, the batch / item adapter
  datasets and the tensor fast path.
"""

from __future__ import annotations

from activelab_lightning.data.cold_start import INITIAL_ROUND
from activelab_lightning.data.datamodule import ActiveDataModule
from activelab_lightning.data.loaders import default_batch_fn, default_input_fn

__all__ = ["INITIAL_ROUND", "ActiveDataModule", "default_batch_fn", "default_input_fn"]
