"""Baseline acquisition scores: hand-computed values, "lower = label next" ordering, seeding, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from activelab_lightning.scoring.baselines import (
    disagreement_scores,
    entropy_scores,
    good_random_scores,
    least_confidence_scores,
    margin_scores,
    random_scores,
)

PROBS = torch.tensor(
    [
        [1 / 3, 1 / 3, 1 / 3],  # uniform: the most uncertain row
        [0.5, 0.5, 0.0],  # split between two classes
        [0.8, 0.1, 0.1],
        [1.0, 0.0, 0.0],  # certain
    ],
    dtype=torch.float64,
)


def _random_probs(
    shape: tuple[int, ...], seed: int = 0, *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2.0 * torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1).to(dtype)


# --------------------------------------------------------------------------- hand-computed values
def test_entropy_scores_hand_computed() -> None:
    h_08 = -(0.8 * math.log(0.8) + 2 * 0.1 * math.log(0.1)) / math.log(3)
    expected = torch.tensor([-1.0, -math.log(2) / math.log(3), -h_08, 0.0], dtype=torch.float64)
    torch.testing.assert_close(entropy_scores(PROBS), expected, rtol=0, atol=1e-15)


def test_entropy_scores_match_cleanlab_normalized_entropy() -> None:
    from cleanlab.internal.label_quality_utils import get_normalized_entropy

    probs = _random_probs((50, 7))
    np.testing.assert_allclose(
        entropy_scores(probs).numpy(), -get_normalized_entropy(probs.numpy()), rtol=0, atol=1e-15
    )


def test_least_confidence_scores_hand_computed() -> None:
    expected = torch.tensor([1 / 3 - 1, -0.5, -0.2, 0.0], dtype=torch.float64)
    torch.testing.assert_close(least_confidence_scores(PROBS), expected, rtol=0, atol=1e-15)


def test_margin_scores_hand_computed() -> None:
    expected = torch.tensor([0.0, 0.0, 0.7, 1.0], dtype=torch.float64)
    torch.testing.assert_close(margin_scores(PROBS), expected, rtol=0, atol=1e-15)


def test_disagreement_cross_entropy_hand_computed() -> None:
    # P = 2 members, N = 2 examples, K = 2 classes.
    ens = torch.tensor(
        [
            [[0.9, 0.1], [0.5, 0.5]],
            [[0.7, 0.3], [0.5, 0.5]],
        ],
        dtype=torch.float64,
    )
    mean0 = (0.8, 0.2)
    ce_m1 = -(mean0[0] * math.log(0.9) + mean0[1] * math.log(0.1))
    ce_m2 = -(mean0[0] * math.log(0.7) + mean0[1] * math.log(0.3))
    expected = torch.tensor([-(ce_m1 + ce_m2) / 2 / math.log(2), -1.0], dtype=torch.float64)
    torch.testing.assert_close(disagreement_scores(ens), expected, rtol=0, atol=1e-15)


def test_disagreement_cross_entropy_clips_members_at_1e_minus_6() -> None:
    # Member 1 gives class 1 probability 0 while the mean gives it 0.5: log(0) would be -inf.
    ens = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]], dtype=torch.float64)
    ce_each = -(0.5 * math.log(1.0) + 0.5 * math.log(1e-6))
    expected = torch.tensor([-ce_each / math.log(2)], dtype=torch.float64)
    torch.testing.assert_close(disagreement_scores(ens), expected, rtol=0, atol=1e-12)


def test_disagreement_cross_entropy_matches_paper_formula() -> None:
    ens = _random_probs((3, 40, 5), seed=3).numpy()
    mean = ens.mean(axis=0)
    per_member = [-np.sum(mean * np.log(np.clip(p, 1e-6, None)), axis=1) / np.log(5) for p in ens]
    expected = np.mean(-np.stack(per_member, axis=1), axis=1)
    np.testing.assert_allclose(disagreement_scores(ens).numpy(), expected, rtol=0, atol=1e-14)


def test_disagreement_kl_is_mean_kl_of_members_to_the_mean() -> None:
    ens = _random_probs((4, 30, 6), seed=4)
    mean = ens.mean(dim=0)
    kl = (ens * (ens.log() - mean.log())).sum(dim=2).mean(dim=0) / math.log(6)
    torch.testing.assert_close(disagreement_scores(ens, measure="kl"), -kl, rtol=0, atol=1e-14)


# --------------------------------------------------------------------------- ordering semantics
def test_uncertainty_scores_rank_the_uniform_row_first_and_the_certain_row_last() -> None:
    for fn in (entropy_scores, least_confidence_scores, margin_scores):
        scores = fn(PROBS)
        assert int(scores.argmin()) in (0, 1), fn.__name__  # margin ties rows 0 and 1 at 0
        assert int(scores.argmax()) == 3, fn.__name__


def test_disagreement_ranks_disagreeing_committee_before_agreeing_one() -> None:
    agree = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4]], dtype=torch.float64)  # (P, K)
    split = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.4, 0.6]], dtype=torch.float64)
    ens = torch.stack([agree, split], dim=1)  # (P=3, N=2, K=2)
    for measure in ("cross_entropy", "kl"):
        scores = disagreement_scores(ens, measure=measure)
        assert scores[1] < scores[0], measure
    assert disagreement_scores(ens, measure="kl")[0] == 0.0


def test_disagreement_with_one_member_kl_is_zero() -> None:
    ens = _random_probs((1, 10, 3))
    assert torch.equal(disagreement_scores(ens, measure="kl"), torch.zeros(10, dtype=torch.float64))


def test_good_random_puts_unlabeled_first_then_fewest_labels() -> None:
    counts = torch.tensor([3, 0, 1, 0, 2, 1])
    scores = good_random_scores(counts, generator=torch.Generator().manual_seed(0))
    order = scores.argsort()
    assert counts[order].tolist() == [0, 0, 1, 1, 2, 3]
    assert torch.all((scores - counts) >= 0) and torch.all((scores - counts) < 1)


def test_random_scores_are_uniform_in_unit_interval() -> None:
    scores = random_scores(10_000, generator=torch.Generator().manual_seed(1))
    assert scores.dtype == torch.float64 and scores.shape == (10_000,)
    assert 0.0 <= float(scores.min()) and float(scores.max()) < 1.0
    assert abs(float(scores.mean()) - 0.5) < 0.02


# --------------------------------------------------------------------------- determinism
def test_random_baselines_are_deterministic_given_the_generator() -> None:
    a = random_scores(100, generator=torch.Generator().manual_seed(7))
    b = random_scores(100, generator=torch.Generator().manual_seed(7))
    c = random_scores(100, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    counts = np.array([0, 1, 2, 0, 5])
    ga = good_random_scores(counts, generator=torch.Generator().manual_seed(7))
    gb = good_random_scores(counts, generator=torch.Generator().manual_seed(7))
    assert torch.equal(ga, gb)
    torch.testing.assert_close(ga - torch.from_numpy(counts).double(), a[:5], rtol=0, atol=1e-15)


def test_random_baselines_leave_the_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    random_scores(10, generator=torch.Generator().manual_seed(0))
    good_random_scores(torch.zeros(10), generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)


# --------------------------------------------------------------------------- inputs and outputs
@pytest.mark.parametrize("fn", [entropy_scores, least_confidence_scores, margin_scores])
def test_numpy_and_float32_inputs_give_float64_results(fn) -> None:
    probs64 = _random_probs((20, 4))
    probs32 = probs64.float()
    out = fn(probs32.numpy())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == (20,)
    torch.testing.assert_close(out, fn(probs32), rtol=0, atol=0)
    torch.testing.assert_close(out, fn(probs64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("fn", [entropy_scores, least_confidence_scores, margin_scores])
def test_empty_input_gives_empty_scores(fn) -> None:
    assert fn(torch.empty(0, 3)).shape == (0,)


def test_empty_inputs_for_committee_and_random() -> None:
    assert disagreement_scores(torch.empty(2, 0, 3)).shape == (0,)
    assert random_scores(0, generator=torch.Generator()).shape == (0,)
    assert good_random_scores(torch.empty(0), generator=torch.Generator()).shape == (0,)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 20), k=st.integers(2, 8), p=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_score_ranges(n: int, k: int, p: int, seed: int) -> None:
    ens = _random_probs((p, n, k), seed=seed)
    probs = ens[0]
    eps = 1e-12
    assert torch.all(entropy_scores(probs) >= -1 - eps) and torch.all(entropy_scores(probs) <= eps)
    lc = least_confidence_scores(probs)
    assert torch.all(lc >= -(1 - 1 / k) - eps) and torch.all(lc <= 0)
    margin = margin_scores(probs)
    assert torch.all(margin >= 0) and torch.all(margin <= 1)
    kl = disagreement_scores(ens, measure="kl")
    assert torch.all(kl >= -1 - eps) and torch.all(kl <= 0)
    # CE(pbar, p_m) >= H(pbar) (Gibbs), so the paper's score is at most -H(pbar) / ln K.
    assert torch.all(disagreement_scores(ens) <= entropy_scores(ens.mean(dim=0)) + 1e-9)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("fn", [entropy_scores, least_confidence_scores, margin_scores])
def test_logits_are_rejected_with_a_hint(fn) -> None:
    with pytest.raises(ValueError, match=r"pred_probs contains negative values.*did you pass logits\?"):
        fn(torch.tensor([[2.0, -1.0, 0.5]]))
    with pytest.raises(
        ValueError, match=r"rows of pred_probs must sum to 1.*sums to 3\.5.*did you pass logits\?"
    ):
        fn(torch.tensor([[2.0, 1.0, 0.5]]))


def test_non_finite_probabilities_are_rejected() -> None:
    with pytest.raises(
        ValueError, match=r"pred_probs contains non-finite values \(e\.g\. nan at index \(0, 0\)\)"
    ):
        least_confidence_scores(torch.tensor([[float("nan"), 1.0]]))


@pytest.mark.parametrize("fn", [entropy_scores, least_confidence_scores, margin_scores])
def test_wrong_rank_is_rejected(fn) -> None:
    with pytest.raises(ValueError, match=r"pred_probs must have shape \(N, K\), got shape \(3,\)"):
        fn(torch.tensor([0.2, 0.3, 0.5]))
    with pytest.raises(
        ValueError, match=r"got shape \(2, 3, 4\)\. For a \(P, N, K\) ensemble use `disagreement_scores`"
    ):
        fn(_random_probs((2, 3, 4)))


@pytest.mark.parametrize("fn", [entropy_scores, least_confidence_scores, margin_scores])
def test_single_class_is_rejected(fn) -> None:
    with pytest.raises(
        ValueError, match=r"pred_probs has K = 1 class.*\(shape \(2, 1\)\).*at least 2 classes"
    ):
        fn(torch.ones(2, 1))


def test_nested_lists_are_accepted_and_strings_rejected() -> None:
    assert entropy_scores([[0.5, 0.5]]).tolist() == [-1.0]
    with pytest.raises(
        TypeError, match=r"pred_probs must be a torch\.Tensor or numpy array of numbers, got str"
    ):
        entropy_scores("0.5, 0.5")


def test_disagreement_shape_and_measure_errors() -> None:
    with pytest.raises(ValueError, match=r"\(P, N, K\), got shape \(5, 3\).*pred_probs\[None\]"):
        disagreement_scores(_random_probs((5, 3)))
    with pytest.raises(ValueError, match=r"pred_probs_ensemble has K = 1 class"):
        disagreement_scores(torch.ones(2, 5, 1))
    with pytest.raises(ValueError, match=r"pred_probs_ensemble has no models"):
        disagreement_scores(torch.empty(0, 5, 3))
    with pytest.raises(ValueError, match=r"measure must be one of \('cross_entropy', 'kl'\), got 'js'"):
        disagreement_scores(_random_probs((2, 5, 3)), measure="js")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"pred_probs_ensemble.*logits"):
        disagreement_scores(torch.randn(2, 5, 3))


def test_random_scores_argument_errors() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or an int seed, got NoneType"):
        random_scores(3, generator=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"num_examples must be an int, got float"):
        random_scores(3.0, generator=g)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"num_examples must be an int, got bool"):
        random_scores(True, generator=g)
    with pytest.raises(ValueError, match=r"num_examples must be >= 0, got -1"):
        random_scores(-1, generator=g)


def test_int_seed_is_the_same_as_a_seeded_generator() -> None:
    assert torch.equal(
        random_scores(5, generator=3), random_scores(5, generator=torch.Generator().manual_seed(3))
    )


def test_good_random_scores_argument_errors() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"num_annotations must hold non-negative integer.*\[-1\.0\]"):
        good_random_scores(torch.tensor([1, -1]), generator=g)
    with pytest.raises(ValueError, match=r"num_annotations must hold non-negative integer.*\[0\.5\]"):
        good_random_scores(np.array([0.5, 1.0]), generator=g)
    with pytest.raises(
        ValueError, match=r"num_annotations must have shape \(N,\), got shape \(3, 2\).*isnan"
    ):
        good_random_scores(torch.zeros(3, 2), generator=g)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        good_random_scores(torch.zeros(3), generator=np.random.default_rng(0))  # type: ignore[arg-type]
