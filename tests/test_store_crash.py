"""Crash safety of the AnnotationStore: SIGKILL a writer at random moments, 20 times.

After every kill the database must open, pass ``PRAGMA integrity_check``, hold only whole
batches (one batch = one ``add_annotations`` call = one transaction), and hold every batch the
writer acknowledged (printed after the call returned) before it was killed.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from activelab_lightning.store import AnnotationStore

WRITER = Path(__file__).with_name("_store_writer.py")
BATCH_SIZE = 40
NUM_EXAMPLES = 5_000
KILLS = 20


def _batches_in(path: Path) -> dict[int, int]:
    """``batch index -> number of its annotations`` found in the database."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT annotator_id, COUNT(*) FROM annotations GROUP BY annotator_id").fetchall()
    finally:
        conn.close()
    return {int(a.removeprefix("writer-")): n for a, n in rows}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")
def test_sigkill_at_random_moments_leaves_only_whole_acknowledged_batches(tmp_path: Path) -> None:
    rng = random.Random(20231107)
    db = tmp_path / "labels.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    acked: set[int] = set()
    next_batch = 0
    kills_while_writing = 0
    for kill in range(KILLS):
        log = tmp_path / f"writer-{kill}.err"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(WRITER), str(db), str(next_batch), str(BATCH_SIZE), str(NUM_EXAMPLES)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
            )
        if kill % 5 == 0:  # a kill at any moment, start-up and store creation included
            time.sleep(rng.uniform(0.0, 0.5))
            out = ""
        else:  # a kill while batches are being committed, however slow the machine is to start Python
            out = proc.stdout.readline()
            time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        out += proc.communicate(timeout=30)[0]
        assert proc.returncode == -signal.SIGKILL, (
            f"writer ended on its own: rc={proc.returncode}\n{log.read_text()}"
        )
        new_acks = {int(line.split()[1]) for line in out.splitlines() if line.startswith("ack ")}
        kills_while_writing += bool(new_acks)
        acked |= new_acks

        if not db.exists():  # killed before it created the file
            continue
        present = _batches_in(db)
        torn = {b: n for b, n in present.items() if n != BATCH_SIZE}
        assert not torn, f"kill {kill}: partial batches {torn} (batch size {BATCH_SIZE})"
        lost = acked - present.keys()
        assert not lost, f"kill {kill}: acknowledged batches {sorted(lost)} are missing"
        with AnnotationStore(db, num_examples=NUM_EXAMPLES, class_names=("a", "b", "c")) as store:
            assert len(store) == BATCH_SIZE * len(present)
            assert int(store.label_counts().sum()) == BATCH_SIZE * len(present)
        next_batch = max(present, default=-1) + 1

    assert kills_while_writing >= KILLS // 2, f"only {kills_while_writing} kills hit a writing process"
    with AnnotationStore(db) as store:
        matrix, annotators = store.label_matrix()
        assert len(annotators) == len(acked | present.keys())
        assert int((~matrix.isnan()).sum()) == BATCH_SIZE * len(annotators)
    assert len(acked) >= KILLS, f"only {len(acked)} batches were acknowledged in {KILLS} runs"
