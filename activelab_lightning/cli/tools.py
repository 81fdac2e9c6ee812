"""``activelab status`` / ``export`` / ``import``: inspect a store, move its labels in and out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["TOOL_COMMANDS", "tools_parser"]


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


def _fmt(v: Any) -> str:
    return "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def status_command(args: argparse.Namespace) -> int:
    """Print a store's rounds, annotation counts, pending requests and annotator table."""
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
    from activelab_lightning.store._lock import RunLock, describe_owner

    holder = RunLock(args.store).holder()
    if holder is not None:
        console.print(f"in use by {describe_owner(holder)}")
    log_rows = {}
    log_path = round_log_path(args.store)
    if log_path.is_file():
        log_rows = {r["round"]: r for r in read_round_log(log_path)}
    rounds = Table(title="rounds", title_justify="left")
    for col in ("round", "status", "selected", "new", "re-label", "cons. acc", "test acc"):
        rounds.add_column(col, justify="right")
    for rec in store.rounds():
        row = log_rows.get(rec.round, {})
        rounds.add_row(
            str(rec.round),
            rec.status,
            str(len(rec.selected_ids)),
            _fmt(row.get("num_new")),
            _fmt(row.get("num_relabel")),
            _fmt(row.get("consensus_accuracy")),
            _fmt(row.get("test_accuracy")),
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


def export_command(args: argparse.Namespace) -> int:
    """Write all annotations of a store to a CSV / JSONL file."""
    store = _open_store(args.store)
    n = store.export_annotations(args.file)
    print(f"exported {n} annotations to {args.file}")
    return 0


def import_command(args: argparse.Namespace) -> int:
    """Add the annotations of a CSV / JSONL file to a store."""
    store = _open_store(args.store)
    n = store.import_annotations(args.file, correction=args.correction)
    print(f"imported {n} new annotations from {args.file} into {args.store} ({len(store)} in total)")
    return 0


#: Subcommand → handler of the store tools.
TOOL_COMMANDS = {"status": status_command, "export": export_command, "import": import_command}


def tools_parser(prog: str) -> argparse.ArgumentParser:
    """The plain ``argparse`` parser of ``activelab`` (``run`` is parsed by jsonargparse itself)."""
    parser = argparse.ArgumentParser(
        prog=prog,
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
