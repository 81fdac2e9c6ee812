"""DDP on CPU (``strategy="ddp"``, 2 processes) selects exactly what 1 process selects,
in round mode (``ActiveLearningLoop``, file store) and in continuous mode (one ``fit``, in-memory
stores).

The runs are subprocesses of ``tests/scripts/ddp_run.py`` (``strategy="ddp"`` inside the pytest
process would re-run pytest in the child rank). Weights are fixed (``lr=0``), so every round's
selection must be identical; the oracle (rank 0 only) must be asked exactly once per request and
every rank's datamodule must end in the same state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "ddp_run.py"
ROUNDS, QUERY = 3, 15

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def run(out: Path, devices: int, store: str, *extra: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--devices",
            str(devices),
            "--out",
            str(out),
            "--store",
            store,
            "--rounds",
            str(ROUNDS),
            "--query",
            str(QUERY),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    calls = [json.loads(line) for line in (out / "oracle_calls.jsonl").read_text().splitlines()]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]
    return {"selections": json.loads((out / "selections.json").read_text()), "calls": calls, "ranks": ranks}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    return run(tmp_path_factory.mktemp("ddp1"), 1, "memory")


def check_against_single(result: dict, single: dict) -> None:
    assert [r[2] for r in result["selections"]] == ["completed"] * ROUNDS
    assert result["selections"] == single["selections"]  # same examples, same order, every round
    # the oracle was called exactly once per request, by rank 0 only
    asked = [c["request_id"] for c in result["calls"]]
    assert len(asked) == ROUNDS * QUERY and len(set(asked)) == len(asked)
    assert {c["rank"] for c in result["calls"]} == {0}
    expected = {f"r{r}:e{e}" for r, ids, _ in single["selections"] for e in ids}
    assert set(asked) == expected
    # every rank's datamodule saw the same labels and consensus
    first = result["ranks"][0]
    assert all(view == first for view in result["ranks"][1:])
    assert first == single["ranks"][0]


def test_two_process_ddp_with_a_file_store_selects_like_one_process(single, tmp_path):
    result = run(tmp_path, 2, "file")
    check_against_single(result, single)
    round_log = (tmp_path / "store.sqlite.rounds.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in round_log] == list(range(ROUNDS))  # rank 0 reports once


def test_two_process_continuous_mode_with_in_memory_stores_selects_like_one_process(single, tmp_path):
    """One ``fit`` acquiring after every epoch (``every_n_epochs=1``) under DDP; each rank has its own
    in-memory store, so ranks other than 0 replay rank 0's answers without asking the oracle."""
    check_against_single(run(tmp_path, 2, "memory", "--continuous"), single)


def test_two_process_ddp_heads_ensemble_selects_like_one_process(tmp_path):
    """The default strategy: the cross-fitted heads are fitted on rank 0 and broadcast, and every
    rank's unlabeled shard feeds all heads in one pass; 2 processes select what 1 process selects."""
    one = run(tmp_path / "one", 1, "memory", "--strategy", "activelab_ensemble")
    two = run(tmp_path / "two", 2, "file", "--strategy", "activelab_ensemble")
    check_against_single(two, one)
