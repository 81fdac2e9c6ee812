"""Oracles: whoever answers label requests (simulated annotators, recorded labels, humans).

``FileOracle`` and ``LabelStudioOracle`` are imported lazily, on first access, so that this
package imports even where their optional dependencies are missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from activelab_lightning.oracles.base import BaseOracle, Oracle
from activelab_lightning.oracles.registry import available_oracles, get_oracle, register_oracle
from activelab_lightning.oracles.replay import ReplayOracle
from activelab_lightning.oracles.simulated import SimulatedOracle

_LAZY = {
    "FileOracle": "activelab_lightning.oracles.file",
    "LabelStudioOracle": "activelab_lightning.oracles.label_studio",
}

# lazy names are listed only when their module exists, so ``from ... import *`` never fails
__all__ = [
    "Oracle",
    "BaseOracle",
    "SimulatedOracle",
    "ReplayOracle",
    *(name for name, module in _LAZY.items() if importlib.util.find_spec(module) is not None),
    "register_oracle",
    "get_oracle",
    "available_oracles",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'activelab_lightning.oracles' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_LAZY})
