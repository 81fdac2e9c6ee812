"""The round log: one JSON object per round (JSONL next to the store), and its learning-curve CSV.

The round log is the stable record of what each round asked and what was answered. It is only
ever appended to (one whole line, fsync'd, via :func:`~activelab_lightning._files.append_line`);
a resumed run may log a round again, and the last entry of a round wins when it is read back. The
small learning-curve CSV next to it is rewritten atomically after every append.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import torch

from activelab_lightning._files import append_line, atomic_write
from activelab_lightning.records import RoundSummary
from activelab_lightning.reporting.scalars import find_test_accuracy

__all__ = [
    "CURVE_COLUMNS",
    "append_round_log",
    "curve_rows",
    "jsonable",
    "read_round_log",
    "round_log_path",
    "round_record",
    "write_curve_csv",
]

#: Columns of the learning-curve CSV (and of :func:`curve_rows`).
CURVE_COLUMNS = (
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


def jsonable(value: Any) -> Any:
    """``value`` with tensors, arrays and numpy scalars as plain Python, NaN / inf as ``None``.

    Example::

        >>> jsonable({"a": torch.tensor([1, 2]), "b": float("nan")})
        {'a': [1, 2], 'b': None}
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return jsonable(value.item())
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    return value


def round_record(summary: RoundSummary) -> dict[str, Any]:
    """The round-log record of a round: its scalars, strategy, metrics, requests and answers."""
    record: dict[str, Any] = {
        **summary.scalars(),
        "strategy": summary.strategy,
        "num_annotations_trained": summary.num_annotations - len(summary.answers),
        "test_accuracy": find_test_accuracy(summary.metrics),
        "metrics": dict(summary.metrics or {}),
        "annotator_stats": [dict(row) for row in summary.annotator_stats],
        "requests": [dict(asdict(r), request_id=r.request_id) for r in summary.requests],
        "answers": [asdict(a) for a in summary.answers],
    }
    return jsonable(record)


def read_round_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a round log written by :class:`~activelab_lightning.reporting.Reporter`: one dict per round.

    A resumed run may log a round twice; the last entry of each round wins. A torn last line (a
    crash while writing) is ignored.

    Args:
        path: The JSONL file.

    Returns:
        The round records sorted by round (keys as in
        :func:`~activelab_lightning.reporting.round_scalars` without prefix, plus ``requests``,
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


def curve_rows(history: Iterable[RoundSummary | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per round with the :data:`CURVE_COLUMNS` (``None`` where a round lacks a value)."""
    rows = []
    for item in history:
        record = round_record(item) if isinstance(item, RoundSummary) else dict(item)
        rows.append({key: record.get(key) for key in CURVE_COLUMNS})
    return rows


def append_round_log(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one record to the round log as a whole, fsync'd JSON line (folders are created)."""
    append_line(path, json.dumps(record, sort_keys=True))


def write_curve_csv(path: str | os.PathLike, history: Iterable[Mapping[str, Any]]) -> Path:
    """Atomically rewrite the learning-curve CSV from round records, sorted by round.

    Returns:
        The written path.
    """
    records: list[Mapping[str, Any]] = sorted(history, key=lambda r: r["round"])
    rows = curve_rows(records)

    def write(fh: IO[Any]) -> None:
        writer = csv.DictWriter(fh, fieldnames=list(CURVE_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})

    return atomic_write(path, write)
