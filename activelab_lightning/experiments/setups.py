"""The ``data`` section's experiments: the bundled Wall Robot setup and CIFAR-10 with CIFAR-10H.

Each is a dataclass whose fields are the section's ``init_args``. Data outside the package
(CIFAR-10) is read from a path you give; nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset

from activelab_lightning.experiments.base import Experiment, ExperimentParts, new_store, require_file

__all__ = ["Cifar10Experiment", "WallRobotExperiment"]


@dataclasses.dataclass
class WallRobotExperiment(Experiment):
    """The bundled UCI Wall-Following Robot data in the ActiveLab paper's setup.

    2,000 pool rows (1,000 with thinned initial labels from 30 simulated annotators of about 85%
    accuracy, 1,000 unlabeled), 1,000 test rows; see
    :func:`~activelab_lightning.datasets.make_paper_setup`.

    Args:
        sensors: 4 (the paper's features) or 24.
        setup_seed: Seed of the setup (subset, split, annotators, thinning); fixed across run seeds
            so that runs with different seeds share the same data, as in the paper.
        standardize: z-score the features with the training rows' statistics.
        completely_labeled: The paper's "completely labeled" variant (all pool rows labeled).
        batch_size: Training batch size.
        inference_batch_size: Batch size of pool inference.
        consensus_method: CROWDLAB ``"best_quality"`` or ``"majority_vote"`` consensus targets.
        soft_targets: Train on the CROWDLAB posterior instead of the hard consensus.
        test: Serve the 1,000 test rows (test accuracy each round).
    """

    sensors: Literal[4, 24] = 4
    setup_seed: int = 123
    standardize: bool = True
    completely_labeled: bool = False
    batch_size: int = 64
    inference_batch_size: int = 4096
    consensus_method: Literal["best_quality", "majority_vote"] = "best_quality"
    soft_targets: bool = False
    test: bool = True

    def __post_init__(self) -> None:
        if self.sensors not in (4, 24):
            raise ValueError(f"WallRobotExperiment(sensors={self.sensors!r}): must be 4 or 24.")

    def build(self, *, store_path: str | os.PathLike, seed: int) -> ExperimentParts:
        from activelab_lightning.data import ActiveDataModule
        from activelab_lightning.datasets.wall_robot_paper import make_paper_setup

        setup = make_paper_setup(
            sensors=self.sensors,
            seed=self.setup_seed,
            standardize=self.standardize,
            completely_labeled=self.completely_labeled,
        )
        store = new_store(store_path, len(setup.dataset), tuple(setup.class_names))
        datamodule = ActiveDataModule(
            setup.dataset,
            store,
            test_dataset=setup.test_dataset if self.test else None,
            batch_size=self.batch_size,
            inference_batch_size=self.inference_batch_size,
            initial_labels=list(setup.initial_annotations),
            true_labels=setup.true_labels,
            consensus_method=self.consensus_method,
            soft_targets=self.soft_targets,
            seed=seed,
        )
        return ExperimentParts(
            setup.dataset,
            store,
            datamodule,
            setup.oracle,
            tuple(setup.class_names),
            setup.true_labels,
            (int(setup.features.shape[1]),),
        )


@dataclasses.dataclass
class Cifar10Experiment(Experiment):
    """CIFAR-10 test images as the pool, annotators sampled from the CIFAR-10H human label counts.

    Reads ``cifar10_test.npz`` (``x`` uint8 ``(10000, 32, 32, 3)``, ``y`` int64 ``(10000,)``,
    ``class_names``) and ``cifar10h_counts.npz`` (``counts`` ``(10000, 10)``: how many people chose each
    class). A seeded split gives ``test_size`` held-out test images (true labels) and a pool of the
    rest, of which ``initial_labeled`` start with one human label each. The oracle draws further
    labels from each image's CIFAR-10H counts without replacement (about 50 people per image).

    Args:
        path: The ``cifar10_test.npz`` file.
        counts_path: The ``cifar10h_counts.npz`` file (default: ``../cifar10h_counts/cifar10h_counts.npz``
            next to ``path``'s folder, the layout of the shared data folder).
        subset: Use only the first ``subset`` images (fast experiments), ``None`` for all.
        test_size: Held-out test images.
        initial_labeled: Pool images with one initial label.
        split_seed: Seed of the test split (fixed across run seeds).
        batch_size: Training batch size.
        inference_batch_size: Batch size of pool inference.
        consensus_method: CROWDLAB ``"best_quality"`` or ``"majority_vote"``.
    """

    path: str
    counts_path: str | None = None
    subset: int | None = None
    test_size: int = 2000
    initial_labeled: int = 1000
    split_seed: int = 0
    batch_size: int = 128
    inference_batch_size: int = 1024
    consensus_method: Literal["best_quality", "majority_vote"] = "best_quality"

    def __post_init__(self) -> None:
        self.check()

    def _counts_file(self) -> str:
        if self.counts_path is not None:
            return self.counts_path
        return str(Path(self.path).expanduser().parent.parent / "cifar10h_counts" / "cifar10h_counts.npz")

    def check(self) -> None:
        require_file("data.init_args.path", self.path, "cifar10_test.npz (x, y, class_names)")
        require_file("data.init_args.counts_path", self._counts_file(), "cifar10h_counts.npz (counts)")

    def build(self, *, store_path: str | os.PathLike, seed: int) -> ExperimentParts:
        from activelab_lightning.data import ActiveDataModule
        from activelab_lightning.oracles import ReplayOracle

        with np.load(require_file("data.init_args.path", self.path, "cifar10_test.npz")) as data:
            for key in ("x", "y", "class_names"):
                if key not in data.files:
                    raise ValueError(
                        f"data.init_args.path={self.path!r} has no array {key!r} (it has {data.files})."
                    )
            x, y, names = data["x"], data["y"], tuple(str(c) for c in data["class_names"])
        with np.load(
            require_file("data.init_args.counts_path", self._counts_file(), "cifar10h_counts.npz")
        ) as c:
            if "counts" not in c.files:
                raise ValueError(f"data.init_args.counts_path={self._counts_file()!r} has no array 'counts'.")
            counts = c["counts"]
        if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
            raise ValueError(f"data.init_args.path: x must be uint8 (N, 32, 32, 3), got {x.dtype} {x.shape}.")
        if counts.shape != (len(x), len(names)):
            raise ValueError(
                f"data.init_args.counts_path: counts must be ({len(x)}, {len(names)}) to match the images, "
                f"got {counts.shape}."
            )
        n = len(x) if self.subset is None else min(int(self.subset), len(x))
        if not 0 < self.test_size < n:
            raise ValueError(
                f"data.init_args.test_size={self.test_size}: must be in 1 .. {n - 1} ({n} images)."
            )
        g = torch.Generator().manual_seed(int(self.split_seed))
        perm = torch.randperm(n, generator=g)
        test_rows, pool_rows = perm[: self.test_size].sort().values, perm[self.test_size :].sort().values
        images = torch.from_numpy(np.ascontiguousarray(x[:n]))
        labels = torch.from_numpy(y[:n].astype(np.int64))
        if not 0 < self.initial_labeled <= pool_rows.numel():
            raise ValueError(
                f"data.init_args.initial_labeled={self.initial_labeled}: must be in 1 .. {pool_rows.numel()} "
                f"(pool size)."
            )
        pool = TensorDataset(images[pool_rows], labels[pool_rows])
        test = TensorDataset(images[test_rows], labels[test_rows])
        oracle = ReplayOracle.from_distributions(
            torch.from_numpy(counts[:n].astype(np.int64))[pool_rows],
            seed=seed,
            annotator_prefix="c10h-",
            name="cifar10h",
        )
        store = new_store(store_path, len(pool), names)
        datamodule = ActiveDataModule(
            pool,
            store,
            test_dataset=test,
            batch_size=self.batch_size,
            inference_batch_size=self.inference_batch_size,
            initial_labeled=int(self.initial_labeled),
            initial_labels=oracle,
            true_labels=labels[pool_rows],
            consensus_method=self.consensus_method,
            seed=seed,
        )
        return ExperimentParts(pool, store, datamodule, oracle, names, labels[pool_rows], (32, 32, 3))
