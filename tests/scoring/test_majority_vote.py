"""Majority vote tie-break chain and the deterministic random step (spec §2, §7.1, §7.17)."""

from __future__ import annotations

import numpy as np
import torch

from activelab_lightning.scoring import activelab_scores, activelab_scores_ensemble, majority_vote

NAN = float("nan")


def test_unique_mode_wins() -> None:
    labels = torch.tensor([[0.0, 1.0, 1.0], [2.0, 2.0, NAN]])
    assert majority_vote(labels, num_classes=3).tolist() == [1, 2]


def test_tie_break_1_model_probability() -> None:
    labels = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    assert majority_vote(labels, torch.tensor([[0.3, 0.7], [0.9, 0.1]])).tolist() == [1, 1]
    assert majority_vote(labels, torch.tensor([[0.7, 0.3], [0.9, 0.1]])).tolist() == [0, 1]


def test_tie_break_2_rarest_class_over_the_matrix() -> None:
    labels = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, NAN]])  # class 0: 4 votes, class 1: 1
    assert majority_vote(labels).tolist() == [1, 0, 0]


def test_tie_break_3_annotator_reliability() -> None:
    # classes 0 and 1 have 4 votes each; annotator B agrees with the untied majorities more
    # often (1.0) than annotator A (0.5), so row 0 takes B's class.
    labels = torch.tensor([[0.0, 1.0, NAN], [1.0, 0.0, 0.0], [1.0, 1.0, NAN], [NAN, 0.0, NAN]])
    assert majority_vote(labels).tolist() == [1, 0, 1, 0]
    swapped = labels[:, [1, 0, 2]]
    assert majority_vote(swapped).tolist() == [1, 0, 1, 0]


def test_tie_break_4_is_seeded_and_reproducible() -> None:
    labels = torch.tensor([[0.0, 1.0, 2.0]] * 8)  # no untied row: tie-break 3 has no data
    first = majority_vote(labels, generator=123)
    assert torch.equal(first, majority_vote(labels, generator=123))
    assert torch.equal(first, majority_vote(labels, generator=torch.Generator().manual_seed(123)))
    assert torch.equal(majority_vote(labels), majority_vote(labels, generator=0))  # None = seed 0
    outcomes = {tuple(majority_vote(labels, generator=seed).tolist()) for seed in range(20)}
    assert len(outcomes) > 1
    assert set().union(*outcomes) <= {0, 1, 2}


def test_random_tie_break_does_not_touch_global_rngs() -> None:
    labels = torch.tensor([[0.0, 1.0]] * 4)
    np.random.seed(7)
    torch.manual_seed(7)
    majority_vote(labels)
    assert np.random.rand() == np.random.RandomState(7).rand()
    assert torch.rand(1).item() == torch.rand(1, generator=torch.Generator().manual_seed(7)).item()


def test_cleanlab_crash_case_is_deterministic_here() -> None:
    """Spec §7.1: cleanlab raises ``'a' cannot be empty``; we fall back to the seeded choice."""
    labels = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    first = activelab_scores(labels, probs, generator=5)[0]
    assert torch.equal(first, activelab_scores(labels, probs, generator=5)[0])
    assert torch.isfinite(first).all()


def test_cleanlab_crash_case_in_the_ensemble_unlabeled_vote() -> None:
    unlabeled = torch.tensor([[[0.9, 0.1], [0.1, 0.9]], [[0.1, 0.9], [0.9, 0.1]]], dtype=torch.float64)
    first = activelab_scores_ensemble(None, None, unlabeled, generator=1)[1]
    assert torch.equal(first, activelab_scores_ensemble(None, None, unlabeled, generator=1)[1])
    # either voted class has mixture probability (0.9 + 0.1 + 1/2) / (1 + 1 + 1) = 0.5
    assert torch.allclose(first, torch.full((2,), 0.5, dtype=torch.float64))
