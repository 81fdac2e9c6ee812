"""The examples run as written (as subprocesses, with tiny settings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from activelab_lightning.reporting import read_round_log

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: int = 120) -> str:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_drop_in_example():
    out = run_example("drop_in.py", "--rounds", "2", "--max-epochs", "1", "--query-size", "10")
    assert "round 0: " in out and "round 1: " in out
    assert "re-labels" in out


@pytest.mark.slow
def test_quickstart_example(tmp_path):
    out = run_example(
        "quickstart.py",
        "--rounds",
        "2",
        "--max-epochs",
        "1",
        "--query-size",
        "20",
        "--out-dir",
        str(tmp_path),
    )
    assert "learning curve" in out
    rounds = read_round_log(tmp_path / "labels.sqlite.rounds.jsonl")
    assert [r["round"] for r in rounds] == [0, 1] and all(len(r["requests"]) == 20 for r in rounds)
    assert (tmp_path / "learning_curve.png").exists()
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.slow
def test_cifar10_example_on_a_tiny_stand_in(tmp_path):
    from test_cli import make_cifar_like

    make_cifar_like(tmp_path / "data", n=40)
    out = run_example(
        "cifar10.py",
        "--data-dir",
        str(tmp_path / "data"),
        "--test-size",
        "8",
        "--initial-labeled",
        "12",
        "--rounds",
        "1",
        "--max-epochs",
        "1",
        "--query-size",
        "4",
        "--width",
        "4",
        "--out-dir",
        str(tmp_path / "out"),
    )
    assert "learning curve" in out
    (record,) = read_round_log(tmp_path / "out" / "labels.sqlite.rounds.jsonl")
    assert len(record["requests"]) == 4


@pytest.mark.slow
def test_cifar10_example_names_a_missing_data_dir(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "cifar10.py"), "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "data.init_args.path" in proc.stderr and "no such file" in proc.stderr


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_example_two_processes(tmp_path):
    out = run_example(
        "ddp.py",
        "--devices",
        "2",
        "--rounds",
        "2",
        "--max-epochs",
        "1",
        "--query-size",
        "20",
        "--out-dir",
        str(tmp_path),
        timeout=240,
    )
    assert "rounds: [0, 1]" in out
    rounds = read_round_log(tmp_path / "labels.sqlite.rounds.jsonl")
    # rank 0 alone writes the round log: one entry per round, not one per rank
    assert len((tmp_path / "labels.sqlite.rounds.jsonl").read_text().splitlines()) == 2
    assert [len(r["requests"]) for r in rounds] == [20, 20]
