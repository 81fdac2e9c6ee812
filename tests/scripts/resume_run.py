"""A multi-round active-learning run that can be SIGKILLed at named points (``tests/test_resume.py``).

Single run::

    ACTIVELAB_TEST_KILL_AT=after_record:1 python tests/scripts/resume_run.py --out DIR

kills itself (``os.kill(os.getpid(), SIGKILL)``) the first time the store has recorded oracle
answers; re-running the same command without the variable resumes from ``DIR/store.sqlite``.

Chain mode (``--chain p1,p2,... --reference REF``) imports everything once and then runs each step
in a forked child: step ``i`` runs with ``ACTIVELAB_TEST_KILL_AT=p_i`` and must die by SIGKILL, then a
last child runs to the end. An uninterrupted run with the same seed goes to ``REF``. The outcome is
written to ``DIR/chain.json``: each step's exit status and both stores' annotations and rounds.

Kill points: ``train`` (a training step), ``inference`` (a pool-inference batch), ``fit_scores``
(scoring the labeled pool), ``score_unlabeled`` (scoring an unlabeled batch), ``oracle`` /
``after_oracle`` (before / after the oracle answered), ``before_begin_round`` /
``after_begin_round``, ``before_record`` / ``after_record``, ``before_complete`` /
``after_complete`` (store writes) and ``refresh`` (the datamodule refresh). ``name:n`` kills at
the n-th hit of that point in the process.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch.utils.data import TensorDataset

from activelab_lightning.callback import ActiveLabCallback
from activelab_lightning.data import ActiveDataModule
from activelab_lightning.loop import ActiveLearningLoop
from activelab_lightning.oracles import SimulatedOracle
from activelab_lightning.selection.strategies import ActiveLabStrategy, register_strategy
from activelab_lightning.store import AnnotationStore
from tests._models import TinyMLP, make_blobs

KILL_ENV = "ACTIVELAB_TEST_KILL_AT"
N, D, K = 120, 4, 3
_hits: collections.Counter = collections.Counter()


def hit(point: str) -> None:
    """SIGKILL this process at the n-th hit of ``point`` if ``$ACTIVELAB_TEST_KILL_AT == point:n``."""
    name, _, count = os.environ.get(KILL_ENV, "").partition(":")
    if name != point:
        return
    _hits[point] += 1
    if _hits[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


class KillableStore(AnnotationStore):
    def begin_round(self, round, seed, requests):
        hit("before_begin_round")
        super().begin_round(round, seed, requests)
        hit("after_begin_round")

    def record_response(self, response, **kwargs):
        hit("before_record")
        added = super().record_response(response, **kwargs)
        hit("after_record")
        return added

    def complete_round(self, round):
        hit("before_complete")
        super().complete_round(round)
        hit("after_complete")


class KillableDataModule(ActiveDataModule):
    def refresh(self, *args, **kwargs):
        hit("refresh")
        return super().refresh(*args, **kwargs)


class KillableOracle:
    name = "simulated"

    def __init__(self, inner: SimulatedOracle) -> None:
        self.inner = inner

    def request(self, requests):
        hit("oracle")
        response = self.inner.request(requests)
        hit("after_oracle")
        return response


@register_strategy("activelab_killable")
class KillableActiveLab(ActiveLabStrategy):
    def fit(self, ctx):
        hit("fit_scores")
        return super().fit(ctx)

    def score_unlabeled(self, ids, probs):
        hit("score_unlabeled")
        return super().score_unlabeled(ids, probs)


class KillableMLP(TinyMLP):
    def training_step(self, batch, batch_idx):
        hit("train")
        return super().training_step(batch, batch_idx)


def predict(module, x):
    hit("inference")
    return torch.softmax(module(x), dim=-1)


def run(out: Path, *, rounds: int, query: int, seed: int) -> None:
    """One (possibly resumed) run; everything is built from scratch, as by a new process."""
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    x, y = make_blobs(N, D, K, seed=seed, spread=1.5)
    store = KillableStore(out / "store.sqlite", num_examples=N, class_names=["a", "b", "c"])
    simulated = SimulatedOracle(y, [0.9, 0.8, 0.7, 0.75, 0.85, 0.6], seed=seed)
    dm = KillableDataModule(
        TensorDataset(x),
        store,
        batch_size=16,
        inference_batch_size=16,
        initial_labeled=30,
        initial_labels=simulated,
        true_labels=y,
        seed=seed,
    )
    callback = ActiveLabCallback(
        KillableOracle(simulated), query, "activelab_killable", seed=seed, predict_fn=predict
    )
    torch.manual_seed(seed)
    loop = ActiveLearningLoop(
        KillableMLP(D, K, lr=0.1),
        dm,
        callback,
        rounds=rounds,
        seed=seed,
        test_each_round=False,
        trainer_kwargs={"accelerator": "cpu", "devices": 1, "max_epochs": 2, "num_sanity_val_steps": 0},
    )
    loop.run()
    store.close()


def snapshot(path: Path) -> dict:
    store = AnnotationStore(path)
    try:
        return {
            "annotations": [
                [a["example_id"], a["annotator_id"], a["label"], a["round"], a["source"], a["request_id"]]
                for a in store.iter_annotations()
            ],
            "rounds": [[r.round, r.seed, list(r.selected_ids), r.status] for r in store.rounds()],
        }
    finally:
        store.close()


def in_child(fn, env_value: str | None) -> int:
    """Run ``fn`` in a forked child (with ``$ACTIVELAB_TEST_KILL_AT`` set); return its wait status."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            if env_value is None:
                os.environ.pop(KILL_ENV, None)
            else:
                os.environ[KILL_ENV] = env_value
            fn()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal:{os.WTERMSIG(status)}"
    return f"exit:{os.WEXITSTATUS(status)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--query", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chain", default=None, help="comma-separated kill points, one per forked run")
    parser.add_argument(
        "--reference", type=Path, default=None, help="chain mode: where the uninterrupted run goes"
    )
    args = parser.parse_args()

    def go(out: Path):
        return lambda: run(out, rounds=args.rounds, query=args.query, seed=args.seed)

    if args.chain is None:
        go(args.out)()
        return
    steps = [p for p in args.chain.split(",") if p]
    statuses = [describe(in_child(go(args.out), point)) for point in steps]
    final = describe(in_child(go(args.out), None))
    reference = describe(in_child(go(args.reference), None))
    result = {
        "steps": dict(zip(steps, statuses)) if len(set(steps)) == len(steps) else list(zip(steps, statuses)),
        "final": final,
        "reference_status": reference,
        "resumed": snapshot(args.out / "store.sqlite"),
        "reference": snapshot(args.reference / "store.sqlite"),
    }
    (args.out / "chain.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
