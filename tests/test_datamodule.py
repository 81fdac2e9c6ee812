"""ActiveDataModule: consensus targets, loaders (fast and generic paths), cold start, state, Lightning."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from _models import TinyMLP, fast_trainer, make_blobs
from torch.utils.data import Dataset, Subset, TensorDataset

from activelab_lightning.data import ActiveDataModule, default_input_fn
from activelab_lightning.data.consensus import compute_consensus
from activelab_lightning.errors import ActiveLabError, WaitingForLabels
from activelab_lightning.oracles import SimulatedOracle
from activelab_lightning.records import Annotation, OracleResponse
from activelab_lightning.scoring import crowdlab, majority_vote
from activelab_lightning.store import AnnotationStore

N, K = 60, 3
NAN = float("nan")


class ListDataset(Dataset):
    """A generic (non-tensor) map-style dataset: per-item access only."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.items = [(x[i].clone(), int(y[i])) for i in range(len(y))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


@pytest.fixture()
def blobs():
    return make_blobs(N, 4, K, seed=0)


def new_store(n: int = N) -> AnnotationStore:
    return AnnotationStore(num_examples=n, class_names=["a", "b", "c"][:K])


def noisy_matrix(y: torch.Tensor, n_labeled: int = 24, seed: int = 1) -> torch.Tensor:
    """(N, 3) label matrix: the first ``n_labeled`` examples labeled by 1-3 annotators, some wrong."""
    g = torch.Generator().manual_seed(seed)
    m = torch.full((len(y), 3), NAN, dtype=torch.float64)
    for i in range(n_labeled):
        for j in range(1 + i % 3):
            wrong = torch.rand((), generator=g) < 0.3
            m[i, j] = float((y[i] + 1) % K if wrong else y[i])
    m[0] = torch.tensor([(y[0] + 1) % K] * 2 + [NAN], dtype=torch.float64)  # consensus != truth here
    return m


def batches(loader):
    return [tuple(t.clone() for t in b) for b in loader]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert len(u) == len(v)
        for s, t in zip(u, v):
            assert torch.equal(s, t)


# ----------------------------------------------------------------------------- must-show
def test_must_show_trains_one_epoch_on_consensus_serves_pools_and_round_trips_state(blobs, tmp_path):
    x, y = blobs
    store = new_store()
    labels = noisy_matrix(y)
    dm = ActiveDataModule(TensorDataset(x, y), store, batch_size=8, initial_labels=labels, true_labels=y)
    assert dm.uses_fast_path
    assert dm.labeled_ids.tolist() == list(range(24))
    assert torch.equal(dm.consensus_labels, majority_vote(labels[:24], num_classes=K, generator=dm_gen(dm)))
    assert dm.consensus_labels[0] != y[0]  # targets are the annotators' consensus, not the truth

    model = TinyMLP(in_features=4, num_classes=K)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert model.num_train_batches == math.ceil(24 / 8)
    seen = torch.cat(model.train_targets)
    assert torch.equal(seen.sort().values, dm.consensus_labels.sort().values)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))

    # both pools, with ids, in order, with the right inputs
    for loader, ids in (
        (dm.labeled_pool_dataloader(batch_size=10), dm.labeled_ids),
        (dm.unlabeled_pool_dataloader(batch_size=10), dm.unlabeled_ids),
    ):
        got = batches(loader)
        got_ids = torch.cat([b[1] for b in got])
        assert got_ids.dtype == torch.int64 and torch.equal(got_ids, ids)
        assert torch.equal(torch.cat([b[0] for b in got]), x[ids])
    assert torch.equal(torch.cat([dm.labeled_ids, dm.unlabeled_ids]).sort().values, torch.arange(N))

    # state_dict round trip (through torch.save / weights_only load) reproduces the train loader
    probs = torch.softmax(torch.randn(24, K, generator=torch.Generator().manual_seed(3)), -1)
    dm.refresh(probs)
    torch.save(dm.state_dict(), tmp_path / "dm.pt")
    dm2 = ActiveDataModule(TensorDataset(x, y), store, batch_size=8)
    dm2.load_state_dict(torch.load(tmp_path / "dm.pt", weights_only=True))
    assert torch.equal(dm2.labeled_ids, dm.labeled_ids) and torch.equal(dm2.unlabeled_ids, dm.unlabeled_ids)
    assert torch.equal(dm2.consensus_labels, dm.consensus_labels)
    assert_same_batches(batches(dm.train_dataloader()), batches(dm2.train_dataloader()))
    dm2.setup("fit")  # store unchanged: no recompute, same targets
    assert_same_batches(batches(dm.train_dataloader()), batches(dm2.train_dataloader()))


def dm_seed(dm: ActiveDataModule) -> int:
    from activelab_lightning.data.samplers import mix_seed

    return mix_seed(dm.seed, dm._refresh_count)


def dm_gen(dm: ActiveDataModule) -> torch.Generator:
    return torch.Generator().manual_seed(dm_seed(dm))


# ----------------------------------------------------------------------------- consensus
def test_refresh_with_probs_is_crowdlab_and_soft_targets_are_its_posterior(blobs):
    x, y = blobs
    labels = noisy_matrix(y)
    dm = ActiveDataModule(
        TensorDataset(x),
        new_store(),
        batch_size=5,
        soft_targets=True,
        initial_labels=labels,
        initial_annotator_ids=["ann-0", "ann-1", "ann-2"],
        true_labels=y,
    )
    probs = torch.softmax(3 * torch.randn(24, K, generator=torch.Generator().manual_seed(0)), -1)
    dm.refresh(probs)
    ref = crowdlab(labels[:24], probs, generator=dm_gen(dm))
    assert torch.equal(dm.consensus_labels, ref.consensus_label)
    assert dm.last_crowdlab is not None and dm.last_annotators == ["ann-0", "ann-1", "ann-2"]
    assert dm.last_crowdlab.model_weight == pytest.approx(ref.model_weight)
    assert torch.allclose(dm.soft_labels, ref.posterior.float())
    _, yb = next(iter(dm.train_dataloader()))
    assert yb.dtype == torch.float32 and yb.shape == (5, K) and torch.allclose(yb.sum(1), torch.ones(5))
    acc = dm.consensus_accuracy()
    assert acc == pytest.approx(float((ref.consensus_label == y[:24]).double().mean()))

    # majority vote again without probabilities; soft targets = vote shares
    dm.refresh()
    assert dm.last_crowdlab is None
    votes = torch.stack([(labels[:24] == k).sum(1) for k in range(K)], 1).float()
    assert torch.allclose(dm.soft_labels, votes / votes.sum(1, keepdim=True))


def test_refresh_aligns_rows_and_falls_back_to_majority_vote_for_new_examples(blobs):
    x, y = blobs
    store = new_store()
    labels = noisy_matrix(y)
    dm = ActiveDataModule(TensorDataset(x), store, initial_labels=labels)
    old = dm.labeled_ids.clone()
    probs_old = torch.full((24, K), 1.0 / K)
    probs_old[:, 2] += 0.2
    probs_old /= probs_old.sum(1, keepdim=True)
    # two new examples get labels, probabilities only for the old labeled ids (rows = labeled ids before)
    store.add_annotations([Annotation(40, "ann-x", 1), Annotation(41, "ann-x", 0)])
    dm.refresh(probs_old)
    assert dm.labeled_ids.tolist() == old.tolist() + [40, 41]
    assert dm.consensus_labels[-2:].tolist() == [1, 0]
    assert torch.equal(dm._pred_ids, old)
    # rows aligned with the labeled ids after re-reading the store
    probs_all = torch.softmax(torch.randn(26, K, generator=torch.Generator().manual_seed(2)), -1)
    dm.refresh(probs_all)
    assert torch.equal(dm._pred_ids, dm.labeled_ids)
    # explicit ids, in any order, may include unlabeled examples
    ids = torch.cat([dm.labeled_ids.flip(0), torch.tensor([50])])
    probs_ids = torch.cat([probs_all.flip(0), torch.full((1, K), 1.0 / K)])
    dm.refresh(probs_ids, example_ids=ids)
    same = dm.consensus_labels.clone()
    dm.refresh(probs_all)
    assert torch.equal(same, dm.consensus_labels)


def test_refresh_single_labels_without_multi_labeled_examples_keeps_the_labels(blobs):
    x, y = blobs
    dm = ActiveDataModule(TensorDataset(x), new_store(), initial_labeled=10, initial_labels=y, seed=4)
    probs = torch.softmax(torch.randn(10, K, generator=torch.Generator().manual_seed(1)), -1)
    dm.refresh(probs)
    assert dm.last_crowdlab is None
    assert torch.equal(dm.consensus_labels, y[dm.labeled_ids])
    assert dm.consensus_accuracy() is None  # no true_labels given


@pytest.mark.parametrize(
    ("probs", "kwargs", "match"),
    [
        (torch.full((24, 2), 0.5), {}, r"K = 3 classes"),
        (torch.full((7, K), 1.0 / K), {}, r"7 rows but there are 24 labeled"),
        (torch.randn(24, K), {}, r"must be probabilities"),
        (torch.full((24, K), NAN), {}, r"must be probabilities.*softmax"),
        (-torch.full((24, K), 1.0 / K), {}, r"pred_probs_labeled.*softmax"),
        (torch.full((3, K), 1.0 / K), {"example_ids": [0, 1]}, r"example_ids has 2 ids but"),
        (None, {"example_ids": [0, 1]}, r"without pred_probs_labeled"),
        (torch.full((2, K), 1.0 / K), {"example_ids": [4, 4]}, r"example_ids must be distinct"),
    ],
)
def test_refresh_errors(blobs, probs, kwargs, match):
    x, y = blobs
    dm = ActiveDataModule(TensorDataset(x), new_store(), initial_labels=noisy_matrix(y))
    with pytest.raises(ValueError, match=match):
        dm.refresh(probs, **kwargs)


def test_compute_consensus_is_the_pure_function_behind_refresh(blobs):
    x, y = blobs
    store = new_store()
    dm = ActiveDataModule(TensorDataset(x), store, initial_labels=noisy_matrix(y), seed=3)
    probs = torch.softmax(torch.randn(30, K, generator=torch.Generator().manual_seed(5)), -1).double()
    pred_ids = torch.arange(30).flip(0)  # covers every labeled id (0..23) and some unlabeled ones
    dm.refresh(probs, example_ids=pred_ids)
    labels, annotators = store.label_matrix(dm.labeled_ids)
    out = compute_consensus(
        dm.labeled_ids,
        labels,
        annotators,
        num_classes=K,
        pred_probs=probs,
        pred_ids=pred_ids,
        seed=dm_seed(dm),
    )
    assert torch.equal(out.labels, dm.consensus_labels) and torch.equal(out.soft_labels, dm.soft_labels)
    assert torch.equal(out.targets(False), dm.targets) and torch.equal(out.targets(True), dm.soft_labels)
    assert out.crowdlab is not None and dm.last_crowdlab is not None
    assert out.crowdlab.model_weight == pytest.approx(dm.last_crowdlab.model_weight)
    assert out.annotators == dm.last_annotators and torch.equal(out.pred_ids, dm.labeled_ids)
    # without probabilities: the seeded majority vote and the vote shares
    mv = compute_consensus(dm.labeled_ids, labels, annotators, num_classes=K, seed=dm_seed(dm))
    assert torch.equal(mv.labels, majority_vote(labels, num_classes=K, generator=dm_gen(dm)))
    assert mv.crowdlab is None and mv.annotators == [] and mv.pred_ids is None
    empty = compute_consensus(torch.zeros(0, dtype=torch.int64), labels[:0], [], num_classes=K)
    assert empty.labels.shape == (0,) and empty.soft_labels.shape == (0, K)


def test_setup_rereads_a_store_changed_behind_its_back(blobs):
    x, y = blobs
    store = new_store()
    dm = ActiveDataModule(TensorDataset(x), store, initial_labels=noisy_matrix(y))
    store.add_annotations([Annotation(55, "late", 2)])
    assert 55 not in dm.labeled_ids.tolist()
    dm.setup("fit")
    assert 55 in dm.labeled_ids.tolist() and 55 not in dm.unlabeled_ids.tolist()


# ----------------------------------------------------------------------------- loaders
def test_generic_dataset_path_equals_the_tensor_fast_path(blobs):
    x, y = blobs
    store = new_store()
    kw = {"batch_size": 7, "inference_batch_size": 9, "initial_labels": noisy_matrix(y), "seed": 5}
    fast = ActiveDataModule(TensorDataset(x, y), store, **kw)
    slow = ActiveDataModule(ListDataset(x, y), store, **kw)
    assert fast.uses_fast_path and not slow.uses_fast_path
    assert_same_batches(batches(fast.train_dataloader()), batches(slow.train_dataloader()))
    assert_same_batches(batches(fast.unlabeled_pool_dataloader()), batches(slow.unlabeled_pool_dataloader()))
    ids = torch.tensor([59, 3, 17, 0])
    assert_same_batches(batches(fast.pool_dataloader(ids, 3)), batches(slow.pool_dataloader(ids, 3)))
    # the order is seeded: the same seed gives the same epoch, another seed another order
    again = ActiveDataModule(TensorDataset(x, y), store, **kw)
    assert_same_batches(batches(fast.train_dataloader()), batches(again.train_dataloader()))
    other = ActiveDataModule(TensorDataset(x, y), store, **{**kw, "seed": 6})
    first_x = [torch.cat([b[0] for b in batches(d.train_dataloader())]) for d in (fast, other)]
    assert not torch.equal(*first_x) and torch.equal(first_x[0].sort(0).values, first_x[1].sort(0).values)
    # Lightning calls set_epoch on the sampler every epoch: a new seeded order
    loader = fast.train_dataloader()
    epoch0 = torch.cat([b[0] for b in batches(loader)])
    loader.sampler.set_epoch(1)
    epoch1 = torch.cat([b[0] for b in batches(loader)])
    assert not torch.equal(epoch0, epoch1) and torch.equal(epoch0.sort(0).values, epoch1.sort(0).values)


def test_train_loader_shards_over_ranks_on_both_paths(blobs):
    x, y = blobs
    store = new_store()
    kw = {"batch_size": 4, "initial_labels": noisy_matrix(y, n_labeled=23)}
    shards = {}
    for name, data in (("fast", TensorDataset(x, y)), ("slow", ListDataset(x, y))):
        per_rank = []
        for rank in range(2):
            dm = ActiveDataModule(data, store, **kw)
            dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
            loader = dm.train_dataloader()
            assert isinstance(
                loader.sampler, torch.utils.data.DistributedSampler
            )  # Lightning keeps it under DDP
            got = batches(loader)
            assert len(got) == len(loader) == math.ceil(12 / 4)
            per_rank.append(torch.cat([b[0] for b in got]))
        shards[name] = per_rank
        rows = torch.cat(per_rank)
        assert rows.shape[0] == 24  # 23 labeled, padded to 2 x 12
        # every labeled example is served by some rank
        seen = {tuple(r.tolist()) for r in rows}
        assert all(tuple(x[i].tolist()) in seen for i in range(23))
    for a, b in zip(shards["fast"], shards["slow"]):
        assert torch.equal(a, b)


def test_labeled_subset_loader_serves_one_fold(blobs):
    x, y = blobs
    for data in (TensorDataset(x), ListDataset(x, y)):
        dm = ActiveDataModule(
            data, new_store(), batch_size=4, initial_labeled=20, initial_labels=y, shuffle=False
        )
        mask = torch.arange(20) % 4 != 0
        got = batches(dm.labeled_subset_dataloader(mask))
        assert torch.equal(torch.cat([b[0] for b in got]), x[dm.labeled_ids[mask]])
        assert torch.equal(torch.cat([b[1] for b in got]), dm.consensus_labels[mask])
        got = batches(dm.labeled_subset_dataloader(torch.tensor([3, 0])))
        assert torch.equal(got[0][0], x[dm.labeled_ids[[3, 0]]])
    with pytest.raises(ValueError, match="positions into labeled_ids"):
        dm.labeled_subset_dataloader(torch.tensor([25]))
    with pytest.raises(ValueError, match="bool positions mask must have shape"):
        dm.labeled_subset_dataloader(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ActiveLabError, match="no labeled examples"):
        dm.labeled_subset_dataloader(torch.zeros(0, dtype=torch.long))


def test_a_loader_built_before_the_trainer_follows_the_process_group(blobs, monkeypatch):
    x, y = blobs
    dm = ActiveDataModule(TensorDataset(x), new_store(), batch_size=4, initial_labeled=23, initial_labels=y)
    loaders = [dm.train_dataloader() for _ in range(2)]  # no trainer, no process group yet: one shard
    assert len(loaders[0]) == 6
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    shards = []
    for rank, loader in enumerate(loaders):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        assert len(loader) == 3
        shards.append(torch.cat([b[0] for b in batches(loader)]))
    assert shards[0].shape[0] == shards[1].shape[0] == 12
    served = {tuple(r.tolist()) for r in torch.cat(shards)}
    assert served == {tuple(r.tolist()) for r in x[dm.labeled_ids]}


def test_subset_of_tensor_dataset_uses_the_fast_path_with_the_right_rows(blobs):
    x, y = blobs
    base = TensorDataset(torch.cat([x, x + 100]), torch.cat([y, y]))
    sub = Subset(base, list(range(N, 2 * N)))
    dm = ActiveDataModule(sub, new_store(), initial_labels=y, initial_labeled=[1, 5, 7])
    assert dm.uses_fast_path
    xb, ids = next(iter(dm.labeled_pool_dataloader()))
    assert torch.equal(xb, x[[1, 5, 7]] + 100) and ids.tolist() == [1, 5, 7]
    xb, yb = next(iter(dm.train_dataloader()))
    assert torch.equal(yb.sort().values, y[[1, 5, 7]].sort().values)
    assert torch.equal(xb.sort(0).values, (x[[1, 5, 7]] + 100).sort(0).values)


def test_dict_items_input_fn_and_batch_fn(blobs):
    x, y = blobs

    class DictData(Dataset):
        def __len__(self):
            return N

        def __getitem__(self, i):
            return {"features": x[i], "label": int(y[i])}

    with pytest.raises(KeyError, match="input_fn="):
        default_input_fn({"features": 1})
    dm = ActiveDataModule(
        DictData(),
        new_store(),
        batch_size=6,
        input_fn=lambda item: item["features"],
        batch_fn=lambda xb, yb: {"x": xb, "y": yb},
        initial_labeled=12,
        initial_labels=y,
    )
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x", "y"} and batch["x"].shape == (6, 4) and batch["y"].dtype == torch.int64
    xb, ids = next(iter(dm.labeled_pool_dataloader()))
    assert torch.equal(xb, x[ids])
    # a TensorDataset with an explicit input_fn takes the generic path
    dm2 = ActiveDataModule(
        TensorDataset(x), new_store(), input_fn=lambda item: item[0] * 2, initial_labeled=3, initial_labels=y
    )
    assert not dm2.uses_fast_path
    xb, ids = next(iter(dm2.labeled_pool_dataloader()))
    assert torch.equal(xb, 2 * x[ids])


def test_val_and_test_loaders_only_when_given(blobs):
    x, y = blobs
    dm = ActiveDataModule(
        TensorDataset(x),
        new_store(),
        val_dataset=TensorDataset(x[:10], y[:10]),
        test_dataset=TensorDataset(x[10:15], y[10:15]),
        batch_size=4,
        initial_labeled=8,
        initial_labels=y,
    )
    assert [len(b[0]) for b in dm.val_dataloader()] == [4, 4, 2]
    assert len(next(iter(dm.test_dataloader()))[0]) == 4
    model = TinyMLP(in_features=4, num_classes=K)
    trainer = fast_trainer(limit_val_batches=1.0)
    trainer.fit(model, datamodule=dm)
    assert "val/acc" in trainer.callback_metrics
    assert "test/acc" in trainer.test(model, datamodule=dm, verbose=False)[0]
    plain = ActiveDataModule(TensorDataset(x), new_store(), initial_labeled=8, initial_labels=y)
    with pytest.raises(Exception, match="val_dataloader"):
        plain.val_dataloader()


class GrowEachEpoch(pl.Callback):
    """Adds labels for 10 more examples at the end of every epoch (continuous mode)."""

    def __init__(self, y: torch.Tensor) -> None:
        self.y = y
        self.epoch_batches: list[int] = []
        self._start = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = pl_module.num_train_batches

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_batches.append(pl_module.num_train_batches - self._start)
        dm = trainer.datamodule
        new = dm.unlabeled_ids[:10].tolist()
        dm.store.add_annotations(
            [Annotation(i, "grow", int(self.y[i]), round=trainer.current_epoch) for i in new]
        )
        dm.refresh()


def test_continuous_mode_reload_sees_the_grown_labeled_set(blobs):
    x, y = blobs
    dm = ActiveDataModule(TensorDataset(x), new_store(), batch_size=5, initial_labeled=10, initial_labels=y)
    model = TinyMLP(in_features=4, num_classes=K)
    grow = GrowEachEpoch(y)
    trainer = fast_trainer(max_epochs=3, reload_dataloaders_every_n_epochs=1, callbacks=[grow])
    trainer.fit(model, datamodule=dm)
    assert grow.epoch_batches == [2, 4, 6]
    assert dm.labeled_ids.numel() == 40


# ----------------------------------------------------------------------------- cold start
def test_cold_start_from_the_store_from_annotations_and_idempotent_matrix_draw(blobs):
    x, y = blobs
    import pandas as pd

    frame = pd.DataFrame({"amy": [0.0] + [NAN] * (N - 1), "bob": [1.0, 2.0] + [NAN] * (N - 2)})
    dm = ActiveDataModule(TensorDataset(x), new_store(), initial_labels=frame)
    assert dm.labeled_ids.tolist() == [0, 1] and dm.label_matrix()[1] == ["amy", "bob"]

    store = new_store()
    store.add_annotations([Annotation(3, "bob", 1), Annotation(9, "bob", 2)])
    assert ActiveDataModule(TensorDataset(x), store).labeled_ids.tolist() == [3, 9]

    anns = [Annotation(5, "amy", 0), Annotation(6, "amy", 1), Annotation(7, "amy", 2)]
    store2 = new_store()
    dm = ActiveDataModule(TensorDataset(x), store2, initial_labels=anns, initial_labeled=[5, 7])
    assert dm.labeled_ids.tolist() == [5, 7] and dm.consensus_labels.tolist() == [0, 2]

    store3 = new_store()
    dm = ActiveDataModule(
        TensorDataset(x), store3, initial_labeled=15, initial_labels=noisy_matrix(y, 40), seed=7
    )
    first, n_ann = dm.labeled_ids.clone(), len(store3)
    assert first.numel() == 15 and bool((first < 40).all())  # drawn among labelable examples
    assert {a["source"] for a in store3.iter_annotations()} == {"initial"}
    again = ActiveDataModule(
        TensorDataset(x), store3, initial_labeled=15, initial_labels=noisy_matrix(y, 40), seed=7
    )
    assert len(store3) == n_ann and torch.equal(again.labeled_ids, first)  # re-running writes nothing new
    other = ActiveDataModule(
        TensorDataset(x),
        new_store(),
        initial_labeled=np.int64(15),
        initial_labels=noisy_matrix(y, 40),
        seed=8,
    )
    assert not torch.equal(other.labeled_ids, first)


def test_cold_start_from_an_oracle(blobs):
    x, y = blobs
    store = new_store()
    oracle = SimulatedOracle(y, [1.0, 1.0], seed=0)
    dm = ActiveDataModule(
        TensorDataset(x), store, initial_labeled=12, initial_labels=oracle, seed=3, true_labels=y
    )
    assert dm.labeled_ids.numel() == 12 and dm.consensus_accuracy() == 1.0
    rows = list(store.iter_annotations())
    assert {r["source"] for r in rows} == {"initial"} and len(rows) == 12
    ActiveDataModule(TensorDataset(x), store, initial_labeled=12, initial_labels=oracle, seed=3)
    assert len(store) == 12

    class SlowHumans:
        def request(self, requests):
            return OracleResponse(
                annotations=(Annotation(requests[0].example_id, "h", 0),), pending=tuple(requests[1:])
            )

    with pytest.raises(WaitingForLabels, match="waiting for 3 labels"):
        ActiveDataModule(TensorDataset(x), new_store(), initial_labeled=4, initial_labels=SlowHumans())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"initial_labeled": 5}, ValueError, r"needs initial_labels"),
        ({"initial_labels": torch.zeros(7, dtype=torch.long)}, ValueError, r"N = 60 rows"),
        ({"initial_labels": torch.full((N,), 0.5)}, ValueError, r"integer class indices"),
        (
            {"initial_labels": torch.zeros(N, 2, dtype=torch.long), "initial_annotator_ids": ["a"]},
            ValueError,
            r"2 distinct ids",
        ),
        (
            {"initial_labels": torch.zeros(N, dtype=torch.long), "initial_labeled": 0},
            ValueError,
            r"between 1 and",
        ),
        (
            {"initial_labels": torch.zeros(N, dtype=torch.long), "initial_labeled": [70]},
            ValueError,
            r"outside 0..59",
        ),
        (
            {"initial_labels": SimulatedOracle(torch.zeros(N, dtype=torch.long), [1.0])},
            ValueError,
            r"is an oracle",
        ),
        ({"batch_size": 0}, ValueError, r"batch_size must be a positive int"),
        ({"consensus_method": "mean"}, ValueError, r"consensus_method"),
        ({"true_labels": torch.zeros(5)}, ValueError, r"true_labels must be an \(N,\)"),
    ],
)
def test_constructor_errors(blobs, kwargs, error, match):
    x, _ = blobs
    with pytest.raises(error, match=match):
        ActiveDataModule(TensorDataset(x), new_store(), **kwargs)


def test_store_and_loader_errors(blobs):
    x, _ = blobs
    with pytest.raises(ValueError, match=r"store.num_examples=10 but len\(dataset\)=60"):
        ActiveDataModule(TensorDataset(x), new_store(10))
    with pytest.raises(TypeError, match="store must be an AnnotationStore"):
        ActiveDataModule(TensorDataset(x), {"num_examples": N})
    dm = ActiveDataModule(TensorDataset(x), new_store())
    with pytest.raises(ActiveLabError, match="no labeled examples to train on"):
        dm.train_dataloader()
    with pytest.raises(ValueError, match="outside 0..59"):
        dm.pool_dataloader([1, 60])
    with pytest.raises(ValueError, match="1-D sequence of integer"):
        dm.pool_dataloader(torch.tensor([0.0, 1.0]))
    state = dm.state_dict()
    with pytest.raises(ValueError, match="num_examples=60 but this datamodule has 30"):
        ActiveDataModule(TensorDataset(x[:30]), new_store(30)).load_state_dict(state)
