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

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from activelab_lightning.data._checks import (
    IdsLike,
    ProbsLike,
    as_example_ids,
    as_labeled_positions,
    as_pred_probs,
    check_pred_ids,
    check_settings,
    check_state,
    check_true_labels,
    infer_pred_ids,
)
from activelab_lightning.data.cold_start import (
    INITIAL_ROUND,
    InitialLabeled,
    InitialLabels,
    initial_annotations,
)
from activelab_lightning.data.consensus import compute_consensus
from activelab_lightning.data.loaders import (
    default_batch_fn,
    default_input_fn,
    plain_loader,
    pool_loader,
    sampler_world,
    train_loader,
)
from activelab_lightning.data.samplers import BatchFn, InputFn, MapDataset, mix_seed, tensor_source
from activelab_lightning.metrics import accuracy
from activelab_lightning.scoring.crowdlab import ConsensusMethod, CrowdlabResult
from activelab_lightning.store import AnnotationStore

__all__ = ["INITIAL_ROUND", "ActiveDataModule", "default_batch_fn", "default_input_fn"]

_STATE_FORMAT = 1


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
        dataset: MapDataset,
        store: AnnotationStore,
        *,
        val_dataset: Dataset[Any] | None = None,
        test_dataset: Dataset[Any] | None = None,
        batch_size: int = 64,
        inference_batch_size: int = 4096,
        num_workers: int = 0,
        soft_targets: bool = False,
        input_fn: InputFn | None = None,
        batch_fn: BatchFn | None = None,
        initial_labeled: InitialLabeled | None = None,
        initial_labels: InitialLabels | None = None,
        initial_annotator_ids: Sequence[str] | None = None,
        true_labels: IdsLike | None = None,
        consensus_method: ConsensusMethod = "best_quality",
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        n = len(dataset)
        check_settings(
            store,
            n,
            batch_size=batch_size,
            inference_batch_size=inference_batch_size,
            num_workers=num_workers,
            consensus_method=consensus_method,
            input_fn=input_fn,
            batch_fn=batch_fn,
        )
        self.dataset = dataset
        self.store = store
        self.val_dataset = val_dataset
        self.test_dataset = test_dataset
        self.batch_size = batch_size
        self.inference_batch_size = inference_batch_size
        self.num_workers = num_workers
        self.soft_targets = bool(soft_targets)
        self.input_fn: InputFn = input_fn if input_fn is not None else default_input_fn
        self.batch_fn: BatchFn = batch_fn if batch_fn is not None else default_batch_fn
        self.consensus_method: ConsensusMethod = consensus_method
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.pin_memory = bool(pin_memory)
        self.true_labels = check_true_labels(true_labels, n)
        # Only a datamodule with a val / test dataset overrides the hooks, so Lightning runs no empty loop.
        if val_dataset is not None:
            self.val_dataloader = self._val_loader  # type: ignore[method-assign]
        if test_dataset is not None:
            self.test_dataloader = self._test_loader  # type: ignore[method-assign]
        self._source = tensor_source(dataset) if input_fn is None else None

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

        initial = initial_annotations(
            store, initial_labeled, initial_labels, initial_annotator_ids, seed=self.seed
        )
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
        return accuracy(self._consensus, self.true_labels[self._labeled], num_classes=self.num_classes)

    # ------------------------------------------------------------------ consensus
    def refresh(
        self, pred_probs_labeled: ProbsLike | None = None, *, example_ids: IdsLike | None = None
    ) -> None:
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
        probs = as_pred_probs(pred_probs_labeled, self.num_classes)
        if example_ids is not None:
            ids = check_pred_ids(example_ids, probs.shape[0], self.num_examples)
        else:
            ids = infer_pred_ids(
                probs.shape[0], labeled_now=self.store.labeled_ids(), labeled_before=self._labeled
            )
        self._recompute(probs, ids)

    def _recompute(self, probs: Tensor | None, pred_ids: Tensor | None) -> None:
        """Re-read the store and recompute the consensus, with ``(p, K)`` ``probs`` of ``(p,)`` ``pred_ids``."""
        store = self.store
        labeled = store.labeled_ids().to(torch.int64).cpu()
        unlabeled = store.unlabeled_ids().to(torch.int64).cpu()
        self._store_len = len(store)
        self._refresh_count += 1
        labels, annotators = (
            store.label_matrix(labeled) if labeled.numel() else (torch.zeros(0, 0, dtype=torch.float64), [])
        )
        result = compute_consensus(
            labeled,
            labels,
            annotators,
            num_classes=self.num_classes,
            pred_probs=probs,
            pred_ids=pred_ids,
            consensus_method=self.consensus_method,
            seed=mix_seed(self.seed, self._refresh_count),
        )
        self._labeled, self._unlabeled = labeled, unlabeled
        self._consensus, self._posterior = result.labels, result.soft_labels
        self._pred_ids, self._pred_probs = result.pred_ids, result.pred_probs
        self.last_crowdlab = result.crowdlab
        self.last_annotators = result.annotators

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        """Cheap, safe on every rank: re-derives the labeled set if the store changed since the last
        refresh (keeping the last probabilities for the examples they cover)."""
        if len(self.store) != self._store_len:
            self._recompute(self._pred_probs, self._pred_ids)

    def train_dataloader(self) -> DataLoader:
        """Labeled examples with their consensus targets, ``batch_fn(x, y)`` per batch.

        Built from the current labeled ids on every call (continuous mode:
        ``Trainer(reload_dataloaders_every_n_epochs=1)``). Under DDP each rank gets its own
        padded shard of a shared seeded order.

        Raises:
            ActiveLabError: No example is labeled yet.
        """
        return self.labeled_subset_dataloader(None)

    def labeled_subset_dataloader(
        self, positions: IdsLike | None = None, *, shuffle: bool | None = None
    ) -> DataLoader:
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
            pos = as_labeled_positions(positions, ids.numel())
            ids, targets = ids[pos], targets[pos]
        return train_loader(
            self.dataset,
            self._source,
            ids,
            targets,
            input_fn=self.input_fn,
            batch_fn=self.batch_fn,
            batch_size=self.batch_size,
            drop_last=self.drop_last,
            shuffle=self.shuffle if shuffle is None else bool(shuffle),
            seed=mix_seed(self.seed, self._refresh_count),
            world=sampler_world(getattr(self, "trainer", None)),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def _val_loader(self) -> DataLoader:
        return self._plain_loader(self.val_dataset)

    def _test_loader(self) -> DataLoader:
        return self._plain_loader(self.test_dataset)

    def _plain_loader(self, dataset: Dataset[Any] | None) -> DataLoader:
        assert dataset is not None  # the val / test hooks exist only with their dataset
        return plain_loader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, pin_memory=self.pin_memory
        )

    # ------------------------------------------------------------------ pool loaders
    def pool_dataloader(self, example_ids: IdsLike, batch_size: int | None = None) -> DataLoader:
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
        ids = as_example_ids(example_ids, "example_ids", self.num_examples)
        bs = self.inference_batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        return pool_loader(
            self.dataset,
            self._source,
            ids,
            bs,
            input_fn=self.input_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
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
        k, n = self.num_classes, self.num_examples
        state = check_state(state_dict, state_format=_STATE_FORMAT, num_examples=n, num_classes=k)
        self.seed = int(state_dict["seed"])
        self._refresh_count = int(state_dict["refresh_count"])
        self._store_len = int(state_dict["store_len"])
        self._labeled, self._unlabeled = state.labeled, state.unlabeled
        self._consensus, self._posterior = state.consensus, state.soft
        self._pred_ids, self._pred_probs = state.pred_ids, state.pred_probs
        self.last_crowdlab, self.last_annotators = None, []
