"""One run per store: a second run is refused while the first holds the store, and proceeds once
it has ended or died (issue: two runs on one store took alternate rounds)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from activelab_lightning.errors import EXIT_STORE_LOCKED, StoreLocked
from activelab_lightning.store import AnnotationStore
from activelab_lightning.store._lock import RunLock, lock_path, read_lock_owner

ROOT = Path(__file__).resolve().parents[1]

HOLD = textwrap.dedent(
    """
    import sys, time
    from activelab_lightning.store._lock import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def _hold(path: Path, seconds: float = 60.0) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid_and_takes_over_after_a_sigkill(tmp_path):
    path = tmp_path / "labels.sqlite"
    holder = _hold(path)
    try:
        assert RunLock(path).holder()["pid"] == holder.pid
        AnnotationStore(path, num_examples=3, class_names=["a", "b"]).close()
        status = subprocess.run(
            [sys.executable, "-m", "activelab_lightning.cli", "status", str(path)],
            capture_output=True,
            text=True,
        )
        assert status.returncode == 0 and f"in use by pid {holder.pid}" in status.stdout, status.stderr
        with pytest.raises(StoreLocked, match=rf"in use by pid {holder.pid} on host .*only one run"):
            RunLock(path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert RunLock(path).holder() is None  # the kernel released the dead process's lock
    with RunLock(path) as lock:
        assert lock.held and read_lock_owner(path)["pid"] == os.getpid()
    assert read_lock_owner(path) is None  # released: the owner record is cleared


def test_the_lock_is_reentrant_within_one_process_and_a_no_op_for_memory_stores(tmp_path):
    path = tmp_path / "labels.sqlite"
    outer = RunLock(path).acquire()
    inner = RunLock(path).acquire()  # the CLI takes it, then the loop again: no self-deadlock
    inner.release()
    assert RunLock(path).holder()["pid"] == os.getpid()  # still held by the outer one
    outer.release()
    outer.release()  # idempotent
    assert RunLock(path).holder() is None
    with RunLock(":memory:") as lock:
        assert not lock.held
    assert not lock_path(":memory:").exists()


def test_the_loop_refuses_a_store_another_process_runs_on_and_changes_nothing(tmp_path):
    from activelab_lightning import ActiveLearningLoop
    from activelab_lightning.callback import ActiveLabCallback
    from activelab_lightning.data import ActiveDataModule
    from activelab_lightning.datasets import make_paper_setup
    from activelab_lightning.models import MLPClassifier

    setup = make_paper_setup(seed=0)
    path = tmp_path / "labels.sqlite"
    store = AnnotationStore(path, num_examples=len(setup.dataset), class_names=setup.class_names)
    dm = ActiveDataModule(setup.dataset, store, initial_labels=list(setup.initial_annotations))
    before = (len(store), store.rounds())
    holder = _hold(path)
    try:
        loop = ActiveLearningLoop(
            MLPClassifier(input_dim=4, num_classes=4),
            dm,
            ActiveLabCallback(setup.oracle, query_size=10),
            rounds=1,
            trainer_kwargs={"max_epochs": 1},
        )
        with pytest.raises(StoreLocked, match=f"pid {holder.pid}"):
            loop.run()
        assert (len(store), store.rounds()) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


@pytest.mark.slow
def test_a_second_activelab_run_is_refused_while_the_first_runs_and_proceeds_after_it_dies(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "activelab_lightning.cli", "run", "--config", "configs/quickstart.yaml"]
    base += ["--out_dir", str(out), "--trainer.logger", "null", "--console", "false"]
    first = subprocess.Popen(
        [*base, "--loop.rounds", "50", "--trainer.max_epochs", "200"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while (read_lock_owner(out / "labels.sqlite") or {}).get("pid") != first.pid:
            assert first.poll() is None, "the first run ended before it took the store"
            assert time.monotonic() < deadline, "the first run never took the store's lock"
            time.sleep(0.2)
        config_before = (out / "config.yaml").read_bytes() if (out / "config.yaml").exists() else None
        second = subprocess.run(
            [*base, "--loop.rounds", "1"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert second.returncode == EXIT_STORE_LOCKED, second.stderr
        assert f"in use by pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        if config_before is not None:  # the refused run wrote nothing, not even its config
            assert (out / "config.yaml").read_bytes() == config_before
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    third = subprocess.run(
        [*base, "--loop.rounds", "1", "--trainer.max_epochs", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert third.returncode == 0, third.stderr[-2000:]
    store = AnnotationStore(out / "labels.sqlite")
    assert store.last_completed_round() >= 0
