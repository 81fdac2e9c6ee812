"""Oracles: simulated annotators, replayed annotations, registry, noise generation."""

from __future__ import annotations

import gzip
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import activelab_lightning.datasets as datasets_pkg
import activelab_lightning.oracles as oracles_pkg
from activelab_lightning.datasets.noise import (
    class_prior_of,
    generate_noise_matrix_from_trace,
    generate_noisy_labels,
    noise_matrix_is_valid,
)
from activelab_lightning.oracles import (
    BaseOracle,
    Oracle,
    ReplayOracle,
    SimulatedOracle,
    available_oracles,
    get_oracle,
    register_oracle,
)
from activelab_lightning.oracles import registry as registry_mod
from activelab_lightning.oracles.base import stable_uniform, string_keys
from activelab_lightning.records import Annotation, LabelRequest, OracleResponse


def req(example_id: int, round: int = 0, existing: tuple[str, ...] = ()) -> LabelRequest:
    return LabelRequest(
        example_id=example_id,
        score=0.0,
        kind="relabel" if existing else "new",
        round=round,
        existing_annotators=existing,
    )


def answers(response: OracleResponse) -> dict[str, tuple[str, int]]:
    return {a.request_id: (a.annotator_id, a.label) for a in response.annotations}


@pytest.fixture(scope="module")
def true_labels() -> torch.Tensor:
    return torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(7))


# --- noise generation ---------------------------------------------------------------------------


def test_noise_matrix_from_trace_has_exact_trace_unit_columns_and_is_valid():
    prior = torch.tensor([0.4, 0.3, 0.1, 0.2], dtype=torch.float64)
    nm = generate_noise_matrix_from_trace(4, 3.4, class_prior=prior, seed=123)
    assert nm.shape == (4, 4) and nm.dtype == torch.float64
    assert float(nm.trace()) == pytest.approx(3.4, abs=1e-12)
    assert torch.allclose(nm.sum(0), torch.ones(4, dtype=torch.float64))
    assert (nm >= 0).all()
    assert noise_matrix_is_valid(nm, prior)
    again = generate_noise_matrix_from_trace(4, 3.4, class_prior=prior, seed=123)
    other = generate_noise_matrix_from_trace(4, 3.4, class_prior=prior, seed=124)
    assert torch.equal(nm, again) and not torch.equal(nm, other)


def test_noise_matrix_generator_handles_two_classes_and_many_classes():
    nm2 = generate_noise_matrix_from_trace(2, 1.6, seed=0)
    assert float(nm2.trace()) == pytest.approx(1.6) and torch.allclose(
        nm2.sum(0), torch.ones(2, dtype=torch.float64)
    )
    nm10 = generate_noise_matrix_from_trace(10, 7.0, seed=3)
    assert float(nm10.trace()) == pytest.approx(7.0) and noise_matrix_is_valid(nm10, torch.full((10,), 0.1))


def test_noise_matrix_validity_check():
    prior = torch.tensor([0.5, 0.5])
    assert noise_matrix_is_valid(torch.tensor([[0.9, 0.2], [0.1, 0.8]]), prior)
    assert not noise_matrix_is_valid(torch.tensor([[0.4, 0.6], [0.6, 0.4]]), prior)
    with pytest.raises(ValueError, match="columns must sum to 1"):
        noise_matrix_is_valid(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), prior)
    with pytest.raises(ValueError, match="class_prior must be >= 0 and sum to 1"):
        noise_matrix_is_valid(torch.tensor([[0.9, 0.2], [0.1, 0.8]]), torch.tensor([0.5, 0.6]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 4, "trace": 0.85}, "sum of the diagonal"),
        ({"num_classes": 4, "trace": 4.5}, r"trace must be in \(1, 4\]"),
        ({"num_classes": 1, "trace": 1.0}, "num_classes must be an int >= 2"),
        ({"num_classes": 3, "trace": 2.0, "class_prior": [0.5, 0.5]}, r"class_prior must have shape \(3,\)"),
        ({"num_classes": 3, "trace": 2.0, "max_iter": 0}, "max_iter must be >= 1"),
    ],
)
def test_noise_matrix_generator_errors(kwargs, match):
    num_classes = kwargs.pop("num_classes")
    trace = kwargs.pop("trace")
    with pytest.raises(ValueError, match=match):
        generate_noise_matrix_from_trace(num_classes, trace, **kwargs)


def test_noisy_labels_realise_exact_flip_counts():
    y = torch.tensor([0] * 100 + [1] * 50 + [2] * 30)
    nm = torch.tensor([[0.8, 0.1, 0.0], [0.15, 0.9, 0.5], [0.05, 0.0, 0.5]], dtype=torch.float64)
    labels = generate_noisy_labels(y, nm, num_annotators=6, seed=1)
    assert labels.shape == (180, 6) and labels.dtype == torch.int64
    for a in range(6):
        joint = torch.zeros(3, 3, dtype=torch.int64)
        joint.index_put_((labels[:, a], y), torch.ones(180, dtype=torch.int64), accumulate=True)
        assert joint[:, 0].tolist() == [80, 15, 5]
        assert joint[:, 1].tolist() == [5, 45, 0]
        assert joint[:, 2].tolist() == [0, 15, 15]
    assert not torch.equal(labels[:, 0], labels[:, 1])  # annotators are independent draws
    assert torch.equal(labels, generate_noisy_labels(y, nm, num_annotators=6, seed=1))
    single = generate_noisy_labels(y, nm, seed=1)
    assert single.shape == (180,)


def test_noisy_labels_errors():
    nm = torch.eye(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="holds class 2 but noise_matrix is 2 x 2"):
        generate_noisy_labels([0, 2], nm)
    with pytest.raises(ValueError, match="integer class indices"):
        generate_noisy_labels([0.5, 1.0], nm)
    with pytest.raises(ValueError, match="num_annotators must be a positive int"):
        generate_noisy_labels([0, 1], nm, num_annotators=0)
    assert class_prior_of([0, 0, 1, 2], 3).tolist() == [0.5, 0.25, 0.25]
    with pytest.raises(ValueError, match="pass num_classes > 2"):
        class_prior_of([0, 2], 2)


def test_stable_uniform_is_deterministic_and_uniform():
    ids = np.arange(20000)
    u = stable_uniform(5, 1, ids)
    assert u.shape == (20000,) and (u >= 0).all() and (u < 1).all()
    assert np.array_equal(u, stable_uniform(5, 1, ids))
    assert not np.array_equal(u, stable_uniform(6, 1, ids))
    assert abs(u.mean() - 0.5) < 0.01 and abs((u < 0.1).mean() - 0.1) < 0.01
    assert stable_uniform(5, 1, ids[:, None], np.arange(3)[None, :]).shape == (20000, 3)
    keys = string_keys(["a", "b", "a"])
    assert keys[0] == keys[2] != keys[1] and (keys >= 0).all()


# --- SimulatedOracle ----------------------------------------------------------------------------


def test_simulated_oracle_satisfies_protocol_and_fills_annotation_fields(true_labels):
    oracle = SimulatedOracle(true_labels, 5, seed=0)
    assert isinstance(oracle, Oracle) and isinstance(oracle, BaseOracle)
    response = oracle.request([req(3, round=2), req(8, round=2)])
    assert [a.example_id for a in response.annotations] == [3, 8]
    a = response.annotations[0]
    assert (
        isinstance(a, Annotation)
        and a.round == 2
        and a.source == "oracle:simulated"
        and a.request_id == "r2:e3"
    )
    assert a.annotator_id in oracle.annotator_ids and oracle.annotator_ids[0] == "sim-00"
    assert response.pending == () and response.exhausted == ()
    assert oracle.request([]) == OracleResponse(annotations=())


def test_simulated_oracle_never_repeats_an_annotator_and_then_exhausts(true_labels):
    oracle = SimulatedOracle(true_labels, [0.9, 0.8, 0.7, 0.6], seed=1)
    existing: tuple[str, ...] = ("someone-else",)
    for round in range(4):
        (ann,) = oracle.request([req(11, round, existing)]).annotations
        assert ann.annotator_id not in existing
        existing += (ann.annotator_id,)
    assert set(existing[1:]) == set(oracle.annotator_ids)
    response = oracle.request([req(11, 4, existing), req(12, 4, existing[:3])])
    assert response.exhausted == (req(11, 4, existing),)
    assert [a.example_id for a in response.annotations] == [12]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 299), min_size=1, max_size=40, unique=True), st.randoms(use_true_random=False))
def test_simulated_answers_do_not_depend_on_batching_or_order(ids, rnd):
    y = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(7))
    for annotators in (6, [0.9, 0.7, 0.5]):
        oracle = SimulatedOracle(y, annotators, seed=3)
        requests = [req(i, round=i % 3, existing=("sim-00",) if i % 2 else ()) for i in ids]
        together = answers(oracle.request(requests))
        shuffled = list(requests)
        rnd.shuffle(shuffled)
        one_by_one: dict[str, tuple[str, int]] = {}
        for r in shuffled:
            one_by_one.update(answers(oracle.request([r])))
        fresh = answers(SimulatedOracle(y, annotators, seed=3).request(shuffled))
        assert together == one_by_one == fresh
        assert len(together) == len(requests)


def test_simulated_answers_depend_on_the_seed(true_labels):
    requests = [req(i) for i in range(60)]
    a = answers(SimulatedOracle(true_labels, [0.6] * 10, seed=0).request(requests))
    b = answers(SimulatedOracle(true_labels, [0.6] * 10, seed=1).request(requests))
    assert a != b


def test_simulated_label_is_a_fixed_function_of_example_and_annotator(true_labels):
    oracle = SimulatedOracle(true_labels, [0.7, 0.6, 0.5], seed=4)
    for ann in oracle.request([req(i, round=5) for i in range(50)]).annotations:
        assert int(oracle.label_of([ann.example_id], [ann.annotator_id])[0]) == ann.label
    pool_oracle = SimulatedOracle(true_labels, 4, seed=4)
    for ann in pool_oracle.request([req(i, round=1, existing=("sim-02",)) for i in range(50)]).annotations:
        assert (
            int(pool_oracle.label_pool[ann.example_id, pool_oracle.annotator_ids.index(ann.annotator_id)])
            == ann.label
        )
    with pytest.raises(ValueError, match="unknown annotator id 'nobody'"):
        oracle.label_of([0], "nobody")


def test_simulated_accuracies_match_the_requested_noise():
    y = torch.randint(0, 3, (6000,), generator=torch.Generator().manual_seed(0))
    oracle = SimulatedOracle(y, [0.9, 0.6], seed=2)
    labels0 = oracle.label_of(torch.arange(6000), "sim-00")
    labels1 = oracle.label_of(torch.arange(6000), "sim-01")
    assert abs(float((labels0 == y).double().mean()) - 0.9) < 0.02
    assert abs(float((labels1 == y).double().mean()) - 0.6) < 0.02
    wrong = labels1[labels1 != y] - y[labels1 != y]  # errors spread over both other classes
    assert {int(v) % 3 for v in wrong} == {1, 2}
    assert torch.allclose(oracle.accuracies, torch.tensor([0.9, 0.6], dtype=torch.float64))


def test_simulated_confusion_matrices_are_followed():
    y = torch.tensor([0, 1, 2] * 50)
    swap = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # true k -> (k + 1) % 3
    oracle = SimulatedOracle(y, torch.stack([torch.eye(3), swap]), seed=0)
    assert torch.equal(oracle.label_of(torch.arange(150), "sim-00"), y)
    assert torch.equal(oracle.label_of(torch.arange(150), "sim-01"), (y + 1) % 3)
    assert oracle.accuracies.tolist() == [1.0, 0.0]
    assert torch.equal(oracle.confusion_matrices[1], swap.double())


def test_simulated_paper_roster_uses_one_noise_matrix_from_the_trace(true_labels):
    oracle = SimulatedOracle(true_labels, "paper", seed=123)
    assert oracle.num_annotators == 30 and oracle.annotator_ids[-1] == "sim-29"
    assert float(oracle.noise_matrix.trace()) == pytest.approx(0.85 * 4)
    assert oracle.label_pool.shape == (300, 30)
    expected = float((oracle.noise_matrix.diagonal() * class_prior_of(true_labels, 4)).sum())
    assert abs(float(oracle.accuracies.mean()) - expected) < 0.03
    assert torch.allclose(oracle.confusion_matrices.sum(-1), torch.ones(30, 4, dtype=torch.float64))
    custom = SimulatedOracle(true_labels, 3, noise_trace=2.4, seed=0, annotator_prefix="bot-")
    assert float(custom.noise_matrix.trace()) == pytest.approx(2.4) and custom.annotator_ids == (
        "bot-00",
        "bot-01",
        "bot-02",
    )


def test_simulated_pool_labels_are_served_verbatim():
    y = torch.tensor([0, 1, 1, 0])
    pool = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0]])
    oracle = SimulatedOracle(y, pool_labels=pool, annotator_ids=["ann", "bob"], seed=0)
    resp = oracle.request([req(i) for i in range(4)])
    for a in resp.annotations:
        assert a.label == int(pool[a.example_id, ["ann", "bob"].index(a.annotator_id)])
    assert oracle.accuracies.tolist() == [0.5, 1.0]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([0, 1, 5],), {"num_classes": 3}, ValueError, "holds class 5, out of range for 3 classes"),
        (([0, -1],), {}, ValueError, "class indices >= 0"),
        (([0, 1], [0.9, 1.2]), {}, ValueError, r"accuracies must be in \[0, 1\]"),
        (([0, 1], torch.tensor([[[0.5, 0.4], [0.0, 1.0]]])), {}, ValueError, "rows must sum to 1"),
        (([0, 1], torch.ones(2, 2)), {}, ValueError, r"\(A, K, K\)"),
        (([0, 1], "everyone"), {}, ValueError, "annotators must be an int, 'paper'"),
        (([0, 1], 0), {}, ValueError, "annotators must be >= 1"),
        (([0, 1], [0.9]), {"noise_trace": 1.5}, ValueError, "noise_trace only applies"),
        (([0, 1], 3), {"pool_labels": [[0], [1]]}, ValueError, "either pool_labels or annotators"),
        (([0, 1],), {"pool_labels": [[0, 1]]}, ValueError, r"shape \(N, A\) = \(2, A >= 1\)"),
        (([0, 1], 2), {"annotator_ids": ["a", "a"]}, ValueError, "2 distinct ids"),
        (([0, 1], 2), {"noise_trace": 0.85}, ValueError, "sum of the diagonal"),
        (([0.5, 1.0],), {}, ValueError, "integer class indices"),
        (([0, 1], [0.9]), {"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_simulated_oracle_argument_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        SimulatedOracle(*args, **kwargs)


def test_request_validation_errors(true_labels):
    oracle = SimulatedOracle(true_labels, [0.9])
    with pytest.raises(ValueError, match=r"unknown example id 300 in request r0:e300.*0 \.\. 299"):
        oracle.request([req(300)])
    with pytest.raises(ValueError, match="unknown example id -1"):
        oracle.request([req(-1)])
    with pytest.raises(ValueError, match="appears twice"):
        oracle.request([req(1), req(1)])
    with pytest.raises(TypeError, match="wrap it in a list"):
        oracle.request(req(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must hold LabelRequest objects, got int"):
        oracle.request([1])  # type: ignore[list-item]


def test_base_oracle_rejects_answers_that_were_not_asked_for():
    class Sloppy(BaseOracle):
        def __init__(self, answer: Annotation) -> None:
            super().__init__("sloppy", num_classes=2)
            self.answer = answer

        def _answer(self, requests):
            return OracleResponse(annotations=(self.answer,))

    with pytest.raises(RuntimeError, match="answered example 9"):
        Sloppy(Annotation(9, "x", 0, 0, "oracle:sloppy", "r0:e9")).request([req(1)])
    with pytest.raises(RuntimeError, match="asked annotator 'x' twice"):
        Sloppy(Annotation(1, "x", 0, 0, "oracle:sloppy", "r0:e1")).request([req(1, existing=("x",))])
    with pytest.raises(RuntimeError, match="returned label 7"):
        Sloppy(Annotation(1, "y", 7, 0, "oracle:sloppy", "r0:e1")).request([req(1)])
    with pytest.raises(TypeError):
        BaseOracle("abstract")  # type: ignore[abstract]


# --- ReplayOracle (long table) ------------------------------------------------------------------


TABLE = (
    [0, 0, 0, 1, 1, 2, 2],
    ["ann", "bob", "cat", "ann", "dan", "bob", "bob"],
    [1, 1, 0, 2, 2, 0, 0],  # the repeated (2, bob, 0) row is merged
)


def test_replay_serves_unused_annotators_then_exhausts():
    oracle = ReplayOracle(*TABLE, seed=0)
    assert oracle.annotator_ids == ("ann", "bob", "cat", "dan") and oracle.num_classes == 3
    existing: tuple[str, ...] = ()
    served = []
    for round in range(3):
        (a,) = oracle.request([req(0, round, existing)]).annotations
        assert a.annotator_id not in existing and a.source == "oracle:replay" and a.round == round
        served.append((a.annotator_id, a.label))
        existing += (a.annotator_id,)
    assert sorted(served) == [("ann", 1), ("bob", 1), ("cat", 0)]
    response = oracle.request([req(0, 3, existing), req(2, 3, ("bob",)), req(99, 3)])
    assert [r.example_id for r in response.exhausted] == [0, 2, 99] and response.annotations == ()


def test_replay_answers_ignore_table_order_batching_and_call_order():
    requests = [req(0, 1, ("ann",)), req(1, 1), req(2, 1), req(0, 2)]
    base = answers(ReplayOracle(*TABLE, seed=5).request(requests))
    rows = list(zip(*TABLE))
    random.Random(0).shuffle(rows)
    shuffled = ReplayOracle(*map(list, zip(*rows)), seed=5)
    one_by_one: dict[str, tuple[str, int]] = {}
    for r in reversed(requests):
        one_by_one.update(answers(shuffled.request([r])))
    assert base == one_by_one and len(base) == 4
    seeds = {
        tuple(sorted(answers(ReplayOracle(*TABLE, seed=s).request([req(0)])).values())) for s in range(20)
    }
    assert len(seeds) > 1  # the seed changes which annotator answers


def test_replay_table_errors():
    with pytest.raises(ValueError, match="annotator 'ann' gave example 0 two different labels"):
        ReplayOracle([0, 0], ["ann", "ann"], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        ReplayOracle([0, 1], ["a"], [1, 2])
    with pytest.raises(ValueError, match="table is empty"):
        ReplayOracle([], [], [])
    with pytest.raises(ValueError, match=r"example id 5 in the table is out of range 0 \.\. 2"):
        ReplayOracle([5], ["a"], [0], num_examples=3)
    with pytest.raises(ValueError, match="label -1 in the table"):
        ReplayOracle([0], ["a"], [-1])
    with pytest.raises(ValueError, match="labels must hold integers"):
        ReplayOracle([0], ["a"], [0.5])
    with pytest.raises(ValueError, match="unknown example id 3"):
        ReplayOracle([0], ["a"], [0], num_examples=3).request([req(3)])


def test_replay_from_csv(tmp_path):
    text = "item,worker,answer\n0,w1,yes\n0,w2,no\n1,w1,\n1,w3,yes\n"
    path = tmp_path / "rte.csv"
    path.write_text(text)
    oracle = ReplayOracle.from_csv(
        path,
        example_col="item",
        annotator_col="worker",
        label_col="answer",
        class_names=["no", "yes"],
        seed=1,
    )
    assert oracle.num_classes == 2 and oracle.annotator_ids == (
        "w1",
        "w2",
        "w3",
    )  # the empty label is skipped
    (a,) = oracle.request([req(1)]).annotations
    assert (a.annotator_id, a.label) == ("w3", 1)
    gz = tmp_path / "long.csv.gz"
    gz.write_bytes(gzip.compress(b"example_id,annotator_id,label\n4,x,2\n"))
    assert ReplayOracle.from_csv(gz).request([req(4)]).annotations[0].label == 2
    with pytest.raises(ValueError, match=r"label_col='label' is not a column of rte.csv; its columns are"):
        ReplayOracle.from_csv(path, example_col="item", annotator_col="worker")
    with pytest.raises(ValueError, match="label 'yes' is not an integer; pass class_names"):
        ReplayOracle.from_csv(path, example_col="item", annotator_col="worker", label_col="answer")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ReplayOracle.from_csv(tmp_path / "missing.csv")
    assert ReplayOracle.from_long_table(*TABLE).annotator_ids == ("ann", "bob", "cat", "dan")


# --- ReplayOracle (distributions) ---------------------------------------------------------------


def test_replay_distributions_with_replacement_follow_the_probabilities():
    probs = torch.tensor([[0.2, 0.8, 0.0]]).repeat(4000, 1)
    oracle = ReplayOracle.from_distributions(probs, seed=0)
    response = oracle.request([req(i) for i in range(4000)])
    labels = torch.tensor([a.label for a in response.annotations])
    assert {a.annotator_id for a in response.annotations} == {"dist-0"}
    assert abs(float((labels == 1).double().mean()) - 0.8) < 0.025 and int((labels == 2).sum()) == 0
    (again,) = oracle.request([req(7, 5, ("dist-0", "dist-2"))]).annotations
    assert again.annotator_id == "dist-1"  # the smallest unused draw index
    assert again == oracle.request([req(7, 5, ("dist-2", "dist-0"))]).annotations[0]


def test_replay_counts_without_replacement_replay_each_counted_label_once():
    oracle = ReplayOracle.from_distributions([[0, 3, 1], [2, 0, 0]], replacement=False, seed=3)
    existing: tuple[str, ...] = ()
    labels = []
    for round in range(4):
        (a,) = oracle.request([req(0, round, existing)]).annotations
        labels.append(a.label)
        existing += (a.annotator_id,)
    assert sorted(labels) == [1, 1, 1, 2] and existing == ("dist-0", "dist-1", "dist-2", "dist-3")
    assert oracle.request([req(0, 4, existing)]).exhausted == (req(0, 4, existing),)
    orders = set()
    for seed in range(10):
        o = ReplayOracle.from_distributions([[0, 3, 1]], replacement=False, seed=seed)
        orders.add(
            tuple(
                o.request([req(0, 0, tuple(f"dist-{j}" for j in range(k)))]).annotations[0].label
                for k in range(4)
            )
        )
    assert len(orders) > 1


def test_replay_distribution_caps_and_errors():
    counts = ReplayOracle.from_distributions([[1, 1], [0, 0]])
    assert counts.request([req(0, 0, ("dist-0", "dist-1"))]).exhausted  # row total = 2 labels
    assert counts.request([req(1)]).exhausted  # an all-zero row has nothing to give
    capped = ReplayOracle.from_distributions([[0.5, 0.5]], annotators_per_example=1)
    assert capped.request([req(0, 0, ("dist-0",))]).exhausted
    unlimited = ReplayOracle.from_distributions([[0.5, 0.5]])
    assert (
        unlimited.request([req(0, 0, tuple(f"dist-{j}" for j in range(50)))]).annotations[0].annotator_id
        == "dist-50"
    )
    with pytest.raises(ValueError, match="needs integer counts"):
        ReplayOracle.from_distributions([[0.5, 0.5]], replacement=False)
    with pytest.raises(ValueError, match="finite values >= 0"):
        ReplayOracle.from_distributions([[-1.0, 2.0]])
    with pytest.raises(ValueError, match=r"shape \(N, K\) with K >= 2"):
        ReplayOracle.from_distributions([1.0, 2.0])
    with pytest.raises(ValueError, match="annotators_per_example must be a positive int"):
        ReplayOracle.from_distributions([[1, 1]], annotators_per_example=0)


# --- registry and package -----------------------------------------------------------------------


def test_registry_builds_builtins_by_name(true_labels):
    oracle = get_oracle("simulated", true_labels=true_labels, annotators=[0.9, 0.8])
    assert isinstance(oracle, SimulatedOracle) and oracle.num_annotators == 2
    assert isinstance(get_oracle("Replay", example_ids=[0], annotator_ids=["a"], labels=[1]), ReplayOracle)
    assert isinstance(get_oracle("replay-distributions", distributions=[[1, 2]]), ReplayOracle)
    names = available_oracles()
    assert {"simulated", "replay", "replay_csv", "replay_distributions", "file", "label_studio"} <= set(names)
    assert list(names) == sorted(names)


def test_registry_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown oracle 'oracel'; available: .*simulated"):
        get_oracle("oracel")
    with pytest.raises(TypeError, match="non-empty string"):
        get_oracle("")


def test_register_custom_oracle(monkeypatch):
    monkeypatch.setattr(registry_mod, "_REGISTRY", {})

    @register_oracle("Always-Zero")
    class AlwaysZero(BaseOracle):
        def __init__(self, name: str = "zero") -> None:
            super().__init__(name)

        def _answer(self, requests):
            return OracleResponse(
                tuple(
                    Annotation(r.example_id, "bot", 0, r.round, self.source, r.request_id) for r in requests
                )
            )

    assert "always_zero" in available_oracles()
    oracle = get_oracle("always_zero")
    assert oracle.request([req(4)]).annotations[0].source == "oracle:zero"
    assert register_oracle("always-zero", AlwaysZero) is AlwaysZero  # same factory again is fine
    with pytest.raises(ValueError, match="already registered"):
        register_oracle("always_zero", lambda: None)
    register_oracle("always_zero", SimulatedOracle, overwrite=True)
    assert registry_mod._REGISTRY["always_zero"] is SimulatedOracle
    with pytest.raises(TypeError, match="needs a class or function"):
        register_oracle("x", 3)  # type: ignore[arg-type]


def test_registry_reports_a_missing_backend_module(monkeypatch):
    monkeypatch.setitem(
        registry_mod._BUILTIN, "ghost", ("activelab_lightning.oracles.no_such_module", "Ghost")
    )
    with pytest.raises(
        ImportError, match="oracle 'ghost' needs module activelab_lightning.oracles.no_such_module"
    ):
        get_oracle("ghost")


def test_package_exports_and_lazy_names():
    exported = set(oracles_pkg.__all__)
    assert {
        "Oracle",
        "SimulatedOracle",
        "ReplayOracle",
        "register_oracle",
        "get_oracle",
        "available_oracles",
    } <= exported
    assert {"FileOracle", "LabelStudioOracle"} <= set(dir(oracles_pkg))
    assert exported.isdisjoint(
        {"FileOracle", "LabelStudioOracle"}
    )  # star-imports never load optional backends
    assert all(getattr(oracles_pkg, name) is not None for name in exported)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        oracles_pkg.Nope  # noqa: B018
    assert all(getattr(datasets_pkg, name) is not None for name in datasets_pkg.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        datasets_pkg.Nope  # noqa: B018
