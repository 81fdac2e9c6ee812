"""Export and import of the annotation log as a long table (CSV or JSONL, optionally ``.gz``).

Exports are written through :func:`activelab_lightning._files.atomic_path` (a crash never leaves
half a file); imports are read by the rules of :mod:`activelab_lightning.tables` and go through
the same validation and insert as :meth:`~AnnotationsMixin.add_annotations`, in one transaction.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

from activelab_lightning._files import atomic_path
from activelab_lightning.store._annotations import AnnotationsMixin, _Row
from activelab_lightning.tables import (
    ClassNames,
    LabelError,
    column_key,
    parse_int,
    parse_label,
    read_table,
    table_format,
)

__all__ = ["IOMixin"]

_EXPORT_COLUMNS = (
    "example_id",
    "annotator_id",
    "label",
    "class_name",
    "round",
    "source",
    "request_id",
    "created_at",
    "is_correction",
)


def _open_text(path: Path, *, gzipped: bool) -> TextIO:
    if gzipped:
        return gzip.open(path, "wt", encoding="utf-8", newline="")
    return open(path, "w", encoding="utf-8", newline="")


class IOMixin(AnnotationsMixin):
    """``iter_annotations``, ``export_annotations`` and ``import_annotations``."""

    def iter_annotations(self) -> Iterator[dict[str, Any]]:
        """All log rows (corrections included) as dicts with the export columns, in log order."""
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT example_id, annotator_id, label, round, source, request_id, created_at, "
                    "is_correction "
                    "FROM annotations ORDER BY id"
                )
                .fetchall()
            )
        for e, a, label, round_, source, req, created, corr in rows:
            yield {
                "example_id": e,
                "annotator_id": a,
                "label": label,
                "class_name": self.class_names[label],
                "round": round_,
                "source": source,
                "request_id": req,
                "created_at": created,
                "is_correction": corr,
            }

    def export_annotations(self, path: str | os.PathLike[str], *, format: str | None = None) -> int:
        """Write the whole annotation log as a long table (CSV or JSONL, ``.gz`` compressed if so named).

        Columns: ``example_id, annotator_id, label`` (class index), ``class_name, round, source,
        request_id, created_at, is_correction``. The file is written next to its destination and
        renamed into place, so a crash never leaves half an export.

        Returns:
            The number of rows written.

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> from activelab_lightning.records import Annotation
            >>> import tempfile, pathlib
            >>> store = AnnotationStore(num_examples=3, class_names=["a", "b"])
            >>> store.add_annotations([Annotation(2, "x", 1)])
            1
            >>> store.export_annotations(pathlib.Path(tempfile.mkdtemp()) / "labels.csv")
            1
        """
        path = Path(path)
        fmt = table_format(path, format)
        records = list(self.iter_annotations())
        with atomic_path(path) as tmp, _open_text(tmp, gzipped=path.suffix.lower() == ".gz") as f:
            if fmt == "csv":
                writer = csv.DictWriter(f, fieldnames=_EXPORT_COLUMNS)
                writer.writeheader()
                writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)
            else:
                for r in records:
                    f.write(json.dumps(r) + "\n")
        return len(records)

    def import_annotations(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        example_col: str = "example_id",
        annotator_col: str = "annotator_id",
        label_col: str = "label",
        label_format: Literal["auto", "index", "name"] = "auto",
        source: str = "import",
        correction: bool = False,
    ) -> int:
        """Import a long table of annotations (CSV or JSONL, optionally ``.gz``) in one transaction.

        Each row gives one label: ``example_col``, ``annotator_col``, ``label_col``, and optionally
        ``round, source, request_id, created_at, is_correction`` (as written by
        :meth:`export_annotations`); other columns are ignored. Every row is validated before
        anything is written. Importing the same file twice is a no-op, and export → import
        reproduces the same label matrix. The file is read by the rules of
        :mod:`activelab_lightning.tables` (UTF-8 with or without a BOM; column names and class
        names are compared after stripping spaces, ignoring case).

        Args:
            path: The file.
            format: ``"csv"`` or ``"jsonl"``; default from the suffix.
            example_col: Column with the example id, e.g. ``"item_index"`` for the crowdsourcing
                datasets stored as ``item_index, annotator_id, label, ...``.
            annotator_col: Column with the annotator id (numbers are read as strings).
            label_col: Column with the label, a class index or a class name.
            label_format: ``"index"``, ``"name"`` or ``"auto"``: an index if the row has a
                ``class_name`` (as exported; the name must then match this store's class of that
                index), else a class name if it is one, else an index (a value that is both,
                differently, is an error).
            source: The ``source`` of rows that carry none.
            correction: Store a further label by an annotator who already labeled the example as a
                correction instead of failing (rows with ``is_correction=1`` always are).

        Returns:
            The number of annotations newly stored.

        Raises:
            ValueError: A missing column, a bad example id / label / annotator, or a conflicting
                second label (the message gives the file and line). Nothing is written then.

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> import tempfile, pathlib
            >>> f = pathlib.Path(tempfile.mkdtemp()) / "crowd.csv"
            >>> _ = f.write_text("item_index,annotator_id,label\\n0,17,1\\n0,4,0\\n")
            >>> store = AnnotationStore(num_examples=2, class_names=["0", "1"])
            >>> store.import_annotations(f, example_col="item_index")
            2
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"import_annotations: path={str(path)!r} is not a file.")
        fmt = table_format(path, format)
        if label_format not in ("auto", "index", "name"):
            raise ValueError(f"label_format must be 'auto', 'index' or 'name', got {label_format!r}.")
        self._check_text(source, "source", "import_annotations")
        classes = ClassNames(self.class_names)
        columns = [(c, column_key(c)) for c in (example_col, annotator_col, label_col)]
        example_key, annotator_key, label_key = (key for _, key in columns)
        rows: list[_Row] = []
        lines: list[int] = []
        for line_num, record, problem in read_table(path, format=fmt).rows():
            where = f"{path}:{line_num}"
            if record is None:
                raise ValueError(f"{where}: {problem}.")
            missing = [c for c, key in columns if record.get(key) in (None, "")]
            if missing:
                raise ValueError(
                    f"{where}: no value for column(s) {missing!r} (columns present: {sorted(record)!r}); "
                    "name the right ones with example_col= / annotator_col= / label_col=."
                )
            raw_example = record[example_key]
            example = parse_int(raw_example)
            if example is None:
                raise ValueError(f"{where}: example id {raw_example!r} is not an integer.")
            raw_annotator = record[annotator_key]
            if isinstance(raw_annotator, bool) or not isinstance(raw_annotator, (str, int)):
                raise ValueError(f"{where}: annotator id {raw_annotator!r} must be a string or an integer.")
            annotator = str(raw_annotator).strip()
            if not annotator:
                raise ValueError(f"{where}: annotator id is empty.")
            raw_round = record.get("round")
            try:
                round_ = None if raw_round in (None, "") else int(raw_round)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: round {raw_round!r} is not an integer.") from None
            raw_corr = record.get("is_correction")
            is_corr = str(raw_corr).strip().lower() in ("1", "true") if raw_corr not in (None, "") else False
            request_id = record.get("request_id")
            created_at = record.get("created_at")
            class_name = record.get("class_name")
            has_name = class_name not in (None, "")
            # An exported file gives both: its `label` is the index, and `class_name` double-checks it.
            row_format: Literal["auto", "index", "name"] = (
                "index" if has_name and label_format == "auto" else label_format
            )
            label = self._import_label(record[label_key], classes, row_format, where)
            if has_name and row_format == "index" and class_name != self.class_names[label]:
                raise ValueError(
                    f"{where}: the row says label {record[label_key]!r} is class {class_name!r}, but class "
                    f"{label} of this store is {self.class_names[label]!r} (class_names="
                    f"{list(self.class_names)!r}); the file comes from a store with another class list."
                )
            rows.append(
                _Row(
                    example_id=self._check_example_id(example, where),
                    annotator_id=annotator,
                    label=label,
                    round=round_,
                    source=str(record.get("source") or source),
                    request_id="" if request_id is None else str(request_id),
                    created_at=None if created_at in (None, "") else str(created_at),
                    is_correction=is_corr or bool(correction),
                )
            )
            lines.append(line_num)
        with self._transaction() as conn:
            return self._insert_rows(conn, rows, describe=lambda i: f"{path}:{lines[i]}")

    def _import_label(
        self, value: object, classes: ClassNames, label_format: Literal["auto", "index", "name"], where: str
    ) -> int:
        """One row's label as a class index of this store (see ``label_format`` of import_annotations)."""
        try:
            index = parse_label(
                value, classes, label_format=label_format, ambiguous="error", check_range=False
            )
        except LabelError as err:
            if err.reason == "unknown":  # neither a class name nor an index
                raise ValueError(
                    f"{where}: label {value!r} is not one of the class names {list(self.class_names)!r}."
                ) from None
            raise ValueError(f"{where}: {err}.") from None
        return self._check_label(index, where)
