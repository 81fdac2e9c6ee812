"""ActiveLabCallback inside a plain Trainer: round mode, continuous mode, strategies, bad input."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import TensorDataset

from activelab_lightning.callback import ActiveLabCallback
from activelab_lightning.data import ActiveDataModule
from activelab_lightning.errors import OracleAnswerError, WaitingForLabels
from activelab_lightning.oracles import SimulatedOracle
from activelab_lightning.predictions import capture_inputs, find_head, fit_crossfit_heads
from activelab_lightning.records import Annotation, OracleResponse
from activelab_lightning.scoring import activelab_scores
from activelab_lightning.selection import round_seed, select_lowest
from activelab_lightning.store import AnnotationStore
from tests._models import TinyMLP, fast_trainer, make_blobs

N, D, K = 60, 4, 3


def make_setup(*, n: int = N, labeled: int = 20, seed: int = 0, path: str = ":memory:", **dm_kwargs):
    x, y = make_blobs(n, D, K, seed=seed, spread=1.5)
    store = AnnotationStore(path, num_examples=n, class_names=[f"c{i}" for i in range(K)])
    oracle = SimulatedOracle(y, [0.9, 0.8, 0.7, 0.75, 0.85], seed=seed)
    dm = ActiveDataModule(
        TensorDataset(x),
        store,
        batch_size=16,
        inference_batch_size=16,
        initial_labeled=labeled,
        initial_labels=oracle,
        true_labels=y,
        seed=seed,
        **dm_kwargs,
    )
    return x, y, store, oracle, dm


def quiet(**kwargs) -> ActiveLabCallback:
    kwargs.setdefault("reporter", None)
    return ActiveLabCallback(**kwargs)


def fit(callback, dm, *, model=None, **trainer_kwargs):
    pl.seed_everything(0, verbose=False)
    model = model or TinyMLP(D, K)
    trainer = fast_trainer(callbacks=[callback], **{"max_epochs": 2, **trainer_kwargs})
    trainer.fit(model, datamodule=dm)
    return trainer, model


class CountingOracle:
    """Wraps an oracle; records every request it gets."""

    def __init__(self, inner, transform=None):
        self.inner, self.transform, self.calls = inner, transform, []
        self.name = "counting"

    def request(self, requests):
        self.calls.append(list(requests))
        response = self.inner.request(requests)
        return self.transform(requests, response) if self.transform else response


# ----------------------------------------------------------------------------- round mode
def test_round_mode_acquires_once_at_train_end_and_refreshes_the_datamodule():
    _, y, store, oracle, dm = make_setup()
    before = len(store)
    callback = quiet(oracle=oracle, query_size=10, true_labels=y)
    _, model = fit(callback, dm)
    assert len(store) == before + 10
    record = store.round_record(0)
    assert record.status == "completed" and len(record.selected_ids) == 10
    assert store.last_completed_round() == 0 and store.pending_requests() == []
    # the datamodule saw the new labels and has CROWDLAB consensus targets
    assert torch.equal(dm.labeled_ids, store.labeled_ids())
    assert dm.consensus_labels.shape == dm.labeled_ids.shape
    summary = callback.last_summary
    assert summary.round == 0 and len(summary.requests) == 10 and len(summary.answers) == 10
    assert summary.num_new + summary.num_relabel == 10
    assert summary.num_labeled == dm.labeled_ids.numel()
    assert 0.0 <= summary.consensus_accuracy <= 1.0
    assert summary.labeled_scores.shape == (20,) and summary.unlabeled_scores.shape == (40,)
    assert callback.history[-1]["round"] == 0 and callback.history[-1]["num_requests"] == 10
    # per-annotator quality of the new CROWDLAB consensus, worst first (as cleanlab orders them)
    rows = summary.annotator_stats
    assert {r["annotator_id"] for r in rows} == set(store.annotator_counts())
    assert all(r["num_labeled"] == store.annotator_counts()[r["annotator_id"]] for r in rows)
    assert all(0.0 <= r["agreement"] <= 1.0 and 0 <= r["worst_class"] < K for r in rows)
    assert model.training  # train mode restored after the acquisition's eval-mode inference


def test_selection_equals_lowest_activelab_scores_over_both_pools():
    x, _, store, oracle, dm = make_setup()
    labeled, unlabeled = dm.labeled_ids.clone(), dm.unlabeled_ids.clone()
    labels, _ = store.label_matrix(labeled)
    model = TinyMLP(D, K, lr=0.0)  # fixed weights: the scores can be recomputed by hand
    callback = quiet(oracle=oracle, query_size=12, out_of_sample="in_sample")
    fit(callback, dm, model=model, max_epochs=1)
    with torch.no_grad():
        probs = torch.softmax(model(x), -1).double()
    lab_scores, unl_scores = activelab_scores(labels, probs[labeled], probs[unlabeled])
    expected, _ = select_lowest(torch.cat([labeled, unlabeled]), torch.cat([lab_scores, unl_scores]), 12)
    assert list(store.round_record(0).selected_ids) == expected.tolist()
    kinds = {q.example_id: q.kind for q in store.requests(0)}
    assert all((kinds[i] == "relabel") == bool(torch.isin(torch.tensor(i), labeled)) for i in kinds)
    answered_by = {a["request_id"]: a["annotator_id"] for a in store.iter_annotations() if a["request_id"]}
    for q in store.requests(0):  # existing annotators come from the store; the oracle asked someone else
        now = set(store.annotators_of([q.example_id])[0])
        assert set(q.existing_annotators) == now - {answered_by[q.request_id]}
        assert answered_by[q.request_id] not in q.existing_annotators


@pytest.mark.parametrize("unlabeled_from", ["heads", "model"])
def test_crossfit_default_scores_the_labeled_pool_with_out_of_fold_head_predictions(unlabeled_from):
    x, _, store, oracle, dm = make_setup()
    labeled, unlabeled = dm.labeled_ids.clone(), dm.unlabeled_ids.clone()
    targets = dm.consensus_labels.clone()
    labels, _ = store.label_matrix(labeled)
    model = TinyMLP(D, K, lr=0.0)  # fixed weights: features and heads can be recomputed by hand
    callback = quiet(
        oracle=oracle, query_size=12, seed=3, crossfit_unlabeled=unlabeled_from, strategy="activelab"
    )
    assert callback.out_of_sample == "crossfit"
    fit(callback, dm, model=model, max_epochs=1)
    layer = find_head(model)
    with torch.no_grad(), capture_inputs(layer) as seen:
        probs = torch.softmax(model(x), -1).double()
    heads = fit_crossfit_heads(seen[0][labeled], targets, num_classes=K, folds=5, seed=round_seed(3, 0))
    # default: the unlabeled pool is scored by the heads' mean (one calibration scale for both pools)
    unlabeled_probs = (
        heads.predict(seen[0][unlabeled]).mean(0) if unlabeled_from == "heads" else probs[unlabeled]
    )
    lab_scores, unl_scores = activelab_scores(labels, heads.oof_probs, unlabeled_probs)
    expected, _ = select_lowest(torch.cat([labeled, unlabeled]), torch.cat([lab_scores, unl_scores]), 12)
    assert list(store.round_record(0).selected_ids) == expected.tolist()
    entry = callback.history[-1]
    assert entry["crossfit_l2"] == heads.l2
    assert entry["agreement_out_of_fold"] == pytest.approx(
        float((heads.oof_probs.argmax(1) == targets).double().mean())
    )
    # every round reports CROWDLAB's model weight next to the mean annotator weight
    assert entry["model_weight"] is not None and entry["mean_annotator_weight"] is not None


def test_in_sample_guard_warns_once_when_the_model_memorised_its_labels():
    # a wide MLP trained long on pure-noise labels agrees with them in-sample, not out of fold
    g = torch.Generator().manual_seed(0)
    n = 80
    x = torch.randn(n, D, generator=g)
    y = torch.randint(0, K, (n,), generator=g)
    store = AnnotationStore(":memory:", num_examples=n + 20, class_names=[f"c{i}" for i in range(K)])
    oracle = SimulatedOracle(torch.cat([y, torch.zeros(20, dtype=torch.long)]), [1.0, 1.0], seed=0)
    dm = ActiveDataModule(
        TensorDataset(torch.cat([x, torch.randn(20, D, generator=g)])),
        store,
        batch_size=16,
        initial_labels=torch.cat([y, torch.full((20,), -1)]),
        seed=0,
    )
    callback = quiet(oracle=oracle, query_size=4, out_of_sample="in_sample")
    with pytest.warns(UserWarning, match="look in-sample"):
        fit(callback, dm, model=TinyMLP(D, K, hidden=256, lr=0.05), max_epochs=150)
    entry = callback.history[-1]
    assert entry["agreement_in_sample"] - entry["agreement_out_of_fold"] > 0.05


def test_crossfit_falls_back_to_in_sample_with_a_warning_for_models_without_a_linear_layer():
    _, _, store, oracle, dm = make_setup()

    class NoLinear(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(D, K))

        def forward(self, x):
            return x @ self.w

        def training_step(self, batch, _):
            return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    callback = quiet(oracle=oracle, query_size=5)
    assert callback.strategy == "activelab_ensemble"  # the default
    with pytest.warns(UserWarning, match="no nn.Linear") as seen:
        fit(callback, dm, model=NoLinear(), max_epochs=1)
    assert len(store.requests(0)) == 5
    # without heads the default ensemble strategy falls back to single-model ActiveLab (and says so)
    assert any("single-model 'activelab'" in str(w.message) for w in seen)
    assert "temperature" in callback.history[-1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"out_of_sample": "kfold"}, "out_of_sample='kfold'.*crossfit"),
        ({"crossfit_folds": 1}, "crossfit_folds=1"),
        ({"crossfit_unlabeled": "both"}, "crossfit_unlabeled='both'"),
        ({"feature_layer": 3}, "feature_layer=3"),
    ],
)
def test_out_of_sample_arguments_are_checked_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ActiveLabCallback(oracle=None, query_size=5, **kwargs)


def test_unknown_feature_layer_names_the_linear_layers():
    _, _, _, oracle, dm = make_setup()
    with pytest.raises(ValueError, match="feature_layer='nope'.*nn.Linear layers"):
        fit(quiet(oracle=oracle, query_size=5, feature_layer="nope"), dm, max_epochs=1)


@pytest.mark.parametrize("strategy", ["random", "good_random", "entropy", "least_confidence", "margin"])
def test_every_single_model_strategy_runs_a_round(strategy):
    _, _, store, oracle, dm = make_setup()
    before = len(store)
    fit(quiet(oracle=oracle, query_size=8, strategy=strategy), dm, max_epochs=1)
    assert len(store) == before + 8
    if strategy == "good_random":  # unlabeled examples (0 labels) always come first
        assert all(q.kind == "new" for q in store.requests(0))


@pytest.mark.parametrize("strategy", ["activelab_ensemble", "disagreement"])
def test_ensemble_strategies_take_ensemble_members(strategy):
    _, _, store, oracle, dm = make_setup()
    callback = quiet(oracle=oracle, query_size=6, strategy=strategy, out_of_sample="in_sample")
    if strategy == "disagreement":  # no single-model version: a clear error before anything is asked
        with pytest.raises(ValueError, match="no ensemble members.*cv_folds"):
            fit(callback, dm, max_epochs=1)
        assert store.rounds() == []
    else:  # activelab_ensemble falls back to single-model ActiveLab for the round, with a warning
        with pytest.warns(UserWarning, match="single-model 'activelab' this round"):
            fit(callback, dm, max_epochs=1)
        assert store.round_record(0).status == "completed"
        callback = quiet(oracle=oracle, query_size=6, strategy=strategy, out_of_sample="in_sample")
    members = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        members.append(TinyMLP(D, K))
    callback.use_predictions(ensemble=members)
    fit(callback, dm, max_epochs=1)
    assert store.round_record(0).status == "completed" and len(store.requests(0)) == 6


@pytest.mark.parametrize("strategy", ["activelab_ensemble", "disagreement"])
def test_ensemble_strategies_use_the_crossfit_heads_as_members_by_default(strategy):
    x, _, store, oracle, dm = make_setup()
    labeled, unlabeled = dm.labeled_ids.clone(), dm.unlabeled_ids.clone()
    targets = dm.consensus_labels.clone()
    model = TinyMLP(D, K, lr=0.0)
    callback = quiet(oracle=oracle, query_size=6, strategy=strategy, seed=1)
    fit(callback, dm, model=model, max_epochs=1)
    assert store.round_record(0).status == "completed" and len(store.requests(0)) == 6
    with torch.no_grad(), capture_inputs(find_head(model)) as seen:
        model(x)
    heads = fit_crossfit_heads(seen[0][labeled], targets, num_classes=K, folds=5, seed=round_seed(1, 0))
    unl = heads.predict(seen[0][unlabeled])  # (P, U, K): one trunk pass fed every head
    assert callback.last_summary.unlabeled_scores.shape == (unlabeled.numel(),)
    if strategy == "disagreement":
        from activelab_lightning.scoring.baselines import disagreement_scores

        expected = disagreement_scores(unl)
        torch.testing.assert_close(callback.last_summary.unlabeled_scores, expected)


def test_unlabeled_subsample_restricts_new_examples_to_the_seeded_subset():
    _, _, store, oracle, dm = make_setup()
    unlabeled = set(dm.unlabeled_ids.tolist())
    callback = quiet(oracle=oracle, query_size=15, strategy="good_random", unlabeled_subsample=5)
    fit(callback, dm, max_epochs=1)
    new = [q.example_id for q in store.requests(0) if q.kind == "new"]
    assert len(new) == 5 and set(new) <= unlabeled
    assert callback.last_summary.unlabeled_scores.numel() == 5


def test_state_dict_round_trips_and_lands_in_the_checkpoint():
    _, _, _, oracle, dm = make_setup()
    callback = quiet(oracle=oracle, query_size=5, seed=7)
    trainer, _ = fit(callback, dm, max_epochs=1)
    state = callback.state_dict()
    assert state["next_round"] == 1 and state["seed"] == 7 and len(state["history"]) == 1
    fresh = quiet(oracle=oracle, query_size=5)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    checkpoint = trainer._checkpoint_connector.dump_checkpoint()
    assert checkpoint["callbacks"][callback.state_key] == state
    with pytest.raises(ValueError, match="state version"):
        fresh.load_state_dict({"version": 99})


# ----------------------------------------------------------------------------- continuous mode
class EpochSizes(pl.Callback):
    def __init__(self):
        self.sizes = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._seen = sum(t.numel() for t in pl_module.train_targets)

    def on_train_epoch_end(self, trainer, pl_module):
        self.sizes.append(sum(t.numel() for t in pl_module.train_targets) - self._seen)


def test_continuous_mode_grows_the_train_set_epoch_by_epoch():
    _, _, store, oracle, dm = make_setup()
    sizes = EpochSizes()
    callback = quiet(oracle=oracle, query_size=10, strategy="good_random", every_n_epochs=1)
    pl.seed_everything(0, verbose=False)
    trainer = fast_trainer(callbacks=[sizes, callback], max_epochs=3, reload_dataloaders_every_n_epochs=1)
    trainer.fit(TinyMLP(D, K), datamodule=dm)
    assert sizes.sizes == [20, 30, 40]  # every epoch trains on the set grown by the previous one
    assert [r.status for r in store.rounds()] == ["completed"] * 3
    assert dm.labeled_ids.numel() == 50


def test_continuous_mode_every_two_epochs():
    _, _, store, oracle, dm = make_setup()
    sizes = EpochSizes()
    callback = quiet(oracle=oracle, query_size=10, strategy="good_random", every_n_epochs=2)
    trainer = fast_trainer(callbacks=[sizes, callback], max_epochs=4, reload_dataloaders_every_n_epochs=1)
    trainer.fit(TinyMLP(D, K), datamodule=dm)
    assert sizes.sizes == [20, 20, 30, 30]
    assert len(store.rounds()) == 2


@pytest.mark.parametrize("reload", [0, 2])
def test_continuous_mode_refuses_a_trainer_that_would_not_reload(reload):
    _, _, store, oracle, dm = make_setup()
    callback = quiet(oracle=oracle, query_size=10, every_n_epochs=1)
    trainer = fast_trainer(callbacks=[callback], max_epochs=2, reload_dataloaders_every_n_epochs=reload)
    with pytest.raises(ValueError, match=r"reload_dataloaders_every_n_epochs=1"):
        trainer.fit(TinyMLP(D, K), datamodule=dm)
    assert store.rounds() == []


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("query_size", [0, -3, True, 2.5])
def test_query_size_must_be_a_positive_int(query_size):
    with pytest.raises(ValueError, match=r"query_size=.*positive int"):
        ActiveLabCallback(oracle=None, query_size=query_size)


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown acquisition strategy 'uncertainty'.*least_confidence"):
        ActiveLabCallback(oracle=None, query_size=5, strategy="uncertainty")


def test_other_bad_arguments_are_named():
    with pytest.raises(ValueError, match="every_n_epochs=0"):
        ActiveLabCallback(oracle=None, query_size=5, every_n_epochs=0)
    with pytest.raises(ValueError, match="temperature_objective='bogus'"):
        ActiveLabCallback(oracle=None, query_size=5, temperature_objective="bogus")
    with pytest.raises(ValueError, match="unlabeled_subsample=0"):
        ActiveLabCallback(oracle=None, query_size=5, unlabeled_subsample=0)


def test_query_size_larger_than_the_pools_is_clamped_with_a_warning():
    _, _, store, oracle, dm = make_setup(n=30, labeled=10)
    callback = quiet(oracle=oracle, query_size=500, strategy="good_random")
    with pytest.warns(UserWarning, match=r"query_size=500.*30 candidate"):
        fit(callback, dm, max_epochs=1)
    assert len(store.requests(0)) == 30


class Pairs(TinyMLP):
    """forward returns (B, K, 2): not class probabilities."""

    def forward(self, x):
        out = super().forward(x)
        return torch.stack([out, out], dim=-1)

    def training_step(self, batch, batch_idx):
        return super().forward(batch[0]).sum() * 0.0


def test_module_output_that_is_not_b_by_k_is_a_clear_error_and_the_store_is_untouched():
    _, _, store, oracle, dm = make_setup()
    before = list(store.iter_annotations())
    with pytest.raises((ValueError, TypeError), match=r"\(B, K\)"):
        fit(quiet(oracle=oracle, query_size=5), dm, model=Pairs(D, K), max_epochs=1)
    assert list(store.iter_annotations()) == before and store.rounds() == []


class PairsWithProba(Pairs):
    def predict_proba(self, x):
        return torch.softmax(TinyMLP.forward(self, x), dim=-1)


def test_a_predict_proba_hook_is_used_when_forward_is_not_logits():
    _, _, store, oracle, dm = make_setup()
    fit(quiet(oracle=oracle, query_size=5), dm, model=PairsWithProba(D, K), max_epochs=1)
    assert store.round_record(0).status == "completed"


def test_wrong_number_of_classes_is_a_clear_error():
    _, _, store, oracle, dm = make_setup()
    with pytest.raises(ValueError, match=r"shape \(B, 3\)|K = 3|3 classes"):
        fit(quiet(oracle=oracle, query_size=5, predict_fn=lambda m, x: torch.softmax(m(x)[:, :2], -1)), dm)
    assert store.rounds() == []


class NoIds(ActiveDataModule):
    def pool_dataloader(self, example_ids, batch_size=None):
        return [self.dataset.tensors[0][example_ids]]  # x only: no example ids


def test_a_pool_without_ids_is_a_clear_error_and_the_store_is_untouched():
    x, y = make_blobs(N, D, K, seed=0)
    store = AnnotationStore(num_examples=N, class_names=["a", "b", "c"])
    oracle = SimulatedOracle(y, [0.9, 0.8], seed=0)
    dm = NoIds(TensorDataset(x), store, batch_size=16, initial_labeled=20, initial_labels=oracle)
    before = len(store)
    with pytest.raises(ValueError, match="ids"):
        fit(quiet(oracle=oracle, query_size=5), dm, max_epochs=1)
    assert len(store) == before and store.rounds() == []


def test_an_oracle_answering_unrequested_examples_stores_nothing():
    _, _, store, oracle, dm = make_setup()
    before = list(store.iter_annotations())

    def answer_the_wrong_example(requests, response):
        asked = {q.example_id for q in requests}
        stranger = next(i for i in range(N) if i not in asked)
        return OracleResponse(annotations=(Annotation(stranger, "sim-00", 0, round=0, request_id=None),))

    bad = CountingOracle(oracle, answer_the_wrong_example)
    with pytest.raises(OracleAnswerError, match=r"not requested.*Nothing was stored"):
        fit(quiet(oracle=bad, query_size=5), dm, max_epochs=1)
    assert list(store.iter_annotations()) == before
    # the round stays open with its requests pending: a fixed oracle finishes it without re-selecting
    assert len(store.pending_requests(0)) == 5
    good = CountingOracle(oracle)
    fit(quiet(oracle=good, query_size=5), dm, max_epochs=1)
    assert [q.request_id for q in good.calls[0]] == [q.request_id for q in store.requests(0)]
    assert store.round_record(0).status == "completed" and len(store) == len(before) + 5


def test_an_oracle_answering_a_request_with_the_wrong_example_is_refused():
    _, _, _, oracle, dm = make_setup()

    def swap(requests, response):
        a = response.annotations[0]
        other = requests[1].example_id
        return OracleResponse(annotations=(Annotation(other, a.annotator_id, a.label, 0, "x", a.request_id),))

    with pytest.raises(OracleAnswerError, match="asked for example"):
        fit(quiet(oracle=CountingOracle(oracle, swap), query_size=3), dm, max_epochs=1)


def test_pending_human_answers_raise_waiting_for_labels_and_resume_without_reselecting():
    _, _, store, oracle, dm = make_setup()
    before = len(store)

    def half(requests, response):
        return OracleResponse(annotations=response.annotations[:4], pending=tuple(requests[4:]))

    slow = CountingOracle(oracle, half)
    callback = quiet(oracle=slow, query_size=10)
    with pytest.raises(WaitingForLabels, match="waiting for 6 labels") as info:
        fit(callback, dm, max_epochs=1)
    assert info.value.round == 0 and len(store) == before + 4
    assert store.round_record(0).status == "requested" and len(store.pending_requests(0)) == 6
    done = CountingOracle(oracle)
    callback.oracle = done
    fit(callback, dm, max_epochs=1)
    assert len(done.calls) == 1 and len(done.calls[0]) == 6  # only the pending ones are asked again
    assert store.round_record(0).status == "completed" and len(store) == before + 10
    assert callback.history[-1]["resumed"] is True


def test_trainer_without_an_active_datamodule_is_refused():
    x, y = make_blobs(N, D, K)
    loader = torch.utils.data.DataLoader(TensorDataset(x, y), batch_size=16)
    trainer = fast_trainer(callbacks=[quiet(oracle=None, query_size=5)])
    with pytest.raises(TypeError, match="ActiveDataModule"):
        trainer.fit(TinyMLP(D, K), train_dataloaders=loader)


@pytest.mark.parametrize("strategy,name", [("ddp_spawn", "ddp_spawn"), ("ddp_notebook", "ddp_notebook")])
def test_spawning_ddp_strategies_are_refused(strategy, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, logger=False)
    callback = quiet(oracle=None, query_size=5)
    with pytest.raises(ValueError, match=rf"strategy='{name}'.*Use strategy='ddp'"):
        callback.setup(trainer, TinyMLP(D, K), "fit")


def test_cold_start_without_any_label_asks_for_new_labels_only():
    x, y = make_blobs(N, D, K, seed=0)
    store = AnnotationStore(num_examples=N, class_names=["a", "b", "c"])
    dm = ActiveDataModule(TensorDataset(x), store, batch_size=16, inference_batch_size=16)
    callback = quiet(oracle=SimulatedOracle(y, [0.9, 0.8], seed=0), query_size=7)
    model = TinyMLP(D, K)
    trainer = fast_trainer(callbacks=[callback])
    trainer.datamodule = dm  # nothing is labeled yet, so nothing to fit: acquire directly
    summary = callback.acquire(trainer, model)
    assert [q.kind for q in summary.requests] == ["new"] * 7
    assert len(store) == 7 and torch.equal(dm.labeled_ids, store.labeled_ids())
