"""The ``oracle`` section's specs: who answers the label requests, instead of the data's own oracle.

Each spec is a dataclass whose fields are the section's ``init_args``. :meth:`OracleSpec.oracle_kwargs`
passes every field on, under its own name, to the oracle it builds, so a setting is declared once
here (with its YAML default) and documented in full on the oracle class; :meth:`build` adds only
what comes from the experiment (class names, store, pool size) and the run's seed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

from activelab_lightning.experiments.base import ExperimentParts, OracleSpec, require_file

__all__ = ["CsvAnswers", "FileAnswers", "LabelStudioAnswers", "SimulatedAnnotators"]


@dataclasses.dataclass
class SimulatedAnnotators(OracleSpec):
    """Simulated noisy annotators over the experiment's true labels.

    The fields are those of :class:`~activelab_lightning.oracles.SimulatedOracle`.

    Args:
        annotators: Roster size (all sharing one noise matrix of trace ``noise_trace``), or a list of
            per-annotator accuracies.
        noise_trace: Trace of the shared noise matrix (default ``0.85 * K``); only with a count.
    """

    annotators: int | list[float] = 30
    noise_trace: float | None = None

    def build(self, parts: ExperimentParts, *, seed: int) -> Any:
        from activelab_lightning.oracles import SimulatedOracle

        if parts.true_labels is None:
            raise ValueError(
                "oracle: SimulatedAnnotators needs the data's true labels, but this experiment has none."
            )
        return SimulatedOracle(
            parts.true_labels,
            **self.oracle_kwargs(SimulatedOracle),
            num_classes=parts.num_classes,
            seed=seed,
        )


@dataclasses.dataclass
class CsvAnswers(OracleSpec):
    """Replay recorded annotations from a long CSV table (one row per annotation).

    The fields are those of :meth:`~activelab_lightning.oracles.ReplayOracle.from_csv`.

    Args:
        path: The CSV (``.csv`` or ``.csv.gz``).
        example_col: Column of example ids (positions in the pool).
        annotator_col: Column of annotator ids.
        label_col: Column of labels (class indices or class names).
    """

    path: str
    example_col: str = "example_id"
    annotator_col: str = "annotator_id"
    label_col: str = "label"

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        require_file(
            "oracle.init_args.path", self.path, "a CSV of annotations (example_id, annotator_id, label)"
        )

    def build(self, parts: ExperimentParts, *, seed: int) -> Any:
        from activelab_lightning.oracles import ReplayOracle

        return ReplayOracle.from_csv(
            **self.oracle_kwargs(ReplayOracle.from_csv),
            class_names=parts.class_names,
            seed=seed,
            num_examples=len(parts.dataset),
        )


@dataclasses.dataclass
class FileAnswers(OracleSpec):
    """Ask humans through files: requests are written to ``directory``, answers read from ``answers``.

    A round whose answers are missing stops the run with exit status 75 ("waiting for N labels");
    re-run the same command once the answers file is filled in. The fields are those of
    :class:`~activelab_lightning.oracles.FileOracle`.

    Args:
        directory: Working folder for request files.
        answers: The answers file (CSV or JSONL), relative to ``directory`` unless absolute.
    """

    directory: str
    answers: str = "answers.csv"

    def build(self, parts: ExperimentParts, *, seed: int) -> Any:
        from activelab_lightning.oracles import FileOracle

        oracle = FileOracle(
            class_names=parts.class_names,
            **self.oracle_kwargs(FileOracle),
            store=parts.store,
            num_examples=len(parts.dataset),
        )
        oracle.bind(datamodule=parts.datamodule)
        return oracle


@dataclasses.dataclass
class LabelStudioAnswers(OracleSpec):
    """Ask humans through a Label Studio project (server address and API token from the environment).

    Each round's requests become tasks whose prediction score is the ActiveLab score; a round waits
    up to ``timeout`` seconds, then the run stops with exit status 75 ("waiting for N labels") and
    the same command resumes. The fields are those of
    :class:`~activelab_lightning.oracles.LabelStudioOracle` (with a longer default ``timeout``).

    Args:
        project_title: Project to reuse or create (one project per store).
        project_id: Use this existing project instead of looking one up by title.
        data_type: ``"text"`` (examples shown as text) or ``"image"`` (image tensors as PNGs).
        timeout: Seconds to wait for a round's answers per run (0: look once).
        poll_interval: Seconds between two looks at the project while waiting.
        url_env: Environment variable holding the server address.
        api_key_env: Environment variable holding the API token.
    """

    project_title: str = "activelab"
    project_id: int | None = None
    data_type: Literal["text", "image"] = "text"
    timeout: float = 600.0
    poll_interval: float = 10.0
    url_env: str = "LABEL_STUDIO_URL"
    api_key_env: str = "LABEL_STUDIO_API_KEY"

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
            **self.oracle_kwargs(LabelStudioOracle),
            store=parts.store,
            num_examples=len(parts.dataset),
        )
        oracle.bind(datamodule=parts.datamodule)
        return oracle
