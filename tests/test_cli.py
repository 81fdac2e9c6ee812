"""The `activelab` CLI: configs round-trip through --print_config, bad input fails early, store tools."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from activelab_lightning.cli import main
from activelab_lightning.reporting import read_round_log

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def tiny(out_dir: Path, *extra: str) -> list[str]:
    """`activelab run` on the quickstart config, cut to 2 short rounds with a CSV logger in out_dir."""
    logger = json.dumps(
        [
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(out_dir), "name": "csv"},
            }
        ]
    )
    return [
        "run",
        "--config",
        str(QUICKSTART),
        "--out_dir",
        str(out_dir),
        "--loop.rounds",
        "2",
        "--trainer.max_epochs",
        "2",
        "--callback.query_size",
        "20",
        "--trainer.logger",
        logger,
        "--console",
        "false",
        *extra,
    ]


def selections(out_dir: Path) -> list[list[int]]:
    return [
        [q["example_id"] for q in r["requests"]]
        for r in read_round_log(out_dir / "labels.sqlite.rounds.jsonl")
    ]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main(tiny(out)) == 0
    return out


@pytest.mark.slow
def test_run_writes_store_round_log_curve_and_config(tiny_run):
    rounds = read_round_log(tiny_run / "labels.sqlite.rounds.jsonl")
    assert [r["round"] for r in rounds] == [0, 1]
    assert all(len(r["requests"]) == 20 for r in rounds)
    assert all(r["test_accuracy"] is not None and r["consensus_accuracy"] is not None for r in rounds)
    assert (tiny_run / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (tiny_run / "csv" / "version_0" / "metrics.csv").exists()
    saved = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert saved["loop"]["rounds"] == 2 and saved["callback"]["query_size"] == 20


@pytest.mark.slow
@pytest.mark.slow
def test_rerunning_a_finished_run_says_it_is_complete_and_changes_nothing(tiny_run, capsys):
    from activelab_lightning.store import AnnotationStore

    store = AnnotationStore(tiny_run / "labels.sqlite")
    before = (len(store), store.rounds())
    store.close()
    capsys.readouterr()
    assert main(tiny(tiny_run)) == 0
    err = capsys.readouterr().err
    assert "already complete" in err and "holds 2 completed rounds" in err and "--loop.rounds 3" in err
    store = AnnotationStore(tiny_run / "labels.sqlite")
    assert (len(store), store.rounds()) == before


def test_print_config_round_trips_to_the_same_selections(tiny_run, tmp_path, capsys):
    """Must-show 3: the printed config, fed back with --config, selects the same examples."""
    with pytest.raises(SystemExit) as exit_info:
        main(tiny(tiny_run, "--print_config"))
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    config = yaml.safe_load(printed)
    assert config["model"]["class_path"] == "activelab_lightning.models.MLPClassifier"
    assert config["data"]["class_path"] == "activelab_lightning.experiments.WallRobotExperiment"
    assert config["trainer"]["max_epochs"] == 2
    path = tmp_path / "printed.yaml"
    path.write_text(printed)
    again = tmp_path / "again"
    logger = json.dumps(
        [
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(again), "name": "csv"},
            }
        ]
    )
    assert main(["run", "--config", str(path), "--out_dir", str(again), "--trainer.logger", logger]) == 0
    first, second = selections(tiny_run), selections(again)
    assert len(first) == 2 and all(len(s) == 20 for s in first)
    assert first == second


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def expect_error(argv: list[str], capsys, *needles: str) -> str:
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2, err
    for needle in needles:
        assert needle in err, err
    return err


def test_misspelled_key_is_named(tmp_path, capsys):
    bad = write(tmp_path, "callback:\n  query_sise: 10\n")
    expect_error(
        ["run", "--config", str(QUICKSTART), "--config", str(bad), "--out_dir", str(tmp_path / "o")],
        capsys,
        "callback.query_sise",
        "Did you mean 'callback.query_size'?",
    )
    assert not (tmp_path / "o").exists()  # nothing built, nothing trained


def test_misspelled_class_path_is_named(tmp_path, capsys):
    bad = write(tmp_path, "model:\n  class_path: activelab_lightning.models.MLPClassifer\n")
    expect_error(
        ["run", "--config", str(QUICKSTART), "--config", str(bad), "--out_dir", str(tmp_path / "o")],
        capsys,
        "MLPClassifer",
        "Did you mean class_path: activelab_lightning.models.MLPClassifier?",
    )
    assert not (tmp_path / "o").exists()


def test_misspelled_command_line_option_is_named(tmp_path, capsys):
    expect_error(
        tiny(tmp_path / "o", "--loops.rounds", "3"), capsys, "loops.rounds", "Did you mean 'loop.rounds'?"
    )


def test_wrong_type_names_key_and_expected_type(tmp_path, capsys):
    expect_error(
        tiny(tmp_path / "o", "--callback.query_size", "many"), capsys, "callback.query_size", "int", "many"
    )
    assert not (tmp_path / "o").exists()


def test_missing_data_path_names_the_key(tmp_path, capsys):
    bad = write(
        tmp_path,
        "data:\n  class_path: activelab_lightning.experiments.Cifar10Experiment\n"
        f"  init_args:\n    path: {tmp_path / 'missing' / 'cifar10_test.npz'}\n",
    )
    expect_error(
        ["run", "--config", str(QUICKSTART), "--config", str(bad), "--out_dir", str(tmp_path / "o")],
        capsys,
        "data.init_args.path",
        "cifar10_test.npz",
        "no such file",
    )
    assert not (tmp_path / "o").exists()


def test_model_that_does_not_fit_the_data_fails_before_training(tmp_path, capsys):
    expect_error(tiny(tmp_path / "o", "--model.input_dim", "24"), capsys, "model", "input_dim", "(B, 24)")
    assert not (tmp_path / "o" / "csv").exists()  # no Trainer ever ran


def test_model_with_wrong_number_of_classes_is_named(tmp_path, capsys):
    expect_error(tiny(tmp_path / "o", "--model.num_classes", "3"), capsys, "model.init_args.num_classes: 4")


def test_help_lists_subcommands(capsys):
    assert main([]) == 2
    assert "status" in capsys.readouterr().out


@pytest.mark.slow
def test_status_export_import(tiny_run, tmp_path, capsys):
    store = tiny_run / "labels.sqlite"
    assert main(["status", str(store)]) == 0
    out = capsys.readouterr().out
    assert "rounds" in out and "annotators" in out and "pending requests: 0" in out
    assert "completed" in out
    exported = tmp_path / "labels.csv"
    assert main(["export", str(store), str(exported)]) == 0
    assert "exported" in capsys.readouterr().out
    header = exported.read_text().splitlines()[0]
    assert "example_id" in header and "annotator_id" in header
    # importing the same labels again adds nothing
    assert main(["import", str(store), str(exported)]) == 0
    assert "imported 0 new annotations" in capsys.readouterr().out


def test_status_of_a_missing_store(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nope.sqlite")]) == 2
    assert "no such file" in capsys.readouterr().err


def make_cifar_like(folder: Path, n: int = 48) -> tuple[Path, Path]:
    """A tiny stand-in for cifar10_test.npz / cifar10h_counts.npz (random images, the same layout)."""
    rng = np.random.default_rng(0)
    names = np.array(
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    )
    y = np.arange(n) % 10
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    counts = rng.integers(0, 3, size=(n, 10)).astype(np.int16)
    counts[np.arange(n), y] += 40
    (folder / "cifar10_test").mkdir(parents=True)
    (folder / "cifar10h_counts").mkdir(parents=True)
    images = folder / "cifar10_test" / "cifar10_test.npz"
    np.savez(images, x=x, y=y.astype(np.int64), class_names=names)
    np.savez(folder / "cifar10h_counts" / "cifar10h_counts.npz", counts=counts)
    return images, folder / "cifar10h_counts" / "cifar10h_counts.npz"


@pytest.mark.slow
def test_cifar10_config_runs_on_a_tiny_stand_in(tmp_path):
    images, counts = make_cifar_like(tmp_path / "data")
    out = tmp_path / "out"
    logger = json.dumps(
        [
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(out), "name": "csv"},
            }
        ]
    )
    argv = [
        "run",
        "--config",
        str(ROOT / "configs" / "cifar10.yaml"),
        "--data.path",
        str(images),
        "--data.counts_path",
        str(counts),
        "--data.test_size",
        "8",
        "--data.initial_labeled",
        "16",
        "--model.width",
        "4",
        "--loop.rounds",
        "1",
        "--trainer.max_epochs",
        "1",
        "--callback.query_size",
        "5",
        "--out_dir",
        str(out),
        "--trainer.logger",
        logger,
        "--console",
        "false",
    ]
    assert main(argv) == 0
    (record,) = read_round_log(out / "labels.sqlite.rounds.jsonl")
    assert len(record["requests"]) == 5
    assert all(a["annotator_id"].startswith("c10h-") for a in record["answers"])


@pytest.mark.parametrize("name", ["quickstart", "wall_robot_paper", "cifar10", "ddp", "label_studio"])
def test_shipped_configs_parse(name, capsys):
    """Every shipped config is valid (keys, types, class paths) — checked without building anything."""
    from activelab_lightning.cli import build_run_parser

    parser = build_run_parser()
    path = ROOT / "configs" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    if raw["data"]["class_path"].endswith("Cifar10Experiment"):
        pytest.importorskip("numpy")
        raw["data"]["init_args"]["path"] = str(QUICKSTART)  # any existing file: the parser checks existence
        raw["data"]["init_args"]["counts_path"] = str(QUICKSTART)
        text = yaml.safe_dump(raw)
        cfg = parser.parse_string(text)
    else:
        cfg = parser.parse_args(["--config", str(path)])
    assert cfg.model.class_path.startswith("activelab_lightning.models.")
    assert cfg.loop.rounds >= 1


@pytest.mark.slow
def test_quickstart_config_with_offline_wandb(tmp_path, monkeypatch, capsys):
    """The quickstart config in-process (2 short rounds): per-round table, PNG, round log, offline W&B run."""
    import _wandb_reader

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    loggers = json.dumps(
        [
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(tmp_path), "name": "csv"},
            },
            {
                "class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {"save_dir": str(tmp_path), "project": "activelab-quickstart", "offline": True},
            },
        ]
    )
    argv = [
        "run",
        "--config",
        str(QUICKSTART),
        "--out_dir",
        str(tmp_path),
        "--loop.rounds",
        "2",
        "--trainer.max_epochs",
        "2",
        "--trainer.logger",
        loggers,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "round 0" in out and "round 1" in out and "all rounds" in out
    assert (tmp_path / "learning_curve.png").exists()
    assert [r["round"] for r in read_round_log(tmp_path / "labels.sqlite.rounds.jsonl")] == [0, 1]
    rows = _wandb_reader.history_rows(_wandb_reader.wait_until_complete(tmp_path))
    logged = [r for r in rows if "activelab/num_annotations" in r]
    assert [r["activelab/round"] for r in logged] == [0, 1]
    tests = [r["activelab/test/acc"] for r in rows if "activelab/test/acc" in r]
    assert len(tests) == 2 and all(0.0 <= t <= 1.0 for t in tests)
    assert len(_wandb_reader.table_files(tmp_path, "activelab/selected")) == 2


@pytest.mark.slow
def test_human_answers_by_file_exit_75_then_resume(tmp_path, capsys):
    """A FileAnswers oracle stops the run with exit 75 until the answers file is filled in."""
    import csv

    from activelab_lightning.errors import EXIT_WAITING_FOR_LABELS

    human = tmp_path / "human"
    argv = tiny(
        tmp_path / "out",
        "--loop.rounds",
        "1",
        "--trainer.max_epochs",
        "1",
        "--callback.query_size",
        "3",
        "--oracle",
        "activelab_lightning.experiments.FileAnswers",
        "--oracle.directory",
        str(human),
    )
    assert main(argv) == EXIT_WAITING_FOR_LABELS
    assert "waiting for 3 labels" in capsys.readouterr().err
    with open(human / "requests" / "round_000.csv", newline="") as fh:
        requests = list(csv.DictReader(fh))
    with open(human / "answers.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["example_id", "annotator_id", "label"])
        writer.writerows([[r["example_id"], "alice", "Move-Forward"] for r in requests])
    assert main(argv) == 0
    (record,) = read_round_log(tmp_path / "out" / "labels.sqlite.rounds.jsonl")
    assert sorted(a["example_id"] for a in record["answers"]) == sorted(
        int(r["example_id"]) for r in requests
    )
    assert {a["annotator_id"] for a in record["answers"]} == {"alice"}


# ------------------------------------------------------------------ building blocks the configs name
def test_small_cnn_takes_uint8_nhwc_and_float_nchw_alike():
    import torch

    from activelab_lightning.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(num_classes=10, width=4).eval()
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    as_float = images.permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        assert torch.allclose(model(images), model(as_float), atol=1e-6)
    with pytest.raises(ValueError, match=r"uint8 images must be \(B, H, W, 3\)"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_mlp_classifier_checks_its_arguments_and_inputs():
    import torch

    from activelab_lightning.models import MLPClassifier

    with pytest.raises(ValueError, match=r"MLPClassifier\(input_dim=0\): must be a positive int"):
        MLPClassifier(input_dim=0, num_classes=3)
    with pytest.raises(ValueError, match=r"MLPClassifier\(dropout=1.5\)"):
        MLPClassifier(input_dim=2, num_classes=3, dropout=1.5)
    with pytest.raises(ValueError, match=r"lr=0"):
        MLPClassifier(input_dim=2, num_classes=3, lr=0)
    with pytest.raises(ValueError, match=r"expected shape \(B, 2\)"):
        MLPClassifier(input_dim=2, num_classes=3)(torch.zeros(4, 5))


def test_mlp_trains_on_soft_targets():
    import torch

    from activelab_lightning.models import MLPClassifier

    model = MLPClassifier(input_dim=2, num_classes=3, hidden_dims=(4,))
    soft = torch.softmax(torch.randn(5, 3), -1)
    with warnings.catch_warnings():  # self.log outside a Trainer warns; the loss is what matters here
        warnings.simplefilter("ignore")
        loss = model.training_step((torch.randn(5, 2), soft), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_cifar10_experiment_validates_its_files(tmp_path):
    from activelab_lightning.experiments import Cifar10Experiment

    images, counts = make_cifar_like(tmp_path / "data", n=20)
    with pytest.raises(FileNotFoundError, match="data.init_args.counts_path"):
        Cifar10Experiment(path=str(images), counts_path=str(tmp_path / "nope.npz"))
    # default counts path: the shared data folder's layout next to the images' folder
    exp = Cifar10Experiment(path=str(images), test_size=4, initial_labeled=6)
    parts = exp.build(store_path=":memory:", seed=0)
    assert len(parts.dataset) == 16 and parts.num_classes == 10 and parts.input_shape == (32, 32, 3)
    assert len(parts.datamodule.labeled_ids) == 6
    with pytest.raises(ValueError, match=r"data.init_args.test_size=20: must be in 1 .. 19"):
        Cifar10Experiment(path=str(images), counts_path=str(counts), test_size=20).build(
            store_path=":memory:", seed=0
        )


def test_simulated_annotators_spec_replaces_the_oracle():
    from activelab_lightning.experiments import SimulatedAnnotators, WallRobotExperiment

    parts = WallRobotExperiment().build(store_path=":memory:", seed=0)
    oracle = SimulatedAnnotators(annotators=[0.9, 0.8, 0.7]).build(parts, seed=1)
    assert oracle.annotator_ids == ("sim-00", "sim-01", "sim-02")


# ------------------------------------------------------------------ config errors: one line, named key
@pytest.fixture(scope="module")
def run_parser():
    from activelab_lightning.cli import build_run_parser

    return build_run_parser()


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (
            ["--model.hiden_dims", "[8]"],
            ["model.init_args.hiden_dims", "Did you mean 'model.init_args.hidden_dims'?"],
        ),
        (
            ["--data.init_args.sensor", "4"],
            ["data.init_args.sensor", "Did you mean 'data.init_args.sensors'?"],
        ),
        (["--data.sensors", "5"], ["data.init_args.sensors", "Literal[4, 24]", "'5'", "--data.sensors 5"]),
        (["--seed", "x"], ["seed: expected int, got 'x' (--seed x)"]),
        (["--trainer.max_epochs", "x"], ["trainer.max_epochs: expected Optional[int], got 'x'"]),
        (
            ["--trainer.logger", '[{"class_path": "lightning.pytorch.loggers.CSVLoger"}]'],
            ["trainer.logger[0].class_path", "Did you mean class_path: lightning.pytorch.loggers.CSVLogger?"],
        ),
        (["--oracle", "activelab_lightning.experiments.FileAnswer"], ["FileAnswers?"]),
    ],
)
def test_config_errors_name_the_key_the_value_and_a_fix(run_parser, extra, needles):
    from activelab_lightning.cli import ConfigError, prepare_run

    with pytest.raises(ConfigError) as info:
        prepare_run(["--config", str(QUICKSTART), *extra], parser=run_parser)
    message = str(info.value)
    assert "\n" not in message and message.endswith("(`activelab run --help` lists every option.)")
    for needle in needles:
        assert needle in message, message


def test_config_file_errors_name_the_file(run_parser, tmp_path):
    from activelab_lightning.cli import ConfigError, prepare_run

    bad = write(
        tmp_path,
        "oracle:\n  class_path: activelab_lightning.experiments.CsvAnswers\n  init_args:\n    paht: x.csv\n",
    )
    with pytest.raises(
        ConfigError,
        match=r"'oracle.init_args.paht' \(in .*bad.yaml\). Did you mean 'oracle.init_args.path'\?",
    ):
        prepare_run(["--config", str(QUICKSTART), "--config", str(bad)], parser=run_parser)


def test_settings_are_read_from_the_command_line_and_each_config():
    from activelab_lightning.cli.settings import collect_settings

    settings = collect_settings(
        [
            "--config",
            "callback:\n  query_size: 3\nmodel:\n  class_path: a.B\n",
            "--loop.rounds=2",
            "--console",
        ],
        leaves={"callback.query_size", "model", "loop.rounds", "console"},
    )
    assert [(s.key, s.value, s.from_command_line) for s in settings] == [
        ("callback.query_size", 3, False),
        ("model", {"class_path": "a.B"}, False),
        ("loop.rounds", "2", True),
        ("console", None, True),
    ]
    assert settings[0].where() == "callback.query_size: 3 in the --config string"
    assert settings[2].where() == "--loop.rounds 2"


def test_oracle_specs_forward_their_fields_by_name():
    import dataclasses

    from activelab_lightning.experiments import FileAnswers, OracleSpec
    from activelab_lightning.oracles import FileOracle

    assert FileAnswers("labels", answers="a.jsonl").oracle_kwargs(FileOracle) == {
        "directory": "labels",
        "answers": "a.jsonl",
    }

    @dataclasses.dataclass
    class Drifted(OracleSpec):
        directory: str = "x"
        answer_file: str = "a.csv"

        def build(self, parts, *, seed):
            return None

    with pytest.raises(TypeError, match="FileOracle has no parameter 'answer_file'"):
        Drifted().oracle_kwargs(FileOracle)


@pytest.mark.slow
def test_out_dir_moves_the_configs_loggers_with_the_run(tmp_path, monkeypatch):
    """The shipped configs say `save_dir: .`: relative to out_dir, so `--out_dir` moves every log."""
    monkeypatch.chdir(tmp_path)  # a stray relative save_dir would land here
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "elsewhere"
    argv = ["run", "--config", str(QUICKSTART), "--out_dir", str(out), "--loop.rounds", "1"]
    argv += ["--trainer.max_epochs", "1", "--callback.query_size", "10", "--console", "false"]
    assert main(argv) == 0
    assert list((out / "csv").glob("version_*/metrics.csv")), sorted(p.name for p in out.iterdir())
    assert (out / "wandb").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]  # nothing outside out_dir
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert all(logger["init_args"]["save_dir"] == "." for logger in saved["trainer"]["logger"])
