"""Rank helpers: the one home for "am I the process that writes, prints and warns?".

Lightning sets ``rank_zero_only.rank`` from the launcher's environment (``RANK``, ``LOCAL_RANK``,
``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``) at import and again from the strategy's global rank when
a Trainer sets up. Reading it here keeps every module on the same answer, before and inside a
fit, and lets the library's warnings go through :func:`rank_zero_warn` (once per job, not once per
rank).
"""

from __future__ import annotations

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

__all__ = ["global_rank", "is_rank_zero", "rank_zero_info", "rank_zero_warn"]


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
