"""``activelab run``: parse a YAML config, build everything, check it, then train round by round.

:func:`build_run_parser` declares the config (``model``, ``data``, ``oracle``, ``callback``,
``trainer``, ``loop`` the LightningCLI way, plus a few top-level options); :func:`prepare_run`
parses and builds a :class:`PreparedRun` (every key, type, path and object checked before any
training starts); :meth:`PreparedRun.run` trains, resuming from the annotation store in ``out_dir``.

Lightning and the library's pipeline are imported inside the functions, so that ``activelab
status`` and ``activelab --help`` start quickly.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from activelab_lightning.cli.errors import ConfigError, ParserSpec, explain_parse_error
from activelab_lightning.store._lock import RunLock

__all__ = ["PROG", "PreparedRun", "build_run_parser", "prepare_run", "run_command"]

PROG = "activelab"
_LOOP_SKIP = {"model", "datamodule", "callback", "trainer_kwargs", "seed", "loggers"}
_CALLBACK_SKIP = {"oracle", "seed", "predict_fn", "true_labels", "reporter", "state_dir"}
_TRAINER_DEFAULTS = {
    "max_epochs": 10,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}
#: The top-level options: name → (type, default, help).
_OPTIONS: dict[str, tuple[Any, Any, str]] = {
    "seed": (int, 0, "Seed of the model init, data draws, selections."),
    "out_dir": (str, "runs/activelab", "Run folder: annotation store, round log, learning curve, config."),
    "store": (str | None, None, "Annotation store file (default <out_dir>/labels.sqlite)."),
    "console": (bool, True, "Print the per-round table."),
    "wandb_extras": (bool, True, "Log histograms, tables and learning curves to W&B loggers."),
}


def _parser_spec() -> ParserSpec:
    """The types behind the parser's keys, for naming what a bad value should have been."""
    import lightning.pytorch as pl

    from activelab_lightning.callback import ActiveLabCallback
    from activelab_lightning.loop import ActiveLearningLoop

    return ParserSpec(
        options={name: tp for name, (tp, _, _) in _OPTIONS.items()},
        groups={"callback": ActiveLabCallback, "trainer": pl.Trainer, "loop": ActiveLearningLoop},
        subclass_keys=frozenset({"model", "data", "oracle"}),
    )


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
        prog=f"{PROG} run",
        description="Run a multi-round ActiveLab experiment (resumes from the store in out_dir).",
        env_prefix="ACTIVELAB",
        default_env=False,
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config (class_path/init_args).")
    for name, (tp, default, help_text) in _OPTIONS.items():
        parser.add_argument(f"--{name}", type=tp, default=default, help=help_text)
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
        self,
        config: Any,
        out_dir: Path,
        parts: Any,
        loop: Any,
        reporter: Any,
        loggers: list,
        *,
        lock: RunLock | None = None,
    ) -> None:
        self._lock = lock
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
        from activelab_lightning._distributed import is_rank_zero

        loop, reporter = self.loop, self.reporter
        target = loop.rounds
        seen = {h["round"] for h in loop.history}
        done_before = loop.store.last_completed_round() + 1
        if done_before >= target and not any(rec.status != "completed" for rec in loop.store.rounds()):
            if is_rank_zero():
                print(
                    f"already complete: {loop.store.path} holds {done_before} completed rounds and "
                    f"loop.rounds is {target}, so there is nothing to run; pass --loop.rounds {done_before + 1} "
                    f"(or more) to continue this run, or another --out_dir for a new one.",
                    file=sys.stderr,
                )
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
                    if self.config.console and is_rank_zero():
                        reporter.print_rounds([row["round"]], title=f"round {row['round']}")
        finally:
            loop.rounds = target
            for logger in self.loggers:
                _finish_logger(logger)
            if self._lock is not None:
                self._lock.release()  # taken by prepare_run
        if is_rank_zero() and reporter.history:
            if self.config.console:
                reporter.print_rounds(title="all rounds")
            reporter.finish(self.learning_curve_path)
        return loop.history


def _finish_logger(logger: Any) -> None:
    from lightning.pytorch.loggers import WandbLogger

    from activelab_lightning._distributed import is_rank_zero

    if (
        isinstance(logger, WandbLogger)
        and is_rank_zero()
        and getattr(logger, "_experiment", None) is not None
    ):
        logger.experiment.finish()


def _loggers_in(cfg: Any, out_dir: Path) -> Any:
    """A copy of ``cfg`` whose loggers' relative ``save_dir`` lie inside ``out_dir``.

    So ``--out_dir`` moves every log with the run (configs say ``save_dir: .``); an absolute
    ``save_dir`` is kept as given. The saved ``config.yaml`` keeps the relative value.
    """
    clone = cfg.clone()
    value = getattr(clone.trainer, "logger", None)
    for item in value if isinstance(value, list) else [value]:
        init_args = getattr(item, "init_args", None)
        save_dir = getattr(init_args, "save_dir", None) if init_args is not None else None
        if (
            init_args is not None
            and isinstance(save_dir, (str, os.PathLike))
            and not Path(save_dir).is_absolute()
        ):
            init_args.save_dir = str(out_dir / save_dir)
    return clone


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


def _parse(parser: Any, argv: list[str]) -> Any:
    """Parse ``argv``; a rejected config raises :class:`ConfigError` with one line on the culprit."""
    from jsonargparse import ArgumentError

    try:
        return parser.parse_args(argv)
    except ArgumentError as err:
        raise ConfigError(explain_parse_error(parser, argv, err, _parser_spec())) from None


def prepare_run(argv: Sequence[str] | None = None, *, parser: Any = None) -> PreparedRun:
    """Parse ``activelab run`` arguments and build everything (no training yet).

    Args:
        argv: Arguments after ``run`` (default ``sys.argv[2:]``).
        parser: A parser from :func:`build_run_parser` (built if ``None``).

    Returns:
        A :class:`PreparedRun`; call ``.run()``.

    Raises:
        ConfigError: Unknown keys, wrong types, bad class paths (the message names the key and
            the value), or a value the built objects reject.
        FileNotFoundError: A configured path does not exist (the message names the key).
        SystemExit: ``--help`` or ``--print_config`` (exit 0).
    """
    import lightning.pytorch as pl

    from activelab_lightning._distributed import is_rank_zero

    parser = parser or build_run_parser()
    cfg = _parse(parser, list(argv) if argv is not None else sys.argv[2:])
    seed = int(cfg.seed)
    pl.seed_everything(seed, workers=True, verbose=False)  # the model's initial weights
    out_dir = Path(cfg.out_dir)
    init = _instantiate(parser, _loggers_in(cfg, out_dir))
    store_path = Path(cfg.store) if cfg.store else out_dir / "labels.sqlite"
    trainer_kwargs = {k: v for k, v in vars(init.trainer).items() if v is not None}
    loggers = _loggers(trainer_kwargs.pop("logger", None), out_dir)
    trainer_kwargs.setdefault("default_root_dir", str(out_dir))
    if init.oracle is not None:
        init.oracle.check()
    out_dir.mkdir(parents=True, exist_ok=True)
    # one run per store, taken before anything is written (the store, config.yaml, logs)
    lock = RunLock(store_path)
    if is_rank_zero():
        lock.acquire()
    try:
        return _build_run(parser, cfg, init, out_dir, store_path, seed, trainer_kwargs, loggers, lock)
    except BaseException:
        lock.release()
        raise


def _build_run(
    parser: Any,
    cfg: Any,
    init: Any,
    out_dir: Path,
    store_path: Path,
    seed: int,
    trainer_kwargs: dict[str, Any],
    loggers: list[Any],
    lock: RunLock,
) -> PreparedRun:
    from activelab_lightning._distributed import is_rank_zero
    from activelab_lightning.callback import ActiveLabCallback
    from activelab_lightning.loop import ActiveLearningLoop
    from activelab_lightning.reporting import Reporter, round_log_path

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
    callback = ActiveLabCallback(
        oracle, seed=seed, true_labels=parts.true_labels, reporter=reporter, **dict(vars(init.callback))
    )
    loop = ActiveLearningLoop(
        init.model,
        parts.datamodule,
        callback,
        trainer_kwargs=trainer_kwargs,
        seed=seed,
        loggers=loggers,
        **dict(vars(init.loop)),
    )
    if is_rank_zero():
        parser.save(cfg, out_dir / "config.yaml", overwrite=True, skip_validation=True)
    return PreparedRun(cfg, out_dir, parts, loop, reporter, loggers, lock=lock)


def run_command(argv: Sequence[str]) -> int:
    """``activelab run ARGS``: prepare, then run; returns the exit status (0, 2 or 75)."""
    from activelab_lightning._distributed import is_rank_zero
    from activelab_lightning.errors import (
        EXIT_STORE_LOCKED,
        EXIT_WAITING_FOR_LABELS,
        StoreLocked,
        WaitingForLabels,
    )

    try:
        prepared = prepare_run(argv)
    except StoreLocked as err:
        print(f"{PROG} run: error: {err}", file=sys.stderr)
        return EXIT_STORE_LOCKED
    except (ConfigError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"{PROG} run: error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        prepared.run()
    except WaitingForLabels as err:
        print(f"{PROG} run: {err}", file=sys.stderr)
        return EXIT_WAITING_FOR_LABELS
    if is_rank_zero():
        print(
            f"done in {time.perf_counter() - started:.1f} s: {prepared.out_dir} "
            f"(round log {prepared.reporter.round_log}, learning curve {prepared.learning_curve_path})"
        )
    return 0
