"""Bundled data and the ActiveLab paper's benchmark setup.

* :func:`load_wall_robot` — the UCI Wall-Following Robot data (CC BY 4.0, bundled; cite
  :data:`CITATION`), 4 or 24 sensors.
* :func:`make_paper_setup` — the paper's stratified subset, splits, 30 simulated annotators and
  thinned initial labels, with a matching :class:`~activelab_lightning.oracles.SimulatedOracle`.
* :mod:`~activelab_lightning.datasets.noise` — noise matrices from a trace and noisy labels.

Names are imported lazily, so ``import activelab_lightning.datasets.noise`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "load_wall_robot": "activelab_lightning.datasets.wall_robot",
    "wall_robot_feature_names": "activelab_lightning.datasets.wall_robot",
    "make_paper_setup": "activelab_lightning.datasets.wall_robot_paper",
    "thin_label_mask": "activelab_lightning.datasets.wall_robot_paper",
    "WallRobotSetup": "activelab_lightning.datasets.wall_robot_paper",
    "CLASS_NAMES": "activelab_lightning.datasets.wall_robot",
    "CITATION": "activelab_lightning.datasets.wall_robot",
    "generate_noise_matrix_from_trace": "activelab_lightning.datasets.noise",
    "generate_noisy_labels": "activelab_lightning.datasets.noise",
    "noise_matrix_is_valid": "activelab_lightning.datasets.noise",
    "class_prior_of": "activelab_lightning.datasets.noise",
}

__all__ = [
    "CITATION",
    "CLASS_NAMES",
    "WallRobotSetup",
    "class_prior_of",
    "generate_noise_matrix_from_trace",
    "generate_noisy_labels",
    "load_wall_robot",
    "make_paper_setup",
    "noise_matrix_is_valid",
    "thin_label_mask",
    "wall_robot_feature_names",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'activelab_lightning.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
