"""The store's SQLite plumbing: open / create, pragmas, transactions, fork and pickle handling.

:class:`StoreBase` is the base of every part of :class:`~activelab_lightning.store.AnnotationStore`:
it owns the connection (WAL mode, ``synchronous=FULL``, one ``BEGIN IMMEDIATE`` transaction per
write), checks the ``meta`` table on every reopen, gives a forked child process its own
connection, and holds the checks every part shares (example ids, labels, text fields).
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Self, SupportsIndex, TypedDict

from activelab_lightning.store._schema import APPLICATION_ID, SCHEMA, SCHEMA_VERSION

if TYPE_CHECKING:
    from activelab_lightning.store._views import _Derived

__all__ = ["MEMORY", "StoreBase", "int_arg", "utc_now"]

MEMORY = ":memory:"
_SQLITE_HEADER = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 30_000
# Connections inherited through fork() (see StoreBase._reconnect_after_fork), never used again.
_INHERITED_CONNECTIONS: list[sqlite3.Connection | None] = []


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with microseconds (the store's timestamps)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def int_arg(value: object, name: str) -> int:
    """``value`` as a Python int (numpy / torch integer scalars accepted), bools and floats refused."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    return operator.index(value)


class _State(TypedDict):
    """What a pickled store carries: enough to reopen its file."""

    path: str
    num_examples: int
    class_names: tuple[str, ...]


class StoreBase:
    """Connection, transactions and shared checks of an AnnotationStore (see the package docstring)."""

    num_examples: int
    class_names: tuple[str, ...]
    num_classes: int

    def _open(
        self,
        path: str | os.PathLike[str],
        num_examples: int | None,
        class_names: Sequence[str] | None,
    ) -> None:
        """Open (or create) the store at ``path``; the body of ``AnnotationStore.__init__``."""
        self._path = MEMORY if str(path) == MEMORY else str(Path(path))
        given_n = None if num_examples is None else self._check_num_examples(num_examples)
        given_classes = None if class_names is None else self._check_class_names(class_names)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._cache: _Derived | None = None
        self._cache_version: int | None = None
        self._pid = os.getpid()

        if self._path != MEMORY and Path(self._path).is_dir():
            raise ValueError(
                f"path={self._path!r} is a directory; give a file path such as {self._path!r}/labels.db."
            )
        is_new = self._path == MEMORY or not Path(self._path).exists() or Path(self._path).stat().st_size == 0
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
        if self._path != MEMORY:
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
    def _check_num_examples(num_examples: object) -> int:
        n = int_arg(num_examples, "num_examples")
        if n < 1:
            raise ValueError(
                f"num_examples must be >= 1 (the size of the base dataset), got {n}: an empty dataset "
                "has nothing to label."
            )
        return n

    @staticmethod
    def _check_class_names(class_names: object) -> tuple[str, ...]:
        if isinstance(class_names, str) or not isinstance(class_names, Iterable):
            raise TypeError(f"class_names must be a sequence of strings, got {class_names!r}.")
        given = tuple(class_names)
        names = tuple(c for c in given if isinstance(c, str) and c)
        if len(names) != len(given):
            bad = [c for c in given if not isinstance(c, str) or not c]
            raise TypeError(
                f"class_names must be non-empty strings, got {bad[:3]!r} in {given!r}; "
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
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [
                            ("schema_version", str(SCHEMA_VERSION)),
                            ("num_examples", str(n)),
                            ("class_names", json.dumps(list(classes))),
                            ("created_at", utc_now()),
                        ],
                    )
            n, classes = self._check_meta(given_n, given_classes)
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
        classes = tuple(str(c) for c in json.loads(meta["class_names"]))
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
        assert self._conn is not None
        return self._conn

    def _reconnect_after_fork(self) -> None:
        """A SQLite connection must not cross ``fork()``: give the child process its own."""
        if self._path == MEMORY:
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> _State:
        # A connection cannot be pickled; a file store reopens itself (e.g. in a spawned DDP worker).
        if self._path == MEMORY:
            raise TypeError(
                "An in-memory AnnotationStore cannot be pickled (its data lives in this process); "
                "use AnnotationStore(path='labels.db', ...) to share a store between processes."
            )
        return {"path": self._path, "num_examples": self.num_examples, "class_names": self.class_names}

    def __setstate__(self, state: _State) -> None:
        self._open(state["path"], state["num_examples"], state["class_names"])

    def __len__(self) -> int:
        """Number of stored annotations (log rows, corrections included)."""
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM annotations").fetchone()[0])

    # ------------------------------------------------------------------ shared checks
    def _check_example_id(self, value: object, where: str) -> int:
        e = int_arg(value, f"{where} example_id")
        if not 0 <= e < self.num_examples:
            raise ValueError(
                f"{where}: example_id {e} is outside 0..{self.num_examples - 1} (num_examples="
                f"{self.num_examples}); example ids are positions in the base dataset."
            )
        return e

    def _check_label(self, value: object, where: str) -> int:
        label = int_arg(value, f"{where} label")
        if not 0 <= label < self.num_classes:
            raise ValueError(
                f"{where}: label {label} is outside the class set 0..{self.num_classes - 1} "
                f"(class_names={list(self.class_names)!r}); labels are class indices."
            )
        return label

    @staticmethod
    def _check_text(value: object, name: str, where: str, *, allow_empty: bool = False) -> str:
        if type(value) is str and value:
            return value
        if not isinstance(value, str) or (not value and not allow_empty):
            raise TypeError(
                f"{where}: {name} must be a non-empty string, got {value!r}; e.g. {name}=str(value)."
            )
        return value
