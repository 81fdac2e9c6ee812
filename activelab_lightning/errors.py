"""Exceptions that scripts and the CLI can rely on."""

from __future__ import annotations

__all__ = [
    "EXIT_STORE_LOCKED",
    "EXIT_WAITING_FOR_LABELS",
    "ActiveLabError",
    "OracleAnswerError",
    "OracleUnavailable",
    "StoreLocked",
    "WaitingForLabels",
]

#: Exit status of ``activelab run`` when a round stopped because human answers are missing
#: (``EX_TEMPFAIL`` from ``sysexits.h``: "try again later"). Re-run the same command once they arrive.
EXIT_WAITING_FOR_LABELS = 75

#: Exit status of ``activelab run`` when another run holds the store (``EX_UNAVAILABLE``); nothing
#: was written. Wait for that run to end, or use another ``--out_dir``.
EXIT_STORE_LOCKED = 69


class ActiveLabError(RuntimeError):
    """Base class of the library's runtime errors."""


class WaitingForLabels(ActiveLabError):
    """A round asked for labels that have not been answered yet (human oracles).

    Everything answered so far is already stored; re-running the same command resumes the round.

    Args:
        round: The round that is waiting.
        num_pending: How many requests are still unanswered.
        where: Where the answers are expected (a file path, a Label Studio project URL...).
    """

    def __init__(self, round: int, num_pending: int, where: str = "") -> None:
        self.round = round
        self.num_pending = num_pending
        self.where = where
        msg = f"waiting for {num_pending} labels (round {round})"
        if where:
            msg += f": answers expected in {where}"
        super().__init__(msg + "; re-run the same command once they are in.")


class OracleUnavailable(ActiveLabError):
    """An oracle's backend (e.g. a Label Studio server) cannot be reached or refused our credentials.

    Nothing stored is lost; re-run once the backend is back.
    """


class OracleAnswerError(ActiveLabError, ValueError):
    """An oracle answered something that was not asked (or asked wrongly); nothing of its response
    was stored. Raised by :func:`~activelab_lightning.oracles.base.check_response`."""


class StoreLocked(ActiveLabError):
    """Another live process runs on this store (it holds ``<store>.lock``); nothing was changed."""
