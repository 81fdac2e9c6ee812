"""Rank helpers: the one home for "am I the process that writes, prints and warns?".

Lightning sets ``rank_zero_only.rank`` from the launcher's environment (``RANK``, ``LOCAL_RANK``,
``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``) at import and again from the strategy's global rank when
a Trainer sets up. Reading it here keeps every module on the same answer, before and inside a
fit, and lets the library's warnings go through :func:`rank_zero_warn` (once per job, not once per
rank).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

__all__ = ["global_rank", "is_rank_zero", "on_rank_zero", "rank_zero_info", "rank_zero_warn"]

T = TypeVar("T")


def global_rank() -> int:
    """The global rank of this process (0 outside distributed runs)."""
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def is_rank_zero() -> bool:
    """``True`` on the process that owns side effects (files, oracles, console, loggers).

    Example::

        >>> is_rank_zero()
        True
    """
    return global_rank() == 0


def on_rank_zero(trainer: Any, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 and broadcast its result through ``trainer.strategy``.

    With one process (or ``trainer=None``) it simply returns ``fn()``. A failure on rank 0 is
    re-raised there and, as :class:`~activelab_lightning.errors.ActiveLabError` naming it, on every
    other rank, so no rank waits forever in a collective.

    Example::

        >>> on_rank_zero(None, lambda: 42)
        42
    """
    from activelab_lightning.errors import ActiveLabError

    if trainer is None or int(getattr(trainer, "world_size", 1)) <= 1:
        return fn()
    result, error = None, None
    if trainer.is_global_zero:
        try:
            result = fn()
        except BaseException as exc:
            error = exc
    message = f"{type(error).__name__}: {error}" if error is not None else None
    result, message = trainer.strategy.broadcast((result, message), src=0)
    if error is not None:
        raise error
    if message is not None:
        raise ActiveLabError(f"rank 0 failed during the acquisition: {message}")
    return result
