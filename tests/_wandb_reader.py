"""A small reader for offline W&B runs (``run-<id>.wandb`` record streams), for tests only.

wandb >= 0.2x ships no Python reader for its ``.wandb`` files. The format: a 7-byte header
``<4sHB`` = (``b":W&B"``, ``0xBEE1``, version), then 32 KiB blocks of LevelDB-log chunks, each with a
7-byte header ``<IHB`` (crc32c, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4); fewer than 7
bytes left in a block are padding. Each reassembled payload is a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_BLOCK = 32 * 1024
_FILE_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_payloads(path: str | Path) -> Iterator[bytes]:
    """Yield the raw record payloads of one ``.wandb`` file."""
    data = Path(path).read_bytes()
    magic, ident, _version = _FILE_HEADER.unpack_from(data, 0)
    if magic != b":W&B" or ident != 0xBEE1:
        raise ValueError(f"{path}: not a W&B record stream (header {magic!r}, {ident:#x})")
    pos = _FILE_HEADER.size
    parts: list[bytes] = []
    while pos + _CHUNK_HEADER.size <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _CHUNK_HEADER.size:
            pos += left_in_block
            continue
        _crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        pos += _CHUNK_HEADER.size
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += left_in_block - _CHUNK_HEADER.size
            continue
        chunk = data[pos : pos + length]
        pos += length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            parts = [chunk]
        elif kind == _MIDDLE:
            parts.append(chunk)
        elif kind == _LAST:
            parts.append(chunk)
            yield b"".join(parts)
            parts = []


def read_records(path: str | Path) -> list[Any]:
    """All records of one ``.wandb`` file as ``wandb_internal_pb2.Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for payload in iter_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def history_rows(path: str | Path) -> list[dict[str, Any]]:
    """The history rows (one per ``wandb.log`` commit) as ``{key: decoded value}`` dicts.

    Media values (tables, histograms) are stored one field per item under a nested key; they are
    put back together, e.g. ``row["activelab/selected"] == {"_type": "table-file", "path": ...}``.
    """
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                path = [item.key] if item.key else list(item.nested_key)
                node = row
                for part in path[:-1]:  # media values arrive as one item per field
                    node = node.setdefault(part, {})
                node[path[-1]] = json.loads(item.value_json)
            rows.append(row)
    return rows


def find_run_file(root: str | Path) -> Path:
    """The single ``run-*.wandb`` file under ``root`` (e.g. the ``save_dir`` of a WandbLogger)."""
    files = sorted(f for f in Path(root).rglob("run-*.wandb") if "latest-run" not in f.parts)
    if len(files) != 1:
        raise AssertionError(f"expected one run-*.wandb under {root}, found {[str(f) for f in files]}")
    return files[0]


def wait_until_complete(root: str | Path, timeout: float = 60.0) -> Path:
    """Wait until the run file under ``root`` ends with its ``exit`` record; return its path.

    ``run.finish()`` can return before the W&B service has written the last records of an offline
    run (seen on a loaded machine), so tests poll for the ``exit`` record before reading.
    """
    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + timeout
    while True:
        path = find_run_file(root)
        try:
            kinds = [r.WhichOneof("record_type") for r in read_records(path)]
        except (ValueError, struct.error, DecodeError):  # a record half-written right now
            kinds = []
        if "exit" in kinds:
            return path
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has no exit record after {timeout} s (records: {kinds[-5:]})")
        time.sleep(0.2)


def table_files(root: str | Path, key: str) -> list[dict[str, Any]]:
    """The JSON contents of the table files logged under ``key`` (e.g. ``"activelab/selected"``)."""
    run_dir = find_run_file(root).parent
    folder = run_dir / "files" / "media" / "table" / Path(key).parent
    stem = Path(key).name

    def step(file: Path) -> int:  # "<stem>_<step>_<hash>.table.json"
        return int(file.name[len(stem) + 1 :].split("_")[0])

    files = sorted(folder.glob(f"{stem}_*.table.json"), key=step)
    return [json.loads(f.read_text()) for f in files]
