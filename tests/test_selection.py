"""Selection: strategy registry, lowest-k with id tie-break (batch-independent), label requests."""

from __future__ import annotations

import pytest
import torch

from activelab_lightning.scoring import activelab_scores, activelab_scores_ensemble
from activelab_lightning.scoring.baselines import entropy_scores, margin_scores
from activelab_lightning.selection import (
    LowestK,
    ScoringContext,
    Strategy,
    available_strategies,
    get_strategy,
    make_requests,
    register_strategy,
    round_seed,
    select_lowest,
    subsample_ids,
)

NAN = float("nan")
PAPER_STRATEGIES = (
    "activelab",
    "activelab_ensemble",
    "random",
    "good_random",
    "entropy",
    "least_confidence",
    "margin",
    "disagreement",
)


def _problem(n: int = 40, u: int = 30, k: int = 3, m: int = 4, p: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    true = torch.randint(0, k, (n,), generator=g)
    labels = torch.full((n, m), NAN, dtype=torch.float64)
    for j in range(m):
        mask = torch.rand(n, generator=g) < 0.5
        noisy = torch.where(torch.rand(n, generator=g) < 0.8, true, torch.randint(0, k, (n,), generator=g))
        labels[mask, j] = noisy[mask].double()
    empty = torch.isnan(labels).all(dim=1)
    labels[empty, 0] = true[empty].double()
    ensemble = torch.softmax(torch.randn(p, n + u, k, generator=g, dtype=torch.float64) * 2, dim=-1)
    return labels, ensemble[:, :n], ensemble[:, n:]


def _ctx(labels, probs, ensemble=None, *, seed: int = 0) -> ScoringContext:
    return ScoringContext(
        labels=labels,
        labeled_ids=torch.arange(100, 100 + labels.shape[0]),
        num_classes=probs.shape[-1],
        pred_probs=probs,
        ensemble_pred_probs=ensemble,
        generator=torch.Generator().manual_seed(seed),
    )


# ----------------------------------------------------------------------------- select_lowest / LowestK
def test_select_lowest_breaks_ties_by_example_id():
    ids = torch.tensor([9, 4, 7, 1, 3])
    scores = torch.tensor([0.5, 0.2, 0.2, 0.9, 0.2])
    chosen, chosen_scores = select_lowest(ids, scores, 4)
    assert chosen.tolist() == [3, 4, 7, 9]
    assert chosen_scores.dtype == torch.float64
    assert chosen_scores.tolist() == pytest.approx([0.2, 0.2, 0.2, 0.5])


def test_select_lowest_compares_in_float64():
    # 1 + 1e-12 and 1 are equal in float32 but not in float64: the id tie-break must not kick in.
    ids = torch.tensor([0, 1])
    scores = torch.tensor([1.0 + 1e-12, 1.0], dtype=torch.float64)
    assert select_lowest(ids, scores, 1)[0].tolist() == [1]


@pytest.mark.parametrize("batch", [1, 3, 7, 50])
def test_lowest_k_streaming_equals_one_shot_selection(batch):
    g = torch.Generator().manual_seed(batch)
    ids = torch.randperm(200, generator=g)
    scores = torch.randint(0, 10, (200,), generator=g).double() / 10  # many exact ties
    extras = torch.stack([ids.double(), -ids.double()], dim=1)
    top = LowestK(25)
    for start in range(0, 200, batch):
        top.update(ids[start : start + batch], scores[start : start + batch], extras[start : start + batch])
    expected_ids, expected_scores = select_lowest(ids, scores, 25)
    got_ids, got_scores = top.result()
    assert torch.equal(got_ids, expected_ids)
    assert torch.equal(got_scores, expected_scores)
    assert torch.equal(top.extras_of(got_ids)[:, 0].long(), got_ids)
    assert top.num_seen == 200


def test_lowest_k_larger_than_pool_returns_everything_sorted():
    top = LowestK(10)
    top.update(torch.tensor([5, 2]), torch.tensor([0.3, 0.1]))
    assert top.result()[0].tolist() == [2, 5]


def test_nan_scores_are_an_error():
    with pytest.raises(ValueError, match="NaN scores"):
        select_lowest(torch.tensor([1, 2]), torch.tensor([0.1, NAN]), 1)


def test_select_lowest_rejects_bad_shapes_and_float_ids():
    with pytest.raises(ValueError, match="same length"):
        select_lowest(torch.tensor([1, 2]), torch.tensor([0.1]), 1)
    with pytest.raises(TypeError, match="integer example ids"):
        select_lowest(torch.tensor([1.0, 2.0]), torch.tensor([0.1, 0.2]), 1)
    with pytest.raises(ValueError, match="k"):
        LowestK(-1)


# ----------------------------------------------------------------------------- registry
def test_registry_has_the_paper_strategies():
    assert set(PAPER_STRATEGIES) <= set(available_strategies())
    for name in PAPER_STRATEGIES:
        assert get_strategy(name).name == name


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"Unknown acquisition strategy 'bald'.*activelab, activelab_ensemble"
    ):
        get_strategy("bald")


def test_register_strategy_rejects_duplicates_and_non_strategies():
    with pytest.raises(ValueError, match="already registered"):

        @register_strategy("entropy")
        class Other(Strategy):
            def fit(self, ctx):
                return ctx.labeled_ids.double()

            def score_unlabeled(self, ids, probs):
                return ids.double()

    with pytest.raises(TypeError, match="Strategy subclass"):
        register_strategy("not_a_strategy")(int)


# ----------------------------------------------------------------------------- strategies
def test_activelab_strategy_streams_the_same_scores_as_one_call():
    labels, ens, ens_u = _problem()
    probs, probs_u = ens[0], ens_u[0]
    strategy = get_strategy("activelab")
    labeled = strategy.fit(_ctx(labels, probs))
    unlabeled = torch.cat([strategy.score_unlabeled(None, probs_u[i : i + 7]) for i in range(0, 30, 7)])
    ref_labeled, ref_unlabeled = activelab_scores(labels, probs, probs_u)
    torch.testing.assert_close(labeled, ref_labeled.double(), rtol=0, atol=1e-15)
    torch.testing.assert_close(unlabeled, ref_unlabeled.double(), rtol=0, atol=1e-15)
    diagnostics = strategy.diagnostics()
    assert set(diagnostics) == {"temperature", "model_weight", "mean_annotator_weight"}
    assert 0.1 <= diagnostics["temperature"] <= 8


def test_activelab_ensemble_strategy_matches_the_function():
    labels, ens, ens_u = _problem()
    strategy = get_strategy("activelab_ensemble")
    assert strategy.input == "ensemble" and not strategy.streaming
    labeled = strategy.fit(_ctx(labels, ens.mean(0), ens))
    unlabeled = strategy.score_unlabeled(None, ens_u)
    ref_labeled, ref_unlabeled = activelab_scores_ensemble(labels, ens, ens_u)
    torch.testing.assert_close(labeled, ref_labeled.double(), rtol=0, atol=1e-15)
    torch.testing.assert_close(unlabeled, ref_unlabeled.double(), rtol=0, atol=1e-15)


def test_activelab_cold_start_scores_unlabeled_without_labels():
    _, ens, ens_u = _problem()
    ctx = _ctx(torch.zeros(0, 0, dtype=torch.float64), ens[0][:0])
    strategy = get_strategy("activelab")
    assert strategy.fit(ctx).numel() == 0
    scores = strategy.score_unlabeled(None, ens_u[0])
    assert scores.shape == (30,) and bool(torch.isfinite(scores).all())


@pytest.mark.parametrize("name,reference", [("entropy", entropy_scores), ("margin", margin_scores)])
def test_model_only_strategies_score_both_pools_the_same_way(name, reference):
    labels, ens, ens_u = _problem()
    strategy = get_strategy(name)
    assert torch.equal(strategy.fit(_ctx(labels, ens[0])), reference(ens[0]))
    assert torch.equal(strategy.score_unlabeled(None, ens_u[0]), reference(ens_u[0]))


def test_good_random_prefers_unlabeled_and_few_labels_and_is_seeded():
    labels, ens, _ = _problem()
    strategy = get_strategy("good_random")
    labeled = strategy.fit(_ctx(labels, ens[0], seed=3))
    counts = (~torch.isnan(labels)).sum(1)
    assert torch.equal(labeled.floor().long(), counts)
    unlabeled = strategy.score_unlabeled(torch.arange(5), None)
    assert bool((unlabeled < 1).all())
    again = get_strategy("good_random")
    assert torch.equal(again.fit(_ctx(labels, ens[0], seed=3)), labeled)


def test_disagreement_needs_an_ensemble():
    labels, ens, ens_u = _problem()
    with pytest.raises(ValueError, match="needs `ensemble_pred_probs`.*cv_folds"):
        get_strategy("disagreement").fit(_ctx(labels, ens[0]))
    strategy = get_strategy("disagreement")
    assert strategy.fit(_ctx(labels, ens[0], ens)).shape == (40,)
    assert strategy.score_unlabeled(None, ens_u).shape == (30,)


def test_strategy_used_before_fit_says_so():
    with pytest.raises(RuntimeError, match="before `fit"):
        get_strategy("random").score_unlabeled(torch.arange(3), None)


# ----------------------------------------------------------------------------- requests and seeds
def test_make_requests_marks_new_and_relabel_with_existing_annotators():
    requests = make_requests(
        torch.tensor([7, 2]), torch.tensor([0.1, 0.4]), round=3, existing_annotators=[(), ("ann-1", "ann-2")]
    )
    assert [(r.example_id, r.kind, r.round, r.existing_annotators) for r in requests] == [
        (7, "new", 3, ()),
        (2, "relabel", 3, ("ann-1", "ann-2")),
    ]
    assert requests[0].request_id == "r3:e7"
    assert requests[1].score == pytest.approx(0.4)


def test_make_requests_rejects_duplicates_and_length_mismatch():
    with pytest.raises(ValueError, match="unique"):
        make_requests([1, 1], [0.1, 0.2], round=0, existing_annotators=[(), ()])
    with pytest.raises(ValueError, match="as many"):
        make_requests([1, 2], [0.1], round=0, existing_annotators=[(), ()])


def test_round_seed_is_a_fixed_function_of_base_seed_and_round():
    seeds = {round_seed(base, r) for base in range(5) for r in range(20)}
    assert len(seeds) == 100
    assert round_seed(3, 7) == round_seed(3, 7)
    assert all(0 <= s < 2**63 for s in seeds)
    torch.Generator().manual_seed(round_seed(2**40, 10**6))  # fits a generator
    with pytest.raises(ValueError, match="round"):
        round_seed(0, -1)


def test_subsample_ids_is_seeded_sorted_and_a_subset():
    ids = torch.arange(100, 200)
    a = subsample_ids(ids, 10, generator=torch.Generator().manual_seed(1))
    b = subsample_ids(ids, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.numel() == 10
    assert bool((a[1:] > a[:-1]).all()) and bool(torch.isin(a, ids).all())
    assert torch.equal(subsample_ids(ids[:5], 10, generator=torch.Generator()), ids[:5])
    with pytest.raises(ValueError, match="size"):
        subsample_ids(ids, 0, generator=torch.Generator())


def test_lowest_k_keeps_extras_aligned_when_some_batches_have_none():
    top = LowestK(3)
    top.update(torch.tensor([1, 2]), torch.tensor([0.1, 0.9]))  # e.g. the labeled pool: no extras
    top.update(torch.tensor([3, 4]), torch.tensor([0.2, 0.05]), torch.tensor([[3.0], [4.0]]))
    ids, _ = top.result()
    assert ids.tolist() == [4, 1, 3]
    assert top.extras_of(torch.tensor([4, 3])).flatten().tolist() == [4.0, 3.0]
    assert bool(torch.isnan(top.extras_of(torch.tensor([1]))).all())
