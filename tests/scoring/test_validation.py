"""Bad input fails early with a clear message naming the argument, the value and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activelab_lightning.scoring import (
    ActiveLabScorer,
    activelab_scores,
    activelab_scores_ensemble,
    crowdlab,
    find_temperature,
    majority_vote,
    temperature_scale,
)

NAN = float("nan")
LABELS = torch.tensor([[0.0, 1.0, NAN], [1.0, 1.0, 0.0], [2.0, NAN, 2.0], [0.0, 0.0, NAN]])
PROBS = torch.tensor(
    [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]], dtype=torch.float64
)


def with_value(t: torch.Tensor, index: tuple[int, ...], value: float) -> torch.Tensor:
    out = t.clone()
    out[index] = value
    return out


def test_nan_probability() -> None:
    with pytest.raises(
        ValueError, match=r"pred_probs contains non-finite values \(e\.g\. nan at index \(1, 2\)\)"
    ):
        activelab_scores(LABELS, with_value(PROBS, (1, 2), NAN))


def test_inf_probability() -> None:
    with pytest.raises(ValueError, match=r"pred_probs_unlabeled contains non-finite values \(e\.g\. inf"):
        activelab_scores(LABELS, PROBS, with_value(PROBS, (0, 0), float("inf")))


def test_negative_probability() -> None:
    with pytest.raises(
        ValueError, match=r"pred_probs contains negative values \(e\.g\. -0\.1.*did you pass logits"
    ):
        activelab_scores(LABELS, with_value(PROBS, (0, 1), -0.1))


def test_rows_not_summing_to_one_suggest_logits() -> None:
    logits = torch.log(PROBS) + 3.0
    with pytest.raises(
        ValueError, match=r"rows of pred_probs must sum to 1, but row \(0,\) sums to .*did you pass logits\?"
    ):
        activelab_scores(LABELS, logits.exp())


def test_pred_probs_wrong_ndim() -> None:
    with pytest.raises(
        ValueError, match=r"pred_probs must be a 2-D array of shape \(N, K\), got shape \(4,\)"
    ):
        activelab_scores(LABELS, PROBS[:, 0])


def test_single_model_function_given_ensemble_points_to_ensemble_function() -> None:
    with pytest.raises(
        ValueError, match=r"got shape \(2, 4, 3\)\. For an ensemble .*activelab_scores_ensemble"
    ):
        activelab_scores(LABELS, torch.stack([PROBS, PROBS]))


def test_ensemble_function_given_single_model() -> None:
    with pytest.raises(
        ValueError, match=r"pred_probs must be a 3-D array of shape \(P, N, K\), got shape \(4, 3\)"
    ):
        activelab_scores_ensemble(LABELS, PROBS)


def test_labels_wrong_ndim() -> None:
    with pytest.raises(
        ValueError,
        match=r"labels must be a 2-D .* got shape \(4,\)\. For one label per example pass labels\[:, None\]",
    ):
        activelab_scores(torch.tensor([0.0, 1.0, 2.0, 0.0]), PROBS)


def test_row_count_mismatch() -> None:
    with pytest.raises(ValueError, match=r"pred_probs has 3 rows .* but labels has 4 rows"):
        activelab_scores(LABELS, PROBS[:3])


def test_class_count_mismatch_between_labeled_and_unlabeled() -> None:
    unlabeled = torch.full((5, 4), 0.25, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"pred_probs_unlabeled has K = 4 classes .* labeled pred_probs have K = 3"
    ):
        activelab_scores(LABELS, PROBS, unlabeled)


def test_class_count_mismatch_in_fitted_scorer() -> None:
    scorer = ActiveLabScorer().fit(LABELS, PROBS)
    with pytest.raises(ValueError, match=r"pred_probs_unlabeled has K = 2 classes"):
        scorer.score_unlabeled(torch.full((5, 2), 0.5))


def test_non_integer_labels() -> None:
    with pytest.raises(
        ValueError, match=r"labels must hold integer class indices .* got 1\.5.*did you pass probabilities"
    ):
        activelab_scores(with_value(LABELS, (1, 1), 1.5), PROBS)


def test_negative_labels() -> None:
    with pytest.raises(ValueError, match=r"labels must hold class indices >= 0 .* got -1\. Use NaN, not -1"):
        activelab_scores(with_value(LABELS, (0, 2), -1.0), PROBS)


def test_labels_out_of_range() -> None:
    with pytest.raises(
        ValueError,
        match=r"labels contains class 3 but pred_probs has only K = 3 classes \(valid labels are 0\.\.2\)",
    ):
        activelab_scores(with_value(LABELS, (0, 2), 3.0), PROBS)


def test_infinite_labels() -> None:
    with pytest.raises(ValueError, match=r"labels contains inf; use NaN for a missing label"):
        majority_vote(with_value(LABELS, (0, 2), float("inf")))


def test_rows_without_labels() -> None:
    labels = with_value(with_value(LABELS, (3, 0), NAN), (3, 1), NAN)
    with pytest.raises(
        ValueError, match=r"labels has examples with no label at all \(rows 3\).*pred_probs_unlabeled"
    ):
        activelab_scores(labels, PROBS)


def test_single_class_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"pred_probs has K = 1 class column\(s\) .* at least 2 classes"):
        activelab_scores(torch.zeros(3, 2), torch.ones(3, 1))


def test_empty_labeled_set() -> None:
    with pytest.raises(
        ValueError, match=r"pred_probs is empty \(shape \(0, 3\)\); pass at least one example, or None"
    ):
        activelab_scores(torch.zeros(0, 2), torch.zeros(0, 3))


def test_empty_label_matrix() -> None:
    with pytest.raises(ValueError, match=r"labels is empty \(shape \(4, 0\)\)"):
        activelab_scores(torch.zeros(4, 0), PROBS)


def test_empty_unlabeled_set_is_fine() -> None:
    labeled, unlabeled = activelab_scores(LABELS, PROBS, torch.zeros(0, 3))
    assert labeled.shape == (4,) and unlabeled.shape == (0,)


def test_nothing_to_score() -> None:
    with pytest.raises(ValueError, match=r"pred_probs and pred_probs_unlabeled are both None"):
        activelab_scores()


def test_labels_without_pred_probs() -> None:
    with pytest.raises(ValueError, match=r"labels were given without pred_probs"):
        activelab_scores(LABELS, None, PROBS)


def test_pred_probs_without_labels() -> None:
    with pytest.raises(ValueError, match=r"labels is None but pred_probs was given"):
        activelab_scores(None, PROBS)


def test_string_labels() -> None:
    with pytest.raises(
        TypeError, match=r"labels must hold numbers .* dtype <U1.*Encode class names as integers"
    ):
        majority_vote(np.array([["a", "b"], ["b", "b"]]))


def test_unknown_temperature_objective() -> None:
    with pytest.raises(ValueError, match=r"temperature_objective must be one of .* got 'cleanlab'"):
        activelab_scores(LABELS, PROBS, temperature_objective="cleanlab")  # type: ignore[arg-type]


def test_unknown_consensus_method() -> None:
    with pytest.raises(
        ValueError, match=r"consensus_method must be 'best_quality' or 'majority_vote', got 'mean'"
    ):
        crowdlab(LABELS, PROBS, consensus_method="mean")  # type: ignore[arg-type]


def test_crowdlab_needs_a_multi_labeled_example() -> None:
    with pytest.raises(
        ValueError, match=r"CROWDLAB needs at least one example with two or more labels.*consensus_targets"
    ):
        crowdlab(torch.tensor([[0.0, NAN], [NAN, 1.0], [2.0, NAN], [0.0, NAN]]), PROBS)


def test_bad_temperature() -> None:
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0, got 0"):
        temperature_scale(PROBS, 0)


def test_bad_generator() -> None:
    with pytest.raises(
        TypeError, match=r"generator must be a torch.Generator, an int seed or None, got 'seed'"
    ):
        majority_vote(LABELS, PROBS, generator="seed")  # type: ignore[arg-type]


def test_unfitted_scorer() -> None:
    with pytest.raises(
        RuntimeError, match=r"ActiveLabScorer is not fitted; call \.fit\(labels, pred_probs\) first"
    ):
        ActiveLabScorer().score_unlabeled(PROBS)


def test_ensemble_member_count_mismatch() -> None:
    probs = torch.stack([PROBS, PROBS])
    with pytest.raises(
        ValueError, match=r"pred_probs_unlabeled has P = 3 models .* labeled pred_probs have P = 2"
    ):
        activelab_scores_ensemble(LABELS, probs, torch.stack([PROBS, PROBS, PROBS]))


def test_find_temperature_row_mismatch() -> None:
    with pytest.raises(ValueError, match=r"pred_probs has 2 rows but labels has 4 rows"):
        find_temperature(LABELS, PROBS[:2])


def test_annotators_without_labels_are_dropped_not_rejected() -> None:
    with_empty = torch.cat([LABELS[:, :1], torch.full((4, 1), NAN), LABELS[:, 1:]], dim=1)
    expected = activelab_scores(LABELS, PROBS, PROBS)
    got = activelab_scores(with_empty, PROBS, PROBS)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    result = crowdlab(with_empty, PROBS)
    assert torch.isnan(result.annotator_weight[1]) and not bool(result.annotator_mask[1])
    assert torch.equal(result.annotator_weight[[0, 2, 3]], crowdlab(LABELS, PROBS).annotator_weight)


def _many_unlabeled(rows: int = 50_000) -> torch.Tensor:
    """``(rows, 3)``: several cache blocks of the unlabeled kernel (65536 elements each)."""
    g = torch.Generator().manual_seed(1)
    return torch.softmax(torch.randn(rows, 3, generator=g, dtype=torch.float64), 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (NAN, r"pred_probs_unlabeled contains non-finite values \(e\.g\. nan at index \(40000, 1\)\)"),
        (
            float("inf"),
            r"pred_probs_unlabeled contains non-finite values \(e\.g\. inf at index \(40000, 1\)\)",
        ),
        (-0.5, r"pred_probs_unlabeled contains negative values \(e\.g\. -0\.5 at index \(40000, 1\)\)"),
        (3.0, r"rows of pred_probs_unlabeled must sum to 1, but row \(40000,\) sums to"),
    ],
)
def test_unlabeled_values_checked_in_the_blocked_pass(value: float, message: str) -> None:
    """The unlabeled values are validated inside the scoring pass; a bad entry in a later block
    still raises the standalone check's message, from every entry point."""
    bad = with_value(_many_unlabeled(), (40000, 1), value)
    with pytest.raises(ValueError, match=message):
        activelab_scores(LABELS, PROBS, bad)
    with pytest.raises(ValueError, match=message):
        activelab_scores(None, None, bad)
    with pytest.raises(ValueError, match=message):
        ActiveLabScorer().fit(LABELS, PROBS).score_unlabeled(bad)


def test_unlabeled_rows_just_inside_the_sum_tolerance_are_scored() -> None:
    q = _many_unlabeled()
    q[40000] *= 1.0009  # within the 1e-3 row-sum tolerance
    _, scores = activelab_scores(LABELS, PROBS, q)
    assert scores.shape == (50_000,) and bool(torch.isfinite(scores).all())
