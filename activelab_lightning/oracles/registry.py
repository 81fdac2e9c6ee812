"""Name → oracle factory registry, so configs can say ``oracle: simulated``.

Built-in names are resolved lazily (their modules are imported on first use), so a missing
optional backend never breaks ``import activelab_lightning.oracles``. Names are case-insensitive
and ``-`` equals ``_``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from activelab_lightning.oracles.base import Oracle

__all__ = ["available_oracles", "get_oracle", "register_oracle"]

F = TypeVar("F", bound=Callable[..., Any])

# name -> (module, attribute path) of the factory; imported on first use
_BUILTIN: dict[str, tuple[str, str]] = {
    "simulated": ("activelab_lightning.oracles.simulated", "SimulatedOracle"),
    "replay": ("activelab_lightning.oracles.replay", "ReplayOracle"),
    "replay_csv": ("activelab_lightning.oracles.replay", "ReplayOracle.from_csv"),
    "replay_distributions": ("activelab_lightning.oracles.replay", "ReplayOracle.from_distributions"),
    "file": ("activelab_lightning.oracles.file", "FileOracle"),
    "label_studio": ("activelab_lightning.oracles.label_studio", "LabelStudioOracle"),
}
_REGISTRY: dict[str, Callable[..., Oracle]] = {}


def _key(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"oracle name must be a non-empty string, got {name!r}")
    return name.strip().lower().replace("-", "_")


def register_oracle(name: str, factory: F | None = None, *, overwrite: bool = False) -> Any:
    """Register an oracle factory (a class or a function returning an :class:`Oracle`) under ``name``.

    Use as a decorator or call it directly.

    Args:
        name: The config name (case-insensitive, ``-`` equals ``_``).
        factory: The class / function; omit to use as a decorator.
        overwrite: Replace an existing registration instead of raising.

    Returns:
        ``factory`` (or a decorator returning it).

    Raises:
        ValueError: ``name`` is already registered to a different factory and ``overwrite`` is False.

    Example::

        >>> @register_oracle("always-zero-doc", overwrite=True)
        ... class AlwaysZero:
        ...     name = "zero"
        ...     def request(self, requests): ...
        >>> "always_zero_doc" in available_oracles()
        True
    """
    key = _key(name)

    def decorate(f: F) -> F:
        if not callable(f):
            raise TypeError(f"register_oracle({name!r}) needs a class or function, got {type(f).__name__}")
        current = _REGISTRY.get(key)
        if current is not None and current is not f and not overwrite:
            raise ValueError(
                f"oracle name {name!r} is already registered to {current!r}; pick another name or "
                "pass overwrite=True"
            )
        _REGISTRY[key] = f
        return f

    return decorate if factory is None else decorate(factory)


def available_oracles() -> tuple[str, ...]:
    """All registered and built-in oracle names, sorted.

    Example::

        >>> {"simulated", "replay", "file", "label_studio"} <= set(available_oracles())
        True
    """
    return tuple(sorted(set(_REGISTRY) | set(_BUILTIN)))


def _resolve(key: str) -> Callable[..., Oracle]:
    if key in _REGISTRY:
        return _REGISTRY[key]
    module_name, path = _BUILTIN[key]
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"oracle {key!r} needs module {module_name}, which failed to import: {err}"
        ) from err
    if key in _REGISTRY:  # the module registered itself on import
        return _REGISTRY[key]
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def get_oracle(name: str, **kwargs: Any) -> Oracle:
    """Build the oracle registered as ``name`` with ``kwargs``.

    Args:
        name: A name from :func:`available_oracles`.
        **kwargs: Passed to the factory, e.g. ``true_labels=...`` for ``"simulated"``.

    Returns:
        The oracle.

    Raises:
        ValueError: unknown name (the message lists the valid ones).

    Example::

        >>> get_oracle("simulated", true_labels=[0, 1, 1], annotators=[0.9, 0.8]).num_annotators
        2
    """
    key = _key(name)
    if key not in _REGISTRY and key not in _BUILTIN:
        raise ValueError(
            f"unknown oracle {name!r}; available: {', '.join(available_oracles())} "
            "(or register your own with register_oracle)"
        )
    return _resolve(key)(**kwargs)
