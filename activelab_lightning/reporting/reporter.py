"""The :class:`Reporter`: one object that reports each round to loggers, round log and console."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from activelab_lightning.records import RoundSummary
from activelab_lightning.reporting.console import RoundConsole
from activelab_lightning.reporting.curve import plot_learning_curve
from activelab_lightning.reporting.loggers import LoggerExtras, log_scalars, save_logger
from activelab_lightning.reporting.round_log import (
    append_round_log,
    read_round_log,
    round_record,
    write_curve_csv,
)
from activelab_lightning.reporting.scalars import (
    METRIC_PREFIX,
    TEST_ACCURACY_KEYS,
    evaluation_scalars,
    round_scalars,
)

__all__ = ["Reporter"]


class Reporter:
    """Reports every acquisition round to the loggers, the round log and the console.

    Args:
        round_log: JSONL file that gets one object per round (scalars, requests, answers); a
            learning-curve CSV with the same stem (``.csv``) is rewritten next to it. ``None`` keeps
            no file. Use :func:`~activelab_lightning.reporting.round_log_path` for the default
            ``<store>.rounds.jsonl``.
        wandb_extras: Log histograms, tables and learning curves to W&B loggers.
        console: Print a summary row per round (and the full table in :meth:`finish`) with ``rich``.
        progress: Show :meth:`track`'s progress bar on long pools (default: same as ``console``).
        progress_min_rows: :meth:`track` shows a progress bar only for pools of at least this many rows.
        prefix: Metric namespace.

    Attributes:
        history: One record per logged round (as in the round log). A reporter opened on an existing
            round log (a resumed run) starts from the rounds already in it.

    Example::

        >>> reporter = Reporter("run/labels.sqlite.rounds.jsonl")  # doctest: +SKIP
        >>> callback = ActiveLabCallback(oracle, query_size=100, reporter=reporter)  # doctest: +SKIP
    """

    def __init__(
        self,
        round_log: str | os.PathLike | None = None,
        *,
        wandb_extras: bool = True,
        console: bool = True,
        progress: bool | None = None,
        progress_min_rows: int = 50_000,
        prefix: str = METRIC_PREFIX,
    ) -> None:
        if progress_min_rows < 0:
            raise ValueError(
                f"Reporter(progress_min_rows={progress_min_rows}): must be >= 0 (0 = always show)."
            )
        self.round_log = Path(round_log) if round_log is not None else None
        self.wandb_extras = wandb_extras
        self.console = console
        self.progress = console if progress is None else progress
        self.progress_min_rows = progress_min_rows
        self.prefix = prefix
        self.history: list[dict[str, Any]] = []
        if self.round_log is not None and self.round_log.exists():
            self.history = read_round_log(self.round_log)  # a resumed run continues its curve
        self._extras = LoggerExtras(prefix=prefix, wandb=wandb_extras)
        self._console = RoundConsole()

    # ------------------------------------------------------------------ paths
    @property
    def curve_csv(self) -> Path | None:
        """The learning-curve CSV next to the round log (``None`` without a round log)."""
        if self.round_log is None:
            return None
        return self.round_log.with_suffix(".csv")

    # ---------------------------------------------------------------- logging
    def log_round(self, trainer: Any, summary: RoundSummary) -> dict[str, float]:
        """Report one round (rank 0 only; a no-op on other ranks).

        Args:
            trainer: The round's ``lightning.pytorch.Trainer`` (its ``loggers`` and ``is_global_zero``
                are used).
            summary: What the round did.

        Returns:
            The logged scalars (empty on ranks other than 0).
        """
        if not isinstance(summary, RoundSummary):
            raise TypeError(
                f"Reporter.log_round(summary=...): expected a RoundSummary, got {type(summary).__name__}."
            )
        if not getattr(trainer, "is_global_zero", True):
            return {}
        scalars = round_scalars(summary, prefix=self.prefix)
        record = round_record(summary)
        self._replace_record(record)
        for logger in getattr(trainer, "loggers", None) or []:
            logger.log_metrics(scalars, step=summary.round)
            self._extras.log(logger, summary, self.history)
            save_logger(logger)
        self._write(record)
        if self.console:
            self._console.print_rows([record], title=f"{self.prefix}: round {summary.round}")
        return scalars

    def log_evaluation(
        self, round: int, metrics: Mapping[str, float], *, loggers: Sequence[Any] = (), trainer: Any = None
    ) -> dict[str, float]:
        """Add held-out metrics of a round's model (e.g. ``{"test/acc": 0.93}``) after the round was logged.

        The model of round ``r`` is tested after its acquisition (``trainer.test`` follows ``fit``),
        so its metrics arrive after :meth:`log_round`. They are logged as ``activelab/<name>`` with
        ``step=round`` through ``loggers`` (or ``trainer.loggers``), stored in the round's record
        (``test_accuracy`` for ``test/acc``) and appended to the round log again (the last entry of
        a round wins). Rank 0 only.

        Args:
            round: The round whose model was evaluated (must have been logged by :meth:`log_round`).
            metrics: Metric name → value.
            loggers: Lightning loggers to log to.
            trainer: Alternatively, the Trainer whose ``loggers`` to use.

        Returns:
            The logged scalars (empty on ranks other than 0).
        """
        from activelab_lightning._distributed import is_rank_zero  # lazy: keeps this import Lightning-free

        if trainer is not None:
            if not getattr(trainer, "is_global_zero", True):
                return {}
            loggers = list(getattr(trainer, "loggers", None) or [])
        elif not is_rank_zero():
            return {}
        records = [r for r in self.history if r["round"] == round]
        if not records:
            raise ValueError(
                f"Reporter.log_evaluation(round={round}): that round was not logged by this reporter; call "
                f"log_round(trainer, summary) first (rounds logged: {[r['round'] for r in self.history]})."
            )
        record = dict(records[-1])
        values = {str(k): float(v) for k, v in metrics.items() if v is not None}
        record["metrics"] = {**(record.get("metrics") or {}), **values}
        for key in TEST_ACCURACY_KEYS:
            if key in values:
                record["test_accuracy"] = values[key]
                break
        self._replace_record(record)
        scalars = evaluation_scalars(round, values, prefix=self.prefix)
        log_scalars(loggers, scalars, step=round)
        self._write(record)
        return scalars

    def _replace_record(self, record: dict[str, Any]) -> None:
        self.history = [r for r in self.history if r["round"] != record["round"]] + [record]

    def _write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` to the round log and rewrite the learning-curve CSV (no-op without a log)."""
        if self.round_log is None:
            return
        append_round_log(self.round_log, record)
        csv_path = self.curve_csv
        assert csv_path is not None
        write_curve_csv(csv_path, self.history)

    # ---------------------------------------------------------------- console
    def print_rounds(self, rounds: Sequence[int] | None = None, *, title: str | None = None) -> None:
        """Print the summary table of some (default: all) logged rounds on the console."""
        rows = sorted(self.history, key=lambda r: r["round"])
        if rounds is not None:
            wanted = set(rounds)
            rows = [r for r in rows if r["round"] in wanted]
        if rows:
            self._console.print_rows(rows, title=title or f"{self.prefix}: rounds")

    def track(
        self, iterable: Iterable[Any], *, total: int, description: str = "pool inference"
    ) -> Iterable[Any]:
        """Wrap a batch iterator in a ``rich`` progress bar (long pools only).

        The bar advances by the number of rows of each item: ``len(item[0])`` for tuples such as
        ``(ids, probs)``, else ``len(item)``. It is shown only when ``progress`` is on and
        ``total >= progress_min_rows``; otherwise the iterable is returned as is.

        Args:
            iterable: Batches, e.g. the ``(ids (B,), probs (B, K))`` pairs of pool inference.
            total: Rows in the pool.
            description: Label of the bar.

        Returns:
            An iterable yielding the same items.

        Example::

            >>> batches = [(list(range(3)), None), (list(range(2)), None)]
            >>> [len(b[0]) for b in Reporter(console=False).track(batches, total=5)]
            [3, 2]
        """
        show = bool(self.progress) and total >= self.progress_min_rows
        return self._console.track(iterable, total=total, description=description, show=show)

    # ----------------------------------------------------------------- finish
    def finish(self, learning_curve: str | os.PathLike | None = None) -> Path | None:
        """Print the full per-round table and write the learning-curve PNG.

        Args:
            learning_curve: PNG path; ``None`` writes ``<round log stem>.png`` next to the round log, or
                nothing without a round log.

        Returns:
            The PNG path, or ``None`` if no PNG was written (no rounds, or no path).
        """
        rows = sorted(self.history, key=lambda r: r["round"])
        if not rows:
            return None
        if self.console:
            self._console.print_rows(rows, title=f"{self.prefix}: all rounds")
        if learning_curve is None and self.round_log is not None:
            learning_curve = self.round_log.with_suffix(".png")
        if learning_curve is None:
            return None
        return plot_learning_curve(rows, learning_curve)
