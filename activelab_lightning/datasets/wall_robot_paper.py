"""The ActiveLab paper's setup on the bundled Wall Robot data.

The paper's setup (Goh & Mueller 2023, ActiveLab, ``wall-robot`` benchmark), re-implemented with
torch generators (the rows picked differ from the paper's pandas/scikit-learn calls, the procedure
and its statistics are the same):

1. a class-stratified subset of 1,100 / 900 / 300 / 700 rows of classes 0-3 (3,000 rows);
2. a random split into 1,000 test rows and 2,000 training rows, and of the training rows into
   1,000 labeled and 1,000 unlabeled;
3. 30 simulated annotators sharing one noise matrix of trace ``0.85 * K`` (by default the very
   matrix the paper used, :data:`PAPER_NOISE_MATRIX`), each labeling every training row with exact
   flip counts
   (:mod:`activelab_lightning.datasets.noise`) — the pool of every label any annotator would give;
4. thinning of the labeled rows' labels: keep 5 random annotators per example, then, example by
   example, drop all but one of its labels, each with probability 0.97, but only while the
   annotator still labels another example that has more than 2 labels. Most examples end with
   one label (about 880-900 of 1,000).

The "completely labeled" variant labels all 2,000 training rows (trace ``0.80 * K``) and answers
new requests from a second, independent pool drawn with the same noise matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import TensorDataset

from activelab_lightning.datasets.noise import (
    class_prior_of,
    generate_noise_matrix_from_trace,
    generate_noisy_labels,
)
from activelab_lightning.datasets.wall_robot import load_wall_robot
from activelab_lightning.oracles.base import stable_uniform
from activelab_lightning.oracles.simulated import SimulatedOracle
from activelab_lightning.records import Annotation

__all__ = [
    "PAPER_CLASS_COUNTS",
    "PAPER_NOISE_MATRIX",
    "WallRobotSetup",
    "make_paper_setup",
    "thin_label_mask",
]

#: Rows per class in the paper's stratified subset.
PAPER_CLASS_COUNTS: tuple[int, ...] = (1100, 900, 300, 700)
#: The noise matrix ``T[given, true]`` of the paper's standard Wall Robot setup: what the paper's
#: generator call (trace ``0.85 * 4``, the paper's training class prior 0.3655 / 0.3075 / 0.094 /
#: 0.233, seed 123) returns, recorded from a reference run. Prior-weighted accuracy 0.833.
PAPER_NOISE_MATRIX: tuple[tuple[float, ...], ...] = (
    (0.9311616857195382, 0.16493388371143114, 0.01755011327347354, 0.06412341024669249),
    (0.013796020568755188, 0.7090606676974713, 0.0026401858632904805, 0.06417328372449452),
    (0.047207547417297505, 0.05309206880812941, 0.9731589769200486, 0.08508463636587096),
    (0.007834746294409138, 0.07291337978296808, 0.006650723943187377, 0.786618669662942),
)


def _generator(seed: int, stream: int) -> torch.Generator:
    """An independent generator per step, so changing one step never moves another's draws."""
    derived = int(stable_uniform(seed, 0x57A11, stream) * 2**53)
    return torch.Generator().manual_seed(derived)


def thin_label_mask(
    num_examples: int,
    num_annotators: int,
    *,
    keep_per_example: int = 5,
    drop_prob: float = 0.97,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Which labels of a complete ``(N, A)`` label matrix to keep (the paper's thinning).

    1. Keep ``keep_per_example`` random distinct annotators per example.
    2. For each example in turn with ``n >= 2`` labels, pick ``n - 1`` of its annotators at random;
       drop each with probability ``drop_prob`` if that annotator still labels another example
       that has more than 2 labels (so annotators keep overlapping with each other).

    Args:
        num_examples: N.
        num_annotators: A.
        keep_per_example: Labels kept per example in step 1 (at most A).
        drop_prob: Probability of dropping a candidate label in step 2.
        generator: Source of randomness.

    Returns:
        ``(N, A)`` bool mask, every row with at least one ``True``.

    Example::

        >>> mask = thin_label_mask(1000, 30, generator=torch.Generator().manual_seed(0))
        >>> int(mask.sum(1).min()) >= 1 and int(mask.sum(1).max()) <= 5
        True
    """
    if num_examples < 1 or num_annotators < 1:
        raise ValueError(
            f"num_examples and num_annotators must be >= 1, got {num_examples}, {num_annotators}"
        )
    if not 1 <= keep_per_example:
        raise ValueError(f"keep_per_example must be >= 1, got {keep_per_example}")
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    keep = min(int(keep_per_example), num_annotators)
    keys = torch.rand(num_examples, num_annotators, generator=g)
    chosen = keys.topk(keep, dim=1, largest=False).indices
    mask = np.zeros((num_examples, num_annotators), dtype=bool)
    np.put_along_axis(mask, chosen.numpy(), True, axis=1)
    order = torch.rand(num_examples, num_annotators, generator=g).numpy()
    coin = torch.rand(num_examples, num_annotators, generator=g).numpy()
    counts = mask.sum(1)
    # sequential by nature: each drop changes the counts the next decision looks at
    for ex in range(num_examples):
        if counts[ex] < 2:
            continue
        anns = np.flatnonzero(mask[ex])
        for a in anns[np.argsort(order[ex, anns], kind="stable")][:-1]:
            if coin[ex, a] >= drop_prob:
                continue
            others = mask[:, a].copy()
            others[ex] = False
            if others.any() and counts[others].max() > 2:
                mask[ex, a] = False
                counts[ex] -= 1
    return torch.from_numpy(mask)


@dataclass(frozen=True, eq=False)
class WallRobotSetup:
    """The paper's Wall Robot benchmark data, ready for an active-learning run.

    Example ids ``0 .. 1999`` are positions in :attr:`dataset` (the training rows);
    the test rows are separate.

    Attributes:
        dataset: ``TensorDataset(features, true_labels)`` over the 2,000 training rows.
        features: ``(2000, S)`` float32 training features (standardized if asked).
        true_labels: ``(2000,)`` int64 true classes of the training rows.
        labeled_ids: Ids with initial labels (1,000; all 2,000 when completely labeled).
        unlabeled_ids: Ids without labels (1,000; none when completely labeled).
        test_dataset: ``TensorDataset(test_features, test_labels)`` (1,000 rows).
        test_features: ``(1000, S)`` float32.
        test_labels: ``(1000,)`` int64.
        initial_annotations: The thinned labels, ``source="initial"``, ``round=None``.
        oracle: A :class:`SimulatedOracle` over the training rows whose annotators are the same
            roster; its label for ``(example, annotator)`` is the pool value.
        label_pool: ``(2000, A)`` labels the initial annotations were thinned from.
        oracle_pool: ``(2000, A)`` labels the oracle serves (``label_pool`` itself, or a second
            independent draw in the completely-labeled variant).
        noise_matrix: ``(K, K)`` float64 ``T[given, true]`` shared by all annotators.
        class_names: :data:`CLASS_NAMES`.
        annotator_ids: The roster, e.g. ``("sim-00", ..., "sim-29")``.
        train_rows: ``(2000,)`` row of each training example in the full bundled file.
        test_rows: ``(1000,)`` row of each test example in the full bundled file.
        initial_mask: ``(len(labeled_ids), A)`` bool: which ``label_pool`` entries of the labeled
            rows were kept as initial annotations.
        feature_mean: ``(S,)`` training mean used for standardization, or ``None``.
        feature_std: ``(S,)`` training std used for standardization, or ``None``.
    """

    dataset: TensorDataset
    features: torch.Tensor
    true_labels: torch.Tensor
    labeled_ids: torch.Tensor
    unlabeled_ids: torch.Tensor
    test_dataset: TensorDataset
    test_features: torch.Tensor
    test_labels: torch.Tensor
    initial_annotations: tuple[Annotation, ...]
    oracle: SimulatedOracle
    label_pool: torch.Tensor
    oracle_pool: torch.Tensor
    noise_matrix: torch.Tensor
    class_names: tuple[str, ...]
    annotator_ids: tuple[str, ...]
    train_rows: torch.Tensor
    test_rows: torch.Tensor
    initial_mask: torch.Tensor = field(repr=False)
    feature_mean: torch.Tensor | None = None
    feature_std: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        """K (4)."""
        return len(self.class_names)

    def make_oracle(self, seed: int) -> SimulatedOracle:
        """An oracle over the same label pool whose choice of annotator per request uses ``seed``.

        :attr:`oracle` is seeded with the setup seed; use this to vary the label draws between runs
        that share the data (as the reference runs do), keeping every annotator's labels fixed.

        Example::

            >>> setup = make_paper_setup()
            >>> torch.equal(setup.make_oracle(1).label_pool, setup.oracle.label_pool)
            True
        """
        oracle = SimulatedOracle(
            self.true_labels,
            pool_labels=self.oracle_pool,
            num_classes=self.num_classes,
            seed=seed,
            annotator_ids=self.annotator_ids,
            name=self.oracle.name,
        )
        oracle.noise_matrix = self.noise_matrix
        return oracle

    def initial_label_matrix(self) -> torch.Tensor:
        """``(len(labeled_ids), A)`` float64 initial labels, NaN where missing (cleanlab layout).

        Rows follow :attr:`labeled_ids`, columns :attr:`annotator_ids`.
        """
        rows = self.label_pool[self.labeled_ids].to(torch.float64)
        return torch.where(self.initial_mask, rows, torch.full_like(rows, float("nan")))

    def majority_vote(self) -> torch.Tensor:
        """``(len(labeled_ids),)`` majority vote of the initial labels.

        Ties go to the tied class given most often overall, then to the smallest class index.
        """
        pool = self.label_pool[self.labeled_ids]
        K = self.num_classes
        counts = torch.zeros(pool.shape[0], K, dtype=torch.float64)
        counts.scatter_add_(1, pool, self.initial_mask.to(torch.float64))
        overall = counts.sum(0)
        rank = torch.argsort(torch.argsort(overall, stable=True), stable=True).to(torch.float64)
        return (counts + rank / (K + 1) * 1e-3).argmax(1)

    def summary(self) -> dict[str, object]:
        """The statistics the paper printed for its setup.

        Returns:
            ``labels_per_example`` (``{n: #examples}``), ``annotator_accuracy_min/max/mean`` (on the
            initial labels, over annotators with at least one), ``consensus_accuracy`` (majority
            vote, :meth:`majority_vote`), ``pool_accuracy`` (mean accuracy of the oracle's pool),
            ``num_annotations``.
        """
        per_example = self.initial_mask.sum(1)
        values, freq = torch.unique(per_example, return_counts=True)
        truth = self.true_labels[self.labeled_ids]
        correct = (self.label_pool[self.labeled_ids] == truth[:, None]) & self.initial_mask
        n_by_annotator = self.initial_mask.sum(0)
        has = n_by_annotator > 0
        acc = correct.sum(0)[has].to(torch.float64) / n_by_annotator[has]
        mv = self.majority_vote()
        return {
            "labels_per_example": {int(v): int(f) for v, f in zip(values, freq)},
            "annotator_accuracy_min": float(acc.min()),
            "annotator_accuracy_max": float(acc.max()),
            "annotator_accuracy_mean": float(acc.mean()),
            "consensus_accuracy": float((mv == truth).to(torch.float64).mean()),
            "pool_accuracy": float((self.oracle_pool == self.true_labels[:, None]).to(torch.float64).mean()),
            "num_annotations": int(self.initial_mask.sum()),
        }


def _stratified_subset(labels: torch.Tensor, class_counts: Sequence[int], g: torch.Generator) -> torch.Tensor:
    parts = []
    for c, n in enumerate(class_counts):
        rows = torch.nonzero(labels == c).squeeze(1)
        if not 0 <= int(n) <= rows.numel():
            raise ValueError(f"class_counts[{c}]={n} but class {c} has only {rows.numel()} rows")
        parts.append(rows[torch.randperm(rows.numel(), generator=g)[: int(n)]])
    return torch.cat(parts)


def make_paper_setup(
    *,
    sensors: int = 4,
    seed: int = 123,
    trace_fraction: float | None = None,
    noise_matrix: torch.Tensor | np.ndarray | str | None = None,
    num_annotators: int = 30,
    completely_labeled: bool = False,
    class_counts: Sequence[int] = PAPER_CLASS_COUNTS,
    test_size: int = 1000,
    num_labeled: int = 1000,
    keep_per_example: int = 5,
    drop_prob: float = 0.97,
    standardize: bool = False,
    annotator_prefix: str = "sim-",
) -> WallRobotSetup:
    """Build the ActiveLab paper's Wall Robot benchmark setup (see the module docstring).

    Args:
        sensors: 4 (the paper's) or 24 features.
        seed: Seed of every step (subset, split, noise matrix, annotator labels, thinning, oracle).
        trace_fraction: Mean per-class annotator accuracy, ``trace / K`` of the noise matrix
            (default 0.85; 0.80 when ``completely_labeled``).
        noise_matrix: ``"paper"`` (:data:`PAPER_NOISE_MATRIX`), ``"generate"`` (a fresh matrix of
            trace ``trace_fraction * K`` drawn with ``seed`` and the training class prior), or a
            ``(K, K)`` matrix ``T[given, true]``. Default: ``"paper"`` for the standard setup
            (4 classes, ``trace_fraction`` unset or 0.85), ``"generate"`` otherwise (the paper's
            completely-labeled matrix depends on a subset we cannot reproduce).
        num_annotators: Size of the simulated roster.
        completely_labeled: Label all training rows and answer from a second independent pool.
        class_counts: Rows per class in the stratified subset.
        test_size: Test rows taken from the subset.
        num_labeled: Labeled training rows (ignored when ``completely_labeled``).
        keep_per_example: Thinning step 1 (see :func:`thin_label_mask`).
        drop_prob: Thinning step 2.
        standardize: z-score features with the training rows' mean and (population) std.
        annotator_prefix: Annotator ids are ``f"{prefix}{a:02d}"``.

    Returns:
        A :class:`WallRobotSetup`.

    Example::

        >>> setup = make_paper_setup()
        >>> len(setup.dataset), len(setup.labeled_ids), len(setup.unlabeled_ids), len(setup.test_dataset)
        (2000, 1000, 1000, 1000)
        >>> 0.8 < setup.summary()["consensus_accuracy"] < 0.9
        True
    """
    x_all, y_all, names = load_wall_robot(sensors)
    K = len(names)
    if len(class_counts) != K:
        raise ValueError(f"class_counts needs one count per class ({K}), got {list(class_counts)}")
    frac = (0.80 if completely_labeled else 0.85) if trace_fraction is None else float(trace_fraction)
    if not 1.0 / K < frac <= 1.0:
        raise ValueError(f"trace_fraction must be in (1/K, 1] = ({1 / K:g}, 1], got {frac}")
    if isinstance(num_annotators, bool) or int(num_annotators) < 1:
        raise ValueError(f"num_annotators must be a positive int, got {num_annotators!r}")
    subset = _stratified_subset(y_all, class_counts, _generator(seed, 1))
    n_sub = subset.numel()
    if not 0 < test_size < n_sub:
        raise ValueError(
            f"test_size must be in 1 .. {n_sub - 1} (the subset has {n_sub} rows), got {test_size}"
        )
    perm = subset[torch.randperm(n_sub, generator=_generator(seed, 2))]
    test_rows, train_rows = perm[:test_size], perm[test_size:]
    n_train = train_rows.numel()
    if completely_labeled:
        labeled = torch.arange(n_train)
    else:
        if not 0 < num_labeled <= n_train:
            raise ValueError(f"num_labeled must be in 1 .. {n_train}, got {num_labeled}")
        labeled = torch.randperm(n_train, generator=_generator(seed, 3))[:num_labeled].sort().values
    is_labeled = torch.zeros(n_train, dtype=torch.bool)
    is_labeled[labeled] = True
    unlabeled = torch.nonzero(~is_labeled).squeeze(1)

    y_train, y_test = y_all[train_rows], y_all[test_rows]
    x_train, x_test = x_all[train_rows], x_all[test_rows]
    mean = std = None
    if standardize:
        mean = x_train.mean(0)
        std = x_train.std(0, correction=0).clamp_min(1e-12)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    A = int(num_annotators)
    if noise_matrix is None:
        noise_matrix = "paper" if not completely_labeled and abs(frac - 0.85) < 1e-12 else "generate"
    if isinstance(noise_matrix, str):
        if noise_matrix == "paper":
            noise_matrix = torch.tensor(PAPER_NOISE_MATRIX, dtype=torch.float64)
        elif noise_matrix == "generate":
            noise_matrix = generate_noise_matrix_from_trace(
                K, frac * K, class_prior=class_prior_of(y_train, K), generator=_generator(seed, 4)
            )
        else:
            raise ValueError(
                f"noise_matrix must be 'paper', 'generate' or a (K, K) matrix, got {noise_matrix!r}"
            )
    else:
        noise_matrix = torch.as_tensor(np.asarray(noise_matrix, dtype=np.float64))
        if noise_matrix.shape != (K, K):
            raise ValueError(f"noise_matrix must have shape ({K}, {K}), got {tuple(noise_matrix.shape)}")
    label_pool = generate_noisy_labels(y_train, noise_matrix, num_annotators=A, generator=_generator(seed, 5))
    oracle_pool = (
        generate_noisy_labels(y_train, noise_matrix, num_annotators=A, generator=_generator(seed, 6))
        if completely_labeled
        else label_pool
    )
    mask = thin_label_mask(
        labeled.numel(),
        A,
        keep_per_example=keep_per_example,
        drop_prob=drop_prob,
        generator=_generator(seed, 7),
    )
    oracle = SimulatedOracle(
        y_train, pool_labels=oracle_pool, num_classes=K, seed=seed, annotator_prefix=annotator_prefix
    )
    oracle.noise_matrix = noise_matrix
    ids = oracle.annotator_ids
    rows, cols = torch.nonzero(mask, as_tuple=True)
    ex = labeled[rows]
    initial = tuple(
        Annotation(example_id=e, annotator_id=ids[a], label=lab, round=None, source="initial")
        for e, a, lab in zip(ex.tolist(), cols.tolist(), label_pool[ex, cols].tolist())
    )
    return WallRobotSetup(
        dataset=TensorDataset(x_train, y_train),
        features=x_train,
        true_labels=y_train,
        labeled_ids=labeled,
        unlabeled_ids=unlabeled,
        test_dataset=TensorDataset(x_test, y_test),
        test_features=x_test,
        test_labels=y_test,
        initial_annotations=initial,
        oracle=oracle,
        label_pool=label_pool,
        oracle_pool=oracle_pool,
        noise_matrix=noise_matrix,
        class_names=names,
        annotator_ids=ids,
        train_rows=train_rows,
        test_rows=test_rows,
        initial_mask=mask,
        feature_mean=mean,
        feature_std=std,
    )
