"""Durable file writes: the one home for atomic replace and whole-line appends.

Every file the library writes next to a store (round log, learning-curve CSV, request files,
checkpoints of warm-started models, exports) goes through these two helpers, so a crash leaves
either the old or the new content, never a torn file:

* :func:`atomic_write` writes to a temporary file in the same directory, ``fsync``s it, renames it
  over the target (``os.replace`` is atomic on POSIX and Windows) and ``fsync``s the directory.
* :func:`append_line` appends one whole line with a single ``write`` and ``fsync``s it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["append_line", "atomic_path", "atomic_write"]


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (e.g. network mounts) refuse fsync on a directory
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed over ``path``.

    For writers that want a file name rather than a handle (``torch.save``, ``sqlite3``).

    Example::

        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write(
    path: str | os.PathLike[str],
    content: str | bytes | Callable[[IO[Any]], object],
    *,
    encoding: str = "utf-8",
) -> Path:
    """Replace ``path`` atomically with ``content`` (text, bytes, or a function that writes a handle).

    Args:
        path: target file; its parent directory is created if missing.
        content: the new content. ``str`` is written as text (``newline=""``: no newline
            translation), ``bytes`` as binary, and a callable receives an open text handle.
        encoding: text encoding for ``str`` / callable content.

    Returns:
        The target path.

    Example::

        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
        >>> _ = atomic_write(target, "x,y\\n1,2\\n")
        >>> target.read_text()
        'x,y\\n1,2\\n'
    """
    with atomic_path(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            with open(tmp, "w", encoding=encoding, newline="") as fh:
                if isinstance(content, str):
                    fh.write(content)
                else:
                    content(fh)
    return Path(path)


def append_line(path: str | os.PathLike[str], line: str, *, encoding: str = "utf-8") -> None:
    """Append ``line`` (a newline is added if missing) with one write, then ``fsync``.

    A crash can at worst leave the last line torn; readers of such logs skip a torn last line.

    Example::

        >>> import tempfile, pathlib
        >>> log = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
        >>> append_line(log, '{"round": 0}'); append_line(log, '{"round": 1}')
        >>> log.read_text().splitlines()
        ['{"round": 0}', '{"round": 1}']
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not line.endswith("\n"):
        line += "\n"
    data = line.encode(encoding)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # os.write may write less on some filesystems
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
