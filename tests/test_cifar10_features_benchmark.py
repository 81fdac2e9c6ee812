"""``benchmarks/paper/cifar10_features.py`` runs end to end in ``--quick`` mode on generated data.

Never reads the shared data folder: tiny fake ``cifar10_test.npz`` / ``cifar10h_counts.npz`` files
(same keys and dtypes) are written to ``tmp_path``.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._scripts import run_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "paper" / "cifar10_features.py"
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _fake_data(root: Path, n: int = 300) -> Path:
    rng = np.random.default_rng(0)
    (root / "cifar10_test").mkdir(parents=True)
    (root / "cifar10h_counts").mkdir()
    y = rng.integers(0, 10, n).astype(np.int64)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    x[:, :, :, 0] = (y * 25)[:, None, None].astype(np.uint8)  # a learnable signal
    pred = rng.dirichlet(np.ones(10), n).astype(np.float32)
    np.savez(
        root / "cifar10_test" / "cifar10_test.npz", x=x, y=y, pred_probs_cv=pred, class_names=np.array(NAMES)
    )
    counts = rng.integers(0, 3, (n, 10)).astype(np.int16)
    counts[np.arange(n), y] += 40
    np.savez(
        root / "cifar10h_counts" / "cifar10h_counts.npz",
        counts=counts,
        probs=counts / counts.sum(1, keepdims=True),
    )
    return root


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return run_script([str(SCRIPT), *args], timeout=120)


@pytest.mark.slow
def test_cifar10_features_quick(tmp_path: Path) -> None:
    data = _fake_data(tmp_path / "data")
    out = tmp_path / "out"
    proc = _run(["--quick", "--data-dir", str(data), "--out", str(out)])
    assert "extractor trained" in proc.stdout and "wrote" in proc.stdout

    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"random", "activelab"}
    protocol = results["protocol"]
    assert protocol["benchmark"] == "cifar10_features" and protocol["quick"] is True
    assert protocol["pred_probs"] == "crossfit" and protocol["model"]["dim"] == 16  # 4 * width 4
    assert 0.0 <= protocol["extractor"]["holdout_acc"] <= 1.0
    assert protocol["extractor"]["trained_on"].startswith("true labels of images 200-279")
    for method in ("random", "activelab"):
        r = results[method]
        for metric in ("model_auc", "consensus_auc", "final_model_acc", "final_consensus_acc"):
            assert 0.0 <= r[metric]["mean"] <= 1.0
        curves = r["curves"]
        assert len(curves["model_acc"]["mean"]) == 3 == len(curves["consensus_acc"]["mean"])
        assert all(0.0 <= v <= 1.0 for v in curves["model_acc"]["mean"] + curves["consensus_acc"]["mean"])
        annotations = curves["num_annotations"]["mean"]
        assert annotations == [60.0, 80.0, 100.0]  # 60 initial labels, then 20 requests per round
        assert all(b > a for a, b in itertools.pairwise(annotations))
    # same initial labels for every method
    assert (
        results["random"]["curves"]["consensus_acc"]["mean"][0]
        == results["activelab"]["curves"]["consensus_acc"]["mean"][0]
    )
    assert "| activelab | 1 |" in (out / "results.md").read_text()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the features cache: (200, 16) float32, z-scored on the pool rows
    with np.load(out / "features.npz") as cached:
        features = cached["features"]
    assert features.shape == (200, 16) and features.dtype == np.float32 and np.isfinite(features).all()

    # resume: runs and features are reused
    before = (out / "runs" / "random-s0.json").stat().st_mtime_ns
    proc = _run(["--quick", "--data-dir", str(data), "--out", str(out)])
    assert "reusing" in proc.stdout
    assert (out / "runs" / "random-s0.json").stat().st_mtime_ns == before


def test_same_split_initial_labels_and_oracle_as_cifar10_experiment(tmp_path: Path) -> None:
    """The feature benchmark rebuilds Cifar10Experiment's split, cold-start labels and oracle exactly."""
    sys.path.insert(0, str(SCRIPT.parent))
    import cifar10_features as bench

    from activelab_lightning.experiments import Cifar10Experiment
    from activelab_lightning.records import LabelRequest

    data = _fake_data(tmp_path / "data", n=120)
    out = tmp_path / "out"
    args = bench.parse_args(["--quick", "--data-dir", str(data), "--out", str(out)])
    args.al_images, args.test_size, args.initial = 100, 30, 25
    n_pool = args.al_images - args.test_size
    args.cache.parent.mkdir(parents=True)
    np.savez(args.cache, features=np.zeros((args.al_images, 3), np.float32), meta=np.array("{}"))
    dm, oracle, truth = bench.build_datamodule(args, seed=3)
    parts = Cifar10Experiment(
        path=str(data / "cifar10_test" / "cifar10_test.npz"),
        subset=args.al_images,
        test_size=args.test_size,
        initial_labeled=args.initial,
        split_seed=0,
    ).build(store_path=":memory:", seed=3)
    assert torch.equal(truth, parts.true_labels)
    assert (
        torch.equal(dm.labeled_ids, parts.datamodule.labeled_ids) and dm.labeled_ids.numel() == args.initial
    )
    ours_matrix, ours_annotators = dm.store.label_matrix()
    theirs_matrix, theirs_annotators = parts.store.label_matrix()
    assert ours_annotators == theirs_annotators
    assert torch.equal(ours_matrix.nan_to_num(-1), theirs_matrix.nan_to_num(-1))
    requests = [LabelRequest(i, 0.0, "new", 1) for i in range(n_pool)]
    ours = [(a.example_id, a.annotator_id, a.label) for a in oracle.request(requests).annotations]
    theirs = [(a.example_id, a.annotator_id, a.label) for a in parts.oracle.request(requests).annotations]
    assert ours == theirs and len(ours) == n_pool
