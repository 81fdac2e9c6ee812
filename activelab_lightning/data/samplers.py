"""Samplers and loader datasets behind :class:`~activelab_lightning.data.ActiveDataModule`'s loaders.

Two paths serve identical batches:

* the **tensor fast path** (:func:`tensor_source` finds the input tensor of a ``TensorDataset``,
  anything with ``.tensors``, or a ``Subset`` of one): a sampler yields whole ``(B,)`` position
  tensors (:class:`OrderSampler` with ``batch_size``) or ``slice`` s (:class:`ChunkSampler`), and
  :class:`TrainBatches` / :class:`PoolBatches` gather a batch with one ``index_select``;
* the **generic path**: per-item access (:class:`TrainItems` / :class:`PoolItems`) collated by
  ``default_collate`` (:class:`BuildBatch` adds the targets).

Both loaders are built with ``batch_size=None`` and :func:`identity_collate` on the fast path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler, Subset
from torch.utils.data._utils.collate import default_collate

__all__ = [
    "BuildBatch",
    "ChunkSampler",
    "MapDataset",
    "OrderSampler",
    "PoolBatches",
    "PoolItems",
    "TensorSource",
    "TrainBatches",
    "TrainItems",
    "identity_collate",
    "mix_seed",
    "tensor_source",
]

#: ``input_fn(item) -> x``: the model input of one dataset item.
InputFn = Callable[[Any], Any]
#: ``batch_fn(x, y) -> batch``: the training batch a ``training_step`` expects.
BatchFn = Callable[[Any, Tensor], Any]


class MapDataset(Protocol):
    """A map-style dataset of ``N`` examples: ``len(dataset)`` and ``dataset[i]`` for ``i < N``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Any: ...


def mix_seed(seed: int, count: int) -> int:
    """The seed of refresh number ``count`` of a datamodule seeded ``seed``: its tie-breaks and its shuffling."""
    return (int(seed) * 1_000_003 + int(count) * 7_919) % (2**62)


# ---------------------------------------------------------------------------- samplers
class OrderSampler(DistributedSampler):
    """Seeded order over ``n`` rows, sharded by rank, optionally chunked into batches.

    A ``DistributedSampler`` (same shuffle, padding and striding), so Lightning neither replaces it
    under DDP nor forgets to call :meth:`set_epoch`. With ``batch_size`` it yields ``(b,)`` int64
    position tensors (for loaders with ``batch_size=None`` over a batched dataset); without, ints.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        num_replicas: int,
        rank: int,
        shuffle: bool,
        seed: int,
        batch_size: int | None = None,
        drop_last_batch: bool = False,
        follow_process_group: bool = False,
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.batch_size = batch_size
        self.drop_last_batch = drop_last_batch
        self.follow_process_group = follow_process_group

    def _sync_world(self) -> None:
        """Loaders built before the process group existed (no trainer attached yet) shard by it once it does."""
        if not (
            self.follow_process_group
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            return
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        if (world, rank) != (self.num_replicas, self.rank):
            self.num_replicas, self.rank = world, rank
            self.num_samples = math.ceil(len(self.dataset) / world)  # type: ignore[arg-type]
            self.total_size = self.num_samples * world

    def positions(self) -> Tensor:
        """This rank's ``(num_samples,)`` positions for the current epoch."""
        self._sync_world()
        n = len(self.dataset)  # type: ignore[arg-type]
        if n == 0:
            return torch.zeros(0, dtype=torch.int64)
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        pad = self.total_size - n
        if pad > 0:
            order = torch.cat([order, order.repeat(math.ceil(pad / n))[:pad]])
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[Any]:
        pos = self.positions()
        if self.batch_size is None:
            return iter(pos.tolist())
        chunks = list(pos.split(self.batch_size))
        if self.drop_last_batch and chunks and chunks[-1].numel() < self.batch_size:
            chunks.pop()
        return iter(chunks)

    def __len__(self) -> int:
        self._sync_world()
        if self.batch_size is None:
            return self.num_samples
        if self.drop_last_batch:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)


class ChunkSampler(Sampler):
    """Consecutive ``slice`` s of ``range(n)`` (pool loaders: no per-row Python)."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size = n, batch_size

    def __iter__(self) -> Iterator[slice]:
        return (slice(i, min(i + self.batch_size, self.n)) for i in range(0, self.n, self.batch_size))

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)


# ---------------------------------------------------------------------------- loader datasets
def identity_collate(batch: Any) -> Any:
    """The fast path's ``collate_fn``: the dataset already returns whole batches."""
    return batch


class TrainBatches(Dataset):
    """Fast path: ``dataset[positions]`` is a whole training batch.

    Args:
        inputs: ``(R, ...)`` model inputs of the base tensors.
        rows: ``(n,)`` int64 row of ``inputs`` of each labeled example.
        targets: ``(n,)`` int64 or ``(n, K)`` float32 targets, aligned with ``rows``.
        batch_fn: ``batch_fn(x, y) -> batch``.
    """

    def __init__(self, inputs: Tensor, rows: Tensor, targets: Tensor, batch_fn: BatchFn):
        self.inputs, self.rows, self.targets, self.batch_fn = inputs, rows, targets, batch_fn

    def __len__(self) -> int:
        return self.rows.numel()

    def __getitem__(self, pos: Tensor) -> Any:
        return self.batch_fn(self.inputs.index_select(0, self.rows[pos]), self.targets[pos])


class TrainItems(Dataset):
    """Generic path: item ``i`` is ``(input_fn(dataset[ids[i]]), i)``; targets are added at collate."""

    def __init__(self, dataset: MapDataset, ids: Tensor, input_fn: InputFn):
        self.dataset, self.ids, self.input_fn = dataset, ids.tolist(), input_fn

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.input_fn(self.dataset[self.ids[i]]), i


class BuildBatch:
    """Collate ``(input, position)`` items into ``batch_fn(default_collate(inputs), targets[positions])``."""

    def __init__(self, targets: Tensor, batch_fn: BatchFn):
        self.targets, self.batch_fn = targets, batch_fn

    def __call__(self, items: list[tuple[Any, int]]) -> Any:
        x = default_collate([it[0] for it in items])
        pos = torch.tensor([it[1] for it in items], dtype=torch.int64)
        return self.batch_fn(x, self.targets[pos])


class PoolBatches(Dataset):
    """Fast path: ``dataset[slice]`` is ``(inputs (B, ...), example_ids (B,))`` of consecutive pool rows."""

    def __init__(self, inputs: Tensor, rows: Tensor, ids: Tensor):
        self.inputs, self.rows, self.ids = inputs, rows, ids

    def __len__(self) -> int:
        return self.ids.numel()

    def __getitem__(self, s: slice) -> tuple[Tensor, Tensor]:
        return self.inputs.index_select(0, self.rows[s]), self.ids[s]


class PoolItems(Dataset):
    """Generic path: item ``i`` is ``(input_fn(dataset[ids[i]]), ids[i])``."""

    def __init__(self, dataset: MapDataset, ids: Tensor, input_fn: InputFn):
        self.dataset, self.ids, self.input_fn = dataset, ids.tolist(), input_fn

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        example_id = self.ids[i]
        return self.input_fn(self.dataset[example_id]), example_id


# ---------------------------------------------------------------------------- tensor fast path
@dataclass(frozen=True)
class TensorSource:
    """Where the fast path reads a dataset's model inputs.

    Attributes:
        inputs: ``(R, ...)`` model inputs of the *base* tensors.
        index: ``(N,)`` int64 dataset position -> row of ``inputs`` (a ``Subset``), None = identity.
    """

    inputs: Tensor
    index: Tensor | None

    def rows(self, ids: Tensor) -> Tensor:
        """``(n,)`` rows of :attr:`inputs` of the ``(n,)`` dataset positions ``ids``."""
        return ids if self.index is None else self.index[ids]


def tensor_source(dataset: object) -> TensorSource | None:
    """The :class:`TensorSource` of a tensor dataset (or nested ``Subset`` of one), else None."""
    if isinstance(dataset, Subset):
        inner = tensor_source(dataset.dataset)
        if inner is None:
            return None
        index = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
        if inner.index is not None:
            index = inner.index[index]
        return TensorSource(inner.inputs, index)
    tensors = getattr(dataset, "tensors", None)
    if isinstance(tensors, (tuple, list)) and tensors and all(isinstance(t, Tensor) for t in tensors):
        return TensorSource(tensors[0], None)
    return None
