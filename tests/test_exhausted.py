"""Requests the oracle cannot serve are not lost: exhausted examples are never selected again, and
an exhausted request is replaced by the next-best candidate within the round, so every round
stores exactly ``query_size`` answers until the pool is used up (then the loop stops, saying why)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from activelab_lightning import ActiveLearningLoop
from activelab_lightning.callback import ActiveLabCallback
from activelab_lightning.data import ActiveDataModule
from activelab_lightning.oracles import ReplayOracle
from activelab_lightning.records import Annotation, LabelRequest
from activelab_lightning.selection import available_strategies
from activelab_lightning.store import AnnotationStore
from tests._models import TinyMLP, make_blobs

N, K, QUERY = 48, 3, 12


def _replay_table(y: torch.Tensor, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """2 or 3 recorded labels per example (85 % correct), as a real-annotator dataset would have."""
    rng = np.random.default_rng(seed)
    ex, ann, lab = [], [], []
    for i in range(N):
        for a in range(2 + int(rng.integers(0, 2))):
            true = int(y[i])
            label = true if rng.random() < 0.85 else int(rng.integers(0, K))
            ex.append(i)
            ann.append(f"w{a}")
            lab.append(label)
    return np.asarray(ex), ann, np.asarray(lab)


@pytest.mark.parametrize("strategy", available_strategies())
def test_every_round_stores_query_size_answers_until_the_pool_is_used_up(strategy, tmp_path):
    x, y = make_blobs(N, k=K, seed=1)
    table = _replay_table(y)
    capacity = len(table[0])
    store = AnnotationStore(tmp_path / "labels.sqlite", num_examples=N, class_names=["a", "b", "c"])
    initial = [
        Annotation(int(i), "w0", int(table[2][j])) for j, i in enumerate(table[0]) if table[1][j] == "w0"
    ][:12]
    dm = ActiveDataModule(TensorDataset(x, y), store, batch_size=16, initial_labels=initial)
    callback = ActiveLabCallback(
        ReplayOracle(*table, seed=0, num_examples=N, num_classes=K),
        query_size=QUERY,
        strategy=strategy,
        seed=3,
        reporter=None,
    )
    loop = ActiveLearningLoop(
        TinyMLP(in_features=4, num_classes=K),
        dm,
        callback,
        rounds=50,
        test_each_round=False,
        trainer_kwargs={"max_epochs": 2},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.run()
    # what the oracle could still give at the start of each round: one request per example and round
    table_count = np.bincount(table[0], minlength=N)
    per_round, expected = [], []
    log = list(store.iter_annotations())
    for rec in store.rounds():
        before = np.bincount(
            [a["example_id"] for a in log if a["round"] is None or a["round"] < rec.round], minlength=N
        )
        examples_left = int(((table_count - before) > 0).sum())
        status = store.request_status(rec.round)
        per_round.append(sum(s == "answered" for s in status.values()))
        expected.append(min(QUERY, examples_left))
    # exactly query_size answers per round while the pool can give them, then what is left, then stop
    assert per_round == expected, (per_round, expected)
    assert per_round[0] == QUERY and expected[-1] == 0
    assert sum(per_round) == capacity - len(initial) == len(store) - len(initial)
    assert any("The pool is used up" in str(w.message) for w in caught)
    # an exhausted example is never asked again in a later round
    exhausted_in: dict[int, int] = {}
    for rec in store.rounds():
        for q in store.requests(rec.round):
            if store.request_status(rec.round)[q.request_id] == "exhausted":
                exhausted_in.setdefault(q.example_id, rec.round)
    for rec in store.rounds():
        for q in store.requests(rec.round):
            first = exhausted_in.get(q.example_id)
            assert first is None or rec.round <= first, (q, first)


def test_add_requests_extends_an_in_flight_round_only(tmp_path):
    store = AnnotationStore(num_examples=6, class_names=["a", "b"])
    store.begin_round(0, 1, [LabelRequest(2, 0.1, "new", 0)])
    assert store.add_requests(0, [LabelRequest(4, 0.2, "new", 0)]) == 1
    assert store.add_requests(0, [LabelRequest(4, 0.2, "new", 0)]) == 0  # a resumed run: idempotent
    assert [q.example_id for q in store.requests(0)] == [2, 4]
    assert store.round_record(0).selected_ids == (2, 4)
    # the same example in the same round is the same request (id r0:e2): nothing is added
    assert store.add_requests(0, [LabelRequest(2, 0.5, "relabel", 0, existing_annotators=("x",))]) == 0
    store.mark_exhausted([store.requests(0)[0]])
    assert store.exhausted_example_ids() == [2]
    store.complete_round(0)
    with pytest.raises(ValueError, match="round 0 is completed"):
        store.add_requests(0, [LabelRequest(5, 0.2, "new", 0)])
    with pytest.raises(ValueError, match="round 3 was never begun"):
        store.add_requests(3, [LabelRequest(5, 0.2, "new", 3)])


def test_skip_exhausted_false_keeps_selecting_them():
    with pytest.raises(TypeError, match="skip_exhausted='yes'"):
        ActiveLabCallback(None, query_size=3, skip_exhausted="yes")
    assert ActiveLabCallback(None, query_size=3, skip_exhausted=False).skip_exhausted is False
