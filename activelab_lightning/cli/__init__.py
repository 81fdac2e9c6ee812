"""The ``activelab`` command: run experiments from YAML configs, inspect and move labels.

Subcommands:

* ``activelab run --config configs/quickstart.yaml [--trainer.max_epochs 5 ...]`` runs a full
  multi-round experiment (:mod:`.run`). ``model``, ``data``, ``oracle``, ``callback``, ``trainer``
  and ``loop`` are configured the LightningCLI way (``class_path`` / ``init_args``);
  ``--print_config`` prints the complete resolved config, which fed back with ``--config``
  reproduces the run. Every key, type and path is checked, and every object built, before any
  training starts; a bad one is named in one line (:mod:`.errors`). Re-running the same command
  resumes from the annotation store in ``out_dir``.
* ``activelab status <store>``: rounds, annotations, pending requests, annotator table (:mod:`.tools`).
* ``activelab export <store> <file>`` / ``activelab import <store> <file>``: labels as a long
  CSV / JSONL table.

Exit status: 0 done, 2 bad config or arguments, 75 waiting for human labels (re-run later).

Example::

    $ activelab run --config configs/quickstart.yaml --loop.rounds 3
    $ activelab status runs/quickstart/labels.sqlite
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence

from activelab_lightning.cli.errors import ConfigError
from activelab_lightning.cli.run import PROG, PreparedRun, build_run_parser, prepare_run, run_command
from activelab_lightning.cli.tools import TOOL_COMMANDS, tools_parser

__all__ = ["ConfigError", "PreparedRun", "build_run_parser", "main", "prepare_run"]

#: Warnings Lightning gives on every small fit of a run, which the per-round table replaces.
_QUIET_WARNINGS = (
    ".*does not have many workers.*",
    ".*but have no `val_dataloader`.*",
    ".*smaller than the logging interval.*",
    ".*litlogger.*",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``activelab`` console script.

    Args:
        argv: Command-line arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status (also raised as ``SystemExit`` by the console script).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("WANDB_SILENT", "true")
    for message in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if argv and argv[0] == "run":
        # Importing lightning.pytorch sets its logger to INFO, so quiet it only after the import:
        # the per-round table replaces Lightning's per-fit banners ("GPU available...", tips).
        import lightning.pytorch  # noqa: F401

        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        return run_command(argv[1:])
    parser = tools_parser(PROG)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return TOOL_COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError) as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
