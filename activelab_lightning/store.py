"""The durable home of the labels: an append-only SQLite log of annotations, rounds and requests.

Labels are the most expensive thing an active-learning user has, so :class:`AnnotationStore`
keeps them in SQLite (standard library) in WAL mode with ``synchronous=FULL``, and every write is
one ``BEGIN IMMEDIATE`` transaction: a crash (even ``SIGKILL`` or a power loss) leaves either the
whole batch or nothing, and a batch whose ``add_annotations`` call returned is on disk.

What is stored (one table each):

* ``annotations``: the append-only log ``(example_id, annotator_id, label, round, source,
  request_id, created_at, is_correction)``. An exact repeat (same example, annotator, request and
  label) is a no-op; a second label by the same annotator for the same example is only kept as an
  explicit correction (``correction=True``), and the latest correction wins in the label matrix.
* ``annotators``: annotator ids (strings; humans have names) in first-seen order, which is the
  column order of :meth:`AnnotationStore.label_matrix`.
* ``rounds``: one record per acquisition round (seed, selected ids, status).
* ``requests``: the label requests of every round with their status (pending, answered, exhausted).
* ``external_ids``: ids given to a request by an outside system (e.g. Label Studio task ids).
* ``meta``: schema version, ``num_examples`` and the class names, checked on every reopen.

Derived views (the dense ``(n, M)`` label matrix with NaN for missing, label counts, the
labeled / unlabeled id sets, per-annotator counts) are computed with vectorized torch ops from a
single ``SELECT`` and cached until the database changes.

``torch`` is imported lazily, inside the derived views only, so that writers and the ``activelab``
command line (export / import / status) open a store without paying for the torch import.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import sqlite3
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from activelab_lightning.records import Annotation, LabelRequest, OracleResponse, RoundRecord

if TYPE_CHECKING:
    import torch

__all__ = ["SCHEMA_VERSION", "AnnotationStore"]

#: Version of the on-disk schema; a store written by another version is refused on open.
SCHEMA_VERSION = 1

_MEMORY = ":memory:"
_SQLITE_HEADER = b"SQLite format 3\x00"
# PRAGMA application_id marks the file as ours (b"ALAB"); `file` / sqlite tools show it.
_APPLICATION_ID = 0x414C4142
_BUSY_TIMEOUT_MS = 30_000
# Keep IN (...) lists well below SQLite's host-parameter limit (999 on old builds).
_CHUNK = 900

_REQUEST_KINDS = ("new", "relabel")
# Connections inherited through fork() (see AnnotationStore._reconnect_after_fork), never used again.
_INHERITED_CONNECTIONS: list[sqlite3.Connection | None] = []
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

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE annotators (
    col          INTEGER PRIMARY KEY,        -- first-seen order = label-matrix column order
    annotator_id TEXT NOT NULL UNIQUE
);
CREATE TABLE annotations (
    id            INTEGER PRIMARY KEY,       -- log order
    example_id    INTEGER NOT NULL,
    annotator_id  TEXT    NOT NULL,
    label         INTEGER NOT NULL,
    round         INTEGER,                   -- NULL = imported / initial labels
    source        TEXT    NOT NULL,
    request_id    TEXT    NOT NULL DEFAULT '',  -- '' = answers no request (imports)
    created_at    TEXT    NOT NULL,
    is_correction INTEGER NOT NULL DEFAULT 0 CHECK (is_correction IN (0, 1))
);
-- One original label per (example, annotator): a second one must be an explicit correction.
CREATE UNIQUE INDEX annotations_one_original ON annotations (example_id, annotator_id)
    WHERE is_correction = 0;
CREATE INDEX annotations_example ON annotations (example_id);
CREATE TABLE rounds (
    round        INTEGER PRIMARY KEY,
    seed         INTEGER NOT NULL,
    selected_ids TEXT    NOT NULL,           -- JSON list of example ids, in request order
    status       TEXT    NOT NULL CHECK (status IN ('requested', 'completed')),
    created_at   TEXT    NOT NULL,
    completed_at TEXT
);
CREATE TABLE requests (
    request_id          TEXT PRIMARY KEY,
    round               INTEGER NOT NULL,
    position            INTEGER NOT NULL,    -- order of the request within its round
    example_id          INTEGER NOT NULL,
    score               REAL,                -- NULL = NaN (a request made without a score)
    kind                TEXT    NOT NULL CHECK (kind IN ('new', 'relabel')),
    existing_annotators TEXT    NOT NULL,    -- JSON list of annotator ids
    status              TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'answered', 'exhausted')),
    updated_at          TEXT    NOT NULL
);
CREATE INDEX requests_round ON requests (round, position);
CREATE TABLE external_ids (
    request_id  TEXT NOT NULL,
    system      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (system, request_id)
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class _Row(NamedTuple):
    """One validated annotation about to be written (internal; a tuple: cheap for 1e5-row imports)."""

    example_id: int
    annotator_id: str
    label: int
    round: int | None
    source: str
    request_id: str  # '' when the annotation answers no request
    created_at: str | None  # None = now; given by imports to keep re-imports idempotent
    is_correction: bool


class _Stored(NamedTuple):
    """What the conflict check needs to know about one stored annotation (internal)."""

    label: int
    request_id: str
    created_at: str
    is_correction: bool


@dataclass(frozen=True)
class _Derived:
    """Effective labels (latest per example and annotator), in log order (internal).

    ``example_ids``, ``cols`` and ``labels`` are ``(A,)`` int64 tensors, one entry per
    (example, annotator) pair; ``cols`` index ``annotators``; ``counts`` is ``(N,)``.
    """

    example_ids: torch.Tensor
    cols: torch.Tensor
    labels: torch.Tensor
    annotators: tuple[str, ...]
    counts: torch.Tensor


def _int_arg(value: Any, name: str) -> int:
    """``value`` as a Python int (numpy / torch integer scalars accepted), bools and floats refused."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    return int(value.__index__())


class AnnotationStore:
    """Append-only, crash-safe store of multi-annotator labels, rounds and label requests.

    Args:
        path: SQLite file (created with its parent folder if missing) or ``":memory:"`` for a quick
            experiment that is lost when the store is closed.
        num_examples: Size ``N`` of the base dataset; example ids are ``0 .. N-1``. Required to
            create a store; when reopening, ``None`` reads it from the file and any other value must
            match the stored one.
        class_names: The ``K >= 2`` class names; labels are indices ``0 .. K-1``. Same rules as
            ``num_examples``.

    Raises:
        ValueError: ``path`` is not a SQLite database or not an AnnotationStore, the stored
            ``num_examples`` / ``class_names`` differ from the given ones (the message names both),
            ``num_examples < 1``, fewer than 2 or duplicate class names. Nothing is written then.

    Example::

        >>> from activelab_lightning.records import Annotation
        >>> with AnnotationStore(num_examples=4, class_names=["cat", "dog"]) as store:
        ...     store.add_annotations([Annotation(0, "alice", 1), Annotation(0, "bob", 0),
        ...                            Annotation(2, "bob", 1)])
        ...     labels, annotators = store.label_matrix()
        3
        >>> labels.shape, annotators
        (torch.Size([2, 2]), ['alice', 'bob'])
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = _MEMORY,
        *,
        num_examples: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self._path = _MEMORY if str(path) == _MEMORY else str(Path(path))
        given_n = None if num_examples is None else self._check_num_examples(num_examples)
        given_classes = None if class_names is None else self._check_class_names(class_names)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._cache: _Derived | None = None
        self._cache_version: int | None = None
        self._pid = os.getpid()

        if self._path != _MEMORY and Path(self._path).is_dir():
            raise ValueError(
                f"path={self._path!r} is a directory; give a file path such as {self._path!r}/labels.db."
            )
        is_new = (
            self._path == _MEMORY or not Path(self._path).exists() or Path(self._path).stat().st_size == 0
        )
        if is_new and (given_n is None or given_classes is None):
            raise ValueError(
                f"AnnotationStore(path={self._path!r}) does not exist yet: pass num_examples= and "
                f"class_names= to create it (got num_examples={num_examples!r}, class_names={class_names!r})."
            )
        if not is_new:
            with open(self._path, "rb") as f:
                header = f.read(len(_SQLITE_HEADER))
            if header != _SQLITE_HEADER:
                raise ValueError(
                    f"path={self._path!r} is not a SQLite database (its first bytes are {header[:16]!r}); "
                    "give the path of an AnnotationStore file or a new path to create one."
                )
        if self._path != _MEMORY:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            self._conn = conn
            self.num_examples, self.class_names = self._open_or_create(given_n, given_classes)
        except BaseException:
            self._conn = None
            conn.close()
            raise
        self.num_classes = len(self.class_names)
        self._class_index = {name: i for i, name in enumerate(self.class_names)}

    # ------------------------------------------------------------------ opening
    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions, we issue BEGIN IMMEDIATE / COMMIT ourselves.
        # check_same_thread=False is safe because every use of the connection holds self._lock.
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # synchronous=FULL: fsync the WAL at every commit. With NORMAL a power loss may undo the
        # last transactions although add_annotations() had returned; labels cost human time, an
        # fsync per batch does not.
        try:
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as err:  # the pragma reads the header of a corrupt file
            conn.close()
            raise ValueError(
                f"path={self._path!r} cannot be read as a SQLite database ({err}); "
                "give the path of an AnnotationStore file or a new path to create one."
            ) from err
        return conn

    @staticmethod
    def _check_num_examples(num_examples: Any) -> int:
        n = _int_arg(num_examples, "num_examples")
        if n < 1:
            raise ValueError(
                f"num_examples must be >= 1 (the size of the base dataset), got {n}: an empty dataset "
                "has nothing to label."
            )
        return n

    @staticmethod
    def _check_class_names(class_names: Any) -> tuple[str, ...]:
        if isinstance(class_names, str) or not isinstance(class_names, Iterable):
            raise TypeError(f"class_names must be a sequence of strings, got {class_names!r}.")
        names = tuple(class_names)
        bad = [c for c in names if not isinstance(c, str) or not c]
        if bad:
            raise TypeError(
                f"class_names must be non-empty strings, got {bad[:3]!r} in {names!r}; "
                "e.g. class_names=[str(c) for c in classes]."
            )
        if len(names) < 2:
            raise ValueError(f"class_names needs at least 2 classes, got {names!r}.")
        if len(set(names)) != len(names):
            dup = sorted({c for c in names if names.count(c) > 1})
            raise ValueError(f"class_names must be unique, got duplicates {dup!r} in {names!r}.")
        return names

    def _open_or_create(
        self, given_n: int | None, given_classes: tuple[str, ...] | None
    ) -> tuple[int, tuple[str, ...]]:
        conn = self._conn
        assert conn is not None
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as err:
            raise ValueError(
                f"path={self._path!r} cannot be read as a SQLite database ({err}); "
                "give the path of an AnnotationStore file or a new path to create one."
            ) from err
        if tables and "meta" not in tables:
            raise ValueError(
                f"path={self._path!r} is a SQLite database but not an AnnotationStore (its tables are "
                f"{sorted(tables)!r}); give a new path to create a store."
            )
        if tables:
            n, classes = self._check_meta(given_n, given_classes)
        elif given_n is None or given_classes is None:
            raise ValueError(
                f"path={self._path!r} is an empty SQLite database: pass num_examples= and class_names= "
                "to create an AnnotationStore in it."
            )
        else:
            n, classes = given_n, given_classes
        # WAL: readers never block the writer, and a commit is one append (+ fsync) to the -wal file.
        conn.execute("PRAGMA journal_mode = WAL")
        if not tables:
            with self._transaction():
                # Another process may have created it between our check and our write lock.
                if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
                    conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [
                            ("schema_version", str(SCHEMA_VERSION)),
                            ("num_examples", str(n)),
                            ("class_names", json.dumps(list(classes))),
                            ("created_at", _now()),
                        ],
                    )
            n, classes = self._check_meta(given_n, given_classes)
        assert n is not None and classes is not None
        return n, classes

    def _check_meta(
        self, given_n: int | None, given_classes: tuple[str, ...] | None
    ) -> tuple[int, tuple[str, ...]]:
        assert self._conn is not None
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise ValueError(
                f"path={self._path!r} has AnnotationStore schema version {version!r}, this library reads "
                f"version {SCHEMA_VERSION}; open it with the activelab-lightning version that wrote it "
                "and export its annotations (export_annotations) to import them here."
            )
        n = int(meta["num_examples"])
        classes = tuple(json.loads(meta["class_names"]))
        if given_n is not None and given_n != n:
            raise ValueError(
                f"path={self._path!r} was created with num_examples={n}, but num_examples={given_n} was "
                "given: open it with the same dataset (or num_examples=None), or use a new path."
            )
        if given_classes is not None and given_classes != classes:
            raise ValueError(
                f"path={self._path!r} was created with class_names={list(classes)!r}, but "
                f"class_names={list(given_classes)!r} was given: open it with the same class list in the "
                "same order (or class_names=None), or use a new path."
            )
        return n, classes

    # ------------------------------------------------------------------ plumbing
    @property
    def path(self) -> str:
        """The database file, or ``":memory:"``."""
        return self._path

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"AnnotationStore(path={self._path!r}) is closed; open a new one.")
        if self._pid != os.getpid():
            self._reconnect_after_fork()
        return self._conn

    def _reconnect_after_fork(self) -> None:
        """A SQLite connection must not cross ``fork()``: give the child process its own."""
        if self._path == _MEMORY:
            raise RuntimeError(
                "An in-memory AnnotationStore cannot be used in a forked child process (its data stays in "
                "the parent); use AnnotationStore(path='labels.db', ...) to share a store between processes."
            )
        # Keep the inherited connection referenced and unused: closing it in the child could disturb
        # the parent's locks on the file.
        _INHERITED_CONNECTIONS.append(self._conn)
        self._conn = self._connect()
        self._pid = os.getpid()
        self._cache = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing write transaction holding the database write lock from its start."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._cache = None

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection (idempotent). Committed data is already on disk."""
        with self._lock:
            if self._conn is not None:
                if self._pid == os.getpid():
                    self._conn.close()
                else:  # inherited through fork(): the parent still uses it
                    _INHERITED_CONNECTIONS.append(self._conn)
                self._conn = None
                self._cache = None

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # A connection cannot be pickled; a file store reopens itself (e.g. in a spawned DDP worker).
        if self._path == _MEMORY:
            raise TypeError(
                "An in-memory AnnotationStore cannot be pickled (its data lives in this process); "
                "use AnnotationStore(path='labels.db', ...) to share a store between processes."
            )
        return {"path": self._path, "num_examples": self.num_examples, "class_names": self.class_names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], num_examples=state["num_examples"], class_names=state["class_names"])  # type: ignore[misc]

    def __len__(self) -> int:
        """Number of stored annotations (log rows, corrections included)."""
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM annotations").fetchone()[0])

    def __repr__(self) -> str:
        if self._conn is None:
            return f"AnnotationStore(path={self._path!r}, closed)"
        d = self._derived()
        labeled = int((d.counts > 0).sum())
        return (
            f"AnnotationStore(path={self._path!r}, annotations={len(self)}, "
            f"annotators={len(d.annotators)}, labeled={labeled}/{self.num_examples}, "
            f"classes={self.num_classes})"
        )

    # ------------------------------------------------------------------ validation
    def _check_example_id(self, value: Any, where: str) -> int:
        e = _int_arg(value, f"{where} example_id")
        if not 0 <= e < self.num_examples:
            raise ValueError(
                f"{where}: example_id {e} is outside 0..{self.num_examples - 1} (num_examples="
                f"{self.num_examples}); example ids are positions in the base dataset."
            )
        return e

    def _check_label(self, value: Any, where: str) -> int:
        label = _int_arg(value, f"{where} label")
        if not 0 <= label < self.num_classes:
            raise ValueError(
                f"{where}: label {label} is outside the class set 0..{self.num_classes - 1} "
                f"(class_names={list(self.class_names)!r}); labels are class indices."
            )
        return label

    @staticmethod
    def _check_text(value: Any, name: str, where: str, *, allow_empty: bool = False) -> str:
        if type(value) is str and value:
            return value
        if not isinstance(value, str) or (not value and not allow_empty):
            raise TypeError(
                f"{where}: {name} must be a non-empty string, got {value!r}; e.g. {name}=str(value)."
            )
        return value

    def _row_from_annotation(self, ann: Any, i: int, correction: bool, prefix: str = "annotations") -> _Row:
        # Fast path for the common case (plain ints and strings in range): no message formatting.
        if type(ann) is Annotation:
            e, a, label, round_, source, req = (
                ann.example_id,
                ann.annotator_id,
                ann.label,
                ann.round,
                ann.source,
                ann.request_id,
            )
            if (
                type(e) is int
                and 0 <= e < self.num_examples
                and type(label) is int
                and 0 <= label < self.num_classes
                and type(a) is str
                and a
                and type(source) is str
                and source
                and (round_ is None or type(round_) is int)
                and (req is None or type(req) is str)
            ):
                return _Row(e, a, label, round_, source, req or "", None, correction)
        where = f"{prefix}[{i}]"
        if not isinstance(ann, Annotation):
            raise TypeError(f"{where} must be an Annotation, got {type(ann).__name__}: {ann!r}.")
        round_ = None if ann.round is None else _int_arg(ann.round, f"{where} round")
        return _Row(
            example_id=self._check_example_id(ann.example_id, where),
            annotator_id=self._check_text(ann.annotator_id, "annotator_id", where),
            label=self._check_label(ann.label, where),
            round=round_,
            source=self._check_text(ann.source, "source", where),
            request_id=""
            if ann.request_id is None
            else self._check_text(ann.request_id, "request_id", where, allow_empty=True),
            created_at=None,
            is_correction=correction,
        )

    # ------------------------------------------------------------------ annotations
    def add_annotations(self, annotations: Iterable[Annotation], *, correction: bool = False) -> int:
        """Append annotations in one all-or-nothing transaction.

        Everything is validated before anything is written, so a bad batch leaves the store as it
        was. Requests answered by an annotation (same ``request_id``) are marked answered in the
        same transaction.

        Args:
            annotations: The annotations to store.
            correction: If True, an annotation by an annotator who already labeled the example is
                stored as a correction (it replaces their label in :meth:`label_matrix`; the log
                keeps both). If False such an annotation is an error, unless it is an exact repeat.

        Returns:
            The number of annotations newly stored (exact repeats are no-ops and not counted).

        Raises:
            TypeError: An item is not an :class:`Annotation`, or a field has the wrong type.
            ValueError: An example id outside ``0..N-1``, a label outside ``0..K-1``, or a second,
                different label by the same annotator for the same example without ``correction``.

        Example::

            >>> store = AnnotationStore(num_examples=3, class_names=["no", "yes"])
            >>> store.add_annotations([Annotation(1, "ann-1", 1, round=0, request_id="r0:e1")])
            1
            >>> store.add_annotations([Annotation(1, "ann-1", 1, round=0, request_id="r0:e1")])
            0
            >>> store.add_annotations([Annotation(1, "ann-1", 0)], correction=True)
            1
        """
        correction = bool(correction)
        rows = [self._row_from_annotation(a, i, correction) for i, a in enumerate(annotations)]
        with self._transaction() as conn:
            return self._insert_rows(conn, rows, describe=lambda i: f"annotations[{i}]")

    def _insert_rows(
        self, conn: sqlite3.Connection, rows: Sequence[_Row], describe: Callable[[int], str]
    ) -> int:
        """Decide, for each row in order, skip / insert / conflict, then write (inside a transaction)."""
        if not rows:
            return 0
        stored: dict[tuple[int, str], list[_Stored]] = {}
        examples = sorted({r.example_id for r in rows})
        for start in range(0, len(examples), _CHUNK):
            chunk = examples[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for e, a, label, req, created, corr in conn.execute(
                "SELECT example_id, annotator_id, label, request_id, created_at, is_correction "
                f"FROM annotations WHERE example_id IN ({marks}) ORDER BY id",
                chunk,
            ):
                stored.setdefault((e, a), []).append(_Stored(label, req, created, bool(corr)))

        now = _now()
        to_write: list[tuple[Any, ...]] = []
        for i, row in enumerate(rows):
            history = stored.get((row.example_id, row.annotator_id))
            created = row.created_at or now
            if not history:
                is_correction = False
            elif row.is_correction:
                repeat = row.created_at is not None and any(
                    s.label == row.label and s.request_id == row.request_id and s.created_at == row.created_at
                    for s in history
                )
                if repeat or history[-1].label == row.label:
                    continue
                is_correction = True
            else:
                if any(s.label == row.label and s.request_id == row.request_id for s in history):
                    continue  # exact repeat of a stored label (the original or a correction)
                original = next(s for s in history if not s.is_correction)
                raise ValueError(
                    f"{describe(i)}: annotator {row.annotator_id!r} already labeled example "
                    f"{row.example_id} as {original.label} ({self.class_names[original.label]!r}, "
                    f"request_id={original.request_id!r}); a second label {row.label} "
                    f"(request_id={row.request_id!r}) by the same annotator is only stored as a "
                    "correction: pass correction=True. Nothing was written."
                )
            stored.setdefault((row.example_id, row.annotator_id), []).append(
                _Stored(row.label, row.request_id, created, is_correction)
            )
            to_write.append(
                (
                    row.example_id,
                    row.annotator_id,
                    row.label,
                    row.round,
                    row.source,
                    row.request_id,
                    created,
                    int(is_correction),
                )
            )
        # A request is answered by any row naming it, also one equal to a label already stored.
        answered = sorted({r.request_id for r in rows if r.request_id})
        conn.executemany(
            "UPDATE requests SET status = 'answered', updated_at = ? WHERE request_id = ? "
            "AND status != 'answered'",
            [(now, req) for req in answered],
        )
        if not to_write:
            return 0
        conn.executemany(
            "INSERT OR IGNORE INTO annotators (annotator_id) VALUES (?)",
            [(a,) for a in dict.fromkeys(r[1] for r in to_write)],
        )
        conn.executemany(
            "INSERT INTO annotations (example_id, annotator_id, label, round, source, request_id, "
            "created_at, is_correction) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            to_write,
        )
        return len(to_write)

    def record_response(self, response: OracleResponse, *, correction: bool = False) -> int:
        """Store an oracle's answers and mark its exhausted requests, in one transaction.

        Args:
            response: What :meth:`Oracle.request` returned. Its ``pending`` requests stay pending.
            correction: As in :meth:`add_annotations`.

        Returns:
            The number of annotations newly stored.

        Example::

            >>> store = AnnotationStore(num_examples=3, class_names=["no", "yes"])
            >>> req = LabelRequest(example_id=2, score=0.1, kind="new", round=0)
            >>> store.begin_round(0, seed=0, requests=[req])
            >>> store.record_response(OracleResponse(annotations=(), exhausted=(req,)))
            0
            >>> store.request_status(0)
            {'r0:e2': 'exhausted'}
        """
        if not isinstance(response, OracleResponse):
            raise TypeError(
                f"response must be an OracleResponse, got {type(response).__name__}: {response!r}."
            )
        rows = [
            self._row_from_annotation(a, i, bool(correction), "response.annotations")
            for i, a in enumerate(response.annotations)
        ]
        exhausted = self._request_ids(response.exhausted, "response.exhausted")
        with self._transaction() as conn:
            added = self._insert_rows(conn, rows, describe=lambda i: f"response.annotations[{i}]")
            self._set_exhausted(conn, exhausted)
            return added

    # ------------------------------------------------------------------ rounds and requests
    def begin_round(self, round: int, seed: int, requests: Sequence[LabelRequest]) -> None:
        """Record a round and its label requests (all pending) in one transaction.

        Re-calling it for a round that is already stored is a no-op (a resumed run re-enters the
        round it crashed in); if the seed or the selected ids differ from the stored ones a
        ``UserWarning`` says so and the stored round is kept.

        Args:
            round: Round index ``>= 0``.
            seed: The seed the round's selection used.
            requests: The round's requests, in selection order; each must have ``.round == round``
                and a distinct example id in ``0..N-1``.

        Example::

            >>> store = AnnotationStore(num_examples=5, class_names=["a", "b"])
            >>> store.begin_round(0, seed=7, requests=[LabelRequest(3, 0.2, "new", 0)])
            >>> store.round_record(0)
            RoundRecord(round=0, seed=7, selected_ids=(3,), status='requested')
        """
        round_ = _int_arg(round, "round")
        if round_ < 0:
            raise ValueError(f"round must be >= 0, got {round_}.")
        seed_ = _int_arg(seed, "seed")
        if isinstance(requests, LabelRequest) or not isinstance(requests, Iterable):
            raise TypeError(f"requests must be a sequence of LabelRequest, got {requests!r}.")
        requests = list(requests)
        rows = []
        seen: set[int] = set()
        now = _now()
        for i, req in enumerate(requests):
            where = f"requests[{i}]"
            if not isinstance(req, LabelRequest):
                raise TypeError(f"{where} must be a LabelRequest, got {type(req).__name__}: {req!r}.")
            if _int_arg(req.round, f"{where} round") != round_:
                raise ValueError(
                    f"{where}.round is {req.round}, but begin_round was called with round={round_}."
                )
            e = self._check_example_id(req.example_id, where)
            if e in seen:
                raise ValueError(
                    f"{where}: example_id {e} is requested twice in round {round_}; one request per example."
                )
            seen.add(e)
            if req.kind not in _REQUEST_KINDS:
                raise ValueError(f"{where}.kind must be one of {_REQUEST_KINDS}, got {req.kind!r}.")
            score = float(req.score)  # NaN (no score) is stored as NULL
            existing = tuple(req.existing_annotators)
            for a in existing:
                self._check_text(a, "existing_annotators item", where)
            rows.append((req.request_id, round_, i, e, score, req.kind, json.dumps(list(existing)), now))
        selected = [r[3] for r in rows]
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT seed, selected_ids FROM rounds WHERE round = ?", (round_,)
            ).fetchone()
            if found is not None:
                if found[0] != seed_ or json.loads(found[1]) != selected:
                    warnings.warn(
                        f"begin_round({round_}): the store already holds round {round_} with seed={found[0]} "
                        f"and {len(json.loads(found[1]))} selected ids; the new call (seed={seed_}, "
                        f"{len(selected)} ids) differs and is ignored. Resume from store.requests({round_}).",
                        UserWarning,
                        stacklevel=2,
                    )
                return
            conn.execute(
                "INSERT INTO rounds (round, seed, selected_ids, status, created_at) "
                "VALUES (?, ?, ?, 'requested', ?)",
                (round_, seed_, json.dumps(selected), now),
            )
            conn.executemany(
                "INSERT INTO requests (request_id, round, position, example_id, score, kind, "
                "existing_annotators, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def complete_round(self, round: int) -> None:
        """Mark a round completed (idempotent). Its unanswered requests stay pending.

        Raises:
            ValueError: The round was never begun.
        """
        round_ = _int_arg(round, "round")
        with self._transaction() as conn:
            found = conn.execute("SELECT status FROM rounds WHERE round = ?", (round_,)).fetchone()
            if found is None:
                raise ValueError(
                    f"complete_round({round_}): round {round_} was never begun; call begin_round first "
                    f"(stored rounds: {[r.round for r in self.rounds()]})."
                )
            if found[0] != "completed":
                conn.execute(
                    "UPDATE rounds SET status = 'completed', completed_at = ? WHERE round = ?",
                    (_now(), round_),
                )

    @staticmethod
    def _round_record(row: tuple[Any, ...]) -> RoundRecord:
        return RoundRecord(round=row[0], seed=row[1], selected_ids=tuple(json.loads(row[2])), status=row[3])

    def round_record(self, round: int) -> RoundRecord | None:
        """The record of one round, or None if it was never begun."""
        round_ = _int_arg(round, "round")
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT round, seed, selected_ids, status FROM rounds WHERE round = ?", (round_,))
                .fetchone()
            )
        return None if row is None else self._round_record(row)

    def rounds(self) -> list[RoundRecord]:
        """All round records, by round index."""
        with self._lock:
            rows = (
                self._connection()
                .execute("SELECT round, seed, selected_ids, status FROM rounds ORDER BY round")
                .fetchall()
            )
        return [self._round_record(r) for r in rows]

    def last_completed_round(self) -> int:
        """The highest completed round index, ``-1`` if none."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT MAX(round) FROM rounds WHERE status = 'completed'")
                .fetchone()
            )
        return -1 if row[0] is None else int(row[0])

    def _select_requests(self, where: str, params: Sequence[Any]) -> list[LabelRequest]:
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT example_id, score, kind, round, existing_annotators FROM requests "
                    f"WHERE {where} ORDER BY round, position",
                    params,
                )
                .fetchall()
            )
        return [
            LabelRequest(
                example_id=e,
                score=math.nan if s is None else s,
                kind=k,
                round=r,
                existing_annotators=tuple(json.loads(x)),
            )
            for e, s, k, r, x in rows
        ]

    def requests(self, round: int) -> list[LabelRequest]:
        """The requests of one round, in selection order (empty if the round is unknown)."""
        return self._select_requests("round = ?", (_int_arg(round, "round"),))

    def pending_requests(self, round: int | None = None) -> list[LabelRequest]:
        """Requests not answered and not exhausted yet, of one round or of all rounds."""
        if round is None:
            return self._select_requests("status = 'pending'", ())
        return self._select_requests("status = 'pending' AND round = ?", (_int_arg(round, "round"),))

    def request_status(self, round: int | None = None) -> dict[str, str]:
        """``request_id -> "pending" | "answered" | "exhausted"`` for one round or all rounds."""
        sql = "SELECT request_id, status FROM requests"
        params: tuple[Any, ...] = ()
        if round is not None:
            sql += " WHERE round = ?"
            params = (_int_arg(round, "round"),)
        with self._lock:
            return dict(self._connection().execute(sql + " ORDER BY round, position", params).fetchall())

    @staticmethod
    def _request_ids(requests: Iterable[LabelRequest | str], name: str) -> list[str]:
        ids = []
        for i, req in enumerate(requests):
            if isinstance(req, LabelRequest):
                ids.append(req.request_id)
            elif isinstance(req, str) and req:
                ids.append(req)
            else:
                raise TypeError(f"{name}[{i}] must be a LabelRequest or a request id string, got {req!r}.")
        return ids

    def _set_exhausted(self, conn: sqlite3.Connection, request_ids: Sequence[str]) -> int:
        now = _now()
        before = conn.total_changes
        conn.executemany(
            "UPDATE requests SET status = 'exhausted', updated_at = ? "
            "WHERE request_id = ? AND status = 'pending'",
            [(now, r) for r in request_ids],
        )
        return conn.total_changes - before

    def mark_exhausted(self, requests: Iterable[LabelRequest | str]) -> int:
        """Mark pending requests as exhausted (no annotator left). Returns how many changed."""
        ids = self._request_ids(requests, "requests")
        with self._transaction() as conn:
            return self._set_exhausted(conn, ids)

    # ------------------------------------------------------------------ external ids
    def set_external_id(
        self, request_id: str, system: str, external_id: str, *, replace: bool = False
    ) -> None:
        """Remember the id an outside system (e.g. ``"label-studio"``) gave to a request.

        Setting the same id again is a no-op; a different one is an error unless ``replace=True``.

        Example::

            >>> store = AnnotationStore(num_examples=3, class_names=["a", "b"])
            >>> store.set_external_id("r0:e1", "label-studio", "4711")
            >>> store.external_ids("label-studio")
            {'r0:e1': '4711'}
        """
        self._check_text(request_id, "request_id", "set_external_id")
        self._check_text(system, "system", "set_external_id")
        if not isinstance(external_id, str):
            external_id = str(_int_arg(external_id, "external_id"))
        self._check_text(external_id, "external_id", "set_external_id")
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT external_id FROM external_ids WHERE system = ? AND request_id = ?",
                (system, request_id),
            ).fetchone()
            if found is not None and found[0] == external_id:
                return
            if found is not None and not replace:
                raise ValueError(
                    f"request {request_id!r} already has {system} id {found[0]!r}, got {external_id!r}; "
                    "pass replace=True to overwrite it."
                )
            conn.execute(
                "INSERT INTO external_ids (request_id, system, external_id, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (system, request_id) DO UPDATE SET external_id = excluded.external_id, "
                "created_at = excluded.created_at",
                (request_id, system, external_id, _now()),
            )

    def external_ids(self, system: str) -> dict[str, str]:
        """``request_id -> external id`` for one outside system."""
        with self._lock:
            return dict(
                self._connection()
                .execute(
                    "SELECT request_id, external_id FROM external_ids WHERE system = ? ORDER BY rowid",
                    (system,),
                )
                .fetchall()
            )

    # ------------------------------------------------------------------ derived views
    def _derived(self) -> _Derived:
        import torch

        with self._lock:
            conn = self._connection()
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if self._cache is not None and self._cache_version == version:
                return self._cache
            with self._snapshot():
                annotators = conn.execute("SELECT col, annotator_id FROM annotators ORDER BY col").fetchall()
                rows = conn.execute(
                    "SELECT a.example_id, n.col, a.label FROM annotations AS a "
                    "JOIN annotators AS n ON n.annotator_id = a.annotator_id ORDER BY a.id"
                ).fetchall()
            names = tuple(a for _, a in annotators)
            table = torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)
            ex, stored_col, lab = table.unbind(1)
            # annotator columns -> 0..M-1 in first-seen order
            col_of = torch.full((max((c for c, _ in annotators), default=0) + 1,), -1, dtype=torch.int64)
            col_of[torch.tensor([c for c, _ in annotators], dtype=torch.int64)] = torch.arange(
                len(annotators), dtype=torch.int64
            )
            col = col_of[stored_col]
            # Latest log row per (example, annotator) wins (corrections come after what they correct).
            keys = ex * max(len(names), 1) + col
            order = torch.argsort(keys, stable=True)
            sorted_keys = keys[order]
            last = torch.ones_like(sorted_keys, dtype=torch.bool)
            last[:-1] = sorted_keys[1:] != sorted_keys[:-1]
            keep = torch.sort(order[last]).values  # back to log order
            ex, col, lab = ex[keep], col[keep], lab[keep]
            counts = torch.bincount(ex, minlength=self.num_examples)
            self._cache = _Derived(example_ids=ex, cols=col, labels=lab, annotators=names, counts=counts)
            self._cache_version = version
            return self._cache

    def _ids_tensor(self, example_ids: Any, name: str = "example_ids") -> torch.Tensor:
        import torch

        ids = torch.as_tensor(example_ids)
        if ids.numel() == 0:
            return torch.zeros(0, dtype=torch.int64)
        if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
            raise TypeError(f"{name} must hold integer example ids, got dtype {ids.dtype}.")
        ids = ids.to(torch.int64).reshape(-1)
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.num_examples:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{name} contains {bad}, outside 0..{self.num_examples - 1} "
                    f"(num_examples={self.num_examples})."
                )
        return ids

    def label_counts(self) -> torch.Tensor:
        """``(num_examples,)`` int64: labels per example (a correction is not one more)."""
        return self._derived().counts.clone()

    def labeled_ids(self) -> torch.Tensor:
        """Sorted int64 ids of the examples with at least one label."""
        import torch

        return torch.nonzero(self._derived().counts > 0).reshape(-1)

    def unlabeled_ids(self) -> torch.Tensor:
        """Sorted int64 ids of the examples with no label."""
        import torch

        return torch.nonzero(self._derived().counts == 0).reshape(-1)

    @property
    def annotators(self) -> tuple[str, ...]:
        """All annotator ids, in first-seen order."""
        return self._derived().annotators

    def annotator_counts(self) -> dict[str, int]:
        """``annotator_id -> number of examples they labeled``, in first-seen order."""
        import torch

        d = self._derived()
        counts = torch.bincount(d.cols, minlength=len(d.annotators)).tolist()
        return dict(zip(d.annotators, counts, strict=True))

    def label_matrix(self, example_ids: Any = None) -> tuple[torch.Tensor, list[str]]:
        """The dense multi-annotator label matrix.

        Args:
            example_ids: ``(n,)`` distinct example ids giving the rows, in order (any int sequence,
                numpy array or tensor). Default: all labeled ids, sorted.

        Returns:
            ``(labels, annotators)``: ``labels`` is an ``(n, M)`` float64 tensor with the class index
            given by annotator ``j`` to example ``example_ids[i]`` (their latest correction, if any) and
            NaN where they gave none; the ``M`` columns are the annotators with at least one label
            among these rows, in first-seen order, and ``annotators`` names them.

        Example::

            >>> store = AnnotationStore(num_examples=3, class_names=["a", "b"])
            >>> store.add_annotations([Annotation(2, "x", 1), Annotation(0, "y", 0), Annotation(2, "y", 1)])
            3
            >>> store.label_matrix()
            (tensor([[nan, 0.],
                    [1., 1.]], dtype=torch.float64), ['x', 'y'])
        """
        import torch

        d = self._derived()
        if example_ids is None:
            ids = torch.nonzero(d.counts > 0).reshape(-1)
        else:
            ids = self._ids_tensor(example_ids)
            if torch.unique(ids).numel() != ids.numel():
                uniq, counts = torch.unique(ids, return_counts=True)
                raise ValueError(
                    f"example_ids must be distinct, got repeated ids {uniq[counts > 1][:5].tolist()}."
                )
        n = ids.numel()
        row_of = torch.full((self.num_examples,), -1, dtype=torch.int64)
        row_of[ids] = torch.arange(n, dtype=torch.int64)
        rows = row_of[d.example_ids]
        selected = rows >= 0
        rows, cols, labels = rows[selected], d.cols[selected], d.labels[selected]
        used = torch.unique(cols)  # sorted = first-seen order
        col_of = torch.full((len(d.annotators),), -1, dtype=torch.int64)
        col_of[used] = torch.arange(used.numel(), dtype=torch.int64)
        matrix = torch.full((n, used.numel()), float("nan"), dtype=torch.float64)
        matrix[rows, col_of[cols]] = labels.to(torch.float64)
        return matrix, [d.annotators[c] for c in used.tolist()]

    def annotators_of(self, example_ids: Any) -> list[tuple[str, ...]]:
        """For each example id, the annotators who labeled it, in the order they did.

        Example::

            >>> store = AnnotationStore(num_examples=3, class_names=["a", "b"])
            >>> store.add_annotations([Annotation(2, "x", 1), Annotation(2, "y", 0)])
            2
            >>> store.annotators_of([2, 0])
            [('x', 'y'), ()]
        """
        import torch

        d = self._derived()
        ids = self._ids_tensor(example_ids)
        row_of = torch.full((self.num_examples,), -1, dtype=torch.int64)
        row_of[ids] = torch.arange(ids.numel(), dtype=torch.int64)
        rows = row_of[d.example_ids]
        selected = torch.nonzero(rows >= 0).reshape(-1)
        by_example: dict[int, list[str]] = {}
        for e, c in zip(d.example_ids[selected].tolist(), d.cols[selected].tolist(), strict=True):
            by_example.setdefault(e, []).append(d.annotators[c])
        return [tuple(by_example.get(e, ())) for e in ids.tolist()]

    # ------------------------------------------------------------------ export / import
    @staticmethod
    def _format_of(path: Path, format: str | None) -> str:
        if format is not None:
            if format not in ("csv", "jsonl"):
                raise ValueError(f"format must be 'csv' or 'jsonl', got {format!r}.")
            return format
        suffixes = [s.lower() for s in path.suffixes]
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

            >>> import tempfile, pathlib
            >>> store = AnnotationStore(num_examples=3, class_names=["a", "b"])
            >>> store.add_annotations([Annotation(2, "x", 1)])
            1
            >>> store.export_annotations(pathlib.Path(tempfile.mkdtemp()) / "labels.csv")
            1
        """
        path = Path(path)
        fmt = self._format_of(path, format)
        records = list(self.iter_annotations())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            opener = gzip.open if path.suffix.lower() == ".gz" else open
            with opener(tmp, "wt", encoding="utf-8", newline="") as f:  # type: ignore[operator]
                if fmt == "csv":
                    writer = csv.DictWriter(f, fieldnames=_EXPORT_COLUMNS)
                    writer.writeheader()
                    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)
                else:
                    for r in records:
                        f.write(json.dumps(r) + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return len(records)

    def _read_table(self, path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rt", encoding="utf-8", newline="") as f:  # type: ignore[operator]
            if fmt == "csv":
                reader = csv.DictReader(f)
                for record in reader:
                    yield reader.line_num, record
            else:
                for line_num, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{line_num}: not valid JSON ({err}).") from err
                    if not isinstance(record, dict):
                        raise ValueError(
                            f"{path}:{line_num}: expected a JSON object per line, got {record!r}."
                        )
                    yield line_num, record

    def _parse_label(self, value: Any, label_format: str, where: str) -> int:
        if isinstance(value, str):
            text = value.strip()
            is_name = text in self._class_index
            try:
                as_int: int | None = int(text)
            except ValueError:
                as_int = None
            if label_format == "name" or (label_format == "auto" and as_int is None):
                if not is_name:
                    raise ValueError(
                        f"{where}: label {value!r} is not one of the class names {list(self.class_names)!r}."
                    )
                return self._class_index[text]
            if as_int is None:
                raise ValueError(f"{where}: label {value!r} is not a class index (label_format='index').")
            if label_format == "auto" and is_name and self._class_index[text] != as_int:
                raise ValueError(
                    f"{where}: label {value!r} is ambiguous: it is class name {text!r} (index "
                    f"{self._class_index[text]}) and also class index {as_int}; pass label_format='name' "
                    "or label_format='index'."
                )
            return self._check_label(as_int, where)
        if label_format == "name":
            raise ValueError(f"{where}: label {value!r} is not a class name (label_format='name').")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return self._check_label(value, where)

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
        reproduces the same label matrix.

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
        fmt = self._format_of(path, format)
        if label_format not in ("auto", "index", "name"):
            raise ValueError(f"label_format must be 'auto', 'index' or 'name', got {label_format!r}.")
        self._check_text(source, "source", "import_annotations")
        rows: list[_Row] = []
        lines: list[int] = []
        for line_num, record in self._read_table(path, fmt):
            where = f"{path}:{line_num}"
            missing = [c for c in (example_col, annotator_col, label_col) if record.get(c) in (None, "")]
            if missing:
                raise ValueError(
                    f"{where}: no value for column(s) {missing!r} (columns present: {sorted(record)!r}); "
                    "name the right ones with example_col= / annotator_col= / label_col=."
                )
            raw_example = record[example_col]
            try:
                example = int(raw_example) if isinstance(raw_example, str) else raw_example
            except ValueError:
                raise ValueError(f"{where}: example id {raw_example!r} is not an integer.") from None
            raw_annotator = record[annotator_col]
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
            row_format = "index" if has_name and label_format == "auto" else label_format
            label = self._parse_label(record[label_col], row_format, where)
            if has_name and row_format == "index" and class_name != self.class_names[label]:
                raise ValueError(
                    f"{where}: the row says label {record[label_col]!r} is class {class_name!r}, but class "
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
