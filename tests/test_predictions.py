"""The acquisition's inference loop: modes, probabilities, errors, DDP shard / gather logic."""

from __future__ import annotations

import copy
import math
import threading
from types import SimpleNamespace

import pytest
import torch
from _models import TinyMLP, make_blobs
from torch import nn
from torch.utils.data import TensorDataset

from activelab_lightning.data import ActiveDataModule
from activelab_lightning.predictions import (
    collect_predictions,
    inference,
    iter_predictions,
    predict_proba_batches,
    shard_positions,
    unshard_batch,
)
from activelab_lightning.store import AnnotationStore

N, K = 23, 3


@pytest.fixture()
def setup():
    torch.manual_seed(0)
    x, y = make_blobs(N, 4, K, seed=1)
    store = AnnotationStore(num_examples=N, class_names=["a", "b", "c"])
    dm = ActiveDataModule(
        TensorDataset(x), store, inference_batch_size=4, initial_labeled=9, initial_labels=y
    )
    model = TinyMLP(in_features=4, num_classes=K, dropout=0.5)
    model.train()
    return x, dm, model


def reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = torch.softmax(model(x), -1).double()
    model.train()
    return out


class ModeProbe(nn.Module):
    """Records the mode it runs in; dropout would make train-mode outputs differ."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, K)
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return self.lin(x)


def test_batches_are_softmax_probabilities_in_eval_mode_and_train_mode_is_restored(setup):
    x, dm, model = setup
    ids_all, probs_all = [], []
    for ids, probs in predict_proba_batches(model, dm.pool_dataloader(torch.arange(N))):
        assert not torch.is_inference_mode_enabled()  # only the forward pass runs in inference mode
        assert not probs.is_inference() and probs.dtype == torch.float64 and probs.device.type == "cpu"
        probs.clamp_(0, 1)  # ordinary tensors: in-place ops are allowed
        ids_all.append(ids)
        probs_all.append(probs)
    assert model.training
    assert torch.equal(torch.cat(ids_all), torch.arange(N))
    assert torch.allclose(torch.cat(probs_all), reference(model, x), atol=1e-6)
    assert [len(i) for i in ids_all] == [4, 4, 4, 4, 4, 3]

    probe = ModeProbe().train()
    list(predict_proba_batches(probe, dm.labeled_pool_dataloader()))
    assert probe.seen and all(s == (False, True, False) for s in probe.seen)
    assert probe.training
    probe.eval()
    list(predict_proba_batches(probe, dm.labeled_pool_dataloader()))
    assert not probe.training  # eval mode kept as it was


def test_train_mode_restored_on_error_and_on_early_stop(setup):
    _, dm, model = setup

    def boom(module, x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        list(predict_proba_batches(model, dm.labeled_pool_dataloader(), predict_fn=boom))
    assert model.training
    it = predict_proba_batches(model, dm.labeled_pool_dataloader())
    next(it)
    assert not model.training
    it.close()
    assert model.training


class WithHook(TinyMLP):
    def predict_proba(self, x):
        self.hook_calls = getattr(self, "hook_calls", 0) + 1
        return torch.softmax(self(x) / 2.0, -1)


def test_predict_proba_hook_and_predict_fn(setup):
    x, dm, _ = setup
    model = WithHook(in_features=4, num_classes=K)
    _, probs = collect_predictions(None, model, dm, torch.arange(N))
    assert model.hook_calls == 6
    model.eval()
    assert torch.allclose(probs, torch.softmax(model(x) / 2.0, -1).double().detach(), atol=1e-6)
    # predict_fn wins over the hook, e.g. a binary model with one logit per example
    binary = nn.Linear(4, 1)

    def two_class(module, xb):
        p = torch.sigmoid(module(xb)).squeeze(1)
        return torch.stack([1 - p, p], 1)

    _, probs = collect_predictions(None, binary, dm, torch.arange(N), predict_fn=two_class, num_classes=2)
    assert probs.shape == (N, 2)


class OneLogit(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x):
        return self.lin(x).squeeze(1)


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, K)

    def forward(self, x):
        return self.lin(x), x


class LogitsHook(TinyMLP):
    def predict_proba(self, x):
        return self(x) * 10


def test_bad_outputs_give_clear_errors(setup):
    _, dm, _ = setup
    loader = dm.labeled_pool_dataloader()
    with pytest.raises(
        ValueError, match=r"returned shape \(4,\) for a batch of 4 examples; OneLogit must give"
    ):
        list(predict_proba_batches(OneLogit(), loader))
    with pytest.raises(TypeError, match=r"TupleOut.forward returned tuple.*predict_fn="):
        list(predict_proba_batches(TupleOut(), loader))
    with pytest.raises(ValueError, match=r"did not return probabilities"):
        list(predict_proba_batches(LogitsHook(in_features=4, num_classes=K), loader))
    calls = iter([3, 2])

    def unstable(module, xb):
        k = next(calls)
        return torch.full((xb.shape[0], k), 1.0 / k)

    with pytest.raises(ValueError, match="returned 2 classes for this batch but 3 for earlier ones"):
        list(predict_proba_batches(nn.Identity(), loader, predict_fn=unstable))
    with pytest.raises(TypeError, match="predict_fn must be a callable"):
        list(predict_proba_batches(nn.Identity(), loader, predict_fn="softmax"))


def test_pool_without_ids_is_refused(setup):
    x, _, model = setup
    no_ids = torch.utils.data.DataLoader(TensorDataset(x), batch_size=5)  # batches are [x]
    with pytest.raises(ValueError, match=r"pool batches must be \(inputs, example_ids\) pairs"):
        list(predict_proba_batches(model, no_ids))
    float_ids = [(x[:2], torch.tensor([0.0, 1.0]))]
    with pytest.raises(ValueError, match="batch 0 of the pool dataloader"):
        list(predict_proba_batches(model, float_ids))


def test_collect_keeps_the_order_of_example_ids_and_handles_empty_pools(setup):
    x, dm, model = setup
    ids = torch.tensor([20, 3, 7, 0, 11, 19, 2])
    got_ids, probs = collect_predictions(None, model, dm, ids, batch_size=3)
    assert torch.equal(got_ids, ids)
    assert torch.allclose(probs, reference(model, x)[ids], atol=1e-6)
    got_ids, probs = collect_predictions(None, model, dm, torch.zeros(0, dtype=torch.long))
    assert got_ids.numel() == 0 and probs.shape == (0, K)
    with pytest.raises(ValueError, match="example_ids must be a 1-D integer tensor"):
        collect_predictions(None, model, dm, torch.tensor([1.0]))


class Reordering:
    """A datamodule whose pool loader shuffles: must be caught."""

    inference_batch_size = 4
    num_classes = K

    def __init__(self, x):
        self.x = x

    def pool_dataloader(self, ids, batch_size=None):
        ids = ids.flip(0)
        return [(self.x[ids], ids)]


def test_a_pool_loader_that_reorders_is_caught(setup):
    x, _, model = setup
    with pytest.raises(ValueError, match="must keep the order"):
        collect_predictions(None, model, Reordering(x), torch.arange(5))


# ----------------------------------------------------------------------------- DDP logic
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_are_equal_strided_and_cover_the_pool(world):
    for n in range(14):
        shards = [shard_positions(n, world, r) for r in range(world)]
        assert len({s.numel() for s in shards}) == 1
        assert shards[0].numel() == -(-n // world)
        covered = torch.cat(shards)
        assert torch.equal(torch.unique(covered), torch.arange(n))
        # same split as DistributedSampler(shuffle=False)
        if n:
            ds = list(range(n))
            for r in range(world):
                ref = list(torch.utils.data.DistributedSampler(ds, num_replicas=world, rank=r, shuffle=False))
                assert shards[r].tolist() == ref
        # gathering equal-shape batches and unsharding rebuilds the pool exactly, without duplicates
        rows = torch.arange(n, dtype=torch.float64)[:, None] * 10
        for bs in (1, 2, 5):
            parts_pos, parts_rows = [], []
            length = shards[0].numel()
            for off in range(0, length, bs):
                gathered = torch.stack([rows[s[off : off + bs]] for s in shards])  # (W, b, 1)
                pos, got = unshard_batch(gathered, off, n)
                parts_pos.append(pos)
                parts_rows.append(got)
            if n:
                assert torch.equal(torch.cat(parts_pos), torch.arange(n))
                assert torch.equal(torch.cat(parts_rows), rows)
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        shard_positions(3, 2, 2)


class FakeWorld:
    """``world`` threads standing for DDP ranks: all_gather exchanges tensors through a barrier."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.barrier = threading.Barrier(world, timeout=20)
        self.slots: list[torch.Tensor | None] = [None] * world
        self.local = threading.local()
        self.calls = 0

    def all_gather(self, tensor, world_size, device):
        assert world_size == self.world
        rank = self.local.rank
        self.slots[rank] = tensor.clone()
        self.barrier.wait()
        shapes = {tuple(s.shape) for s in self.slots}
        assert len(shapes) == 1, f"unequal shapes gathered: {shapes}"  # what gloo would abort on
        out = torch.stack(list(self.slots))
        self.barrier.wait()
        if rank == 0:
            self.calls += 1
        return out

    def run(self, fn):
        results: list = [None] * self.world
        errors: list = []

        def target(rank):
            self.local.rank = rank
            try:
                results[rank] = fn(rank)
            except BaseException as e:
                errors.append(e)
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


@pytest.mark.parametrize(("world", "bs"), [(2, 2), (2, 4), (3, 5)])
def test_fake_ddp_world_gathers_by_id_with_padding_dropped(setup, monkeypatch, world, bs):
    _, dm, model = setup
    fake = FakeWorld(world)
    monkeypatch.setattr(inference, "all_gather", fake.all_gather)
    ids = torch.cat([dm.unlabeled_ids, dm.labeled_ids[:3]]).flip(0)  # 17 ids, unsorted, odd
    single_ids, single = collect_predictions(None, model, dm, ids, batch_size=bs)
    replicas = [copy.deepcopy(model) for _ in range(world)]  # one model replica per rank

    def rank_fn(rank):
        trainer = SimpleNamespace(world_size=world, global_rank=rank)
        full = collect_predictions(trainer, replicas[rank], dm, ids, batch_size=bs)
        streamed = list(iter_predictions(trainer, replicas[rank], dm, ids, batch_size=bs))
        return full, streamed

    results = fake.run(rank_fn)
    per_rank_batches = math.ceil(math.ceil(ids.numel() / world) / bs)
    assert fake.calls == 2 * per_rank_batches  # one gather per batch, for each of the two calls
    for (got_ids, probs), streamed in results:
        assert torch.equal(got_ids, single_ids)
        assert torch.allclose(probs, single, atol=1e-12)
        assert torch.equal(torch.cat([i for i, _ in streamed]), ids)
        assert torch.allclose(torch.cat([p for _, p in streamed]), single, atol=1e-12)
        assert all(len(i) <= world * bs for i, _ in streamed)
    assert all(r.training for r in replicas)


def test_world_size_above_one_without_a_process_group_is_explained(setup):
    _, dm, model = setup
    trainer = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(RuntimeError, match="torch.distributed is not initialized"):
        collect_predictions(trainer, model, dm, torch.arange(5))


def test_cpu_softmax_matches_torch_softmax_in_float64():
    logits = torch.randn(64, 7, generator=torch.Generator().manual_seed(0)) * 50
    logits[0, :3] = float("-inf")
    got = inference._softmax64(logits)
    assert got.dtype == torch.float64
    assert torch.allclose(got, torch.softmax(logits.double(), -1), atol=1e-12, rtol=0)
    assert torch.equal(got[0, :3], torch.zeros(3, dtype=torch.float64))
