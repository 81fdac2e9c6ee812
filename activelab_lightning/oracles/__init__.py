"""Oracles: whoever answers label requests (simulated annotators, recorded labels, humans).

``FileOracle`` and ``LabelStudioOracle`` are imported lazily, on first access, so that this
package imports even where their optional dependencies are missing.
"""

from __future__ import annotations

import importlib
from typing import Any

from activelab_lightning.oracles.base import BaseOracle, Oracle
from activelab_lightning.oracles.registry import available_oracles, get_oracle, register_oracle
from activelab_lightning.oracles.replay import ReplayOracle
from activelab_lightning.oracles.simulated import SimulatedOracle

_LAZY = {
    "FileOracle": "activelab_lightning.oracles.file",
    "LabelStudioOracle": "activelab_lightning.oracles.label_studio",
}

# The lazy names stay out of ``__all__`` so that ``from ... import *`` never imports an optional
# backend; ``from activelab_lightning.oracles import FileOracle`` still works (module __getattr__).
__all__ = [
    "BaseOracle",
    "Oracle",
    "ReplayOracle",
    "SimulatedOracle",
    "available_oracles",
    "get_oracle",
    "register_oracle",
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
