"""Crash/resume: a multi-round run SIGKILLed at many points ends with the store of an uninterrupted run.

``tests/scripts/resume_run.py`` kills itself with SIGKILL at a named point (training, pool
inference, scoring, oracle answers, store writes, datamodule refresh); re-running the same command
resumes from the store. No annotation may be lost or duplicated, and every round must select what
the uninterrupted run (same seed) selected.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from activelab_lightning.store import AnnotationStore

SCRIPT = Path(__file__).parent / "scripts" / "resume_run.py"
ROUNDS, QUERY, INITIAL = 4, 10, 30
# in timeline order: each step is a fresh "process" that resumes where the previous one died
CHAIN = [
    "train:3",  # round 0, training
    "inference:2",  # round 0, pool inference
    "fit_scores:1",  # round 0, scoring the labeled pool
    "score_unlabeled:2",  # round 0, scoring an unlabeled batch
    "before_begin_round:1",  # selection made, round not recorded yet
    "after_begin_round:1",  # round + requests recorded, oracle not asked
    "oracle:1",  # resumed round 0: about to ask the oracle again
    "after_oracle:1",  # answers received, not stored
    "before_record:1",
    "after_record:1",  # answers stored, round not completed
    "before_complete:1",
    "after_complete:1",  # round completed, datamodule not refreshed
    "refresh:1",  # restoring round 0's consensus at start-up
    "refresh:2",  # round 1 completed, refreshing
    "inference:5",  # round 2, pool inference
    "after_record:1",  # round 2, answers stored
]

pytestmark = pytest.mark.slow


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}
    out.pop("ACTIVELAB_TEST_KILL_AT", None)
    out.update(extra)
    return out


def script(out: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--out",
            str(out),
            "--rounds",
            str(ROUNDS),
            "--query",
            str(QUERY),
            *args,
        ],
        env=env(**extra_env),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    out, reference = tmp_path_factory.mktemp("resumed"), tmp_path_factory.mktemp("reference")
    proc = script(out, "--chain", ",".join(CHAIN), "--reference", str(reference))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "chain.json").read_text())


def snapshot(path: Path) -> dict:
    """The store's annotations and rounds, in the format of the script's ``chain.json``."""
    with AnnotationStore(path) as store:
        return {
            "annotations": [
                [a["example_id"], a["annotator_id"], a["label"], a["round"], a["source"], a["request_id"]]
                for a in store.iter_annotations()
            ],
            "rounds": [[r.round, r.seed, list(r.selected_ids), r.status] for r in store.rounds()],
        }


def check_store(resumed: dict, reference: dict) -> None:
    assert resumed["rounds"] == reference["rounds"]  # same selections (and seeds), every round completed
    assert [r[3] for r in resumed["rounds"]] == ["completed"] * ROUNDS
    assert resumed["annotations"] == reference["annotations"]  # same labels, same order
    pairs = Counter((a[0], a[1]) for a in resumed["annotations"])
    assert max(pairs.values()) == 1  # nobody labeled an example twice: no duplicate
    assert len(resumed["annotations"]) == INITIAL + ROUNDS * QUERY  # none lost


def test_sigkill_at_sixteen_points_then_resume_equals_an_uninterrupted_run(chain):
    assert [status for _, status in chain["steps"]] == [f"signal:{int(signal.SIGKILL)}"] * len(CHAIN)
    assert len({point.split(":")[0] for point in CHAIN}) >= 10
    assert chain["final"] == "exit:0" and chain["reference_status"] == "exit:0"
    check_store(chain["resumed"], chain["reference"])


def test_kill_via_environment_variable_and_rerun_of_the_same_command(chain, tmp_path):
    killed = script(tmp_path, ACTIVELAB_TEST_KILL_AT="after_oracle:2")  # round 1's answers are lost in flight
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    rerun = script(tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    check_store(snapshot(tmp_path / "store.sqlite"), chain["reference"])
