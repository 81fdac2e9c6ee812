"""One run per store: an advisory lock held for the whole run, naming its owner.

Two ``activelab run`` (or two scripts calling :meth:`ActiveLearningLoop.run`) on one store would
take alternate rounds and spend labels nobody budgeted. :class:`RunLock` prevents that with an
exclusive ``flock`` on ``<store>.lock`` next to the SQLite file, held from the start of the run to
its end. The lock file also records the owner (pid, host, start time, command) so the refusal can
say who holds it.

The kernel releases a ``flock`` when its process exits, however it exits (``SIGKILL``, a crash,
a power loss), so a lock left by a dead process is never stale: the next run simply takes it and
overwrites the owner record. ``flock`` is advisory and per host: it protects against a second run
on the same machine (and on local filesystems); runs on different hosts sharing a network
filesystem are not guarded. Where ``fcntl`` does not exist (Windows) the lock is a no-op with a
warning.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from activelab_lightning.errors import StoreLocked

__all__ = ["RunLock", "describe_owner", "lock_path", "read_lock_owner"]

#: Locks this process holds: resolved store path -> [descriptor, holders]. A process that already
#: holds a store's lock (``activelab run`` takes it before building anything, and the loop again)
#: takes it again without blocking on itself.
_HELD: dict[str, list[int]] = {}


def lock_path(store_path: str | os.PathLike[str]) -> Path:
    """``<store>.lock`` next to the store file."""
    path = Path(store_path)
    return path.with_name(path.name + ".lock")


def read_lock_owner(store_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The owner record of the store's lock file (it may be stale: see :meth:`RunLock.holder`)."""
    try:
        text = lock_path(store_path).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    try:
        owner = json.loads(text) if text else None
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def describe_owner(owner: dict[str, Any] | None) -> str:
    """``"pid 123 on host 'h' since ... (command)"`` for a lock owner record."""
    if not owner:
        return "another process"
    parts = [f"pid {owner.get('pid')}", f"on host {owner.get('host')!r}"]
    if owner.get("started"):
        parts.append(f"since {owner['started']}")
    if owner.get("command"):
        parts.append(f"({owner['command']})")
    return " ".join(parts)


class RunLock:
    """Exclusive lock on a store for the duration of a run.

    Args:
        store_path: The store's SQLite file (``":memory:"``: the lock does nothing).

    Raises:
        StoreLocked: From :meth:`acquire` when another live process holds the lock; the message
            names it and says what to do.

    Example::

        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "labels.sqlite")
        >>> with RunLock(path) as lock:
        ...     lock.held
        True
        >>> RunLock(path).holder() is None  # released: nobody holds it
        True
    """

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.store_path = str(store_path)
        self._key = str(Path(self.store_path).expanduser().resolve()) if self.store_path != ":memory:" else ""
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _open(self) -> int:
        path = lock_path(self.store_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self) -> RunLock:
        """Take the lock (non-blocking) and record this process as its owner."""
        if self.held or self.store_path == ":memory:":
            return self
        if self._key in _HELD:  # this process holds it already (another RunLock object)
            _HELD[self._key][1] += 1
            self._fd = _HELD[self._key][0]
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            warnings.warn(
                "activelab: no fcntl on this platform, so two runs on one store are not prevented; "
                "make sure only one run uses it at a time.",
                RuntimeWarning,
                stacklevel=2,
            )
            return self
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = read_lock_owner(self.store_path)
            raise StoreLocked(
                f"store {self.store_path} is in use by {describe_owner(owner)}: only one run may use a store at "
                f"a time (a second one would take alternate rounds and spend labels twice). Wait for that "
                f"run to finish or stop it, or use another store (--out_dir)."
            ) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd
        _HELD[self._key] = [fd, 1]
        return self

    def release(self) -> None:
        """Release the lock (the owner record is cleared); a no-op if not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        held = _HELD.get(self._key)
        if held is not None and held[1] > 1:
            held[1] -= 1
            return
        _HELD.pop(self._key, None)
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def holder(self) -> dict[str, Any] | None:
        """The owner record if a live process holds the lock, else None (never blocks)."""
        if self.held:
            return read_lock_owner(self.store_path)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return None
        try:  # read-only: works on a read-only store folder too (flock does not need write access)
            fd = os.open(lock_path(self.store_path), os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_lock_owner(self.store_path) or {}
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
