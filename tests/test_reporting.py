"""Reporting: scalars through every logger, W&B extras read back from disk, the round log, plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import _wandb_reader
import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from activelab_lightning.records import Annotation, LabelRequest, RoundSummary
from activelab_lightning.reporting import (
    Reporter,
    accuracy,
    plot_learning_curve,
    read_round_log,
    round_log_path,
    round_scalars,
)


def make_summary(round_: int) -> RoundSummary:
    """A deterministic, hand-made round: 3 requests (2 new, 1 re-label), 2 answered, 1 pending."""
    requests = (
        LabelRequest(example_id=10 + round_, score=0.10, kind="new", round=round_),
        LabelRequest(
            example_id=20 + round_, score=0.20, kind="relabel", round=round_, existing_annotators=("a1",)
        ),
        LabelRequest(example_id=30 + round_, score=0.30, kind="new", round=round_),
    )
    answers = (
        Annotation(
            10 + round_, "a2", 1, round=round_, source="oracle:simulated", request_id=requests[0].request_id
        ),
        Annotation(
            20 + round_, "a3", 2, round=round_, source="oracle:simulated", request_id=requests[1].request_id
        ),
    )
    return RoundSummary(
        round=round_,
        strategy="activelab",
        num_annotations=100 + 2 * round_,
        num_labeled=50 + round_,
        num_unlabeled=50 - round_,
        requests=requests,
        answers=answers,
        num_pending=1,
        labeled_scores=torch.linspace(0.2, 0.9, 50 + round_, dtype=torch.float64),
        unlabeled_scores=torch.linspace(0.1, 0.8, 50 - round_, dtype=torch.float64),
        consensus_accuracy=0.80 + 0.05 * round_,
        model_weight=0.5,
        mean_annotator_weight=0.25,
        annotator_stats=(
            {"annotator_id": "a1", "quality": 0.9, "agreement": 0.8, "worst_class": 2, "num_labeled": 30},
            {"annotator_id": "a2", "quality": 0.7, "agreement": 0.6, "worst_class": 0, "num_labeled": 20},
        ),
        metrics={"test/acc": 0.70 + 0.1 * round_},
        seconds=1.5,
    )


class TinyModel(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ReportOnTrainEnd(pl.Callback):
    """Stands in for ActiveLabCallback: hands a RoundSummary to the reporter in on_train_end."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.round = 0

    def on_train_end(self, trainer, pl_module):
        self.reporter.log_round(trainer, make_summary(self.round))
        self.round += 1


def run_two_rounds(loggers, reporter: Reporter) -> None:
    """Two rounds, each with a fresh Trainer (the loop's pattern) and the same logger instances."""
    data = TensorDataset(torch.randn(16, 4), torch.randint(0, 3, (16,)))
    callback = ReportOnTrainEnd(reporter)
    for _ in range(2):
        trainer = pl.Trainer(
            max_epochs=1,
            logger=loggers,
            callbacks=[callback],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(TinyModel(), DataLoader(data, batch_size=8))


def test_round_scalars_names_and_values():
    scalars = round_scalars(make_summary(1))
    assert scalars["activelab/round"] == 1.0
    assert scalars["activelab/num_annotations"] == 102.0
    assert scalars["activelab/num_labeled"] == 51.0
    assert scalars["activelab/num_new"] == 2.0
    assert scalars["activelab/num_relabel"] == 1.0
    assert scalars["activelab/num_pending"] == 1.0
    assert scalars["activelab/consensus_accuracy"] == pytest.approx(0.85)
    assert scalars["activelab/test/acc"] == pytest.approx(0.8)
    assert scalars["activelab/model_weight"] == 0.5
    assert scalars["activelab/mean_annotator_weight"] == 0.25
    assert scalars["activelab/scores/labeled_min"] == pytest.approx(0.2)
    assert scalars["activelab/scores/unlabeled_max"] == pytest.approx(0.8)
    assert scalars["activelab/scores/selected_max"] == pytest.approx(0.3)
    assert all(k.startswith("activelab/") for k in scalars)


def test_round_scalars_leave_out_unknowns():
    summary = RoundSummary(
        round=0, strategy="random", num_annotations=1, num_labeled=1, num_unlabeled=0, requests=(), answers=()
    )
    scalars = round_scalars(summary)
    assert "activelab/consensus_accuracy" not in scalars
    assert "activelab/model_weight" not in scalars
    assert not any(k.startswith("activelab/scores/") for k in scalars)


def test_accuracy_uses_labels_or_probabilities():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert accuracy(probs, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert math.isnan(accuracy([], []))
    with pytest.raises(ValueError, match="preds has 2 predictions but target has 3"):
        accuracy([0, 1], [0, 1, 1])


def test_round_log_appends_and_last_entry_wins(tmp_path):
    path = round_log_path(tmp_path / "labels.sqlite")
    assert path.name == "labels.sqlite.rounds.jsonl"
    reporter = Reporter(path, console=False)
    trainer = type("FakeTrainer", (), {"is_global_zero": True, "loggers": []})()
    for r in (0, 1, 1):  # round 1 logged twice, as after a resume
        reporter.log_round(trainer, make_summary(r))
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    rounds = read_round_log(path)
    assert [r["round"] for r in rounds] == [0, 1]
    first = rounds[0]
    assert first["num_new"] == 2 and first["num_relabel"] == 1 and first["num_pending"] == 1
    assert [q["example_id"] for q in first["requests"]] == [10, 20, 30]
    assert first["requests"][1]["existing_annotators"] == ["a1"]
    assert first["requests"][0]["request_id"] == "r0:e10"
    assert [(a["annotator_id"], a["label"]) for a in first["answers"]] == [("a2", 1), ("a3", 2)]
    assert first["test_accuracy"] == pytest.approx(0.7)
    with open(reporter.curve_csv, newline="") as fh:
        curve = list(csv.DictReader(fh))
    assert [row["round"] for row in curve] == ["0", "1"]
    assert float(curve[1]["consensus_accuracy"]) == pytest.approx(0.85)
    # a new reporter on the same log (a resumed run) continues the history
    assert [r["round"] for r in Reporter(path, console=False).history] == [0, 1]


def test_round_log_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "x.rounds.jsonl"
    Reporter(path, console=False).log_round(
        type("T", (), {"is_global_zero": True, "loggers": []})(), make_summary(0)
    )
    with open(path, "a") as fh:
        fh.write('{"round": 1, "num_ann')
    assert [r["round"] for r in read_round_log(path)] == [0]


def test_non_zero_rank_logs_nothing(tmp_path):
    path = tmp_path / "r.jsonl"
    logged = []
    fake_logger = type("L", (), {"log_metrics": lambda self, m, step=None: logged.append(m)})()
    trainer = type("T", (), {"is_global_zero": False, "loggers": [fake_logger]})()
    assert Reporter(path, console=False).log_round(trainer, make_summary(0)) == {}
    assert logged == [] and not path.exists()


def test_log_round_rejects_other_inputs():
    trainer = type("T", (), {"is_global_zero": True, "loggers": []})()
    with pytest.raises(TypeError, match="expected a RoundSummary, got dict"):
        Reporter(console=False).log_round(trainer, {"round": 0})


def test_console_table_and_progress(capsys):
    reporter = Reporter(console=True, progress_min_rows=0)
    trainer = type("T", (), {"is_global_zero": True, "loggers": []})()
    reporter.log_round(trainer, make_summary(0))
    out = capsys.readouterr().out
    assert "round 0" in out and "0.8000" in out and "0.7000" in out
    batches = [(torch.arange(3), None), (torch.arange(2), None)]
    assert [len(b[0]) for b in reporter.track(batches, total=5)] == [3, 2]
    assert list(Reporter(console=False).track([1, 2], total=10**9)) == [1, 2]
    quiet_table = Reporter(console=False, progress=True, progress_min_rows=0)
    assert [len(b[0]) for b in quiet_table.track(batches, total=5)] == [3, 2]


def test_plot_learning_curve_writes_png(tmp_path):
    png = plot_learning_curve([make_summary(0), make_summary(1)], tmp_path / "sub" / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_learning_curve([], tmp_path / "empty.png")


def test_finish_writes_png_next_to_round_log(tmp_path, capsys):
    reporter = Reporter(tmp_path / "labels.sqlite.rounds.jsonl", console=True)
    assert reporter.finish() is None  # no rounds yet
    trainer = type("T", (), {"is_global_zero": True, "loggers": []})()
    reporter.log_round(trainer, make_summary(0))
    reporter.log_round(trainer, make_summary(1))
    png = reporter.finish()
    assert png == tmp_path / "labels.sqlite.rounds.png" and png.exists()
    assert "all rounds" in capsys.readouterr().out


def test_wandb_offline_two_rounds_from_disk(tmp_path, monkeypatch):
    """Must-show 2 (W&B): per-round metrics and the selected-examples table, read from the run's files."""
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="activelab-test")
    run_two_rounds([logger], Reporter(console=False))
    logger.experiment.finish()

    rows = _wandb_reader.history_rows(_wandb_reader.wait_until_complete(tmp_path))
    metric_rows = [r for r in rows if "activelab/num_annotations" in r]
    assert [r["activelab/round"] for r in metric_rows] == [0, 1]
    assert [r["activelab/num_annotations"] for r in metric_rows] == [100, 102]
    assert [r["activelab/num_labeled"] for r in metric_rows] == [50, 51]
    assert [r["activelab/num_new"] for r in metric_rows] == [2, 2]
    assert [r["activelab/num_relabel"] for r in metric_rows] == [1, 1]
    assert [r["activelab/consensus_accuracy"] for r in metric_rows] == pytest.approx([0.80, 0.85])
    assert [r["activelab/test/acc"] for r in metric_rows] == pytest.approx([0.7, 0.8])
    extras = [r for r in rows if "activelab/selected" in r]
    assert [r["activelab/round"] for r in extras] == [0, 1]
    assert extras[0]["activelab/selected"]["_type"] == "table-file"
    assert extras[0]["activelab/scores/labeled_hist"]["_type"] == "histogram"
    assert extras[0]["activelab/annotators"]["_type"] == "table-file"

    tables = _wandb_reader.table_files(tmp_path, "activelab/selected")
    assert [t["columns"] for t in tables] == [
        ["round", "example_id", "score", "kind", "answer", "annotator"]
    ] * 2
    assert tables[0]["data"] == [
        [0, 10, 0.1, "new", 1, "a2"],
        [0, 20, 0.2, "relabel", 2, "a3"],
        [0, 30, 0.3, "new", None, None],
    ]
    assert [row[1] for row in tables[1]["data"]] == [11, 21, 31]
    annotators = _wandb_reader.table_files(tmp_path, "activelab/annotators")
    assert annotators[0]["columns"] == ["annotator_id", "quality", "agreement", "worst_class", "num_labeled"]
    assert annotators[0]["data"][0] == ["a1", 0.9, 0.8, 2, 30]


def test_csv_logger_two_rounds(tmp_path):
    """Must-show 2 (CSV): one metrics.csv row per round with the activelab scalars."""
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(save_dir=str(tmp_path), name="csv")
    run_two_rounds([logger], Reporter(console=False))
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("activelab/round")]
    assert [float(r["activelab/round"]) for r in rows] == [0.0, 1.0]
    assert [r["step"] for r in rows] == ["0", "1"]
    assert [float(r["activelab/num_annotations"]) for r in rows] == [100.0, 102.0]
    assert [float(r["activelab/consensus_accuracy"]) for r in rows] == pytest.approx([0.80, 0.85])
    assert [float(r["activelab/num_relabel"]) for r in rows] == [1.0, 1.0]


def test_tensorboard_logger_two_rounds(tmp_path):
    """Must-show 2 (TensorBoard): scalars per round and score histograms."""
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb")
    run_two_rounds([logger], Reporter(console=False))
    acc = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    labeled = acc.Scalars("activelab/num_labeled")
    assert [(e.step, e.value) for e in labeled] == [(0, 50.0), (1, 51.0)]
    assert [e.value for e in acc.Scalars("activelab/test/acc")] == pytest.approx([0.7, 0.8])
    assert [e.step for e in acc.Histograms("activelab/scores/labeled")] == [0, 1]


def test_all_loggers_at_once_and_round_log(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    wandb_logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="p")
    csv_logger = CSVLogger(save_dir=str(tmp_path), name="csv")
    reporter = Reporter(tmp_path / "labels.sqlite.rounds.jsonl", console=False)
    run_two_rounds([csv_logger, wandb_logger], reporter)
    wandb_logger.experiment.finish()
    assert [r["round"] for r in read_round_log(reporter.round_log)] == [0, 1]
    assert json.loads(reporter.round_log.read_text().splitlines()[0])["strategy"] == "activelab"
    assert (Path(csv_logger.log_dir) / "metrics.csv").exists()
    assert _wandb_reader.find_run_file(tmp_path).exists()


def test_log_evaluation_adds_test_metrics_to_the_round(tmp_path):
    logged = []
    fake_logger = type("L", (), {"log_metrics": lambda self, m, step=None: logged.append((step, m))})()
    trainer = type("T", (), {"is_global_zero": True, "loggers": []})()
    reporter = Reporter(tmp_path / "r.jsonl", console=False)
    summary = RoundSummary(
        round=3,
        strategy="activelab",
        num_annotations=10,
        num_labeled=8,
        num_unlabeled=2,
        requests=(),
        answers=(),
    )
    reporter.log_round(trainer, summary)
    scalars = reporter.log_evaluation(3, {"test/acc": 0.9}, loggers=[fake_logger])
    assert scalars == {"activelab/round": 3.0, "activelab/test/acc": 0.9}
    assert logged == [(3, scalars)]
    (record,) = read_round_log(tmp_path / "r.jsonl")
    assert record["test_accuracy"] == 0.9 and record["metrics"]["test/acc"] == 0.9
    with pytest.raises(ValueError, match="round=4.*was not logged"):
        reporter.log_evaluation(4, {"test/acc": 0.5})
