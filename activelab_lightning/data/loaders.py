"""The datamodule's ``DataLoader`` s: training batches and ``(x, example_ids)`` pool batches.

:func:`train_loader` and :func:`pool_loader` build a loader over some example ids on the tensor
fast path (a :class:`~activelab_lightning.data.samplers.TensorSource`: whole batches gathered by
one index operation) or the generic per-item path; both yield identical batches.
:func:`default_input_fn` and :func:`default_batch_fn` are the default item -> input and
``(x, y)`` -> batch conversions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from activelab_lightning.data.samplers import (
    BatchFn,
    BuildBatch,
    ChunkSampler,
    InputFn,
    MapDataset,
    OrderSampler,
    PoolBatches,
    PoolItems,
    TensorSource,
    TrainBatches,
    TrainItems,
    identity_collate,
)
from activelab_lightning.errors import ActiveLabError

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = [
    "default_batch_fn",
    "default_input_fn",
    "plain_loader",
    "pool_loader",
    "sampler_world",
    "train_loader",
]


def default_input_fn(item: Any) -> Any:
    """The model input of one dataset item: ``item[0]`` for tuples/lists, ``item["x"]`` or
    ``item["input"]`` for dicts, the item itself otherwise.

    Example::

        >>> default_input_fn((1, 2)), default_input_fn({"x": 3, "y": 0}), default_input_fn(5)
        (1, 3, 5)
    """
    if isinstance(item, (tuple, list)):
        if not item:
            raise ValueError("dataset item is an empty sequence; pass input_fn=lambda item: <model input>.")
        return item[0]
    if isinstance(item, dict):
        for key in ("x", "input"):
            if key in item:
                return item[key]
        raise KeyError(
            f"dataset items are dicts with keys {sorted(item)} but no 'x' or 'input'; pass "
            "input_fn=lambda item: item['<your input key>'] to ActiveDataModule."
        )
    return item


def default_batch_fn(x: Any, y: Tensor) -> tuple[Any, Tensor]:
    """The default training batch: ``(x, y)``."""
    return x, y


def sampler_world(trainer: pl.Trainer | None) -> tuple[int, int, bool]:
    """``(world_size, rank, follow_process_group)`` for the train sampler.

    The attached trainer's world, else the ``torch.distributed`` process group's (followed once it
    exists, so a loader built before a trainer is attached shards by it), else a single process.
    """
    if trainer is not None:
        return int(trainer.world_size), int(trainer.global_rank), False
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank(), True
    return 1, 0, True


def train_loader(
    dataset: MapDataset,
    source: TensorSource | None,
    ids: Tensor,
    targets: Tensor,
    *,
    input_fn: InputFn,
    batch_fn: BatchFn,
    batch_size: int,
    drop_last: bool,
    shuffle: bool,
    seed: int,
    world: tuple[int, int, bool],
    num_workers: int,
    pin_memory: bool,
) -> DataLoader:
    """A loader of ``batch_fn(x, y)`` training batches over ``ids``, seeded and sharded by rank.

    Args:
        dataset: The base dataset (generic path).
        source: Its tensor fast path, or None.
        ids: ``(n,)`` int64 example ids.
        targets: ``(n,)`` int64 or ``(n, K)`` float32 targets aligned with ``ids``.
        input_fn: ``input_fn(item) -> x`` (generic path).
        batch_fn: ``batch_fn(x, y) -> batch``.
        batch_size: Training batch size.
        drop_last: Drop the last, incomplete batch.
        shuffle: Shuffle (seeded by ``seed`` and the sampler's epoch).
        seed: The order's seed.
        world: ``(world_size, rank, follow_process_group)``, see :func:`sampler_world`.
        num_workers: ``DataLoader`` workers.
        pin_memory: Pin the batches.

    Raises:
        ActiveLabError: ``ids`` is empty.
    """
    if ids.numel() == 0:
        raise ActiveLabError(
            "no labeled examples to train on: give ActiveDataModule initial_labels= (and initial_labeled=), "
            "or add annotations to the store and call refresh()."
        )
    num_replicas, rank, follow = world
    common: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
    if source is not None:
        data = TrainBatches(source.inputs, source.rows(ids), targets, batch_fn)
        sampler = OrderSampler(
            data,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            batch_size=batch_size,
            drop_last_batch=drop_last,
            follow_process_group=follow,
        )
        return DataLoader(data, batch_size=None, sampler=sampler, collate_fn=identity_collate, **common)
    items = TrainItems(dataset, ids, input_fn)
    sampler = OrderSampler(
        items, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, follow_process_group=follow
    )
    return DataLoader(
        items,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        collate_fn=BuildBatch(targets, batch_fn),
        **common,
    )


def pool_loader(
    dataset: MapDataset,
    source: TensorSource | None,
    ids: Tensor,
    batch_size: int,
    *,
    input_fn: InputFn,
    num_workers: int,
    pin_memory: bool,
) -> DataLoader:
    """A loader over ``ids``, in that order, of ``(x (B, ...), example_ids (B,) int64)`` batches.

    Args:
        dataset: The base dataset (generic path).
        source: Its tensor fast path, or None.
        ids: ``(n,)`` int64 example ids.
        batch_size: The pool batch size.
        input_fn: ``input_fn(item) -> x`` (generic path).
        num_workers: ``DataLoader`` workers.
        pin_memory: Pin the batches.
    """
    common: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
    if source is not None:
        data = PoolBatches(source.inputs, source.rows(ids), ids)
        sampler = ChunkSampler(ids.numel(), batch_size)
        return DataLoader(data, batch_size=None, sampler=sampler, collate_fn=identity_collate, **common)
    return DataLoader(PoolItems(dataset, ids, input_fn), batch_size=batch_size, shuffle=False, **common)


def plain_loader(dataset: Dataset[Any], *, batch_size: int, num_workers: int, pin_memory: bool) -> DataLoader:
    """A val / test loader: ``dataset`` as is, in order, items collated by ``default_collate``."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin_memory
    )
