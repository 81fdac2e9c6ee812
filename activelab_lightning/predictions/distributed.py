"""DDP sharding of a pool and the by-id gather of its predictions.

Every rank takes an equal-length, strided, wrap-around shard of the pool (as
``DistributedSampler(shuffle=False)``) and predicts it batch by batch; each batch is all-gathered.
Every rank's batch has the same shape, so the gather is safe (gloo aborts on unequal shapes); the
rows are put back in pool order and the padding duplicates dropped.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["all_gather", "shard_positions", "unshard_batch", "world_of"]


def shard_positions(num_examples: int, world_size: int, rank: int) -> Tensor:
    """Pool positions handled by ``rank``: strided, padded by wrapping around to equal lengths.

    Same split as ``DistributedSampler(shuffle=False, drop_last=False)``: the pool is padded to
    ``ceil(n / W) * W`` positions by repeating its start, and rank ``r`` takes padded positions
    ``r, r + W, r + 2W, ...``. Every rank gets ``ceil(n / W)`` positions.

    Args:
        num_examples: Pool size ``n``.
        world_size: Number of ranks ``W >= 1``.
        rank: This rank, ``0 <= rank < W``.

    Returns:
        ``(ceil(n / W),)`` int64 positions into the pool (``0 .. n-1``, padding repeats some).

    Example::

        >>> shard_positions(5, 2, 0).tolist(), shard_positions(5, 2, 1).tolist()
        ([0, 2, 4], [1, 3, 0])
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"need world_size >= 1 and 0 <= rank < world_size, got world_size={world_size}, rank={rank}."
        )
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}.")
    if num_examples == 0:
        return torch.zeros(0, dtype=torch.int64)
    total = math.ceil(num_examples / world_size) * world_size
    return torch.arange(rank, total, world_size, dtype=torch.int64) % num_examples


def unshard_batch(gathered: Tensor, shard_offset: int, num_examples: int) -> tuple[Tensor, Tensor]:
    """Put one gathered batch back in pool order and drop the padding duplicates.

    Args:
        gathered: ``(W, b, ...)``: batch ``j`` of every rank's shard (rank-major, as all-gathered),
            covering shard positions ``shard_offset .. shard_offset + b - 1`` on each rank.
        shard_offset: Shard position of the batch's first row (same on every rank).
        num_examples: Pool size ``n``.

    Returns:
        ``(positions (b',), rows (b', ...))``: pool positions, contiguous and increasing, and their
        rows; ``b' <= W * b`` (wrap-around padding removed).

    Example::

        >>> import torch
        >>> g = torch.tensor([[[0.], [2.], [4.]], [[1.], [3.], [0.]]])  # 2 ranks, n=5, one batch
        >>> pos, rows = unshard_batch(g, 0, 5)
        >>> pos.tolist(), rows.flatten().tolist()
        ([0, 1, 2, 3, 4], [0.0, 1.0, 2.0, 3.0, 4.0])
    """
    world, b = gathered.shape[0], gathered.shape[1]
    # rank r's row j is padded position (shard_offset + j) * W + r: rank-minor order is contiguous.
    rows = gathered.transpose(0, 1).reshape(world * b, *gathered.shape[2:])
    start = shard_offset * world
    stop = min(num_examples, start + world * b)
    keep = max(0, stop - start)
    return torch.arange(start, start + keep, dtype=torch.int64), rows[:keep]


def world_of(trainer: Any) -> tuple[int, int]:
    """``(world_size, global_rank)`` of a running Trainer; ``(1, 0)`` for None (one process)."""
    if trainer is None:
        return 1, 0
    return int(getattr(trainer, "world_size", 1)), int(getattr(trainer, "global_rank", 0))


def all_gather(tensor: Tensor, world_size: int, device: torch.device) -> Tensor:
    """``(W, *shape)`` gather of equal-shape tensors with ``torch.distributed`` (gloo or nccl)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"trainer.world_size is {world_size} but torch.distributed is not initialized; run the "
            "acquisition inside a fit with strategy='ddp' (where the process group exists)."
        )
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = tensor.to(comm).contiguous()
    out = [torch.empty_like(t) for _ in range(world_size)]
    dist.all_gather(out, t)
    return torch.stack(out).to("cpu")
