"""Annotation tables (CSV / JSONL) and the labels and example ids in them: one set of reading rules.

:meth:`AnnotationStore.import_annotations <activelab_lightning.store.AnnotationStore.import_annotations>`,
the answers files of :class:`~activelab_lightning.oracles.file.FileOracle` and
:meth:`ReplayOracle.from_csv <activelab_lightning.oracles.replay.ReplayOracle.from_csv>` all read
their files with :func:`read_table` and their labels with :func:`parse_label`, so a file that one of
them reads, the others read the same way. The rules:

* **Bytes.** A gzip-compressed file is recognised by its first bytes (whatever its name) and
  decompressed. Text must be UTF-8; a leading byte-order mark (which spreadsheet programs write)
  is dropped. Anything else is an error naming the file.
* **Format.** ``.csv`` is CSV with a header line; ``.jsonl`` / ``.ndjson`` hold one JSON object
  per line; a trailing ``.gz`` does not count (:func:`table_format`). Callers may name the format.
* **Lines.** Blank lines, and CSV rows whose cells are all blank, are skipped. Line numbers are the
  file's own 1-based lines: the CSV header is line 1 (blank lines before it are skipped), and a CSV
  row with quoted line breaks has the number of its last line.
* **Column names.** CSV header names and JSON keys are compared after stripping surrounding
  whitespace, ignoring case (:func:`column_key`): ``" Example_ID"`` is column ``example_id``.
  Records are keyed by these normalised names.
* **Cells.** Surrounding whitespace of every CSV cell and of every JSON string value is stripped.
  A CSV row shorter than the header gives ``None`` for the missing cells; cells beyond the header
  are dropped. JSON values keep their types (a number stays a number).
* **Integers** (example ids, class indices; :func:`parse_int`): a Python or NumPy integer, or
  decimal digits with an optional sign; bools, floats and other strings are not integers.
* **Labels** (:func:`parse_label`): a string is matched against the class names exactly first
  (as written, then stripped), then ignoring case if exactly one class name matches that way; a
  string that is no class name is read as a class index. A number (an integer, or a float with an
  integral value such as ``2.0``) is a class index. A string that is both a class name and a
  *different* class index is the name (``ambiguous="name"``: humans' answers) or an error
  (``ambiguous="error"``: imports, which say ``label_format="name"`` / ``"index"`` instead).

Example::

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "answers.csv"
    >>> _ = path.write_text("\\ufeff Example_ID ,Label\\n 3 , Dog \\n\\n4,0\\n", encoding="utf-8")
    >>> table = read_table(path)
    >>> table.columns
    ('example_id', 'label')
    >>> [(row.line, row.record) for row in table.rows()]
    [(2, {'example_id': '3', 'label': 'Dog'}), (4, {'example_id': '4', 'label': '0'})]
    >>> [parse_label(row.record["label"], ["cat", "dog"]) for row in table.rows()]
    [1, 0]
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import operator
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, SupportsIndex

__all__ = [
    "ClassNames",
    "LabelError",
    "LabelFormat",
    "LabelProblem",
    "Table",
    "TableFormat",
    "TableRow",
    "column_key",
    "parse_int",
    "parse_label",
    "read_table",
    "table_format",
]

TableFormat = Literal["csv", "jsonl"]
LabelFormat = Literal["auto", "index", "name"]
#: Why :func:`parse_label` refused a value (:attr:`LabelError.reason`).
LabelProblem = Literal[
    "missing", "not_a_label", "unknown", "out_of_range", "not_a_name", "not_an_index", "ambiguous"
]

_GZIP_MAGIC = b"\x1f\x8b"
_LABEL_FORMATS = ("auto", "index", "name")


# --------------------------------------------------------------------------------- columns, integers


def column_key(name: str) -> str:
    """The normalised form of a column name: surrounding whitespace stripped, case folded.

    Example::

        >>> column_key(" Example_ID ")
        'example_id'
    """
    return name.strip().casefold()


def parse_int(value: object) -> int | None:
    """``value`` as an integer, or None if it is not one (see the module docstring for the rule).

    Example::

        >>> parse_int(" +7 "), parse_int(3), parse_int("3.0"), parse_int(3.0), parse_int(True)
        (7, 3, None, None, None)
    """
    if isinstance(value, bool) or isinstance(value, float):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        return int(text) if digits.isdecimal() else None
    if isinstance(value, SupportsIndex):  # NumPy integers (NumPy bools refuse __index__)
        try:
            return operator.index(value)
        except TypeError:
            return None
    return None


# --------------------------------------------------------------------------------- labels


class LabelError(ValueError):
    """A value that :func:`parse_label` cannot read as a class; :attr:`reason` says which rule it broke.

    Attributes:
        reason: One of :data:`LabelProblem`.
    """

    def __init__(self, message: str, reason: LabelProblem) -> None:
        super().__init__(message)
        self.reason: LabelProblem = reason

    def __reduce__(self) -> tuple[type[LabelError], tuple[str, LabelProblem]]:
        return type(self), (str(self), self.reason)


class ClassNames:
    """A class list, indexed once for the name lookups of :func:`parse_label`.

    Args:
        names: The ``K`` class names, in class-index order.

    Example::

        >>> classes = ClassNames(["cat", "Dog"])
        >>> classes.match("dog"), classes.match(" cat "), classes.match("bird"), len(classes)
        (1, 0, None, 2)
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names: tuple[str, ...] = tuple(str(c) for c in names)
        self._exact: dict[str, int] = {}
        self._folded: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            self._exact.setdefault(name, i)
            self._folded.setdefault(name.strip().casefold(), []).append(i)

    def match(self, value: str) -> int | None:
        """The index of the class ``value`` names (exactly, then ignoring case if unambiguous), or None."""
        for text in (value, value.strip()):
            index = self._exact.get(text)
            if index is not None:
                return index
        matches = self._folded.get(value.strip().casefold(), [])
        return matches[0] if len(matches) == 1 else None

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"ClassNames({list(self.names)!r})"


def parse_label(
    value: object,
    class_names: Sequence[str] | ClassNames | None,
    *,
    label_format: LabelFormat = "auto",
    ambiguous: Literal["name", "error"] = "name",
    check_range: bool = True,
) -> int:
    """Turn a label (a class name or a class index) into a class index.

    A class name wins over an index (so class names that look like numbers work) unless
    ``ambiguous="error"``; names are matched exactly first, then ignoring case and surrounding
    spaces (see the module docstring).

    Args:
        value: A class name (``"cat"``), an index (``2``, ``"2"`` or ``2.0``).
        class_names: The ``K`` class names (a :class:`ClassNames` saves re-indexing them per call),
            or None when only class indices are allowed.
        label_format: ``"auto"`` (a name if it is one, else an index), ``"name"`` or ``"index"``.
        ambiguous: What a string that is a class name *and* a different class index is: the name
            (``"name"``) or an error (``"error"``).
        check_range: Check that an index is in ``0 .. K-1`` (callers with their own range check and
            message pass False; without class names there is no range to check).

    Returns:
        The class index.

    Raises:
        LabelError: ``value`` is empty, or not a class name / index the rules accept; its
            ``reason`` tells why.

    Example::

        >>> parse_label("dog", ["cat", "dog"]), parse_label(" DOG ", ["cat", "dog"]), parse_label("0", ["cat", "dog"])
        (1, 1, 0)
    """
    if label_format not in _LABEL_FORMATS:
        raise ValueError(f"label_format must be 'auto', 'index' or 'name', got {label_format!r}.")
    classes = (
        None
        if class_names is None
        else class_names
        if isinstance(class_names, ClassNames)
        else ClassNames(class_names)
    )
    names = None if classes is None else list(classes.names)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise LabelError("missing label; give a class name or a class index", "missing")
        named = None if classes is None or label_format == "index" else classes.match(value)
        if label_format == "name":
            if named is None:
                raise LabelError(f"label {value!r} is not one of the class names {names!r}", "not_a_name")
            return named
        index = parse_int(text)
        if named is not None and index is not None and named != index and ambiguous == "error":
            raise LabelError(
                f"label {value!r} is ambiguous: it is class name {text!r} (index {named}) and also class "
                f"index {index}; pass label_format='name' or label_format='index'",
                "ambiguous",
            )
        if named is not None:
            return named
        if index is None:
            if label_format == "index":
                raise LabelError(
                    f"label {value!r} is not a class index (label_format='index')", "not_an_index"
                )
            if names is None:
                raise LabelError(
                    f"label {value!r} is not an integer; pass class_names=[...] to map names to indices",
                    "not_an_index",
                )
            raise LabelError(
                f"label {value!r} is not in the class list {names}; give a class name or an index "
                f"0..{len(names) - 1}",
                "unknown",
            )
    else:
        if label_format == "name":
            raise LabelError(f"label {value!r} is not a class name (label_format='name')", "not_a_name")
        index = parse_int(value)
        if index is None and isinstance(value, float) and value.is_integer():
            index = int(value)
        if index is None:
            choices = "a class index" if names is None else f"one of {names} or 0..{len(names) - 1}"
            raise LabelError(f"label {value!r} is not a class name or index; use {choices}", "not_a_label")
    if check_range and names is not None and not 0 <= index < len(names):
        raise LabelError(
            f"label index {index} is outside 0..{len(names) - 1} (classes {names})", "out_of_range"
        )
    return index


# --------------------------------------------------------------------------------- tables


def table_format(path: str | os.PathLike[str], format: str | None = None) -> TableFormat:
    """``"csv"`` or ``"jsonl"``: ``format`` if given, else from the suffix (``.gz`` does not count).

    Raises:
        ValueError: ``format`` is neither, or the suffix is none of ``.csv``, ``.jsonl``, ``.ndjson``.

    Example::

        >>> table_format("labels.CSV.gz"), table_format("x.ndjson"), table_format("x.txt", "jsonl")
        ('csv', 'jsonl', 'jsonl')
    """
    if format is not None:
        if format == "csv":
            return "csv"
        if format == "jsonl":
            return "jsonl"
        raise ValueError(f"format must be 'csv' or 'jsonl', got {format!r}.")
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] == ".csv":
        return "csv"
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ValueError(
        f"cannot tell the format of {str(path)!r} from its suffix; use .csv, .jsonl (optionally .gz) "
        "or pass format='csv' / format='jsonl'."
    )


class TableRow(NamedTuple):
    """One non-blank line of a table.

    Attributes:
        line: 1-based line number in the file.
        record: ``column_key(name) -> value``, or None when the line cannot be read.
        problem: Why it cannot be read (``""`` when ``record`` is given).
    """

    line: int
    record: dict[str, Any] | None
    problem: str = ""


@dataclass(frozen=True)
class Table:
    """A table file read into memory; :meth:`rows` parses it (see the module docstring for the rules).

    Attributes:
        path: The file.
        format: ``"csv"`` or ``"jsonl"``.
        header: The CSV header names as written (None for JSONL, and for an empty CSV file).
        required: The columns the caller needs (see :func:`read_table`).
        text: The decoded text of the file.
    """

    path: Path
    format: TableFormat
    header: tuple[str, ...] | None
    required: tuple[str, ...]
    text: str = field(repr=False)

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The CSV header names normalised with :func:`column_key` (None for JSONL)."""
        return None if self.header is None else tuple(column_key(h) for h in self.header)

    def rows(self) -> Iterator[TableRow]:
        """The table's non-blank rows, in file order (a fresh pass at each call)."""
        return self._csv_rows() if self.format == "csv" else self._jsonl_rows()

    def _csv_rows(self) -> Iterator[TableRow]:
        reader = csv.reader(io.StringIO(self.text, newline=""))
        header = _next_nonblank(reader)
        if header is None:
            return
        keys = [column_key(h) for h in header]
        missing = [c for c in self.required if column_key(c) not in keys]
        if missing:
            yield TableRow(
                reader.line_num,
                None,
                f"header {header} lacks column(s) {missing}; the header must name "
                f"{', '.join(self.required)}; no line of this file was imported",
            )
            return
        width = len(keys)
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            cells: list[str | None] = [v.strip() for v in values[:width]]
            cells += [None] * (width - len(cells))
            yield TableRow(reader.line_num, dict(zip(keys, cells)))

    def _jsonl_rows(self) -> Iterator[TableRow]:
        for line_no, line in enumerate(io.StringIO(self.text, newline=""), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                yield TableRow(line_no, None, f"not valid JSON ({err.msg}); write one object per line")
                continue
            if not isinstance(value, dict):
                expected = f"with keys {list(self.required)}" if self.required else "per line"
                yield TableRow(line_no, None, f"expected a JSON object {expected}, got {value!r}")
                continue
            yield TableRow(
                line_no,
                {column_key(str(k)): v.strip() if isinstance(v, str) else v for k, v in value.items()},
            )


def _next_nonblank(reader: Iterator[list[str]]) -> list[str] | None:
    for values in reader:
        if any(v.strip() for v in values):
            return values
    return None


def read_table(
    path: str | os.PathLike[str], *, format: str | None = None, required: Sequence[str] = ()
) -> Table:
    """Read a CSV / JSONL table (optionally gzip-compressed) into memory.

    Args:
        path: The file.
        format: ``"csv"`` or ``"jsonl"``; default from the suffix (:func:`table_format`).
        required: Columns the caller needs. A CSV header lacking one of them gives a single
            problem row (at the header's line) and no records; a JSON line that is not an object
            names them in its problem.

    Returns:
        The :class:`Table`; iterate :meth:`Table.rows` for its records.

    Raises:
        OSError: The file cannot be read (e.g. ``FileNotFoundError``).
        ValueError: The format cannot be told, or the text is not UTF-8.
    """
    path = Path(path)
    fmt = table_format(path, format)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text ({err}); save it as UTF-8 (in spreadsheets: 'CSV UTF-8')."
        ) from None
    header = None
    if fmt == "csv":
        found = _next_nonblank(csv.reader(io.StringIO(text, newline="")))
        header = None if found is None else tuple(found)
    return Table(path=path, format=fmt, header=header, required=tuple(required), text=text)
