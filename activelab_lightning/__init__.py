"""activelab_lightning: ActiveLab active learning with re-labeling, for PyTorch Lightning.

The public names are imported lazily so that ``import activelab_lightning.scoring`` stays free of
Lightning, and ``import activelab_lightning`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # records
    "LabelRequest": "activelab_lightning.records",
    "Annotation": "activelab_lightning.records",
    "OracleResponse": "activelab_lightning.records",
    "RoundRecord": "activelab_lightning.records",
    # pipeline
    "AnnotationStore": "activelab_lightning.store",
    "ActiveDataModule": "activelab_lightning.data",
    "ActiveLabCallback": "activelab_lightning.callback",
    "OracleAnswerError": "activelab_lightning.errors",
    "ActiveLearningLoop": "activelab_lightning.loop",
    "register_strategy": "activelab_lightning.selection",
    "get_strategy": "activelab_lightning.selection",
    "available_strategies": "activelab_lightning.selection",
    "collect_predictions": "activelab_lightning.predictions",
    "iter_predictions": "activelab_lightning.predictions",
    "Reporter": "activelab_lightning.reporting",
    "MLPClassifier": "activelab_lightning.models",
    "SmallCNN": "activelab_lightning.models",
    "WaitingForLabels": "activelab_lightning.errors",
    "OracleUnavailable": "activelab_lightning.errors",
    "ActiveLabScorer": "activelab_lightning.scoring",
    "activelab_scores": "activelab_lightning.scoring",
    "crowdlab": "activelab_lightning.scoring",
    # oracles
    "Oracle": "activelab_lightning.oracles",
    "SimulatedOracle": "activelab_lightning.oracles",
    "ReplayOracle": "activelab_lightning.oracles",
    "FileOracle": "activelab_lightning.oracles",
    "LabelStudioOracle": "activelab_lightning.oracles",
    "register_oracle": "activelab_lightning.oracles",
    "get_oracle": "activelab_lightning.oracles",
}

__all__ = ["__version__", *_EXPORTS]  # noqa: PLE0604  (the lazy-export keys are strings)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'activelab_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
