"""ActiveLearningLoop: fresh Trainer/model per round, budget, K-fold out-of-sample, resume, Wall Robot."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import TensorDataset

from activelab_lightning.callback import ActiveLabCallback
from activelab_lightning.data import ActiveDataModule
from activelab_lightning.errors import WaitingForLabels
from activelab_lightning.loop import ActiveLearningLoop
from activelab_lightning.oracles import SimulatedOracle
from activelab_lightning.predictions import stratified_folds as _stratified_folds
from activelab_lightning.records import OracleResponse
from activelab_lightning.store import AnnotationStore
from tests._models import TinyMLP, make_blobs

N, D, K = 60, 4, 3
TRAINER = {"max_epochs": 2, "accelerator": "cpu", "devices": 1, "num_sanity_val_steps": 0}
START_WEIGHTS: list[torch.Tensor] = []


def make_setup(*, path: str = ":memory:", seed: int = 0, test: bool = True):
    x, y = make_blobs(N, D, K, seed=seed, spread=1.5)
    store = AnnotationStore(path, num_examples=N, class_names=[f"c{i}" for i in range(K)])
    oracle = SimulatedOracle(y, [0.9, 0.8, 0.7, 0.75, 0.85], seed=seed)
    xt, yt = make_blobs(30, D, K, seed=seed + 100, spread=1.5)
    dm = ActiveDataModule(
        TensorDataset(x),
        store,
        batch_size=16,
        inference_batch_size=16,
        initial_labeled=20,
        initial_labels=oracle,
        true_labels=y,
        seed=seed,
        test_dataset=TensorDataset(xt, yt) if test else None,
    )
    return y, store, oracle, dm


def annotations(store) -> list[tuple]:
    return [
        (a["example_id"], a["annotator_id"], a["label"], a["round"], a["source"], a["request_id"])
        for a in store.iter_annotations()
    ]


class RecordStartWeights(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        START_WEIGHTS.append(pl_module.net[0].weight.detach().clone())


def new_loop(dm, oracle, *, query_size=5, strategy="activelab", **kwargs):
    callback = ActiveLabCallback(oracle, query_size, strategy, reporter=None, seed=kwargs.get("seed", 0))
    torch.manual_seed(0)
    model = kwargs.pop("model", None) or TinyMLP(D, K)
    return ActiveLearningLoop(
        model, dm, callback, trainer_kwargs=kwargs.pop("trainer_kwargs", TRAINER), **kwargs
    )


# ----------------------------------------------------------------------------- basics
def test_rounds_run_with_fresh_weights_and_a_history_row_each():
    START_WEIGHTS.clear()
    _, store, oracle, dm = make_setup()
    before = len(store)
    loop = new_loop(dm, oracle, rounds=3, trainer_kwargs={**TRAINER, "callbacks": [RecordStartWeights()]})
    history = loop.run()
    assert [h["round"] for h in history] == [0, 1, 2]
    assert len(store) == before + 15 and store.last_completed_round() == 2
    assert [h["num_annotations"] for h in history] == [before + 5, before + 10, before + 15]
    assert all("test/acc" in h["test"] for h in history)
    assert all(h["consensus_accuracy"] is not None for h in history)
    assert len(START_WEIGHTS) == 3 and all(torch.equal(w, START_WEIGHTS[0]) for w in START_WEIGHTS)
    assert loop.run() == history  # nothing left to do: rounds are counted in the store


def test_warm_start_continues_from_the_previous_rounds_weights():
    START_WEIGHTS.clear()
    _, _, oracle, dm = make_setup()
    loop = new_loop(
        dm, oracle, rounds=2, warm_start=True, trainer_kwargs={**TRAINER, "callbacks": [RecordStartWeights()]}
    )
    loop.run()
    assert not torch.equal(START_WEIGHTS[0], START_WEIGHTS[1])


def test_a_model_factory_is_called_once_per_round():
    calls = []

    def factory():
        calls.append(1)
        return TinyMLP(D, K)

    _, _, oracle, dm = make_setup()
    new_loop(dm, oracle, rounds=2, model=factory).run()
    assert len(calls) == 2


def test_budget_cuts_the_last_round_and_stops():
    _, store, oracle, dm = make_setup()
    history = new_loop(dm, oracle, query_size=5, rounds=10, budget=12).run()
    assert [len(store.requests(r.round)) for r in store.rounds()] == [5, 5, 2]
    assert len(history) == 3


def test_test_each_round_can_be_switched_off_and_is_skipped_without_test_data():
    _, _, oracle, dm = make_setup(test=False)
    assert new_loop(dm, oracle, rounds=1).run()[0]["test"] == {}
    _, _, oracle, dm = make_setup(test=True)
    assert new_loop(dm, oracle, rounds=1, test_each_round=False).run()[0]["test"] == {}


# ----------------------------------------------------------------------------- K-fold
def test_cv_folds_trains_k_fold_models_plus_the_full_model_per_round():
    calls = []

    def factory():
        calls.append(1)
        return TinyMLP(D, K)

    _, store, oracle, dm = make_setup()
    before = len(store)
    new_loop(dm, oracle, rounds=2, model=factory, cv_folds=3).run()
    assert len(calls) == 2 * (3 + 1)
    assert len(store) == before + 10


def test_cv_folds_gives_out_of_sample_labeled_probabilities():
    """With cv_folds the labeled pool is scored from fold models that did not see the row."""
    seen = {}
    _, _, oracle, dm = make_setup()
    loop = new_loop(dm, oracle, rounds=1, cv_folds=2)
    original = loop.callback.acquire

    def spy(trainer, pl_module, **kwargs):
        seen.update(loop.callback._injected)
        return original(trainer, pl_module, **kwargs)

    loop.callback.acquire = spy
    loop.run()
    probs = seen["labeled_pred_probs"]
    assert probs.shape == (20, K) and torch.allclose(probs.sum(1), torch.ones(20, dtype=torch.float64))


@pytest.mark.parametrize("strategy", ["activelab_ensemble", "disagreement"])
def test_cv_folds_feeds_ensemble_strategies_with_the_fold_models(strategy):
    _, store, oracle, dm = make_setup()
    new_loop(dm, oracle, rounds=1, cv_folds=3, strategy=strategy).run()
    assert store.round_record(0).status == "completed" and len(store.requests(0)) == 5


def test_stratified_folds_are_balanced_per_class_and_seeded():
    labels = torch.tensor([0] * 9 + [1] * 6 + [2] * 3)
    folds = _stratified_folds(labels, 3, seed=1)
    for cls in range(3):
        counts = torch.bincount(folds[labels == cls], minlength=3)
        assert int(counts.max() - counts.min()) <= 1
    assert torch.equal(folds, _stratified_folds(labels, 3, seed=1))


# ----------------------------------------------------------------------------- resume
def test_a_second_loop_on_the_same_store_continues_and_equals_an_uninterrupted_run(tmp_path):
    _, store_a, oracle_a, dm_a = make_setup(path=str(tmp_path / "a.sqlite"))
    new_loop(dm_a, oracle_a, rounds=3).run()

    _, store_b, oracle_b, dm_b = make_setup(path=str(tmp_path / "b.sqlite"))
    new_loop(dm_b, oracle_b, rounds=1).run()
    store_b.close()
    _, store_b2, oracle_b2, dm_b2 = make_setup(path=str(tmp_path / "b.sqlite"))  # a new process, in effect
    history = new_loop(dm_b2, oracle_b2, rounds=3).run()
    assert [h["round"] for h in history] == [1, 2]
    assert annotations(store_b2) == annotations(store_a)
    assert [r.selected_ids for r in store_b2.rounds()] == [r.selected_ids for r in store_a.rounds()]


def test_waiting_for_labels_propagates_and_a_rerun_finishes_the_round():
    _, store, oracle, dm = make_setup()

    class Slow:
        name = "slow"

        def __init__(self):
            self.ready = False

        def request(self, requests):
            if self.ready:
                return oracle.request(requests)
            return OracleResponse(annotations=(), pending=tuple(requests))

    slow = Slow()
    loop = new_loop(dm, slow, rounds=2)
    with pytest.raises(WaitingForLabels, match="waiting for 5 labels"):
        loop.run()
    assert store.round_record(0).status == "requested"
    slow.ready = True
    loop.run()
    assert store.last_completed_round() == 1
    assert [len(store.requests(r)) for r in (0, 1)] == [5, 5]


# ----------------------------------------------------------------------------- bad arguments
def test_bad_arguments_are_named():
    _, _, oracle, dm = make_setup()
    callback = ActiveLabCallback(oracle, 5, reporter=None)
    model = TinyMLP(D, K)
    with pytest.raises(ValueError, match="rounds=-1"):
        ActiveLearningLoop(model, dm, callback, rounds=-1)
    with pytest.raises(ValueError, match="cv_folds=1"):
        ActiveLearningLoop(model, dm, callback, cv_folds=1)
    with pytest.raises(ValueError, match="budget=-5"):
        ActiveLearningLoop(model, dm, callback, budget=-5)
    with pytest.raises(TypeError, match="LightningModule or a zero-argument factory"):
        ActiveLearningLoop(42, dm, callback)
    with pytest.raises(TypeError, match="ActiveLabCallback"):
        ActiveLearningLoop(model, dm, object())
    with pytest.raises(ValueError, match="every_n_epochs=2"):
        ActiveLearningLoop(model, dm, ActiveLabCallback(oracle, 5, every_n_epochs=2))
    with pytest.raises(ValueError, match="must not contain an ActiveLabCallback"):
        ActiveLearningLoop(model, dm, callback, trainer_kwargs={"callbacks": [callback]})


# ----------------------------------------------------------------------------- must-show 1: Wall Robot
@pytest.mark.slow
def test_wall_robot_five_rounds_of_one_hundred_requests():
    from activelab_lightning.datasets import make_paper_setup
    from activelab_lightning.models import MLPClassifier

    setup = make_paper_setup(standardize=True)
    store = AnnotationStore(num_examples=len(setup.dataset), class_names=setup.class_names)
    dm = ActiveDataModule(
        setup.dataset,
        store,
        test_dataset=setup.test_dataset,
        batch_size=64,
        initial_labels=list(setup.initial_annotations),
        true_labels=setup.true_labels,
        seed=0,
    )
    initial_annotations = len(store)
    initial_accuracy = dm.consensus_accuracy()
    pl.seed_everything(0, verbose=False)
    callback = ActiveLabCallback(setup.oracle, query_size=100, true_labels=setup.true_labels, reporter=None)
    loop = ActiveLearningLoop(
        MLPClassifier(4, 4, hidden_dims=(64, 64), lr=1e-2),
        dm,
        callback,
        trainer_kwargs={"max_epochs": 15, "accelerator": "cpu", "devices": 1},
        rounds=5,
        seed=0,
    )
    history = loop.run()
    assert len(history) == 5
    assert len(store) == initial_annotations + 500  # exactly 5 x 100 new annotations
    relabels = sum(h["num_relabel"] for h in history)
    assert relabels > 0 and sum(h["num_new"] for h in history) > 0
    accuracies = [initial_accuracy] + [h["consensus_accuracy"] for h in history]
    print("consensus accuracy by round:", [round(a, 4) for a in accuracies])
    print("test accuracy by round:", [round(h["test"]["test/acc"], 4) for h in history])
    print("re-labels / new per round:", [(h["num_relabel"], h["num_new"]) for h in history])
    assert accuracies[-1] > accuracies[0] + 0.02, accuracies
    assert all(h["test"]["test/acc"] > 0.8 for h in history)


def test_warm_start_resumes_from_the_saved_weights_of_the_last_round(tmp_path):
    _, store_a, oracle_a, dm_a = make_setup(path=str(tmp_path / "a.sqlite"))
    new_loop(dm_a, oracle_a, rounds=3, warm_start=True).run()

    _, store_b, oracle_b, dm_b = make_setup(path=str(tmp_path / "b.sqlite"))
    new_loop(dm_b, oracle_b, rounds=1, warm_start=True).run()
    store_b.close()
    assert (tmp_path / "b.sqlite.activelab" / "round-00000-model.pt").exists()
    _, store_b2, oracle_b2, dm_b2 = make_setup(path=str(tmp_path / "b.sqlite"))
    new_loop(dm_b2, oracle_b2, rounds=3, warm_start=True).run()
    assert annotations(store_b2) == annotations(store_a)
