"""Per-round reporting: every Lightning logger, W&B extras, the round log, console and plots.

One :class:`~activelab_lightning.records.RoundSummary` per acquisition round goes through
:meth:`Reporter.log_round`, which (on rank 0 only)

* logs the round's scalars under ``activelab/...`` through **every** logger in ``trainer.loggers``
  (W&B, CSV, TensorBoard alike) with ``step=summary.round``: a fresh Trainer per round resets
  ``global_step``, so ``activelab/round`` is the x-axis;
* adds logger-specific extras behind one ``isinstance`` check each: for W&B score histograms, a
  table of the round's selected examples, an annotator-quality table and learning curves; for
  TensorBoard score histograms;
* appends one JSON object per round to the round log (JSONL, append + fsync), the stable record of
  what was asked and answered, and rewrites a small learning-curve CSV next to it;
* prints a one-row summary table on the console (``rich``).

:meth:`Reporter.finish` prints the whole table and writes the learning-curve PNG (accuracy vs.
number of annotations). :meth:`Reporter.track` wraps a pool-inference iterator in a ``rich``
progress bar on long pools.

Example::

    >>> from activelab_lightning.reporting import Reporter
    >>> reporter = Reporter("run/store.sqlite.rounds.jsonl", console=False)  # doctest: +SKIP
    >>> reporter.log_round(trainer, summary)                                 # doctest: +SKIP
    >>> reporter.finish("run/learning_curve.png")                            # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from activelab_lightning.metrics import accuracy
from activelab_lightning.records import RoundSummary

__all__ = [
    "METRIC_PREFIX",
    "Reporter",
    "accuracy",
    "plot_learning_curve",
    "read_round_log",
    "round_log_path",
    "round_scalars",
]

#: Namespace of every metric the library logs.
METRIC_PREFIX = "activelab"

_CURVE_COLUMNS = (
    "round",
    "num_annotations",
    "num_annotations_trained",
    "num_labeled",
    "num_new",
    "num_relabel",
    "consensus_accuracy",
    "test_accuracy",
    "seconds",
)
_SELECTED_COLUMNS = ["round", "example_id", "score", "kind", "answer", "annotator"]
_ANNOTATOR_COLUMNS = ["annotator_id", "quality", "agreement", "worst_class", "num_labeled"]
_TEST_ACC_KEYS = ("test/acc", "test_acc", "test/accuracy", "test_accuracy")


def round_log_path(store_path: str | os.PathLike) -> Path:
    """The default round-log path of a store: ``<store>.rounds.jsonl`` next to it.

    Args:
        store_path: Path of the :class:`~activelab_lightning.store.AnnotationStore` file.

    Returns:
        The JSONL path, e.g. ``run/labels.sqlite`` → ``run/labels.sqlite.rounds.jsonl``.

    Example::

        >>> round_log_path("run/labels.sqlite").as_posix()
        'run/labels.sqlite.rounds.jsonl'
    """
    store_path = Path(store_path)
    if str(store_path) == ":memory:":
        raise ValueError(
            "round_log_path(store_path=':memory:'): an in-memory store has no directory; "
            "pass an explicit round-log path instead."
        )
    return store_path.with_name(store_path.name + ".rounds.jsonl")


def _as_float64(values: Any) -> torch.Tensor | None:
    if values is None:
        return None
    tensor = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    return tensor


def _score_stats(name: str, values: torch.Tensor | None) -> dict[str, float]:
    if values is None:
        return {}
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        return {}
    return {
        f"scores/{name}_mean": float(finite.mean()),
        f"scores/{name}_min": float(finite.min()),
        f"scores/{name}_max": float(finite.max()),
    }


def _test_accuracy(summary: RoundSummary) -> float | None:
    metrics = summary.metrics or {}
    for key in _TEST_ACC_KEYS:
        if key in metrics and metrics[key] is not None:
            return float(metrics[key])
    return None


def round_scalars(summary: RoundSummary, *, prefix: str = METRIC_PREFIX) -> dict[str, float]:
    """The scalar metrics of one round, keyed ``<prefix>/<name>``.

    Args:
        summary: The round's summary.
        prefix: Metric namespace (default ``"activelab"``).

    Returns:
        ``{"activelab/round": 2.0, "activelab/num_annotations": 1234.0, ...}``: round, annotations,
        labeled / unlabeled examples, requests (new / re-label / pending / exhausted), score summary
        (mean / min / max of labeled, unlabeled and selected scores), consensus accuracy, model and
        mean annotator weight, wall time, and each entry of ``summary.metrics`` (``test/acc`` becomes
        ``activelab/test/acc``). Unknown (``None``) values are left out.

    Example::

        >>> from activelab_lightning.records import RoundSummary
        >>> s = RoundSummary(round=0, strategy="activelab", num_annotations=10, num_labeled=8,
        ...                  num_unlabeled=2, requests=(), answers=())
        >>> round_scalars(s)["activelab/num_labeled"]
        8.0
    """
    values: dict[str, float | None] = dict(summary.scalars())
    values.update(_score_stats("labeled", _as_float64(summary.labeled_scores)))
    values.update(_score_stats("unlabeled", _as_float64(summary.unlabeled_scores)))
    if summary.requests:
        selected = torch.tensor([r.score for r in summary.requests], dtype=torch.float64)
        values.update(_score_stats("selected", selected))
    for key, value in (summary.metrics or {}).items():
        values[key] = value
    out: dict[str, float] = {}
    for key, value in values.items():
        if value is None:
            continue
        number = float(value)
        if math.isnan(number):
            continue
        out[f"{prefix}/{key}"] = number
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return _jsonable(value.item())
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return value


def _round_record(summary: RoundSummary) -> dict[str, Any]:
    record: dict[str, Any] = {
        **summary.scalars(),
        "strategy": summary.strategy,
        "num_annotations_trained": summary.num_annotations - len(summary.answers),
        "test_accuracy": _test_accuracy(summary),
        "metrics": dict(summary.metrics or {}),
        "annotator_stats": [dict(row) for row in summary.annotator_stats],
        "requests": [dict(asdict(r), request_id=r.request_id) for r in summary.requests],
        "answers": [asdict(a) for a in summary.answers],
    }
    return _jsonable(record)


def read_round_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a round log written by :class:`Reporter`: one dict per round, sorted by round.

    A resumed run may log a round twice; the last entry of each round wins. A torn last line (a
    crash while writing) is ignored.

    Args:
        path: The JSONL file.

    Returns:
        The round records (keys as in :func:`round_scalars` without prefix, plus ``requests``,
        ``answers``, ``annotator_stats`` and ``metrics``).
    """
    by_round: dict[int, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            by_round[int(record["round"])] = record
    return [by_round[r] for r in sorted(by_round)]


def _curve_rows(history: Iterable[RoundSummary | Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for item in history:
        record = _round_record(item) if isinstance(item, RoundSummary) else dict(item)
        rows.append({key: record.get(key) for key in _CURVE_COLUMNS})
    return rows


def plot_learning_curve(
    history: Sequence[RoundSummary | Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str = "ActiveLab learning curve",
) -> Path:
    """Write a PNG of accuracy vs. number of annotations (one point per round).

    Plots test accuracy (the model on held-out data, against the annotations it was trained on) and
    consensus accuracy (the consensus labels against ground truth, against the annotations after the
    round), whichever the rounds report.

    Args:
        history: Round summaries, or round-log records as returned by :func:`read_round_log`.
        path: Where to write the PNG (parent folders are created).
        title: Figure title.

    Returns:
        The written path.

    Example::

        >>> plot_learning_curve(read_round_log("run/labels.sqlite.rounds.jsonl"), "run/curve.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    rows = _curve_rows(history)
    if not rows:
        raise ValueError(
            "plot_learning_curve(history=[]): there is nothing to plot; run at least one round first."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    plotted = False
    # the model of round r was trained before the round's answers arrived; the consensus includes them
    for key, x_key, label, marker in (
        ("test_accuracy", "num_annotations_trained", "model (test accuracy)", "o"),
        ("consensus_accuracy", "num_annotations", "consensus labels", "s"),
    ):
        points = [
            (row[x_key] if row.get(x_key) is not None else row["num_annotations"], row[key])
            for row in rows
            if row[key] is not None
        ]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=label)
            plotted = True
    if not plotted:
        ax.text(
            0.5, 0.5, "no ground truth: accuracy unknown", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_xlabel("number of annotations")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if plotted:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _is_wandb_logger(logger: Any) -> bool:
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover - lightning always ships it
        return False
    return isinstance(logger, WandbLogger)


def _is_tensorboard_logger(logger: Any) -> bool:
    from lightning.pytorch.loggers import TensorBoardLogger

    return isinstance(logger, TensorBoardLogger)


class _NullProgress:
    def __init__(self, iterable: Iterable[Any]) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self._iterable)


class Reporter:
    """Reports every acquisition round to the loggers, the round log and the console.

    Args:
        round_log: JSONL file that gets one object per round (scalars, requests, answers); a
            learning-curve CSV with the same stem (``.csv``) is rewritten next to it. ``None`` keeps
            no file. Use :func:`round_log_path` for the default ``<store>.rounds.jsonl``.
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
        self._wandb_runs_defined: set[int] = set()
        self._console = None

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
        record = _round_record(summary)
        self.history = [r for r in self.history if r["round"] != summary.round] + [record]
        for logger in getattr(trainer, "loggers", None) or []:
            logger.log_metrics(scalars, step=summary.round)
            if self.wandb_extras and _is_wandb_logger(logger):
                self._log_wandb_extras(logger, summary)
            elif _is_tensorboard_logger(logger):
                self._log_tensorboard_extras(logger, summary)
            save = getattr(logger, "save", None)
            if callable(save):
                save()
        self._append_round_log(record)
        if self.console:
            self._print_rows([record], title=f"{self.prefix}: round {summary.round}")
        return scalars

    def _append_round_log(self, record: Mapping[str, Any]) -> None:
        if self.round_log is None:
            return
        self.round_log.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.round_log, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        csv_path = self.curve_csv
        assert csv_path is not None
        tmp = csv_path.with_name(csv_path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(_CURVE_COLUMNS))
            writer.writeheader()
            for row in _curve_rows(sorted(self.history, key=lambda r: r["round"])):
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, csv_path)

    def _log_wandb_extras(self, logger: Any, summary: RoundSummary) -> None:
        import wandb

        run = logger.experiment
        p = self.prefix
        if id(run) not in self._wandb_runs_defined and hasattr(run, "define_metric"):
            run.define_metric(f"{p}/round")
            run.define_metric(f"{p}/*", step_metric=f"{p}/round")
            self._wandb_runs_defined.add(id(run))
        payload: dict[str, Any] = {f"{p}/round": summary.round}
        for name, values in (
            ("labeled", _as_float64(summary.labeled_scores)),
            ("unlabeled", _as_float64(summary.unlabeled_scores)),
        ):
            if values is not None:
                finite = values[torch.isfinite(values)]
                if finite.numel():
                    payload[f"{p}/scores/{name}_hist"] = wandb.Histogram(finite.numpy())
        answers: dict[str, list[Any]] = {}
        for a in summary.answers:
            key = a.request_id or f"r{summary.round}:e{a.example_id}"
            answers.setdefault(key, []).append(a)
        rows = []
        for req in summary.requests:
            given = answers.get(req.request_id) or [None]
            for a in given:
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
        payload[f"{p}/selected"] = wandb.Table(columns=list(_SELECTED_COLUMNS), data=rows)
        if summary.annotator_stats:
            data = [[_jsonable(row.get(c)) for c in _ANNOTATOR_COLUMNS] for row in summary.annotator_stats]
            payload[f"{p}/annotators"] = wandb.Table(columns=list(_ANNOTATOR_COLUMNS), data=data)
        curve = _curve_rows(sorted(self.history, key=lambda r: r["round"]))
        columns = ["num_annotations", "test_accuracy", "consensus_accuracy"]
        table = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in curve])
        for y, title in (("test_accuracy", "test accuracy"), ("consensus_accuracy", "consensus accuracy")):
            if any(row[y] is not None for row in curve):
                payload[f"{p}/curve/{y}"] = wandb.plot.line(
                    table, "num_annotations", y, title=f"{title} vs. annotations"
                )
        run.log(payload)

    def _log_tensorboard_extras(self, logger: Any, summary: RoundSummary) -> None:
        writer = logger.experiment
        for name, values in (
            ("labeled", _as_float64(summary.labeled_scores)),
            ("unlabeled", _as_float64(summary.unlabeled_scores)),
        ):
            if values is not None:
                finite = values[torch.isfinite(values)]
                if finite.numel():
                    writer.add_histogram(f"{self.prefix}/scores/{name}", finite, global_step=summary.round)

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
        from lightning.pytorch.utilities import rank_zero_only

        if trainer is not None:
            if not getattr(trainer, "is_global_zero", True):
                return {}
            loggers = list(getattr(trainer, "loggers", None) or [])
        elif getattr(rank_zero_only, "rank", 0) != 0:
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
        for key in _TEST_ACC_KEYS:
            if key in values:
                record["test_accuracy"] = values[key]
                break
        self.history = [r for r in self.history if r["round"] != round] + [record]
        scalars = {
            f"{self.prefix}/round": float(round),
            **{f"{self.prefix}/{k}": v for k, v in values.items() if not math.isnan(v)},
        }
        for logger in loggers:
            logger.log_metrics(scalars, step=round)
            save = getattr(logger, "save", None)
            if callable(save):
                save()
        self._append_round_log(record)
        return scalars

    def print_rounds(self, rounds: Sequence[int] | None = None, *, title: str | None = None) -> None:
        """Print the summary table of some (default: all) logged rounds on the console."""
        rows = sorted(self.history, key=lambda r: r["round"])
        if rounds is not None:
            wanted = set(rounds)
            rows = [r for r in rows if r["round"] in wanted]
        if rows:
            self._print_rows(rows, title=title or f"{self.prefix}: rounds")

    # ---------------------------------------------------------------- console
    def _get_console(self) -> Any:
        if self._console is None:
            import sys

            from rich.console import Console

            # a pipe or a CI log gets rich's 80 columns, which cuts the round table: give it room
            self._console = Console() if sys.stdout.isatty() else Console(width=132)
        return self._console

    def _print_rows(self, rows: Sequence[Mapping[str, Any]], *, title: str) -> None:
        from rich import box
        from rich.table import Table

        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in (
            "round",
            "annot.",
            "labeled",
            "new",
            "relabel",
            "pending",
            "cons. acc",
            "test acc",
            "w model",
            "w annot.",
            "sec",
        ):
            table.add_column(column, justify="right", min_width=len(column), no_wrap=True)

        def fmt(value: Any, spec: str = "") -> str:
            return "–" if value is None else format(value, spec)

        for row in rows:
            table.add_row(
                fmt(row["round"]),
                fmt(row["num_annotations"]),
                fmt(row["num_labeled"]),
                fmt(row["num_new"]),
                fmt(row["num_relabel"]),
                fmt(row["num_pending"]),
                fmt(row["consensus_accuracy"], ".4f"),
                fmt(row["test_accuracy"], ".4f"),
                fmt(row.get("model_weight"), ".3f"),
                fmt(row.get("mean_annotator_weight"), ".3f"),
                fmt(row["seconds"], ".2f"),
            )
        self._get_console().print(table)

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
        if not self.progress or total < self.progress_min_rows:
            return _NullProgress(iterable)
        return self._progress(iterable, total, description)

    def _progress(self, iterable: Iterable[Any], total: int, description: str) -> Iterator[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self._get_console(), transient=True) as progress:
            task = progress.add_task(description, total=total)
            for item in iterable:
                rows = item[0] if isinstance(item, tuple) and item else item
                try:
                    progress.advance(task, len(rows))
                except TypeError:
                    progress.advance(task, 1)
                yield item

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
            self._print_rows(rows, title=f"{self.prefix}: all rounds")
        if learning_curve is None and self.round_log is not None:
            learning_curve = self.round_log.with_suffix(".png")
        if learning_curve is None:
            return None
        return plot_learning_curve(rows, learning_curve)
