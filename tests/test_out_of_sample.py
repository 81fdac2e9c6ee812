"""Cross-fitted heads: out-of-fold by construction, calibrated by their own held-out NLL, vectorised."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from activelab_lightning.predictions import (
    capture_inputs,
    find_head,
    fit_crossfit_heads,
    heads_predict_fn,
    stratified_folds,
    with_features_predict_fn,
)


def blobs(n: int, d: int, k: int, *, seed: int, spread: float = 1.0, noise: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 3
    y = torch.randint(0, k, (n,), generator=g)
    x = centers[y] + spread * torch.randn(n, d, generator=g)
    flip = torch.rand(n, generator=g) < noise
    noisy = torch.where(flip, torch.randint(0, k, (n,), generator=g), y)
    return x, y, noisy


def test_a_rows_label_never_reaches_its_own_out_of_fold_prediction():
    x, _, y = blobs(100, 4, 3, seed=3, noise=0.1)
    folds = stratified_folds(y, 5, seed=0)
    in_two = folds == 2
    y2 = y.clone()
    y2[in_two] = (y2[in_two] + 1) % 3  # every label of fold 2 changed
    # with the shared L2 strength fixed (it is chosen on all out-of-fold rows together)
    a = fit_crossfit_heads(x, y, num_classes=3, folds=5, l2_grid=(1e-2,), fold_ids=folds)
    b = fit_crossfit_heads(x, y2, num_classes=3, folds=5, l2_grid=(1e-2,), fold_ids=folds)
    torch.testing.assert_close(a.weight[2], b.weight[2], atol=0, rtol=0)  # head 2 never saw fold 2
    torch.testing.assert_close(a.oof_probs[in_two], b.oof_probs[in_two], atol=0, rtol=0)
    assert not torch.allclose(a.weight[0], b.weight[0], atol=1e-3)  # the other heads did see them
    assert torch.equal(a.folds, folds)


def test_wide_features_are_projected_on_their_principal_directions():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (150,), generator=g)
    mixing = torch.randn(3, 40, generator=g)  # the class signal lives in a 3-dim subspace of 40 dims
    x = torch.randn(150, 40, generator=g) + 2 * torch.nn.functional.one_hot(y, 3).float() @ mixing
    heads = fit_crossfit_heads(x, y, num_classes=3, folds=3, seed=0, max_dim=8)
    assert heads.projection.shape == (40, 8)
    torch.testing.assert_close(heads.projection.T @ heads.projection, torch.eye(8, dtype=torch.float64))
    assert heads.predict(x).shape == (3, 150, 3)
    assert float((heads.oof_probs.argmax(1) == y).double().mean()) > 0.9


def test_wide_features_with_fewer_rows_than_max_dim():
    g = torch.Generator().manual_seed(0)
    heads = fit_crossfit_heads(
        torch.randn(150, 300, generator=g), torch.randint(0, 2, (150,), generator=g), num_classes=2
    )
    assert heads.projection.shape == (300, 150) and heads.oof_probs.shape == (150, 2)


def test_fold_ids_are_checked():
    x, _, y = blobs(20, 2, 2, seed=0)
    with pytest.raises(ValueError, match=r"fold_ids.*\[0, 5\)"):
        fit_crossfit_heads(x, y, num_classes=2, folds=5, fold_ids=torch.full((20,), 5))


def test_heads_do_not_memorise_pure_noise_labels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 20, generator=g)
    y = torch.randint(0, 3, (300,), generator=g)
    heads = fit_crossfit_heads(x, y, num_classes=3, folds=5, seed=0)
    oof_acc = float((heads.oof_probs.argmax(1) == y).double().mean())
    assert oof_acc < 0.45  # chance is 1/3; an in-sample fit of 63 parameters per class would do far better
    # the held-out NLL prefers near-uniform probabilities: no more confident than chance allows
    assert float(heads.oof_probs.max(1).values.mean()) < 0.45
    assert (
        heads.oof_nll[heads.l2] < 1.02 * torch.log(torch.tensor(3.0)).item()
    )  # ~ uniform (+ intercept noise)


def test_the_weakest_l2_cannot_win_by_overfitting():
    # few rows, many features: the unregularised end of the grid memorises; out-of-fold NLL refuses it
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (60,), generator=g)
    x = torch.randn(60, 50, generator=g)
    x[:, 0] += 1.5 * y.float()
    heads = fit_crossfit_heads(x, y, num_classes=3, folds=5, seed=0, l2_grid=(1.0, 1e-1, 1e-2, 1e-4))
    assert heads.l2 > 1e-4 and heads.oof_nll[1e-4] > heads.oof_nll[heads.l2]


def test_l2_is_chosen_by_out_of_fold_nll_and_clean_data_is_fitted_well():
    x, y, _ = blobs(400, 6, 4, seed=1, spread=0.8)
    heads = fit_crossfit_heads(x, y, num_classes=4, folds=5, seed=0)
    assert heads.oof_nll[heads.l2] == min(heads.oof_nll.values())
    assert float((heads.oof_probs.argmax(1) == y).double().mean()) > 0.97


def test_member_probs_put_each_rows_out_of_fold_value_in_its_held_out_head():
    x, _, y = blobs(90, 3, 3, seed=2, noise=0.1)
    heads = fit_crossfit_heads(x, y, num_classes=3, folds=3, seed=0)
    members = heads.member_probs(x)
    assert members.shape == (3, 90, 3)
    rows = torch.arange(90)
    torch.testing.assert_close(members[heads.folds, rows], heads.oof_probs)
    torch.testing.assert_close(members.sum(-1), torch.ones(3, 90, dtype=torch.float64))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(10, 120),
    d=st.integers(1, 12),
    k=st.integers(2, 6),
    folds=st.integers(2, 6),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_property_out_of_fold_probabilities_are_valid_and_deterministic(n, d, k, folds, seed, scale):
    if n < folds:
        return
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * scale
    y = torch.randint(0, k, (n,), generator=g)
    heads = fit_crossfit_heads(x, y, num_classes=k, folds=folds, seed=seed)
    p = heads.oof_probs
    assert p.shape == (n, k) and p.dtype == torch.float64
    assert bool(torch.isfinite(p).all()) and bool((p >= 0).all())
    torch.testing.assert_close(p.sum(1), torch.ones(n, dtype=torch.float64))
    assert heads.folds.min() >= 0 and heads.folds.max() < folds
    again = fit_crossfit_heads(x, y, num_classes=k, folds=folds, seed=seed)
    assert torch.equal(again.oof_probs, p)
    # feature scale does not matter (z-scoring)
    scaled = fit_crossfit_heads(x * 7.0 + 3.0, y, num_classes=k, folds=folds, seed=seed)
    torch.testing.assert_close(scaled.oof_probs, p, atol=2e-3, rtol=0)  # up to the solver tolerance


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"folds": 1}, "folds=1"),
        ({"l2_grid": ()}, "l2_grid"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    x, _, y = blobs(20, 2, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        fit_crossfit_heads(x, y, num_classes=2, **kwargs)


def test_bad_inputs_are_clear_errors():
    x, _, y = blobs(20, 2, 2, seed=0)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        fit_crossfit_heads(x[:, 0], y, num_classes=2)
    with pytest.raises(ValueError, match="20 feature rows but 19 targets"):
        fit_crossfit_heads(x, y[:-1], num_classes=2)
    with pytest.raises(ValueError, match="cannot be split"):
        fit_crossfit_heads(x[:3], y[:3], num_classes=2, folds=5)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_crossfit_heads(bad, y, num_classes=2)


def test_find_head_and_capture_inputs():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    assert find_head(net) is net[2]
    assert find_head(net, "0") is net[0]
    assert find_head(nn.Sequential(nn.ReLU())) is None
    with pytest.raises(ValueError, match="feature_layer='x'.*\\['0', '2'\\]"):
        find_head(net, "x")
    with capture_inputs(net[2]) as seen:
        net(torch.ones(5, 4))
    assert len(seen) == 1 and seen[0].shape == (5, 8)
    net(torch.ones(2, 4))
    assert len(seen) == 1  # the hook is gone after the context


def test_predict_fns_give_probs_and_features_or_every_head_from_one_pass():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    calls = []
    net[0].register_forward_hook(lambda *a: calls.append(1))

    def base(m, x):
        return torch.softmax(m(x), -1)

    x = torch.randn(6, 4)
    out = with_features_predict_fn(base, net[2], 3)(net, x)
    assert out.shape == (6, 3 + 8) and len(calls) == 1
    torch.testing.assert_close(out[:, :3], base(net, x))
    g = torch.Generator().manual_seed(0)
    heads = fit_crossfit_heads(
        torch.randn(40, 8, generator=g), torch.randint(0, 3, (40,), generator=g), num_classes=3, folds=4
    )
    calls.clear()
    stacked = heads_predict_fn(base, net[2], heads)(net, x)
    assert stacked.shape == (6, 4 * 3) and len(calls) == 1
    with torch.no_grad():
        feats = net[:2](x)
    torch.testing.assert_close(stacked.view(6, 4, 3).transpose(0, 1), heads.predict(feats))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        with_features_predict_fn(base, net[2], 2)(net, x)


def test_features_of_a_token_level_layer_are_refused_with_a_hint():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 3)

        def forward(self, x):
            return self.proj(x.unsqueeze(1).expand(-1, 5, -1)).mean(1)  # (B, 5, 4) into the Linear

    m = Seq()
    with pytest.raises(ValueError, match="feature_layer"):
        with_features_predict_fn(lambda mod, x: torch.softmax(mod(x), -1), m.proj, 3)(m, torch.randn(2, 4))
