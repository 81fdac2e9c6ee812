"""Fast paths never change results: cache-blocked passes equal one-block passes and O(N·M)
shortcuts equal their O(N·K) forms, bit for bit."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from activelab_lightning.scoring import activelab_scores, crowdlab, temperature_scale

# the package re-exports functions under some module names (crowdlab), so fetch the modules
activelab_mod = importlib.import_module("activelab_lightning.scoring.activelab")
crowdlab_mod = importlib.import_module("activelab_lightning.scoring.crowdlab")
temperature_mod = importlib.import_module("activelab_lightning.scoring.temperature")

NAN = float("nan")


def _probs(n: int, k: int, seed: int, zeros: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64) * 3, 1)
    if zeros:  # exact zeros (never the row's largest entry)
        drop = (torch.rand(n, k, generator=g) < zeros) & (p < p.amax(1, keepdim=True))
        p[drop] = 0.0
        p /= p.sum(1, keepdim=True)
    return p


def _labels(n: int, m: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n, m), generator=g).to(torch.float64)
    labels[torch.rand(n, m, generator=g) < 0.5] = NAN
    labels[:, 0] = torch.randint(0, k, (n,), generator=g).to(torch.float64)
    return labels


def _cleanlab_order_scale(p: np.ndarray, t: float) -> np.ndarray:
    """Temperature scaling on the whole array, in cleanlab 2.9.0's operation order."""
    a = np.clip(p, 1e-30, None)
    a = a / np.sum(a, axis=-1, keepdims=True)
    a = np.exp(np.log(a) / t)
    a = a / np.sum(a, axis=-1, keepdims=True)
    return a / np.sum(a, axis=-1, keepdims=True)


@pytest.mark.parametrize("k", [3, 100])
@pytest.mark.parametrize("t", [0.1, 1.0, 7.25])
def test_blocked_temperature_scaling_is_bit_identical_to_the_whole_array(k: int, t: float) -> None:
    p = _probs(30_000 if k == 3 else 3_000, k, seed=k, zeros=0.05)
    ours = temperature_scale(p, t).numpy()
    assert np.array_equal(ours, _cleanlab_order_scale(p.numpy(), t))
    assert np.array_equal(temperature_scale(p[2999:3000], t).numpy()[0], ours[2999])


@pytest.mark.parametrize("t", [1.0, 7.25])
def test_unlabeled_kernel_blocks_match_one_block(monkeypatch: pytest.MonkeyPatch, t: float) -> None:
    q = _probs(40_000, 10, seed=3)
    q[25_000:25_010] = _probs(10, 10, seed=4, zeros=0.3)  # only one block needs the 1e-30 floor
    blocked = activelab_mod._max_scaled_probability(q, t, "pred_probs_unlabeled")
    monkeypatch.setattr(activelab_mod, "_BLOCK_ELEMENTS", 1 << 30)
    assert torch.equal(blocked, activelab_mod._max_scaled_probability(q, t, "pred_probs_unlabeled"))
    reference = _cleanlab_order_scale(q.numpy(), t).max(1)
    assert np.abs(blocked.numpy() - reference).max() <= 1e-13


def test_blocked_best_quality_matches_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    labels, probs = _labels(20_000, 4, 10, seed=5), _probs(20_000, 10, seed=6)
    probs[:50] = 0.1  # exact ties in the model term: the tie path runs too
    blocked = crowdlab(labels, probs)
    monkeypatch.setattr(crowdlab_mod, "_BLOCK_ELEMENTS", 1 << 30)
    monkeypatch.setattr(temperature_mod, "_SCALE_BLOCK_ELEMENTS", 1 << 30)
    one = crowdlab(labels, probs)
    assert torch.equal(blocked.consensus_label, one.consensus_label)
    assert torch.equal(blocked.consensus_quality, one.consensus_quality)


def test_one_shot_scores_do_not_depend_on_block_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    labels, probs, unl = _labels(8_000, 3, 20, seed=7), _probs(8_000, 20, seed=8), _probs(9_000, 20, seed=9)
    lab, un = activelab_scores(labels, probs, unl, temperature_objective="cleanlab-2.9")
    for mod, name in (
        (activelab_mod, "_BLOCK_ELEMENTS"),
        (crowdlab_mod, "_BLOCK_ELEMENTS"),
        (temperature_mod, "_SCALE_BLOCK_ELEMENTS"),
        (temperature_mod, "_SWEEP_ELEMENTS"),
    ):
        monkeypatch.setattr(mod, name, 1 << 30)
    lab1, un1 = activelab_scores(labels, probs, unl, temperature_objective="cleanlab-2.9")
    assert torch.equal(lab, lab1) and torch.equal(un, un1)


@pytest.mark.parametrize(("n", "m", "k"), [(1000, 3, 10), (3000, 5, 100), (300, 9, 10), (200, 12, 10)])
@pytest.mark.parametrize("objective", ["class-position", "cleanlab-2.9"])
def test_sparse_empirical_from_the_label_matrix_equals_the_dense_counts(
    n: int, m: int, k: int, objective: str
) -> None:
    from activelab_lightning.scoring._validation import as_label_matrix
    from activelab_lightning.scoring.majority_vote import label_counts

    lm = as_label_matrix(_labels(n, m, k, seed=n + m), num_classes=k)
    counts = label_counts(lm, k)
    dense = temperature_mod._sparse_empirical(counts, objective)
    narrow = temperature_mod._sparse_empirical(counts, objective, lm)
    assert all(torch.equal(a, b) for a, b in zip(dense, narrow))


def test_blocked_loops_run_single_threaded_and_restore_the_thread_count() -> None:
    labels, probs, unl = (
        _labels(3_000, 3, 20, seed=10),
        _probs(3_000, 20, seed=11),
        _probs(5_000, 20, seed=12),
    )
    before = torch.get_num_threads()
    one = activelab_scores(labels, probs, unl)
    torch.set_num_threads(2)
    try:
        two = activelab_scores(labels, probs, unl)
        assert torch.get_num_threads() == 2
        bad = unl.clone()
        bad[4_000, 3] = NAN  # raises from inside the blocked unlabeled loop
        with pytest.raises(ValueError, match="pred_probs_unlabeled contains non-finite values"):
            activelab_scores(labels, probs, bad)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
