"""Single-threaded torch for the cache-blocked loops of the scoring functions.

The blocked loops issue thousands of small torch ops on cache-sized blocks. With more than one
intra-op thread each op above torch's grain size opens a parallel region, and on a busy machine
every region waits for a free core: the loops then run many times slower than on one thread.
The blocks are memory- and cache-bound anyway, so the loops run on one thread and restore the
caller's thread count afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["serial_torch"]


@contextmanager
def serial_torch() -> Iterator[None]:
    """Run the enclosed torch CPU ops on one intra-op thread, then restore the thread count.

    Example::

        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with serial_torch():
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
