"""Experiment builders: the ``data`` and ``oracle`` sections of an ``activelab run`` config.

An :class:`Experiment` turns a few settings into everything a run needs: the pool dataset, the
:class:`~activelab_lightning.store.AnnotationStore`, the
:class:`~activelab_lightning.data.ActiveDataModule` (with its cold-start labels and test
split) and the experiment's natural oracle (:mod:`.setups`). An :class:`OracleSpec` optionally
replaces that oracle (:mod:`.oracle_specs`). Both are dataclasses with typed fields, so the CLI
configures them the LightningCLI way (``class_path`` / ``init_args``) and checks every key and type
before training. Configs name them by this package: ``activelab_lightning.experiments.WallRobotExperiment``.

Data outside the package (CIFAR-10) is read from a path you give; nothing is ever downloaded.

Example::

    >>> exp = WallRobotExperiment(batch_size=64)
    >>> parts = exp.build(store_path=":memory:", seed=0)   # doctest: +SKIP
    >>> len(parts.dataset), parts.num_classes               # doctest: +SKIP
    (2000, 4)
"""

from __future__ import annotations

from activelab_lightning.experiments.base import Experiment, ExperimentParts, OracleSpec
from activelab_lightning.experiments.oracle_specs import (
    CsvAnswers,
    FileAnswers,
    LabelStudioAnswers,
    SimulatedAnnotators,
)
from activelab_lightning.experiments.setups import Cifar10Experiment, WallRobotExperiment

__all__ = [
    "Cifar10Experiment",
    "CsvAnswers",
    "Experiment",
    "ExperimentParts",
    "FileAnswers",
    "LabelStudioAnswers",
    "OracleSpec",
    "SimulatedAnnotators",
    "WallRobotExperiment",
]
