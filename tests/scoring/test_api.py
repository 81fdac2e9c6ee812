"""Public scoring API: result fields, formulas of the special branches, dtypes, docstring examples."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch

from activelab_lightning.scoring import (
    ActiveLabScorer,
    activelab_scores,
    activelab_scores_ensemble,
    annotator_stats,
    consensus_targets,
    crowdlab,
    crowdlab_ensemble,
    empirical_distribution,
    find_temperature,
    temperature_scale,
)
from activelab_lightning.scoring.compat import get_label_quality_multiannotator

NAN = float("nan")
LABELS = torch.tensor([[0.0, 1.0, NAN], [1.0, 1.0, 0.0], [2.0, NAN, 2.0], [0.0, 0.0, NAN], [1.0, NAN, NAN]])
PROBS = torch.tensor(
    [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25], [0.3, 0.4, 0.3]],
    dtype=torch.float64,
)


def test_crowdlab_result_is_consistent() -> None:
    res = crowdlab(LABELS, PROBS)
    n, k = PROBS.shape
    assert res.posterior.shape == (n, k)
    assert torch.allclose(res.posterior.sum(1), torch.ones(n, dtype=torch.float64))
    assert torch.allclose(
        res.consensus_quality, res.posterior.gather(1, res.consensus_label[:, None]).squeeze(1)
    )
    assert res.num_annotations.tolist() == [2, 3, 2, 2, 1]
    assert res.consensus_label.tolist() == [0, 1, 2, 0, 1]
    assert torch.allclose(
        res.annotator_agreement, torch.tensor([0.5, 2 / 3, 1.0, 1.0, 1.0], dtype=torch.float64)
    )
    assert isinstance(res.model_weight, float) and res.annotator_weight.shape == (3,)
    assert res.mean_annotator_weight == pytest.approx(float(res.annotator_weight.mean()))


def test_majority_vote_consensus_method_keeps_the_vote() -> None:
    res = crowdlab(LABELS, PROBS, consensus_method="majority_vote")
    assert torch.equal(res.consensus_label, res.majority_vote_label)


def test_crowdlab_ensemble_has_one_weight_per_member() -> None:
    res = crowdlab_ensemble(LABELS, torch.stack([PROBS, PROBS.flip(1)]))
    assert res.model_weight.shape == (2,)
    assert res.posterior.shape == PROBS.shape


def test_annotator_stats_match_the_compat_frame() -> None:
    stats = annotator_stats(LABELS, crowdlab(LABELS, PROBS))
    frame = get_label_quality_multiannotator(LABELS.numpy(), PROBS.numpy())["annotator_stats"]
    assert list(frame.index) == stats.order.tolist()
    assert np.allclose(frame.sort_index()["annotator_quality"], stats.quality.numpy())
    assert stats.num_examples_labeled.tolist() == [5, 3, 2]
    assert stats.worst_class.tolist() == frame.sort_index()["worst_class"].tolist()


def test_single_label_branch_formula() -> None:
    labels = torch.tensor([[0.0, NAN], [NAN, 2.0], [1.0, NAN]])
    probs = PROBS[:3]
    scorer = ActiveLabScorer().fit(labels, probs)
    assert scorer.single_label_ and scorer.temperature_ == 1.0 and scorer.crowdlab_ is None
    p_y = probs[torch.arange(3), torch.tensor([0, 2, 1])]
    assert torch.allclose(scorer.labeled_scores_, (2 * p_y + 1 / 3) / 3)


def test_ensemble_single_label_branch_formula() -> None:
    labels = torch.tensor([[0.0], [2.0], [1.0]])
    probs = torch.stack([PROBS[:3], PROBS[:3].flip(1)])
    labeled, _ = activelab_scores_ensemble(labels, probs)
    q = probs.mean(0)[torch.arange(3), torch.tensor([0, 2, 1])]
    assert torch.allclose(labeled, (3 * q + 1 / 3) / 4)


def test_lower_score_means_more_in_need_of_a_label() -> None:
    labeled, unlabeled = activelab_scores(
        LABELS, PROBS, torch.tensor([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33]])
    )
    assert unlabeled[1] < unlabeled[0]  # the uncertain example is asked first
    assert labeled[0] < labeled[2]  # a disputed example before a unanimous, confident one


def test_float32_and_numpy_inputs() -> None:
    ref = activelab_scores(LABELS, PROBS, PROBS)
    from_numpy = activelab_scores(LABELS.numpy(), PROBS.numpy(), PROBS.numpy())
    assert torch.equal(ref[0], from_numpy[0]) and torch.equal(ref[1], from_numpy[1])
    as_f32 = activelab_scores(LABELS, PROBS.float(), PROBS.float())
    assert as_f32[0].dtype == torch.float64  # CPU computations default to float64
    assert torch.allclose(as_f32[0], ref[0], atol=1e-6)


def test_consensus_targets_without_model() -> None:
    y, soft = consensus_targets(LABELS, num_classes=3)
    assert y.tolist()[1:] == [1, 2, 0, 1]
    assert torch.allclose(soft[1], torch.tensor([1 / 3, 2 / 3, 0.0], dtype=torch.float64))


def test_consensus_targets_with_model() -> None:
    y, soft = consensus_targets(LABELS, PROBS)
    res = crowdlab(LABELS, PROBS)
    assert torch.equal(y, res.consensus_label) and torch.allclose(soft, res.posterior)


def test_consensus_targets_all_single_labels_are_one_hot() -> None:
    y, soft = consensus_targets(torch.tensor([[2.0, NAN], [NAN, 0.0]]), PROBS[:2])
    assert y.tolist() == [2, 0]
    assert soft.tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]


def test_temperature_objectives_differ_as_documented() -> None:
    labels = torch.tensor([[2.0, 2.0]])
    assert empirical_distribution(labels, 3).tolist() == [[0.0, 0.0, 1.0]]
    assert empirical_distribution(labels, 3, objective="cleanlab-2.9").tolist() == [[1.0, 0.0, 0.0]]
    labels = torch.tensor([[0.0, 0.0], [1.0, 1.0]] * 20)
    probs = torch.tensor([[0.6, 0.4], [0.4, 0.6]] * 20, dtype=torch.float64)
    assert find_temperature(labels, probs) == pytest.approx(0.1)  # sharpen an under-confident model
    assert find_temperature(labels, probs, objective="cleanlab-2.9") > 1.0


def test_temperature_scale_floors_zeros_and_keeps_rows_normalised() -> None:
    out = temperature_scale(torch.tensor([[1.0, 0.0]], dtype=torch.float64), 1.0)
    assert out[0, 1].item() == pytest.approx(1e-30) and out.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "module",
    ["majority_vote", "temperature", "crowdlab", "activelab", "scorer", "compat"],
)
def test_docstring_examples(module: str) -> None:
    mod = importlib.import_module(f"activelab_lightning.scoring.{module}")
    failures, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_torch_paths_used_on_accelerators_agree_with_the_cpu_float64_path() -> None:
    """Non-float64 / non-CPU inputs skip the numpy fast paths; exercise them with CPU float32."""
    from activelab_lightning.scoring.activelab import _fit, _max_scaled_probability
    from activelab_lightning.scoring.temperature import _temperature_scale

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (300, 5), generator=g).to(torch.float64)
    labels[torch.rand(300, 5, generator=g) < 0.5] = NAN
    labels[:, 0] = torch.randint(0, 4, (300,), generator=g).to(torch.float64)
    probs = torch.softmax(torch.randn(300, 4, generator=g, dtype=torch.float64) * 2, 1)
    fit64 = _fit(labels, probs[None], "class-position", None)
    fit32 = _fit(labels, probs.float()[None], "class-position", None)
    assert fit32.temperature == fit64.temperature
    assert torch.allclose(fit32.labeled_scores.double(), fit64.labeled_scores, atol=1e-5)
    for t in (0.1, 1.0, 7.25):
        scaled32 = _temperature_scale(probs.float(), t)
        assert torch.allclose(scaled32.double(), _temperature_scale(probs, t), atol=1e-5)
        assert torch.allclose(
            _max_scaled_probability(probs.float(), t).double(), _max_scaled_probability(probs, t), atol=1e-5
        )
