"""Experiment builders: the ``data`` and ``oracle`` sections of an ``activelab run`` config.

An :class:`Experiment` turns a few settings into everything a run needs: the pool dataset, the
:class:`~activelab_lightning.store.AnnotationStore`, the
:class:`~activelab_lightning.datamodule.ActiveDataModule` (with its cold-start labels and test
split) and the experiment's natural oracle. An :class:`OracleSpec` optionally replaces that oracle.
Both are plain classes with typed ``__init__`` arguments, so the CLI configures them the
LightningCLI way (``class_path`` / ``init_args``) and checks every key and type before training.

Data outside the package (CIFAR-10) is read from a path you give; nothing is ever downloaded.

Example::

    >>> exp = WallRobotExperiment(batch_size=64)
    >>> parts = exp.build(store_path=":memory:", seed=0)   # doctest: +SKIP
    >>> len(parts.dataset), parts.num_classes               # doctest: +SKIP
    (2000, 4)
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = [
    "Cifar10Experiment",
    "CsvAnswers",
    "Experiment",
    "ExperimentParts",
    "FileAnswers",
    "LabelStudioAnswers",
    "OracleSpec",
    "SimulatedAnnotators",
    "WallRobotExperiment",
]


@dataclass
class ExperimentParts:
    """What :meth:`Experiment.build` returns.

    Attributes:
        dataset: The pool (example id ``i`` is ``dataset[i]``).
        store: The annotation store (file-backed, or in memory for ``store_path=":memory:"``).
        datamodule: The ``ActiveDataModule`` over ``dataset`` and ``store``, cold-start labels written.
        oracle: The experiment's own oracle (simulated or replayed annotators).
        class_names: The ``K`` class names.
        true_labels: ``(N,)`` ground truth of the pool, if known (consensus accuracy), else ``None``.
        input_shape: Shape of one model input, e.g. ``(4,)`` or ``(32, 32, 3)``.
    """

    dataset: Any
    store: Any
    datamodule: Any
    oracle: Any
    class_names: tuple[str, ...]
    true_labels: torch.Tensor | None
    input_shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """``K``."""
        return len(self.class_names)


class Experiment(ABC):
    """Base class of the ``data`` section: builds dataset, store, datamodule and oracle."""

    @abstractmethod
    def build(self, *, store_path: str | os.PathLike, seed: int) -> ExperimentParts:
        """Build the run's parts.

        Args:
            store_path: Annotation store file (created if missing, reopened to resume), or ``":memory:"``.
            seed: The run's seed (cold-start draws, shuffling, simulated answers).

        Returns:
            The :class:`ExperimentParts`.
        """

    def check(self) -> None:
        """Validate settings that can be checked before anything is built (paths...); raise with the key name."""
        return None


def _store(store_path: str | os.PathLike, num_examples: int, class_names: tuple[str, ...]) -> Any:
    from activelab_lightning.store import AnnotationStore

    return AnnotationStore(store_path, num_examples=num_examples, class_names=class_names)


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

    def __init__(
        self,
        sensors: Literal[4, 24] = 4,
        setup_seed: int = 123,
        standardize: bool = True,
        completely_labeled: bool = False,
        batch_size: int = 64,
        inference_batch_size: int = 4096,
        consensus_method: Literal["best_quality", "majority_vote"] = "best_quality",
        soft_targets: bool = False,
        test: bool = True,
    ) -> None:
        if sensors not in (4, 24):
            raise ValueError(f"WallRobotExperiment(sensors={sensors!r}): must be 4 or 24.")
        self.sensors = sensors
        self.setup_seed = setup_seed
        self.standardize = standardize
        self.completely_labeled = completely_labeled
        self.batch_size = batch_size
        self.inference_batch_size = inference_batch_size
        self.consensus_method = consensus_method
        self.soft_targets = soft_targets
        self.test = test

    def build(self, *, store_path: str | os.PathLike, seed: int) -> ExperimentParts:
        from activelab_lightning.datamodule import ActiveDataModule
        from activelab_lightning.datasets.wall_robot import make_paper_setup

        setup = make_paper_setup(
            sensors=self.sensors,
            seed=self.setup_seed,
            standardize=self.standardize,
            completely_labeled=self.completely_labeled,
        )
        store = _store(store_path, len(setup.dataset), tuple(setup.class_names))
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


def _require_file(key: str, value: str | os.PathLike | None, what: str) -> Path:
    if value is None or str(value) == "":
        raise ValueError(f"{key} is not set: give the path of {what}.")
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{key}={str(value)!r}: no such file ({path.resolve()}). Expected {what}; set {key} to its path."
        )
    return path


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

    def __init__(
        self,
        path: str,
        counts_path: str | None = None,
        subset: int | None = None,
        test_size: int = 2000,
        initial_labeled: int = 1000,
        split_seed: int = 0,
        batch_size: int = 128,
        inference_batch_size: int = 1024,
        consensus_method: Literal["best_quality", "majority_vote"] = "best_quality",
    ) -> None:
        self.path = path
        self.counts_path = counts_path
        self.subset = subset
        self.test_size = test_size
        self.initial_labeled = initial_labeled
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.inference_batch_size = inference_batch_size
        self.consensus_method = consensus_method
        self.check()

    def _counts_file(self) -> str:
        if self.counts_path is not None:
            return self.counts_path
        return str(Path(self.path).expanduser().parent.parent / "cifar10h_counts" / "cifar10h_counts.npz")

    def check(self) -> None:
        _require_file("data.init_args.path", self.path, "cifar10_test.npz (x, y, class_names)")
        _require_file("data.init_args.counts_path", self._counts_file(), "cifar10h_counts.npz (counts)")

    def build(self, *, store_path: str | os.PathLike, seed: int) -> ExperimentParts:
        from activelab_lightning.datamodule import ActiveDataModule
        from activelab_lightning.oracles import ReplayOracle

        with np.load(_require_file("data.init_args.path", self.path, "cifar10_test.npz")) as data:
            for key in ("x", "y", "class_names"):
                if key not in data.files:
                    raise ValueError(
                        f"data.init_args.path={self.path!r} has no array {key!r} (it has {data.files})."
                    )
            x, y, names = data["x"], data["y"], tuple(str(c) for c in data["class_names"])
        with np.load(
            _require_file("data.init_args.counts_path", self._counts_file(), "cifar10h_counts.npz")
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
        store = _store(store_path, len(pool), names)
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


class OracleSpec(ABC):
    """Base class of the ``oracle`` section: replaces the experiment's own oracle."""

    @abstractmethod
    def build(self, parts: ExperimentParts, *, seed: int) -> Any:
        """Return an oracle for the experiment's pool."""

    def check(self) -> None:
        """Validate paths and settings before anything is built."""
        return None


class SimulatedAnnotators(OracleSpec):
    """Simulated noisy annotators over the experiment's true labels.

    Args:
        annotators: Roster size (all sharing one noise matrix of trace ``noise_trace``), or a list of
            per-annotator accuracies.
        noise_trace: Trace of the shared noise matrix (default ``0.85 * K``); only with a count.
    """

    def __init__(self, annotators: int | list[float] = 30, noise_trace: float | None = None) -> None:
        self.annotators = annotators
        self.noise_trace = noise_trace

    def build(self, parts: ExperimentParts, *, seed: int) -> Any:
        from activelab_lightning.oracles import SimulatedOracle

        if parts.true_labels is None:
            raise ValueError(
                "oracle: SimulatedAnnotators needs the data's true labels, but this experiment has none."
            )
        return SimulatedOracle(
            parts.true_labels,
            self.annotators,
            noise_trace=self.noise_trace,
            num_classes=parts.num_classes,
            seed=seed,
        )


class CsvAnswers(OracleSpec):
    """Replay recorded annotations from a long CSV table (one row per annotation).

    Args:
        path: The CSV (``.csv`` or ``.csv.gz``).
        example_col: Column of example ids (positions in the pool).
        annotator_col: Column of annotator ids.
        label_col: Column of labels (class indices or class names).
    """

    def __init__(
        self,
        path: str,
        example_col: str = "example_id",
        annotator_col: str = "annotator_id",
        label_col: str = "label",
    ) -> None:
        self.path = path
        self.example_col = example_col
        self.annotator_col = annotator_col
        self.label_col = label_col
        self.check()

    def check(self) -> None:
        _require_file(
            "oracle.init_args.path", self.path, "a CSV of annotations (example_id, annotator_id, label)"
        )

    def build(self, parts: ExperimentParts, *, seed: int) -> Any:
        from activelab_lightning.oracles import ReplayOracle

        return ReplayOracle.from_csv(
            self.path,
            example_col=self.example_col,
            annotator_col=self.annotator_col,
            label_col=self.label_col,
            class_names=parts.class_names,
            seed=seed,
            num_examples=len(parts.dataset),
        )


class FileAnswers(OracleSpec):
    """Ask humans through files: requests are written to ``directory``, answers read from ``answers``.

    A round whose answers are missing stops the run with exit status 75 ("waiting for N labels");
    re-run the same command once the answers file is filled in.

    Args:
        directory: Working folder for request files.
        answers: The answers file (CSV or JSONL), relative to ``directory`` unless absolute.
    """

    def __init__(self, directory: str, answers: str = "answers.csv") -> None:
        self.directory = directory
        self.answers = answers

    def build(self, parts: ExperimentParts, *, seed: int) -> Any:
        from activelab_lightning.oracles import FileOracle

        oracle = FileOracle(
            self.directory,
            parts.class_names,
            answers=self.answers,
            store=parts.store,
            num_examples=len(parts.dataset),
        )
        oracle.bind(datamodule=parts.datamodule)
        return oracle


class LabelStudioAnswers(OracleSpec):
    """Ask humans through a Label Studio project (server address and API token from the environment).

    Each round's requests become tasks whose prediction score is the ActiveLab score; a round waits
    up to ``timeout`` seconds, then the run stops with exit status 75 ("waiting for N labels") and
    the same command resumes.

    Args:
        project_title: Project to reuse or create (one project per store).
        project_id: Use this existing project instead of looking one up by title.
        data_type: ``"text"`` (examples shown as text) or ``"image"`` (image tensors as PNGs).
        timeout: Seconds to wait for a round's answers per run (0: look once).
        poll_interval: Seconds between two looks at the project while waiting.
        url_env: Environment variable holding the server address.
        api_key_env: Environment variable holding the API token.
    """

    def __init__(
        self,
        project_title: str = "activelab",
        project_id: int | None = None,
        data_type: Literal["text", "image"] = "text",
        timeout: float = 600.0,
        poll_interval: float = 10.0,
        url_env: str = "LABEL_STUDIO_URL",
        api_key_env: str = "LABEL_STUDIO_API_KEY",
    ) -> None:
        self.project_title = project_title
        self.project_id = project_id
        self.data_type = data_type
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.url_env = url_env
        self.api_key_env = api_key_env

    def check(self) -> None:
        for var, what in (
            (self.url_env, "the Label Studio address, e.g. http://127.0.0.1:8080"),
            (self.api_key_env, "your Label Studio API token (Account & Settings)"),
        ):
            if not os.environ.get(var):
                raise ValueError(f"oracle: LabelStudioAnswers needs ${var} to be set to {what}.")

    def build(self, parts: ExperimentParts, *, seed: int) -> Any:
        from activelab_lightning.oracles import LabelStudioOracle

        oracle = LabelStudioOracle(
            parts.class_names,
            url_env=self.url_env,
            api_key_env=self.api_key_env,
            project_title=self.project_title,
            project_id=self.project_id,
            data_type=self.data_type,
            store=parts.store,
            num_examples=len(parts.dataset),
            timeout=self.timeout,
            poll_interval=self.poll_interval,
        )
        oracle.bind(datamodule=parts.datamodule)
        return oracle
