"""``benchmarks/paper/snow2008.py --quick`` runs end to end on generated Snow-2008-format data.

The real data (``/work/shared/data/snow2008``) is never read here: a tiny fake ``snow2008/`` folder
with the same files and columns (60 items x 10 labels, learnable words, noisy workers) is written to
``tmp_path``.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._scripts import run_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "paper" / "snow2008.py"
WORDS = ("alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta")


def _write_gz_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _fake_snow2008(root: Path, n_items: int = 60, n_workers: int = 20, labels_per_item: int = 10) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "snow2008"
    folder.mkdir(parents=True)
    gold = rng.permutation(np.arange(n_items) % 2)
    orig_ids = rng.permutation(1000)[:n_items] + 1  # orig_id != item_index, as in the real files
    quality = rng.uniform(0.55, 0.95, n_workers)
    texts, annotations = [], []
    for i in range(n_items):
        cue = "entails yes" if gold[i] else "contradicts no"
        filler = " ".join(rng.choice(WORDS, 6))
        texts.append(
            [orig_ids[i], gold[i], "CD", f"the {filler} {cue} story", f"a {rng.choice(WORDS)} claim"]
        )
        for w in rng.choice(n_workers, labels_per_item, replace=False):
            label = gold[i] if rng.random() < quality[w] else 1 - gold[i]
            annotations.append([i, orig_ids[i], w, label, gold[i]])
    rng.shuffle(texts)
    _write_gz_csv(
        folder / "rte_annotations.csv.gz",
        ["item_index", "orig_id", "annotator_id", "label", "true_label"],
        annotations,
    )
    _write_gz_csv(
        folder / "rte_texts.csv.gz", ["orig_id", "true_label", "rte_task", "text", "hypothesis"], texts
    )
    return root


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return run_script([str(SCRIPT), *args], timeout=240)


@pytest.mark.slow
def test_snow2008_quick(tmp_path: Path) -> None:
    data = _fake_snow2008(tmp_path / "data")
    out = tmp_path / "snow2008"
    common = ["--quick", "--jobs", "1", "--data-dir", str(data), "--out", str(out)]
    sizes = ["--test-size", "15", "--initial", "15", "--query-size", "8", "--svd-dim", "20"]
    proc = _run([*common, *sizes])
    assert "wrote" in proc.stdout

    results = json.loads((out / "results.json").read_text())
    strategies = ["random", "activelab"]
    assert set(strategies) <= set(results)
    protocol = results["protocol"]
    assert protocol["benchmark"] == "snow2008_rte" and protocol["quick"] is True
    assert protocol["rounds"] == 3 and protocol["initial_labeled"] == 15 and results["wall_seconds"] > 0
    for method in strategies:
        r = results[method]
        for metric in ("model_auc", "consensus_auc", "final_model_acc", "final_consensus_acc"):
            assert 0.0 <= r[metric]["mean"] <= 1.0, (method, metric, r[metric])
        curves = r["curves"]
        assert len(curves["model_acc"]["mean"]) == 3 == len(curves["consensus_acc"]["mean"])
        assert all(0.0 <= v <= 1.0 for v in curves["model_acc"]["mean"] + curves["consensus_acc"]["mean"])
        annotations = curves["num_annotations"]["mean"]
        assert annotations[0] == 15  # one real label per initially labeled item
        assert all(b > a for a, b in itertools.pairwise(annotations))

    for method in strategies:
        run = json.loads((out / "runs" / f"{method}-s0.json").read_text())
        assert len(run["num_exhausted"]) == 2 and all(n >= 0 for n in run["num_exhausted"])
        # every request is answered by a real label or reported exhausted; no item gets more than its 10
        assert [a + e for a, e in zip(run["num_answers"], run["num_exhausted"])] == run["num_requests"]
        assert run["max_labels_per_item"] <= 10
        assert all(0.0 <= v <= 1.0 for v in run["majority_vote_acc"])
    # both strategies start from the same real labels for a seed
    starts = {m: results[m]["curves"]["consensus_acc"]["mean"][0] for m in strategies}
    assert starts["random"] == starts["activelab"]

    table = (out / "results.md").read_text()
    assert all(f"| {m} | 1 |" in table for m in strategies) and "exhausted" in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # resume: the runs on disk are reused, only the aggregate is rewritten
    before = (out / "runs" / "random-s0.json").stat().st_mtime_ns
    _run([*common, *sizes])
    assert (out / "runs" / "random-s0.json").stat().st_mtime_ns == before


def test_snow2008_requires_the_data_files(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "snow2008/rte_annotations.csv.gz" in proc.stderr
