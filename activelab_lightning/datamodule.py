"""``ActiveDataModule``: labeled / unlabeled views of any map-style dataset, trained on consensus labels.

The :class:`~activelab_lightning.store.AnnotationStore` is the single source of truth for the
labels; the datamodule derives from it

* the labeled and unlabeled example ids (stable positions in the base dataset),
* the training targets of the labeled examples: their CROWDLAB consensus computed with the
  latest predicted probabilities (majority vote before any model exists), or the CROWDLAB
  posterior as soft targets,
* loaders: ``train_dataloader()`` in the user's batch format (default ``(x, y)``), pool loaders
  yielding ``(x, example_ids)`` for the acquisition's inference, and optional val / test loaders.

Tensor datasets (``TensorDataset``, anything with ``.tensors``, or a ``Subset`` of one) take a
fast path: whole batches are gathered with one index operation instead of per-item
``__getitem__`` + collate (3-7x faster on large pools). Any other dataset uses per-item access and
``default_collate``; both paths yield identical batches.

Shuffling is seeded (``seed``, the number of refreshes, and the epoch Lightning passes to
``set_epoch``) and the train sampler is a ``DistributedSampler`` that shards by
``trainer.world_size`` / ``global_rank`` itself, so Lightning keeps it under DDP (it cannot
re-inject a sampler into a batched-index loader) and every rank serves its own shard. A train
loader built before a trainer is attached shards by the ``torch.distributed`` process group once
that exists.

Example::

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from activelab_lightning.records import Annotation
    >>> from activelab_lightning.store import AnnotationStore
    >>> x = torch.randn(6, 3)
    >>> store = AnnotationStore(num_examples=6, class_names=["a", "b"])
    >>> dm = ActiveDataModule(TensorDataset(x), store, batch_size=2,
    ...                       initial_labels=[Annotation(0, "ann", 1), Annotation(3, "ann", 0)])
    >>> dm.labeled_ids.tolist(), dm.consensus_labels.tolist()
    ([0, 3], [1, 0])
    >>> xb, ids = next(iter(dm.unlabeled_pool_dataloader()))
    >>> ids.tolist()
    [1, 2, 4, 5]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset
from torch.utils.data._utils.collate import default_collate

from activelab_lightning.errors import ActiveLabError, WaitingForLabels
from activelab_lightning.records import Annotation, LabelRequest
from activelab_lightning.scoring.crowdlab import CrowdlabResult, crowdlab
from activelab_lightning.scoring.majority_vote import majority_vote
from activelab_lightning.store import AnnotationStore

__all__ = ["ActiveDataModule", "default_batch_fn", "default_input_fn"]

_STATE_FORMAT = 1
#: Round of the :class:`LabelRequest` s sent to an oracle for the cold-start labels.
INITIAL_ROUND = -1


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


# ---------------------------------------------------------------------------- samplers
class _OrderSampler(DistributedSampler):
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

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
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


class _ChunkSampler(Sampler):
    """Consecutive ``slice`` s of ``range(n)`` (pool loaders: no per-row Python)."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size = n, batch_size

    def __iter__(self) -> Iterator[slice]:
        return (slice(i, min(i + self.batch_size, self.n)) for i in range(0, self.n, self.batch_size))

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)


# ---------------------------------------------------------------------------- loader datasets
def _identity(batch: Any) -> Any:
    return batch


class _TrainBatches(Dataset):
    """Fast path: ``dataset[positions]`` is a whole training batch."""

    def __init__(self, inputs: Tensor, rows: Tensor, targets: Tensor, batch_fn: Callable[[Any, Tensor], Any]):
        self.inputs, self.rows, self.targets, self.batch_fn = inputs, rows, targets, batch_fn

    def __len__(self) -> int:
        return self.rows.numel()

    def __getitem__(self, pos: Tensor) -> Any:
        return self.batch_fn(self.inputs.index_select(0, self.rows[pos]), self.targets[pos])


class _TrainItems(Dataset):
    """Generic path: item ``i`` is ``(input_fn(dataset[ids[i]]), i)``; targets are added at collate."""

    def __init__(self, dataset: Any, ids: Tensor, input_fn: Callable[[Any], Any]):
        self.dataset, self.ids, self.input_fn = dataset, ids.tolist(), input_fn

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.input_fn(self.dataset[self.ids[i]]), i


class _BuildBatch:
    """Collate ``(input, position)`` items into ``batch_fn(default_collate(inputs), targets[positions])``."""

    def __init__(self, targets: Tensor, batch_fn: Callable[[Any, Tensor], Any]):
        self.targets, self.batch_fn = targets, batch_fn

    def __call__(self, items: list[tuple[Any, int]]) -> Any:
        x = default_collate([it[0] for it in items])
        pos = torch.tensor([it[1] for it in items], dtype=torch.int64)
        return self.batch_fn(x, self.targets[pos])


class _PoolBatches(Dataset):
    """Fast path: ``dataset[slice]`` is ``(inputs, example_ids)`` of consecutive pool rows."""

    def __init__(self, inputs: Tensor, rows: Tensor, ids: Tensor):
        self.inputs, self.rows, self.ids = inputs, rows, ids

    def __len__(self) -> int:
        return self.ids.numel()

    def __getitem__(self, s: slice) -> tuple[Tensor, Tensor]:
        return self.inputs.index_select(0, self.rows[s]), self.ids[s]


class _PoolItems(Dataset):
    """Generic path: item ``i`` is ``(input_fn(dataset[ids[i]]), ids[i])``."""

    def __init__(self, dataset: Any, ids: Tensor, input_fn: Callable[[Any], Any]):
        self.dataset, self.ids, self.input_fn = dataset, ids.tolist(), input_fn

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        example_id = self.ids[i]
        return self.input_fn(self.dataset[example_id]), example_id


@dataclass(frozen=True)
class _TensorSource:
    inputs: Tensor  # model inputs of the *base* tensors
    index: Tensor | None  # dataset position -> row of ``inputs`` (Subset), None = identity


def _tensor_source(dataset: Any) -> _TensorSource | None:
    if isinstance(dataset, Subset):
        inner = _tensor_source(dataset.dataset)
        if inner is None:
            return None
        index = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
        if inner.index is not None:
            index = inner.index[index]
        return _TensorSource(inner.inputs, index)
    tensors = getattr(dataset, "tensors", None)
    if isinstance(tensors, (tuple, list)) and tensors and all(isinstance(t, Tensor) for t in tensors):
        return _TensorSource(tensors[0], None)
    return None


def _mix_seed(seed: int, count: int) -> int:
    return (int(seed) * 1_000_003 + int(count) * 7_919) % (2**62)


def _vote_fractions(labels: Tensor, num_classes: int) -> Tensor:
    """``(n, K)`` float64 share of each example's annotators that chose class k."""
    present = ~torch.isnan(labels)
    idx = torch.where(present, labels, torch.zeros((), dtype=labels.dtype)).to(torch.int64)
    counts = torch.zeros(labels.shape[0], num_classes, dtype=torch.float64)
    counts.scatter_add_(1, idx, present.to(torch.float64))
    return counts / counts.sum(1, keepdim=True).clamp_min(1.0)


# ---------------------------------------------------------------------------- the datamodule
class ActiveDataModule(pl.LightningDataModule):
    """A ``LightningDataModule`` over a growing labeled set, trained on consensus labels.

    Args:
        dataset: Any map-style dataset of ``N`` examples (tensors, images, text...); example id ``i``
            is ``dataset[i]``. Its own labels, if any, are ignored: targets come from the store.
        store: The :class:`AnnotationStore` (``store.num_examples == len(dataset)``).
        val_dataset: Optional validation dataset, served as is (items collated by ``default_collate``)
            by ``val_dataloader()``; without it the datamodule has no ``val_dataloader`` hook.
        test_dataset: Optional test dataset, served as is by ``test_dataloader()``.
        batch_size: Training (and val/test) batch size.
        inference_batch_size: Batch size of the pool loaders (acquisition inference).
        num_workers: ``DataLoader`` workers (0 is fastest for in-memory tensors).
        soft_targets: Train on the CROWDLAB posterior ``(B, K)`` float32 instead of the hard consensus
            ``(B,)`` int64 (before any model: the annotators' vote shares).
        input_fn: ``input_fn(item) -> x``, the model input of one dataset item (default
            :func:`default_input_fn`). Giving one turns off the tensor fast path.
        batch_fn: ``batch_fn(x, y) -> batch``, the training batch your ``training_step`` expects,
            e.g. ``lambda x, y: {"x": x, "y": y}`` (default ``(x, y)``).
        initial_labeled: Cold start, which examples start labeled: an int ``n`` (a seeded random
            draw of ``n`` examples among those ``initial_labels`` can label) or a sequence of ids.
            Default: every example ``initial_labels`` labels.
        initial_labels: Cold-start labels, written to the store (``source="initial"``) once; a
            re-run writes nothing new (exact repeats are no-ops). One of: a sequence of
            :class:`Annotation`; an ``(N,)`` label vector (one annotator) or ``(N, M)`` label matrix
            (NaN, or -1 in an integer matrix, for missing; a pandas DataFrame names the annotators by
            its columns) whose row i is example i; or an oracle
            (anything with ``request(requests) -> OracleResponse``), asked once per drawn example
            with round ``-1``. Default None: the labeled set is whatever the store holds.
        initial_annotator_ids: Annotator ids of the columns of an ``initial_labels`` matrix
            (default ``"initial"`` for a vector, ``"initial-<j>"`` for a matrix).
        true_labels: ``(N,)`` ground truth, if known (simulations), for :meth:`consensus_accuracy`.
        consensus_method: CROWDLAB's ``"best_quality"`` (default) or ``"majority_vote"``.
        seed: Seeds the cold-start draw, the shuffling and the random majority-vote tie-breaks.
        shuffle: Shuffle the training batches (seeded, a new order each epoch).
        drop_last: Drop the last, incomplete training batch.
        pin_memory: Pin the loaders' batches (faster host-to-GPU copies).

    Attributes:
        store: The annotation store.
        last_crowdlab: The :class:`CrowdlabResult` of the last refresh that ran CROWDLAB (model and
            annotator weights for reporting), else None.
        last_annotators: Annotator ids of ``last_crowdlab.annotator_weight``.

    Raises:
        ValueError: ``store.num_examples != len(dataset)``, bad cold-start arguments, bad sizes.
        TypeError: ``store`` is not an ``AnnotationStore``-like object.

    Example::

        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> from activelab_lightning.store import AnnotationStore
        >>> y = torch.tensor([0, 1, 1, 0, 1, 0])
        >>> store = AnnotationStore(num_examples=6, class_names=["neg", "pos"])
        >>> dm = ActiveDataModule(TensorDataset(torch.randn(6, 4)), store, batch_size=4,
        ...                       initial_labeled=4, initial_labels=y, true_labels=y)
        >>> len(dm.labeled_ids), len(dm.unlabeled_ids), dm.consensus_accuracy()
        (4, 2, 1.0)
        >>> xb, yb = next(iter(dm.train_dataloader()))
        >>> xb.shape, yb.dtype
        (torch.Size([4, 4]), torch.int64)
    """

    def __init__(
        self,
        dataset: Any,
        store: AnnotationStore,
        *,
        val_dataset: Any = None,
        test_dataset: Any = None,
        batch_size: int = 64,
        inference_batch_size: int = 4096,
        num_workers: int = 0,
        soft_targets: bool = False,
        input_fn: Callable[[Any], Any] | None = None,
        batch_fn: Callable[[Any, Tensor], Any] | None = None,
        initial_labeled: int | Sequence[int] | Tensor | None = None,
        initial_labels: Any = None,
        initial_annotator_ids: Sequence[str] | None = None,
        true_labels: Any = None,
        consensus_method: Literal["best_quality", "majority_vote"] = "best_quality",
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        for name in ("label_matrix", "labeled_ids", "unlabeled_ids", "add_annotations", "num_examples"):
            if not hasattr(store, name):
                raise TypeError(
                    f"store must be an AnnotationStore, got {type(store).__name__} (no {name!r}); create one with "
                    "AnnotationStore(path, num_examples=len(dataset), class_names=[...])."
                )
        n = len(dataset)
        if store.num_examples != n:
            raise ValueError(
                f"store.num_examples={store.num_examples} but len(dataset)={n}; the store must describe this "
                "dataset (example id i is dataset[i])."
            )
        for name, value in (("batch_size", batch_size), ("inference_batch_size", inference_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}.")
        if consensus_method not in ("best_quality", "majority_vote"):
            raise ValueError(
                f"consensus_method must be 'best_quality' or 'majority_vote', got {consensus_method!r}."
            )
        if input_fn is not None and not callable(input_fn):
            raise TypeError(f"input_fn must be a callable item -> x, got {input_fn!r}.")
        if batch_fn is not None and not callable(batch_fn):
            raise TypeError(f"batch_fn must be a callable (x, y) -> batch, got {batch_fn!r}.")

        self.dataset = dataset
        self.store = store
        self.val_dataset = val_dataset
        self.test_dataset = test_dataset
        self.batch_size = batch_size
        self.inference_batch_size = inference_batch_size
        self.num_workers = num_workers
        self.soft_targets = bool(soft_targets)
        self.input_fn = input_fn if input_fn is not None else default_input_fn
        self.batch_fn = batch_fn if batch_fn is not None else default_batch_fn
        self.consensus_method = consensus_method
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.pin_memory = bool(pin_memory)
        self.true_labels = self._check_true_labels(true_labels, n)
        # Only a datamodule with a val / test dataset overrides the hooks, so Lightning runs no empty loop.
        if val_dataset is not None:
            self.val_dataloader = self._val_loader  # type: ignore[method-assign]
        if test_dataset is not None:
            self.test_dataloader = self._test_loader  # type: ignore[method-assign]
        self._source = _tensor_source(dataset) if input_fn is None else None

        self.last_crowdlab: CrowdlabResult | None = None
        self.last_annotators: list[str] = []
        self._refresh_count = 0
        self._store_len = -1
        self._labeled = torch.zeros(0, dtype=torch.int64)
        self._unlabeled = torch.arange(n, dtype=torch.int64)
        self._consensus = torch.zeros(0, dtype=torch.int64)
        self._posterior = torch.zeros(0, self.num_classes, dtype=torch.float32)
        self._pred_ids: Tensor | None = None
        self._pred_probs: Tensor | None = None

        initial = self._initial_annotations(initial_labeled, initial_labels, initial_annotator_ids)
        if initial:
            store.add_annotations(initial)
        self._recompute(None, None)

    # ------------------------------------------------------------------ basic views
    @property
    def num_examples(self) -> int:
        """``N``, the size of the base dataset."""
        return int(self.store.num_examples)

    @property
    def num_classes(self) -> int:
        """``K``, the number of classes of the store."""
        return int(self.store.num_classes)

    @property
    def labeled_ids(self) -> Tensor:
        """Sorted ``(n_labeled,)`` int64 ids of the examples with at least one label (as of the last refresh)."""
        return self._labeled

    @property
    def unlabeled_ids(self) -> Tensor:
        """Sorted ``(n_unlabeled,)`` int64 ids of the examples without a label (as of the last refresh)."""
        return self._unlabeled

    @property
    def consensus_labels(self) -> Tensor:
        """``(n_labeled,)`` int64 consensus class of each labeled example, aligned with :attr:`labeled_ids`."""
        return self._consensus

    @property
    def soft_labels(self) -> Tensor:
        """``(n_labeled, K)`` float32 soft consensus (CROWDLAB posterior, or vote shares), aligned with :attr:`labeled_ids`."""
        return self._posterior

    @property
    def targets(self) -> Tensor:
        """The training targets: :attr:`soft_labels` if ``soft_targets`` else :attr:`consensus_labels`."""
        return self._posterior if self.soft_targets else self._consensus

    @property
    def uses_fast_path(self) -> bool:
        """True when the loaders gather whole batches from the dataset's tensors."""
        return self._source is not None

    def label_matrix(self) -> tuple[Tensor, list[str]]:
        """``(n_labeled, M)`` float64 label matrix (NaN = missing) of :attr:`labeled_ids`, and the annotator ids."""
        return self.store.label_matrix(self._labeled)

    def consensus_accuracy(self) -> float | None:
        """Accuracy of :attr:`consensus_labels` against ``true_labels`` (None without ``true_labels``
        or labels)."""
        if self.true_labels is None or self._labeled.numel() == 0:
            return None
        return float((self._consensus == self.true_labels[self._labeled]).to(torch.float64).mean())

    # ------------------------------------------------------------------ argument checks
    @staticmethod
    def _check_true_labels(true_labels: Any, n: int) -> Tensor | None:
        if true_labels is None:
            return None
        t = torch.as_tensor(true_labels)
        if t.is_floating_point() or t.dtype == torch.bool or t.shape != (n,):
            raise ValueError(
                f"true_labels must be an (N,) = ({n},) integer class vector, got dtype {t.dtype}, shape "
                f"{tuple(t.shape)}."
            )
        return t.to(torch.int64).cpu()

    def _as_ids(self, example_ids: Any, name: str) -> Tensor:
        ids = torch.as_tensor(example_ids)
        if ids.is_floating_point() or ids.dtype == torch.bool or ids.ndim != 1:
            raise ValueError(
                f"{name} must be a 1-D sequence of integer example ids, got dtype {ids.dtype}, shape "
                f"{tuple(ids.shape)}."
            )
        ids = ids.to(torch.int64).cpu()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_examples):
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise ValueError(f"{name} contains {bad}, outside 0..{self.num_examples - 1}.")
        return ids

    # ------------------------------------------------------------------ cold start
    def _draw(self, initial_labeled: Any, candidates: Tensor) -> Tensor:
        """The cold-start ids: a seeded draw of ``n`` among ``candidates``, or the given ids."""
        if isinstance(initial_labeled, numbers.Integral) and not isinstance(initial_labeled, bool):
            n = int(initial_labeled)
            if not 0 < n <= candidates.numel():
                raise ValueError(
                    f"initial_labeled={n} must be between 1 and the {candidates.numel()} examples that "
                    "initial_labels can label."
                )
            g = torch.Generator()
            g.manual_seed(self.seed)
            return candidates[torch.randperm(candidates.numel(), generator=g)[:n]].sort().values
        ids = self._as_ids(initial_labeled, "initial_labeled")
        missing = ids[~torch.isin(ids, candidates)]
        if missing.numel():
            raise ValueError(
                f"initial_labeled contains ids {missing[:5].tolist()} that initial_labels has no label for."
            )
        return ids

    def _initial_annotations(
        self, initial_labeled: Any, initial_labels: Any, annotator_ids: Sequence[str] | None
    ) -> list[Annotation]:
        if initial_labels is None:
            if initial_labeled is not None:
                raise ValueError(
                    f"initial_labeled={initial_labeled!r} needs initial_labels: an (N,) / (N, M) label array, a "
                    "sequence of Annotation, or an oracle that labels the drawn examples."
                )
            return []
        if callable(getattr(initial_labels, "request", None)):
            return self._ask_oracle(initial_labeled, initial_labels)
        if (
            isinstance(initial_labels, (list, tuple))
            and initial_labels
            and isinstance(initial_labels[0], Annotation)
        ):
            anns = list(initial_labels)
            bad = [a for a in anns if not isinstance(a, Annotation)]
            if bad:
                raise TypeError(f"initial_labels mixes Annotation with {type(bad[0]).__name__}: {bad[0]!r}.")
            if initial_labeled is None:
                return anns
            have = self._as_ids(
                torch.tensor(sorted({a.example_id for a in anns})), "initial_labels example ids"
            )
            keep = set(self._draw(initial_labeled, have).tolist())
            return [a for a in anns if a.example_id in keep]
        return self._from_array(initial_labeled, initial_labels, annotator_ids)

    def _from_array(
        self, initial_labeled: Any, labels: Any, annotator_ids: Sequence[str] | None
    ) -> list[Annotation]:
        # a pandas DataFrame (as cleanlab takes): its columns name the annotators
        if hasattr(labels, "to_numpy") and hasattr(labels, "columns"):
            if annotator_ids is None:
                annotator_ids = [str(c) for c in labels.columns]
            labels = labels.to_numpy(dtype="float64")
        t = torch.as_tensor(labels)
        vector = t.ndim == 1
        if vector:
            t = t[:, None]
        if t.ndim != 2 or t.shape[0] != self.num_examples:
            raise ValueError(
                f"initial_labels must be an (N,) vector or (N, M) matrix with N = {self.num_examples} rows (row i "
                f"is example i), a sequence of Annotation, or an oracle; got shape {tuple(torch.as_tensor(labels).shape)}."
            )
        present = ~torch.isnan(t) if t.is_floating_point() else t >= 0
        if t.is_floating_point():
            vals = t[present]
            if bool((vals != vals.floor()).any()):
                raise ValueError("initial_labels must hold integer class indices (NaN for missing).")
        t = torch.where(present, t, torch.zeros((), dtype=t.dtype)).to(torch.int64)
        if annotator_ids is None:
            names = ["initial"] if vector else [f"initial-{j}" for j in range(t.shape[1])]
        else:
            names = [str(a) for a in annotator_ids]
            if len(names) != t.shape[1] or len(set(names)) != len(names):
                raise ValueError(
                    f"initial_annotator_ids must give {t.shape[1]} distinct ids (one per column of initial_labels), "
                    f"got {list(annotator_ids)!r}."
                )
        candidates = torch.nonzero(present.any(1)).reshape(-1)
        ids = candidates if initial_labeled is None else self._draw(initial_labeled, candidates)
        rows, cols = torch.nonzero(present[ids], as_tuple=True)
        ex = ids[rows]
        return [
            Annotation(example_id=e, annotator_id=names[c], label=lab, round=None, source="initial")
            for e, c, lab in zip(ex.tolist(), cols.tolist(), t[ex, cols].tolist())
        ]

    def _ask_oracle(self, initial_labeled: Any, oracle: Any) -> list[Annotation]:
        if initial_labeled is None:
            raise ValueError(
                "initial_labels is an oracle: pass initial_labeled=n (a seeded random draw) or the ids to label."
            )
        ids = self._draw(initial_labeled, torch.arange(self.num_examples))
        have = self.store.label_counts()[ids] > 0  # a re-run does not ask again
        requests = [
            LabelRequest(example_id=i, score=float("nan"), kind="new", round=INITIAL_ROUND)
            for i in ids[~have].tolist()
        ]
        if not requests:
            return []
        response = oracle.request(requests)
        if response.pending:
            answered = [self._as_initial(a) for a in response.annotations]
            if answered:
                self.store.add_annotations(answered)
            raise WaitingForLabels(
                INITIAL_ROUND, len(response.pending), str(getattr(oracle, "where", "") or "")
            )
        return [self._as_initial(a) for a in response.annotations]

    @staticmethod
    def _as_initial(a: Annotation) -> Annotation:
        return Annotation(
            example_id=a.example_id, annotator_id=a.annotator_id, label=a.label, round=None, source="initial"
        )

    # ------------------------------------------------------------------ consensus
    def refresh(self, pred_probs_labeled: Any = None, *, example_ids: Any = None) -> None:
        """Re-read the store and recompute the consensus targets of the labeled examples.

        With probabilities, the consensus is CROWDLAB's (``consensus_method``) for every labeled
        example that has a row, and the majority vote for the others (e.g. examples labeled after
        the prediction); without, the majority vote (ties broken by seeded draws). CROWDLAB needs
        one example with >= 2 labels; until then the (single) labels are the consensus.

        Args:
            pred_probs_labeled: ``(n, K)`` out-of-sample probabilities, or None. Without
                ``example_ids`` its rows are the labeled ids **after** re-reading the store if
                ``n`` matches their number, else the labeled ids before the refresh
                (:attr:`labeled_ids` as it was).
            example_ids: ``(n,)`` ids of the rows of ``pred_probs_labeled``; may include unlabeled
                examples (ignored) and miss labeled ones (majority vote).

        Raises:
            ValueError: A shape that matches neither alignment, ``K != num_classes``, rows that are
                not probabilities, ``example_ids`` without probabilities.

        Example::

            >>> dm.refresh(collected_probs, example_ids=collected_ids)  # doctest: +SKIP
            >>> dm.last_crowdlab.model_weight  # doctest: +SKIP
        """
        if pred_probs_labeled is None:
            if example_ids is not None:
                raise ValueError("example_ids was given without pred_probs_labeled; pass both or neither.")
            self._recompute(None, None)
            return
        probs = torch.as_tensor(pred_probs_labeled)
        if probs.ndim != 2 or probs.shape[1] != self.num_classes or not probs.is_floating_point():
            raise ValueError(
                f"pred_probs_labeled must be an (n, K) float array with K = {self.num_classes} classes, got "
                f"dtype {probs.dtype}, shape {tuple(probs.shape)}."
            )
        probs = probs.detach().to(device="cpu", dtype=torch.float64)
        if probs.numel() and (float(probs.min()) < -1e-6 or float((probs.sum(1) - 1).abs().max()) > 1e-3):
            raise ValueError(
                "pred_probs_labeled rows must be probabilities (non-negative, summing to 1); got "
                f"min {float(probs.min()):.4g}, row sums {probs.sum(1)[:3].tolist()}...; apply softmax to logits."
            )
        if example_ids is not None:
            ids = self._as_ids(example_ids, "example_ids")
            if ids.numel() != probs.shape[0]:
                raise ValueError(
                    f"example_ids has {ids.numel()} ids but pred_probs_labeled has {probs.shape[0]} rows."
                )
            if torch.unique(ids).numel() != ids.numel():
                raise ValueError("example_ids must be distinct: one row of pred_probs_labeled per example.")
        else:
            after = self.store.labeled_ids()
            if probs.shape[0] == after.numel():
                ids = after
            elif probs.shape[0] == self._labeled.numel():
                ids = self._labeled
            else:
                raise ValueError(
                    f"pred_probs_labeled has {probs.shape[0]} rows but there are {after.numel()} labeled examples "
                    f"now ({self._labeled.numel()} before this refresh); pass example_ids= to say which examples "
                    "the rows belong to."
                )
        self._recompute(probs, ids)

    def _recompute(self, probs: Tensor | None, pred_ids: Tensor | None) -> None:
        store = self.store
        labeled = store.labeled_ids().to(torch.int64).cpu()
        unlabeled = store.unlabeled_ids().to(torch.int64).cpu()
        self._store_len = len(store)
        self._refresh_count += 1
        k = self.num_classes
        gen = torch.Generator()
        gen.manual_seed(_mix_seed(self.seed, self._refresh_count))
        result: CrowdlabResult | None = None
        annotators: list[str] = []
        kept_ids: Tensor | None = None
        kept_probs: Tensor | None = None
        if labeled.numel() == 0:
            consensus = torch.zeros(0, dtype=torch.int64)
            soft = torch.zeros(0, k, dtype=torch.float64)
        else:
            labels, annotators = store.label_matrix(labeled)
            consensus = majority_vote(labels, num_classes=k, generator=gen).to(torch.int64).cpu()
            soft = _vote_fractions(labels, k)
            if probs is not None and pred_ids is not None:
                row_of = torch.full((self.num_examples,), -1, dtype=torch.int64)
                row_of[pred_ids] = torch.arange(pred_ids.numel())
                rows = row_of[labeled]
                known = rows >= 0
                if bool(known.any()):
                    sub, sub_probs = labels[known], probs[rows[known]]
                    kept_ids, kept_probs = labeled[known], sub_probs
                    if bool(((~torch.isnan(sub)).sum(1) >= 2).any()):
                        result = crowdlab(
                            sub, sub_probs, consensus_method=self.consensus_method, generator=gen
                        )
                        consensus[known] = result.consensus_label.to(torch.int64).cpu()
                        soft[known] = result.posterior.to(torch.float64).cpu()
                    else:  # every row has one label: that label is the consensus
                        consensus[known] = majority_vote(sub, sub_probs, generator=gen).to(torch.int64).cpu()
        self._labeled, self._unlabeled = labeled, unlabeled
        self._consensus, self._posterior = consensus, soft.to(torch.float32)
        self._pred_ids, self._pred_probs = kept_ids, kept_probs
        self.last_crowdlab = result
        self.last_annotators = list(annotators) if result is not None else []

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        """Cheap, safe on every rank: re-derives the labeled set if the store changed since the last
        refresh (keeping the last probabilities for the examples they cover)."""
        if len(self.store) != self._store_len:
            self._recompute(self._pred_probs, self._pred_ids)

    def _world(self) -> tuple[int, int, bool]:
        """``(world_size, rank, follow_process_group)`` for the train sampler."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank), False
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank(), True
        return 1, 0, True

    def train_dataloader(self) -> DataLoader:
        """Labeled examples with their consensus targets, ``batch_fn(x, y)`` per batch.

        Built from the current labeled ids on every call (continuous mode:
        ``Trainer(reload_dataloaders_every_n_epochs=1)``). Under DDP each rank gets its own
        padded shard of a shared seeded order.

        Raises:
            ActiveLabError: No example is labeled yet.
        """
        return self.labeled_subset_dataloader(None)

    def labeled_subset_dataloader(self, positions: Any = None, *, shuffle: bool | None = None) -> DataLoader:
        """:meth:`train_dataloader` restricted to some labeled examples (e.g. one cross-validation fold).

        Args:
            positions: ``(m,)`` positions into :attr:`labeled_ids` (not example ids), or a
                ``(n_labeled,)`` bool mask; None = all labeled examples.
            shuffle: Default: the datamodule's ``shuffle``.

        Returns:
            A loader of ``batch_fn(x, y)`` batches of those examples and their consensus targets.

        Raises:
            ActiveLabError: No example selected (nothing labeled yet, or empty ``positions``).

        Example::

            >>> fold = dm.labeled_subset_dataloader(folds != k)  # doctest: +SKIP
        """
        ids, targets = self._labeled, self.targets
        if positions is not None:
            pos = torch.as_tensor(positions)
            if pos.dtype == torch.bool:
                if pos.shape != ids.shape:
                    raise ValueError(
                        f"a bool positions mask must have shape {tuple(ids.shape)}, got {tuple(pos.shape)}."
                    )
                pos = torch.nonzero(pos).reshape(-1)
            if pos.is_floating_point() or pos.ndim != 1:
                raise ValueError(
                    f"positions must be 1-D integer positions into labeled_ids, got {pos.dtype}, {tuple(pos.shape)}."
                )
            pos = pos.to(torch.int64).cpu()
            if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= ids.numel()):
                raise ValueError(
                    f"positions must lie in 0..{ids.numel() - 1} (positions into labeled_ids, not example ids)."
                )
            ids, targets = ids[pos], targets[pos]
        if ids.numel() == 0:
            raise ActiveLabError(
                "no labeled examples to train on: give ActiveDataModule initial_labels= (and initial_labeled=), "
                "or add annotations to the store and call refresh()."
            )
        world, rank, follow = self._world()
        seed = _mix_seed(self.seed, self._refresh_count)
        shuffle = self.shuffle if shuffle is None else bool(shuffle)
        common: dict[str, Any] = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self._source is not None:
            rows = ids if self._source.index is None else self._source.index[ids]
            data = _TrainBatches(self._source.inputs, rows, targets, self.batch_fn)
            sampler = _OrderSampler(
                data,
                num_replicas=world,
                rank=rank,
                shuffle=shuffle,
                seed=seed,
                batch_size=self.batch_size,
                drop_last_batch=self.drop_last,
                follow_process_group=follow,
            )
            return DataLoader(data, batch_size=None, sampler=sampler, collate_fn=_identity, **common)
        items = _TrainItems(self.dataset, ids, self.input_fn)
        sampler = _OrderSampler(
            items, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, follow_process_group=follow
        )
        return DataLoader(
            items,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=self.drop_last,
            collate_fn=_BuildBatch(targets, self.batch_fn),
            **common,
        )

    def _val_loader(self) -> DataLoader:
        return self._plain_loader(self.val_dataset)

    def _test_loader(self) -> DataLoader:
        return self._plain_loader(self.test_dataset)

    def _plain_loader(self, dataset: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    # ------------------------------------------------------------------ pool loaders
    def pool_dataloader(self, example_ids: Any, batch_size: int | None = None) -> DataLoader:
        """A loader over ``example_ids``, in that order, yielding ``(x, example_ids)`` batches.

        Args:
            example_ids: ``(n,)`` ids (positions in the base dataset).
            batch_size: Default ``inference_batch_size``.

        Returns:
            A ``DataLoader`` whose batches are ``(x (B, ...), example_ids (B,) int64)``.

        Example::

            >>> for x, ids in dm.pool_dataloader(dm.unlabeled_ids):  # doctest: +SKIP
            ...     ...
        """
        ids = self._as_ids(example_ids, "example_ids")
        bs = self.inference_batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        common: dict[str, Any] = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self._source is not None:
            rows = ids if self._source.index is None else self._source.index[ids]
            data = _PoolBatches(self._source.inputs, rows, ids)
            return DataLoader(
                data, batch_size=None, sampler=_ChunkSampler(ids.numel(), bs), collate_fn=_identity, **common
            )
        return DataLoader(
            _PoolItems(self.dataset, ids, self.input_fn), batch_size=bs, shuffle=False, **common
        )

    def labeled_pool_dataloader(self, batch_size: int | None = None) -> DataLoader:
        """:meth:`pool_dataloader` over :attr:`labeled_ids`."""
        return self.pool_dataloader(self._labeled, batch_size)

    def unlabeled_pool_dataloader(self, batch_size: int | None = None) -> DataLoader:
        """:meth:`pool_dataloader` over :attr:`unlabeled_ids`."""
        return self.pool_dataloader(self._unlabeled, batch_size)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """What the store does not hold: the labeled snapshot, its targets, the probabilities of the
        last refresh and the counters that seed shuffling (tensors, ints and None only, so
        ``torch.load(weights_only=True)`` reads it)."""
        return {
            "format": _STATE_FORMAT,
            "num_examples": self.num_examples,
            "num_classes": self.num_classes,
            "seed": self.seed,
            "refresh_count": self._refresh_count,
            "store_len": self._store_len,
            "labeled_ids": self._labeled.clone(),
            "consensus_labels": self._consensus.clone(),
            "soft_labels": self._posterior.clone(),
            "pred_ids": None if self._pred_ids is None else self._pred_ids.clone(),
            "pred_probs": None if self._pred_probs is None else self._pred_probs.clone(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: the next ``train_dataloader()`` serves exactly what it did.

        Raises:
            ValueError: The state belongs to another dataset size / class count or format.
        """
        fmt = state_dict.get("format")
        if fmt != _STATE_FORMAT:
            raise ValueError(f"unknown ActiveDataModule state format {fmt!r} (expected {_STATE_FORMAT}).")
        for key, mine in (("num_examples", self.num_examples), ("num_classes", self.num_classes)):
            if int(state_dict[key]) != mine:
                raise ValueError(f"state_dict has {key}={state_dict[key]} but this datamodule has {mine}.")
        labeled = torch.as_tensor(state_dict["labeled_ids"], dtype=torch.int64)
        consensus = torch.as_tensor(state_dict["consensus_labels"], dtype=torch.int64)
        soft = torch.as_tensor(state_dict["soft_labels"], dtype=torch.float32)
        if consensus.shape != labeled.shape or soft.shape != (labeled.numel(), self.num_classes):
            raise ValueError(
                f"inconsistent state_dict: {labeled.numel()} labeled ids, consensus shape {tuple(consensus.shape)}, "
                f"soft labels shape {tuple(soft.shape)}."
            )
        mask = torch.ones(self.num_examples, dtype=torch.bool)
        mask[labeled] = False
        self.seed = int(state_dict["seed"])
        self._refresh_count = int(state_dict["refresh_count"])
        self._store_len = int(state_dict["store_len"])
        self._labeled, self._unlabeled = labeled, torch.nonzero(mask).reshape(-1)
        self._consensus, self._posterior = consensus, soft
        pred_ids, pred_probs = state_dict.get("pred_ids"), state_dict.get("pred_probs")
        self._pred_ids = None if pred_ids is None else torch.as_tensor(pred_ids, dtype=torch.int64)
        self._pred_probs = None if pred_probs is None else torch.as_tensor(pred_probs, dtype=torch.float64)
        self.last_crowdlab, self.last_annotators = None, []
