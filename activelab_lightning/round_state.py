"""What a round's datamodule refresh needs, kept so a resumed run refreshes identically.

When a round selects, it saves the probabilities its refresh will use (labeled pool + the selected
unlabeled examples, with their ids) and the datamodule's ``state_dict`` *before* the round is begun
in the store. A resumed run (crash, or waiting for human labels) then rebuilds the same consensus
targets the uninterrupted run would have trained on.

File-backed stores keep one ``round-NNNNN.pt`` per round in ``<store>.activelab/`` (written
atomically, loaded with ``weights_only=True``); in-memory stores keep them in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from activelab_lightning._files import atomic_path

__all__ = ["RoundStates", "datamodule_state", "state_folder"]


def state_folder(store_path: str | os.PathLike[str]) -> Path:
    """``<store>.activelab/``: the folder next to a file-backed store for per-round files
    (refresh states here, the loop's warm-start checkpoints)."""
    path = Path(store_path)
    return path.with_name(path.name + ".activelab")


def datamodule_state(datamodule: Any) -> dict[str, Any] | None:
    """The datamodule's ``state_dict()`` (tensors, ints, None), or None if it has none."""
    state_dict = getattr(datamodule, "state_dict", None)
    state = state_dict() if callable(state_dict) else None
    return state or None


class RoundStates:
    """Per-round refresh state: in memory (the last two rounds) and, for file-backed stores, on disk.

    Args:
        state_dir: ``"auto"``: ``<store>.activelab/`` next to a file-backed store (memory only for an
            in-memory store); a path; or ``None`` (memory only).

    Example::

        >>> states = RoundStates(None)
        >>> states.save(None, 0, {"ids": torch.tensor([1]), "probs": torch.ones(1, 2) / 2})
        >>> states.load(None, 0)["ids"].tolist()
        [1]
    """

    def __init__(self, state_dir: str | os.PathLike[str] | None = "auto") -> None:
        self.state_dir = state_dir
        self._memory: dict[int, dict[str, Any]] = {}

    def path(self, store: Any, r: int) -> Path | None:
        """Where round ``r``'s state is saved for ``store`` (None: memory only)."""
        if self.state_dir is None:
            return None
        if self.state_dir == "auto":
            path = getattr(store, "path", ":memory:")
            if path == ":memory:":
                return None
            base = state_folder(path)
        else:
            base = Path(self.state_dir)
        return base / f"round-{r:05d}.pt"

    def save(self, store: Any, r: int, state: dict[str, Any]) -> None:
        """Remember ``state`` and write it atomically (before the round is begun in the store)."""
        self.remember(r, state)
        path = self.path(store, r)
        if path is None:
            return
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def remember(self, r: int, state: dict[str, Any]) -> None:
        """Keep ``state`` in memory (rounds older than ``r - 1`` are dropped)."""
        self._memory = {k: v for k, v in self._memory.items() if k >= r - 1}
        self._memory[r] = state

    def load(self, store: Any, r: int) -> dict[str, Any] | None:
        """Round ``r``'s state from memory or disk, or None if it was never saved."""
        if r in self._memory:
            return self._memory[r]
        path = self.path(store, r)
        if path is None or not path.exists():
            return None
        state: dict[str, Any] = torch.load(path, weights_only=True)
        return state
