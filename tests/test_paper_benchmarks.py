"""The paper benchmark scripts run end to end in ``--quick`` mode and write the documented outputs."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._scripts import run_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "benchmarks" / "paper"


def _run(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess[str]:
    return run_script(args, timeout=timeout)


def _check_outputs(out: Path, strategies: list[str], rounds: int) -> dict:
    results = json.loads((out / "results.json").read_text())
    assert set(strategies) <= set(results)
    assert results["protocol"]["quick"] is True and results["wall_seconds"] > 0
    for method in strategies:
        r = results[method]
        for metric in ("model_auc", "consensus_auc"):
            assert set(r[metric]) >= {"mean", "std"} and 0.0 < r[metric]["mean"] <= 1.0
        curves = r["curves"]
        assert len(curves["model_acc"]["mean"]) == rounds == len(curves["consensus_acc"]["mean"])
        annotations = curves["num_annotations"]["mean"]
        assert all(b > a for a, b in itertools.pairwise(annotations))  # every round adds labels
        assert abs(r["model_auc"]["mean"] - sum(curves["model_acc"]["mean"]) / rounds) < 1e-9
    table = (out / "results.md").read_text()
    assert all(f"| {m} | 1 |" in table for m in strategies)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return results


@pytest.mark.slow
def test_wall_robot_quick(tmp_path: Path) -> None:
    out = tmp_path / "wall_robot"
    proc = _run([str(SCRIPTS / "wall_robot.py"), "--quick", "--jobs", "1", "--out", str(out)])
    assert "wrote" in proc.stdout
    results = _check_outputs(out, ["random", "activelab"], rounds=3)
    assert results["protocol"]["pred_probs"] == "crossfit"  # the callback's default, one fit per round
    assert results["activelab"]["paper"] == {"model": 0.9499, "consensus": 0.9741}
    # consensus starts from the same initial labels for every method, and each round asks 100 labels
    starts = {m: results[m]["curves"]["consensus_acc"]["mean"][0] for m in ("random", "activelab")}
    assert starts["random"] == starts["activelab"]
    assert results["random"]["curves"]["num_annotations"]["mean"][1:] == [
        results["random"]["curves"]["num_annotations"]["mean"][0] + 100 * i for i in (1, 2)
    ]
    # resume: the runs on disk are reused, only the aggregate is rewritten
    before = (out / "runs" / "random-s0.json").stat().st_mtime_ns
    _run([str(SCRIPTS / "wall_robot.py"), "--quick", "--jobs", "1", "--out", str(out)])
    assert (out / "runs" / "random-s0.json").stat().st_mtime_ns == before


def test_wall_robot_rejects_ensembles_in_sample(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "wall_robot.py"),
            "--in-sample",
            "--strategies",
            "disagreement",
            "--out",
            str(tmp_path),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "need the" in proc.stderr and "CV fold models" in proc.stderr


def _fake_cifar(root: Path, n: int = 400) -> Path:
    rng = np.random.default_rng(0)
    (root / "cifar10_test").mkdir(parents=True)
    (root / "cifar10h_counts").mkdir()
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    x[np.arange(n), :, :, 0] = (y * 25)[:, None, None].astype(np.uint8)  # learnable signal
    names = np.array(
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    )
    np.savez(root / "cifar10_test" / "cifar10_test.npz", x=x, y=y, class_names=names)
    counts = rng.integers(0, 3, (n, 10))
    counts[np.arange(n), y] += 40
    np.savez(root / "cifar10h_counts" / "cifar10h_counts.npz", counts=counts)
    return root


@pytest.mark.slow
def test_cifar10_quick(tmp_path: Path) -> None:
    data = _fake_cifar(tmp_path / "data")
    out = tmp_path / "cifar10"
    _run([str(SCRIPTS / "cifar10.py"), "--quick", "--jobs", "1", "--data-dir", str(data), "--out", str(out)])
    results = _check_outputs(out, ["random", "activelab"], rounds=3)
    assert results["protocol"]["benchmark"] == "cifar10"
    assert results["activelab"]["paper"] == {"model": 0.7902, "consensus": 0.9250}
