"""The ``activelab`` command: run experiments from YAML configs, inspect and move labels.

Subcommands:

* ``activelab run --config configs/quickstart.yaml [--trainer.max_epochs 5 ...]`` runs a full
  multi-round experiment. ``model``, ``data``, ``oracle``, ``callback``, ``trainer`` and ``loop``
  are configured the LightningCLI way (``class_path`` / ``init_args``); ``--print_config`` prints
  the complete resolved config, which fed back with ``--config`` reproduces the run. Every key,
  type and path is checked, and every object built, before any training starts. Re-running the same
  command resumes from the annotation store in ``out_dir``.
* ``activelab status <store>``: rounds, annotations, pending requests, annotator table.
* ``activelab export <store> <file>`` / ``activelab import <store> <file>``: labels as a long
  CSV / JSONL table.

Exit status: 0 done, 2 bad config or arguments, 75 waiting for human labels (re-run later).

Example::

    $ activelab run --config configs/quickstart.yaml --loop.rounds 3
    $ activelab status runs/quickstart/labels.sqlite
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PreparedRun", "build_run_parser", "main", "prepare_run"]

_PROG = "activelab"
_LOOP_SKIP = {"model", "datamodule", "callback", "trainer_kwargs", "seed", "loggers"}
_CALLBACK_SKIP = {"oracle", "seed", "predict_fn", "true_labels", "reporter", "state_dir"}
_TRAINER_DEFAULTS = {
    "max_epochs": 10,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what was expected."""


def build_run_parser() -> Any:
    """The ``jsonargparse`` parser of ``activelab run`` (typed groups, ``--config``, ``--print_config``).

    Returns:
        A ``jsonargparse.ArgumentParser``.

    Example::

        >>> parser = build_run_parser()
        >>> cfg = parser.parse_args(["--config", "configs/quickstart.yaml"])  # doctest: +SKIP
    """
    import lightning.pytorch as pl
    from jsonargparse import ActionConfigFile, ArgumentParser

    from activelab_lightning.callback import ActiveLabCallback
    from activelab_lightning.experiments import Experiment, OracleSpec
    from activelab_lightning.loop import ActiveLearningLoop

    parser = ArgumentParser(
        prog=f"{_PROG} run",
        description="Run a multi-round ActiveLab experiment (resumes from the store in out_dir).",
        env_prefix="ACTIVELAB",
        default_env=False,
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config (class_path/init_args).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the model init, data draws, selections.")
    parser.add_argument(
        "--out_dir",
        type=str,
        default="runs/activelab",
        help="Run folder: annotation store, round log, learning curve, config.",
    )
    parser.add_argument(
        "--store",
        type=str | None,
        default=None,
        help="Annotation store file (default <out_dir>/labels.sqlite).",
    )
    parser.add_argument("--console", type=bool, default=True, help="Print the per-round table.")
    parser.add_argument(
        "--wandb_extras",
        type=bool,
        default=True,
        help="Log histograms, tables and learning curves to W&B loggers.",
    )
    parser.add_subclass_arguments(
        pl.LightningModule,
        "model",
        required=True,
        help="The LightningModule (a fresh copy of its initial weights each round).",
    )
    parser.add_subclass_arguments(
        Experiment, "data", required=True, help="Data builder: dataset, store, datamodule, default oracle."
    )
    parser.add_subclass_arguments(
        OracleSpec,
        "oracle",
        required=False,
        help="Replace the data's own oracle (default: null = the data's).",
    )
    parser.add_class_arguments(ActiveLabCallback, "callback", skip=_CALLBACK_SKIP, instantiate=False)
    parser.add_class_arguments(pl.Trainer, "trainer", instantiate=False)
    parser.add_class_arguments(ActiveLearningLoop, "loop", skip=_LOOP_SKIP, instantiate=False)
    parser.set_defaults({f"trainer.{k}": v for k, v in _TRAINER_DEFAULTS.items()})
    parser.set_defaults({"oracle": None})
    return parser


class PreparedRun:
    """Everything ``activelab run`` built before training: call :meth:`run` to train.

    Attributes:
        config: The parsed config (``jsonargparse.Namespace``).
        out_dir: The run folder.
        parts: The :class:`~activelab_lightning.experiments.ExperimentParts`.
        loop: The :class:`~activelab_lightning.loop.ActiveLearningLoop`.
        reporter: The :class:`~activelab_lightning.reporting.Reporter`.
        loggers: The Lightning loggers shared by all rounds.
    """

    def __init__(
        self, config: Any, out_dir: Path, parts: Any, loop: Any, reporter: Any, loggers: list
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        self.parts = parts
        self.loop = loop
        self.reporter = reporter
        self.loggers = loggers

    @property
    def learning_curve_path(self) -> Path:
        """``<out_dir>/learning_curve.png``."""
        return self.out_dir / "learning_curve.png"

    def run(self) -> list[dict[str, Any]]:
        """Run (or resume) the rounds, report each, then write the learning curve.

        Returns:
            The loop's history (one dict per round run).

        Raises:
            WaitingForLabels: A human oracle has not answered yet (the CLI exits with 75).
        """
        loop, reporter = self.loop, self.reporter
        target = loop.rounds
        seen = {h["round"] for h in loop.history}
        try:
            for r in range(target):
                loop.rounds = r + 1
                before = len(loop.history)
                loop.run()
                for row in loop.history[before:]:
                    if row["round"] in seen:
                        continue
                    seen.add(row["round"])
                    record = next((h for h in reporter.history if h["round"] == row["round"]), None)
                    already = (record or {}).get("metrics") or {}
                    test = row.get("test") or {}
                    if record is not None and any(already.get(k) != v for k, v in test.items()):
                        reporter.log_evaluation(row["round"], test, loggers=self.loggers)
                    if self.config.console and _is_rank_zero():
                        reporter.print_rounds([row["round"]], title=f"round {row['round']}")
        finally:
            loop.rounds = target
            for logger in self.loggers:
                _finish_logger(logger)
        if _is_rank_zero() and reporter.history:
            if self.config.console:
                reporter.print_rounds(title="all rounds")
            reporter.finish(self.learning_curve_path)
        return loop.history


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _finish_logger(logger: Any) -> None:
    from lightning.pytorch.loggers import WandbLogger

    if (
        isinstance(logger, WandbLogger)
        and _is_rank_zero()
        and getattr(logger, "_experiment", None) is not None
    ):
        logger.experiment.finish()


def _instantiate(parser: Any, cfg: Any) -> Any:
    instantiate = getattr(parser, "instantiate", None)
    if instantiate is None:  # jsonargparse < 4.49
        return parser.instantiate_classes(cfg)
    return instantiate(cfg)


def _loggers(value: Any, out_dir: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger, Logger

    if value is None or value is True:
        return [CSVLogger(str(out_dir), name="logs")]
    if value is False:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, Logger):
            raise ConfigError(
                f"trainer.logger: expected Lightning loggers (class_path: lightning.pytorch.loggers.CSVLogger, "
                f"...), got {type(item).__name__}."
            )
    return items


_UNKNOWN_KEY_PATTERNS = (
    re.compile(r"Group '(?P<group>[\w.]+)' does not accept option '(?P<key>[\w.]+)'"),
    re.compile(r"Option '(?P<key>[\w.]+)' is not accepted"),
    re.compile(r"unrecognized arguments: --(?P<key>[\w.]+)"),
    re.compile(r"Key '(?P<key>[\w.]+)' is not expected"),
)


def _explain_parse_error(parser: Any, message: str) -> str:
    """jsonargparse's message, plus "did you mean ..." for a misspelled key."""
    known: set[str] = set()
    for key in parser.get_defaults().keys():
        parts = key.split(".")
        known.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    for pattern in _UNKNOWN_KEY_PATTERNS:
        match = pattern.search(message)
        if match is None:
            continue
        key = match.group("key")
        group = match.groupdict().get("group")
        if group:
            key = f"{group}.{key}"
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        group_keys = sorted(k for k in known if k.startswith(f"{key.rsplit('.', 1)[0]}.") and "." in key)
        listing = (
            f" Valid keys there: {', '.join(group_keys)}." if group_keys and len(group_keys) <= 40 else ""
        )
        return f"unknown config key '{key}'.{hint}{listing} (`activelab run --help` lists every option.)"
    match = re.search(r"module '(?P<module>[\w.]+)' has no attribute '(?P<name>\w+)'", message)
    if match is not None:
        try:
            names = [n for n in dir(importlib.import_module(match.group("module"))) if not n.startswith("_")]
        except ImportError:
            names = []
        close = difflib.get_close_matches(match.group("name"), names, n=1, cutoff=0.6)
        if close:
            message = f"{message.strip()}\nDid you mean class_path: {match.group('module')}.{close[0]}?"
    return message.strip() + " (`activelab run --help` lists every option.)"


def _check_model(model: Any, parts: Any) -> None:
    """One forward pass on two pool examples: catches input/class mismatches before training."""
    import torch

    loader = parts.datamodule.pool_dataloader(torch.arange(min(2, len(parts.dataset))))
    x, _ = next(iter(loader))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:
        raise ConfigError(
            f"model: {type(model).__name__} cannot take the data's inputs (one example has shape "
            f"{tuple(parts.input_shape)}): {str(err).rstrip('.')}. Check model.init_args against the data."
        ) from err
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != parts.num_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"model: {type(model).__name__} returns {shape} for a batch of {len(x)}, expected "
            f"({len(x)}, {parts.num_classes}) logits ({parts.num_classes} classes in the data). "
            f"Set model.init_args.num_classes: {parts.num_classes}."
        )


def prepare_run(argv: Sequence[str] | None = None, *, parser: Any = None) -> PreparedRun:
    """Parse ``activelab run`` arguments and build everything (no training yet).

    Args:
        argv: Arguments after ``run`` (default ``sys.argv[2:]``).
        parser: A parser from :func:`build_run_parser` (built if ``None``).

    Returns:
        A :class:`PreparedRun`; call ``.run()``.

    Raises:
        SystemExit: Unknown keys, wrong types, bad class paths (jsonargparse names the key), exit 2.
        ConfigError, FileNotFoundError: A value is wrong (the message names the key).
    """
    import lightning.pytorch as pl

    from activelab_lightning.callback import ActiveLabCallback
    from activelab_lightning.loop import ActiveLearningLoop
    from activelab_lightning.reporting import Reporter, round_log_path

    parser = parser or build_run_parser()
    try:
        cfg = parser.parse_args(list(argv) if argv is not None else sys.argv[2:])
    except argparse.ArgumentError as err:
        raise ConfigError(_explain_parse_error(parser, str(err))) from None
    seed = int(cfg.seed)
    pl.seed_everything(seed, workers=True, verbose=False)  # the model's initial weights
    init = _instantiate(parser, cfg)
    out_dir = Path(cfg.out_dir)
    store_path = Path(cfg.store) if cfg.store else out_dir / "labels.sqlite"
    trainer_kwargs = {k: v for k, v in vars(init.trainer).items() if v is not None}
    loggers = _loggers(trainer_kwargs.pop("logger", None), out_dir)
    trainer_kwargs.setdefault("default_root_dir", str(out_dir))
    if init.oracle is not None:
        init.oracle.check()
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = init.data.build(store_path=store_path, seed=seed)
    _check_model(init.model, parts)
    oracle = init.oracle.build(parts, seed=seed) if init.oracle is not None else parts.oracle
    # the CLI prints each round itself, once the round's model is tested; the progress bar stays on
    reporter = Reporter(
        round_log_path(store_path),
        console=False,
        progress=bool(cfg.console),
        wandb_extras=bool(cfg.wandb_extras),
    )
    callback_kwargs = dict(vars(init.callback))
    callback = ActiveLabCallback(
        oracle, seed=seed, true_labels=parts.true_labels, reporter=reporter, **callback_kwargs
    )
    loop_kwargs = dict(vars(init.loop))
    loop = ActiveLearningLoop(
        init.model,
        parts.datamodule,
        callback,
        trainer_kwargs=trainer_kwargs,
        seed=seed,
        loggers=loggers,
        **loop_kwargs,
    )
    if _is_rank_zero():
        parser.save(cfg, out_dir / "config.yaml", overwrite=True, skip_check=True)
    return PreparedRun(cfg, out_dir, parts, loop, reporter, loggers)


def _run_command(argv: Sequence[str]) -> int:
    from activelab_lightning.errors import EXIT_WAITING_FOR_LABELS, WaitingForLabels

    try:
        prepared = prepare_run(argv)
    except (ConfigError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"{_PROG} run: error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        prepared.run()
    except WaitingForLabels as err:
        print(f"{_PROG} run: {err}", file=sys.stderr)
        return EXIT_WAITING_FOR_LABELS
    if _is_rank_zero():
        print(
            f"done in {time.perf_counter() - started:.1f} s: {prepared.out_dir} "
            f"(round log {prepared.reporter.round_log}, learning curve {prepared.learning_curve_path})"
        )
    return 0


# ---------------------------------------------------------------------------------------- status
def _open_store(path: str) -> Any:
    from activelab_lightning.store import AnnotationStore

    if not Path(path).is_file():
        raise FileNotFoundError(
            f"store {path!r}: no such file; give the .sqlite file an `activelab run` wrote."
        )
    return AnnotationStore(path)


def _annotator_rows(store: Any) -> list[tuple[str, int, float | None]]:
    """(annotator, #labels, agreement with the majority vote of the other labels' consensus)."""
    import torch

    from activelab_lightning.scoring import majority_vote

    labels, annotators = store.label_matrix()
    if labels.numel() == 0:
        return []
    consensus = majority_vote(labels).to(labels.dtype)
    given = ~torch.isnan(labels)
    agree = ((labels == consensus[:, None]) & given).sum(0).double()
    count = given.sum(0)
    counts = store.annotator_counts()
    return [
        (a, int(counts.get(a, int(count[j]))), float(agree[j] / count[j]) if count[j] else None)
        for j, a in enumerate(annotators)
    ]


def _status_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from activelab_lightning.reporting import read_round_log, round_log_path

    store = _open_store(args.store)
    console = Console()
    labeled = int(store.labeled_ids().numel())
    pending = store.pending_requests()
    console.print(
        f"[bold]{args.store}[/bold]: {store.num_examples} examples, {store.num_classes} classes "
        f"({', '.join(store.class_names)})"
    )
    console.print(
        f"annotations: {len(store)}   labeled: {labeled}   unlabeled: {store.num_examples - labeled}   "
        f"pending requests: {len(pending)}"
    )
    log_rows = {}
    log_path = round_log_path(args.store)
    if log_path.is_file():
        log_rows = {r["round"]: r for r in read_round_log(log_path)}
    rounds = Table(title="rounds", title_justify="left")
    for col in ("round", "status", "selected", "new", "re-label", "cons. acc", "test acc"):
        rounds.add_column(col, justify="right")
    for rec in store.rounds():
        row = log_rows.get(rec.round, {})

        def fmt(v: Any) -> str:
            return "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

        rounds.add_row(
            str(rec.round),
            rec.status,
            str(len(rec.selected_ids)),
            fmt(row.get("num_new")),
            fmt(row.get("num_relabel")),
            fmt(row.get("consensus_accuracy")),
            fmt(row.get("test_accuracy")),
        )
    console.print(rounds)
    if pending:
        table = Table(title=f"pending requests ({len(pending)})", title_justify="left")
        for col in ("request", "example", "kind", "score"):
            table.add_column(col)
        for req in pending[: args.max_rows]:
            table.add_row(req.request_id, str(req.example_id), req.kind, f"{req.score:.4f}")
        console.print(table)
    annotators = Table(title="annotators", title_justify="left")
    for col in ("annotator", "labels", "agreement with majority"):
        annotators.add_column(col, justify="right")
    rows = sorted(_annotator_rows(store), key=lambda r: -r[1])
    for name, n, agreement in rows[: args.max_rows]:
        annotators.add_row(name, str(n), "–" if agreement is None else f"{agreement:.3f}")
    if len(rows) > args.max_rows:
        annotators.caption = f"{len(rows) - args.max_rows} more annotators not shown (--max_rows)"
    console.print(annotators)
    return 0


def _export_command(args: argparse.Namespace) -> int:
    store = _open_store(args.store)
    n = store.export_annotations(args.file)
    print(f"exported {n} annotations to {args.file}")
    return 0


def _import_command(args: argparse.Namespace) -> int:
    store = _open_store(args.store)
    n = store.import_annotations(args.file, correction=args.correction)
    print(f"imported {n} new annotations from {args.file} into {args.store} ({len(store)} in total)")
    return 0


def _tools_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="ActiveLab active learning for PyTorch Lightning. "
        "`activelab run --help` lists the experiment options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,status,export,import}")
    sub.add_parser("run", help="run a multi-round experiment from a YAML config (see `activelab run --help`)")
    status = sub.add_parser("status", help="rounds, annotations, pending requests and annotators of a store")
    status.add_argument("store", help="the annotation store (.sqlite)")
    status.add_argument("--max_rows", type=int, default=20, help="rows shown per table")
    export = sub.add_parser("export", help="write all annotations of a store to a CSV / JSONL file")
    export.add_argument("store")
    export.add_argument("file", help="output .csv / .jsonl (optionally .gz)")
    imp = sub.add_parser("import", help="add annotations from a CSV / JSONL file to a store")
    imp.add_argument("store")
    imp.add_argument("file", help="input .csv / .jsonl (columns example_id, annotator_id, label)")
    imp.add_argument(
        "--correction", action="store_true", help="the labels replace earlier ones of the same annotator"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``activelab`` console script.

    Args:
        argv: Command-line arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status (also raised as ``SystemExit`` by the console script).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("WANDB_SILENT", "true")
    for message in (
        ".*does not have many workers.*",
        ".*but have no `val_dataloader`.*",
        ".*smaller than the logging interval.*",
        ".*litlogger.*",
    ):
        warnings.filterwarnings("ignore", message=message)
    if argv and argv[0] == "run":
        # Importing lightning.pytorch sets its logger to INFO, so quiet it only after the import:
        # the per-round table replaces Lightning's per-fit banners ("GPU available...", tips).
        import lightning.pytorch  # noqa: F401

        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        return _run_command(argv[1:])
    parser = _tools_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {"status": _status_command, "export": _export_command, "import": _import_command}
    try:
        return handlers[args.command](args)
    except (FileNotFoundError, ValueError) as err:
        print(f"{_PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
