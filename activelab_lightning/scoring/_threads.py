"""Single-threaded torch for the scoring passes.

The scoring passes are memory-bound and issue many torch ops (thousands on cache-sized blocks).
With more than one intra-op thread every op above torch's grain size opens a parallel region,
and on a busy machine each region waits for a free core: measured on a loaded 2-core box, the
one-shot N = 1e5 scoring ran 10-15x slower with 2 threads than with 1. So the labeled fit and
the unlabeled scoring run on one intra-op thread (CPU only) and restore the caller's thread
count afterwards (also when they raise). Usable as a context manager or a decorator.
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
