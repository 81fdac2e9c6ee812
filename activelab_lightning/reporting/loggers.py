"""What goes to the Lightning loggers: the round's scalars to all, extras to W&B and TensorBoard.

Every logger in ``trainer.loggers`` gets the same ``activelab/...`` scalars with ``step=round``
(:func:`log_scalars`). :class:`LoggerExtras` then adds what only some loggers can show, behind one
check of the logger's kind (:func:`logger_kind`):

* W&B: score histograms, a table of the round's selected examples (with their answers), an
  annotator-quality table and learning curves (``activelab/*`` plotted against ``activelab/round``);
* TensorBoard: score histograms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from activelab_lightning.records import RoundSummary
from activelab_lightning.reporting.round_log import curve_rows, jsonable
from activelab_lightning.reporting.scalars import METRIC_PREFIX, finite_values

__all__ = ["LoggerExtras", "log_scalars", "logger_kind"]

_SELECTED_COLUMNS = ["round", "example_id", "score", "kind", "answer", "annotator"]
_ANNOTATOR_COLUMNS = ["annotator_id", "quality", "agreement", "worst_class", "num_labeled"]
_CURVE_TABLE_COLUMNS = ["num_annotations", "test_accuracy", "consensus_accuracy"]


def logger_kind(logger: Any) -> Literal["wandb", "tensorboard"] | None:
    """``"wandb"`` or ``"tensorboard"`` for the Lightning loggers that get extras, else ``None``."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    if isinstance(logger, WandbLogger):
        return "wandb"
    if isinstance(logger, TensorBoardLogger):
        return "tensorboard"
    return None


def save_logger(logger: Any) -> None:
    """Flush a logger that can (``logger.save()``), so each round is on disk before the next."""
    save = getattr(logger, "save", None)
    if callable(save):
        save()


def log_scalars(loggers: Iterable[Any], scalars: Mapping[str, float], *, step: int) -> None:
    """Log ``scalars`` with ``step`` through each logger, then flush it."""
    for logger in loggers:
        logger.log_metrics(scalars, step=step)
        save_logger(logger)


def _histogram_values(summary: RoundSummary) -> list[tuple[str, Any]]:
    """``(name, finite float64 scores)`` of the labeled and unlabeled pools that have any."""
    pairs = (("labeled", summary.labeled_scores), ("unlabeled", summary.unlabeled_scores))
    return [(name, finite) for name, values in pairs if (finite := finite_values(values)) is not None]


def _selected_rows(summary: RoundSummary) -> list[list[Any]]:
    """One row per (request, answer) of the round; an unanswered request gets one row of ``None``."""
    answers: dict[str, list[Any]] = {}
    for a in summary.answers:
        key = a.request_id or f"r{summary.round}:e{a.example_id}"
        answers.setdefault(key, []).append(a)
    rows = []
    for req in summary.requests:
        for a in answers.get(req.request_id) or [None]:
            rows.append(
                [
                    summary.round,
                    int(req.example_id),
                    float(req.score),
                    req.kind,
                    None if a is None else int(a.label),
                    None if a is None else str(a.annotator_id),
                ]
            )
    return rows


class LoggerExtras:
    """Logger-specific extras of a round, on top of the scalars every logger gets.

    Args:
        prefix: Metric namespace.
        wandb: Log histograms, tables and learning curves to W&B loggers.
    """

    def __init__(self, *, prefix: str = METRIC_PREFIX, wandb: bool = True) -> None:
        self.prefix = prefix
        self.wandb = wandb
        self._wandb_runs_defined: set[int] = set()

    def log(self, logger: Any, summary: RoundSummary, history: Sequence[Mapping[str, Any]]) -> None:
        """Add the extras ``logger``'s kind supports (nothing for other loggers).

        Args:
            logger: A Lightning logger.
            summary: The round.
            history: Every round record so far (the W&B learning curves), this round included.
        """
        kind = logger_kind(logger)
        if kind == "wandb" and self.wandb:
            self._log_wandb(logger, summary, history)
        elif kind == "tensorboard":
            self._log_tensorboard(logger, summary)

    def _log_wandb(self, logger: Any, summary: RoundSummary, history: Sequence[Mapping[str, Any]]) -> None:
        import wandb

        run = logger.experiment
        p = self.prefix
        if id(run) not in self._wandb_runs_defined and hasattr(run, "define_metric"):
            run.define_metric(f"{p}/round")
            run.define_metric(f"{p}/*", step_metric=f"{p}/round")
            self._wandb_runs_defined.add(id(run))
        payload: dict[str, Any] = {f"{p}/round": summary.round}
        for name, finite in _histogram_values(summary):
            payload[f"{p}/scores/{name}_hist"] = wandb.Histogram(finite.numpy())
        payload[f"{p}/selected"] = wandb.Table(columns=list(_SELECTED_COLUMNS), data=_selected_rows(summary))
        if summary.annotator_stats:
            data = [[jsonable(row.get(c)) for c in _ANNOTATOR_COLUMNS] for row in summary.annotator_stats]
            payload[f"{p}/annotators"] = wandb.Table(columns=list(_ANNOTATOR_COLUMNS), data=data)
        records: list[Mapping[str, Any]] = sorted(history, key=lambda r: r["round"])
        curve = curve_rows(records)
        columns = _CURVE_TABLE_COLUMNS
        table = wandb.Table(columns=list(columns), data=[[row[c] for c in columns] for row in curve])
        for y, title in (("test_accuracy", "test accuracy"), ("consensus_accuracy", "consensus accuracy")):
            if any(row[y] is not None for row in curve):
                payload[f"{p}/curve/{y}"] = wandb.plot.line(
                    table, "num_annotations", y, title=f"{title} vs. annotations"
                )
        run.log(payload)

    def _log_tensorboard(self, logger: Any, summary: RoundSummary) -> None:
        writer = logger.experiment
        for name, finite in _histogram_values(summary):
            writer.add_histogram(f"{self.prefix}/scores/{name}", finite, global_step=summary.round)
