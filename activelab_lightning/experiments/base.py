"""The two config sections' base classes: :class:`Experiment` (``data``) and :class:`OracleSpec` (``oracle``)."""

from __future__ import annotations

import dataclasses
import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["Experiment", "ExperimentParts", "OracleSpec", "new_store", "require_file"]


@dataclasses.dataclass
class ExperimentParts:
    """What :meth:`Experiment.build` returns.

    Attributes:
        dataset: The pool (example id ``i`` is ``dataset[i]``).
        store: The annotation store (file-backed, or in memory for ``store_path=":memory:"``).
        datamodule: The ``ActiveDataModule`` over ``dataset`` and ``store``, cold-start labels written.
        oracle: The experiment's own oracle (simulated or replayed annotators).
        class_names: The ``K`` class names.
        true_labels: ``(N,)`` ground truth of the pool, if known (consensus accuracy), else ``None``.
        input_shape: Shape of one model input, e.g. ``(4,)`` or ``(32, 32, 3)``.
    """

    dataset: Any
    store: Any
    datamodule: Any
    oracle: Any
    class_names: tuple[str, ...]
    true_labels: torch.Tensor | None
    input_shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """``K``."""
        return len(self.class_names)


class Experiment(ABC):
    """Base class of the ``data`` section: builds dataset, store, datamodule and oracle."""

    @abstractmethod
    def build(self, *, store_path: str | os.PathLike, seed: int) -> ExperimentParts:
        """Build the run's parts.

        Args:
            store_path: Annotation store file (created if missing, reopened to resume), or ``":memory:"``.
            seed: The run's seed (cold-start draws, shuffling, simulated answers).

        Returns:
            The :class:`ExperimentParts`.
        """

    def check(self) -> None:
        """Validate settings that can be checked before anything is built (paths...); raise with the key name."""
        return None


class OracleSpec(ABC):
    """Base class of the ``oracle`` section: replaces the experiment's own oracle.

    Subclasses are dataclasses whose fields are the section's ``init_args``; each field is passed on
    under its own name to the oracle the spec builds (:meth:`oracle_kwargs`), so a setting is
    declared once, in the spec, and documented in full on the oracle.
    """

    @abstractmethod
    def build(self, parts: ExperimentParts, *, seed: int) -> Any:
        """Return an oracle for the experiment's pool."""

    def check(self) -> None:
        """Validate paths and settings before anything is built."""
        return None

    def oracle_kwargs(self, factory: Callable[..., Any]) -> dict[str, Any]:
        """The spec's settings as keyword arguments of ``factory`` (the oracle class or constructor).

        Args:
            factory: What :meth:`build` calls, e.g. ``FileOracle`` or ``ReplayOracle.from_csv``.

        Returns:
            ``{field name: value}`` for every field of the spec.

        Raises:
            TypeError: A field is not a named parameter of ``factory`` (the spec and the oracle
                disagree: a bug, not a config error).
        """
        if not dataclasses.is_dataclass(self):
            raise TypeError(f"{type(self).__name__} must be a dataclass to forward its fields.")
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        accepted = inspect.signature(factory).parameters
        unknown = [name for name in settings if name not in accepted]
        if unknown:
            raise TypeError(
                f"{type(self).__name__}: {getattr(factory, '__qualname__', factory)} has no parameter "
                f"{', '.join(map(repr, unknown))}; the spec's fields must match the oracle's parameters."
            )
        return settings


def new_store(store_path: str | os.PathLike, num_examples: int, class_names: tuple[str, ...]) -> Any:
    """Open (or create) the run's :class:`~activelab_lightning.store.AnnotationStore`."""
    from activelab_lightning.store import AnnotationStore

    return AnnotationStore(store_path, num_examples=num_examples, class_names=class_names)


def require_file(key: str, value: str | os.PathLike | None, what: str) -> Path:
    """The path ``value`` of config key ``key``, which must name an existing file.

    Raises:
        ValueError: ``value`` is empty.
        FileNotFoundError: There is no such file (the message names ``key`` and ``what``).
    """
    if value is None or str(value) == "":
        raise ValueError(f"{key} is not set: give the path of {what}.")
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{key}={str(value)!r}: no such file ({path.resolve()}). Expected {what}; set {key} to its path."
        )
    return path
