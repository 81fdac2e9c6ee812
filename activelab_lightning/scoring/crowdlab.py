"""CROWDLAB: consensus labels, their quality, and annotator / model weights (spec §5).

CROWDLAB combines the annotators' labels with a model's predicted probabilities into a
posterior ``post[i, k]``: a weighted average of the model's probability and, per annotator, a
likelihood ``λ`` (annotator said k) or ``ν = (1 - λ) / (K - 1)`` (annotator said another class).
Annotator weights come from their agreement with the other annotators, the model's weight from
its accuracy against the consensus, both relative to the error of always predicting the most
common consensus class.

Everything is O(N·M + N·K): the posterior is formed with one scatter of the annotator weights.
Where the consensus is decided by an exact-equality argmax (``best_quality``), rows whose top
two posterior values lie within rounding distance are recomputed in cleanlab's summation order
(model term first, then annotators in column order), so exact ties resolve as in cleanlab.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ._threads import serial_torch
from ._validation import ArrayLike, LabelMatrix, as_label_matrix, as_probabilities, astype, make_generator
from .majority_vote import _first_true, _majority_vote, label_counts

__all__ = [
    "ConsensusMethod",
    "CrowdlabResult",
    "consensus_targets",
    "crowdlab",
    "crowdlab_ensemble",
]

ConsensusMethod = Literal["best_quality", "majority_vote"]
_CLIP = 1e-6
_TIE_TOL = 1e-10
_BLOCK_ELEMENTS = 1 << 16  # elements per row block of the best-quality argmax (512 KiB float64)


@dataclass(frozen=True)
class CrowdlabResult:
    """Output of :func:`crowdlab` / :func:`crowdlab_ensemble` (``N`` examples, ``M`` input columns).

    Attributes:
        consensus_label: ``(N,)`` int64 consensus class.
        consensus_quality: ``(N,)`` posterior probability of the consensus class (``Q_i``).
        annotator_agreement: ``(N,)`` fraction of example i's annotators that chose the consensus.
        num_annotations: ``(N,)`` int64 labels per example.
        model_weight: The model's weight ``w_M`` (float), or ``(P,)`` per member for an ensemble.
        annotator_weight: ``(M,)`` weight of each annotator; NaN for columns without any label.
        annotator_mask: ``(M,)`` bool, True for columns that were used (have >= 1 label).
        majority_vote_label: ``(N,)`` int64 majority-vote label (the starting consensus).
        consensus_likelihood: ``λ``, mean agreement with the consensus on multi-labeled examples.
        annotator_agreement_with_others: ``(M,)`` agreement ``a_j`` of each annotator with the
            others (NaN for unused columns).
        posterior: ``(N, K)`` CROWDLAB posterior class probabilities (soft consensus targets);
            computed on first access.
    """

    consensus_label: Tensor
    consensus_quality: Tensor
    annotator_agreement: Tensor
    num_annotations: Tensor
    model_weight: float | Tensor
    annotator_weight: Tensor
    annotator_mask: Tensor
    majority_vote_label: Tensor
    consensus_likelihood: float
    annotator_agreement_with_others: Tensor
    _posterior_fn: Callable[[], Tensor] = field(repr=False, compare=False)

    @cached_property
    def posterior(self) -> Tensor:
        """``(N, K)`` posterior class probabilities (rows sum to 1)."""
        return self._posterior_fn()

    @property
    def mean_model_weight(self) -> float:
        """``w_M``, or the mean of the per-member weights for an ensemble."""
        w = self.model_weight
        return float(w.mean().item()) if isinstance(w, Tensor) else float(w)

    @property
    def mean_annotator_weight(self) -> float:
        """``w̄``: mean weight over the annotators that gave at least one label."""
        return _np_mean(self.annotator_weight[self.annotator_mask])


@dataclass(frozen=True)
class _Stats:
    """Consensus statistics for one consensus vector (spec §5.1-5.3)."""

    w: Tensor  # (M',) annotator weights
    w_model: Tensor  # (P,) float64 model weights
    lam: float
    nu: float
    alpha: Tensor  # (N,) agreement with the consensus
    row_weight: Tensor  # (N,) sum of the row's annotator weights

    @property
    def total_model_weight(self) -> float:
        return float(self.w_model.sum().item())


def _np_mean(values: Tensor) -> float:
    """Mean with numpy's pairwise summation (bit-identical to cleanlab's ``np.mean``)."""
    return float(np.mean(values.detach().cpu().numpy()))


# a/b*b == a holds in float64 for every 0 <= a <= b < 22 (checked exhaustively): the
# per-example products of cleanlab's weighted mean below are then integers and sum exactly.
_EXACT_PRODUCTS_BELOW = 22


def _annotator_agreement(lm: LabelMatrix, counts: Tensor) -> Tensor:
    """``a_j``: fraction of (co-)labels of the other annotators that match annotator j's label.

    cleanlab evaluates it as an ``(n_i - 1)``-weighted mean of the per-example fractions
    ``(same_ij - 1) / (n_i - 1)``. While every ``n_i <= 22`` the products ``fraction · (n_i - 1)``
    are integers (exact sums in any order); otherwise each annotator's products are summed in
    numpy's pairwise order. Either way the weights are bit-identical to cleanlab's. O(N·M).
    """
    nm1 = (lm.num_annotations - 1).to(torch.float64)
    if float(nm1.max()) < _EXACT_PRODUCTS_BELOW:  # integer sums: exact in any order (int64)
        on = astype(lm.mask, torch.int32)
        same = counts.gather(1, lm.index).mul_(on)  # (N, M') int32, 0 where unlabeled
        num = (same.sum(0, dtype=torch.int64) - on.sum(0, dtype=torch.int64)).to(torch.float64)
        den = (on * (lm.num_annotations - 1).to(torch.int32)[:, None]).sum(0, dtype=torch.int64)
        den = den.to(torch.float64)
    else:  # numpy's pairwise order over each annotator's examples (ascending), as cleanlab
        same = counts.gather(1, lm.index).T.contiguous()  # (M', N) int32
        same_np, on_np, b_np = same.cpu().numpy(), lm.mask_t.cpu().numpy(), nm1.cpu().numpy()
        num_l, den_l = [], []
        for j in range(lm.num_annotators):
            a, b = same_np[j][on_np[j]] - 1.0, b_np[on_np[j]]
            num_l.append(float(np.sum(np.divide(a, b, out=np.zeros_like(a), where=b > 0) * b)))
            den_l.append(float(np.sum(b)))
        num = torch.tensor(num_l, dtype=torch.float64, device=nm1.device)
        den = torch.tensor(den_l, dtype=torch.float64, device=nm1.device)
    a = torch.where(den > 0, num / den.clamp(min=1), float("nan"))
    nan = torch.isnan(a)
    if bool(nan.any()):
        a = torch.where(nan, _np_mean(a[~nan]), a)
    return a


def _consensus_stats(
    lm: LabelMatrix, counts: Tensor, multi: Tensor, model_pred: Tensor, c: Tensor, a: Tensor, k: int
) -> _Stats:
    """Weights and likelihoods for consensus ``c``; ``model_pred`` is ``(P, N)`` argmax classes."""
    n = lm.num_annotations.to(torch.float64)
    alpha = counts.gather(1, c[:, None]).squeeze(1).to(torch.float64) / n
    lam = _np_mean(alpha[multi])
    nu = (1.0 - lam) / (k - 1)
    cm = c[multi]
    c_hat = torch.bincount(cm, minlength=k).argmax()
    e0 = max(float((cm != c_hat).to(torch.float64).mean().item()), _CLIP)
    w = (1.0 - (1.0 - a) / e0).clamp(min=_CLIP)
    sqrt_n = math.sqrt(_np_mean(n))
    w_model = []
    for p in range(model_pred.shape[0]):
        e_m = float((model_pred[p][multi] != cm).to(torch.float64).mean().item())
        w_model.append(max(1.0 - e_m / e0, _CLIP) * sqrt_n)
    row_weight = lm.maskf @ w.to(n.device)
    return _Stats(
        w=w,
        w_model=torch.tensor(w_model, dtype=torch.float64),
        lam=lam,
        nu=nu,
        alpha=alpha,
        row_weight=row_weight,
    )


def _model_term(probs: Tensor, st: _Stats) -> Tensor:
    """``Σ_p w_M^(p) · r^(p)``, a new ``(N, K)`` tensor."""
    wm = st.w_model.tolist()
    out: Tensor = probs[0] * wm[0]
    for p in range(1, len(wm)):
        out.add_(probs[p], alpha=wm[p])
    return out


def _annotator_scatter(lm: LabelMatrix, st: _Stats, dtype: torch.dtype, scale: float = 1.0) -> Tensor:
    """``(N, M')`` annotator weights times ``scale`` where labeled, 0 elsewhere."""
    w = st.w.to(device=lm.mask.device, dtype=dtype) * scale
    return torch.where(lm.mask, w, torch.zeros((), dtype=dtype, device=w.device))


def _posterior(lm: LabelMatrix, probs: Tensor, st: _Stats) -> Tensor:
    """Fast ``(N, K)`` posterior: ``(Σ_p w_M r + ν·W_i + (λ-ν)·V[i,k]) / (W_i + Σ_p w_M)``."""
    post = _model_term(probs, st)
    post.add_(st.row_weight.to(post.dtype)[:, None], alpha=st.nu)
    wl = _annotator_scatter(lm, st, post.dtype, st.lam - st.nu)
    post.scatter_add_(1, lm.index, wl)
    return post.div_((st.row_weight.to(post.dtype) + st.total_model_weight)[:, None])


def _quality(lm: LabelMatrix, probs: Tensor, st: _Stats, c: Tensor) -> Tensor:
    """``post[i, c_i]`` in O(N·M + P·N) without forming the posterior.

    For one model it is summed in cleanlab's order (model term, then annotators in column
    order), so it is bit-identical: exact ties between examples' qualities (which decide the
    annotators' worst class) then resolve as in cleanlab.
    """
    wm = st.w_model.tolist()
    if len(wm) == 1:
        dt, dev = probs.dtype, probs.device
        w = st.w.to(device=dev, dtype=dt)
        # per annotator: 0 (no label), w·ν (other class), w·λ (the consensus class)
        w_nu, w_lam = w * st.nu, w * st.lam
        zero = torch.zeros((), dtype=dt, device=dev)
        hit = ((lm.index == c[:, None]) & lm.mask).T.contiguous()  # (M', N) bool
        on = lm.mask_t
        num = probs[0].gather(1, c[:, None]).squeeze(1) * wm[0]
        den = torch.zeros_like(num)
        with serial_torch():
            for j in range(lm.num_annotators):  # column order, as cleanlab: bit-identical sums
                num += torch.where(hit[j], w_lam[j], torch.where(on[j], w_nu[j], zero))
                den += torch.where(on[j], w[j], zero)
        out: Tensor = num / (den + wm[0])
        return out
    cc = c[:, None]
    num = probs[0].gather(1, cc).squeeze(1) * wm[0]
    for p in range(1, len(wm)):
        num += probs[p].gather(1, cc).squeeze(1) * wm[p]
    rw = st.row_weight.to(num.dtype)
    num += rw * st.nu
    votes = ((lm.index == cc) & lm.mask).to(num.dtype) @ st.w.to(device=num.device, dtype=num.dtype)
    num += votes * (st.lam - st.nu)
    quality: Tensor = num / (rw + st.total_model_weight)
    return quality


def _exact_posterior_ensemble(rows: Tensor, lm: LabelMatrix, probs: Tensor, st: _Stats) -> Tensor:
    """Ensemble posterior of ``rows`` as cleanlab evaluates it: one weighted average per (i, k)
    over the members' probabilities then the row's annotators (numpy's pairwise order)."""
    idx = lm.index[rows].cpu().numpy()
    msk = lm.mask[rows].cpu().numpy()
    pr = probs[:, rows].cpu().numpy()  # (P, R, K)
    w = st.w.cpu().numpy()
    wm = st.w_model.cpu().numpy()
    classes = np.arange(pr.shape[-1])
    out = np.empty(pr.shape[1:])
    for r in range(pr.shape[1]):  # only rows whose top-2 posterior values nearly tie
        labs = idx[r][msk[r]]
        votes = np.where(labs[None, :] == classes[:, None], st.lam, st.nu)
        vals = np.concatenate([pr[:, r, :].T, votes], axis=1)
        out[r] = np.average(vals, axis=1, weights=np.concatenate([wm, w[msk[r]]]))
    return torch.from_numpy(out).to(device=probs.device, dtype=probs.dtype)


def _exact_posterior(rows: Tensor, lm: LabelMatrix, probs: Tensor, st: _Stats) -> Tensor:
    """Posterior of ``rows`` summed in cleanlab's order (tie-exact), ``(R, K)``."""
    if probs.shape[0] > 1:
        return _exact_posterior_ensemble(rows, lm, probs, st)
    k = probs.shape[-1]
    classes = torch.arange(k, device=probs.device)
    idx, msk = lm.index[rows], lm.mask[rows]
    wm = st.w_model.tolist()
    w = st.w.tolist()
    zero = torch.zeros((), dtype=probs.dtype, device=probs.device)
    num = probs[0, rows] * wm[0]
    den = torch.zeros(rows.numel(), dtype=probs.dtype, device=probs.device)
    for j in range(lm.num_annotators):  # model term first, then annotators in column order
        on = msk[:, j : j + 1]
        hit = torch.tensor(w[j] * st.lam, dtype=probs.dtype, device=probs.device)
        miss = torch.tensor(w[j] * st.nu, dtype=probs.dtype, device=probs.device)
        term = torch.where(idx[:, j : j + 1] == classes, hit, miss)
        num = num + torch.where(on, term, zero)
        den = den + torch.where(on[:, 0], w[j], zero)
    posterior: Tensor = num / (den + wm[0])[:, None]
    return posterior


def _best_quality(lm: LabelMatrix, probs: Tensor, st: _Stats, fallback: Tensor) -> Tensor:
    """``argmax_k post[i, k]`` where the maximum is unique (exactly), else ``fallback[i]``.

    The argmax is taken on ``Σ_p w_M r + (λ-ν)·V`` (the posterior up to a per-row shift and
    positive scale); rows whose top two values lie within rounding distance are recomputed
    in cleanlab's summation order and compared with exact equality.
    """
    n, k = probs.shape[1:]
    dt, dev = probs.dtype, probs.device
    top, second = torch.empty(n, dtype=dt, device=dev), torch.empty(n, dtype=dt, device=dev)
    c = torch.empty(n, dtype=torch.int64, device=dev)
    w_votes = st.w.to(device=dev, dtype=dt) * (st.lam - st.nu)
    zero = torch.zeros((), dtype=dt, device=dev)
    # row blocks that stay in cache on CPU (every step is per row: same values as one pass)
    step = max(1, _BLOCK_ELEMENTS // k) if dev.type == "cpu" else max(n, 1)
    with serial_torch():
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            score = _model_term(probs[:, rows], st)
            score.scatter_add_(1, lm.index[rows], torch.where(lm.mask[rows], w_votes, zero))
            torch.max(score, 1, out=(top[rows], c[rows]))
            score.scatter_(1, c[rows, None], float("-inf"))
            torch.amax(score, 1, out=second[rows])
    den = st.row_weight.to(dt) + st.total_model_weight
    near = ((top - second) <= _TIE_TOL * den).nonzero().flatten()
    if near.numel():
        exact = _exact_posterior(near, lm, probs, st)
        is_max = exact == exact.amax(1, keepdim=True)
        unique = is_max.sum(1) == 1
        c[near] = torch.where(unique, _first_true(is_max), fallback[near])
    return c


def _run_crowdlab(
    lm: LabelMatrix,
    probs: Tensor,
    *,
    consensus_method: ConsensusMethod,
    generator: torch.Generator | int | None,
    counts: Tensor | None = None,
) -> tuple[CrowdlabResult, _Stats]:
    """CROWDLAB on validated inputs; ``probs`` is ``(P, N, K)``."""
    if consensus_method not in ("best_quality", "majority_vote"):
        raise ValueError(
            f"consensus_method must be 'best_quality' or 'majority_vote', got {consensus_method!r}."
        )
    k = probs.shape[-1]
    multi = lm.num_annotations >= 2
    if not bool(multi.any()):
        raise ValueError(
            f"CROWDLAB needs at least one example with two or more labels, but all "
            f"{lm.num_examples} examples of labels have exactly one; use majority_vote() (or "
            "consensus_targets(), which handles this case) instead."
        )
    if counts is None:
        counts = label_counts(lm, k)
    mean_probs = probs[0] if probs.shape[0] == 1 else probs.mean(0)
    mv = _majority_vote(lm, counts, mean_probs, make_generator(generator))
    a = _annotator_agreement(lm, counts)
    model_pred = probs.argmax(2)  # (P, N)
    st = _consensus_stats(lm, counts, multi, model_pred, mv, a, k)
    c = mv
    if consensus_method == "best_quality":
        c = _best_quality(lm, probs, st, mv)
        st = _consensus_stats(lm, counts, multi, model_pred, c, a, k)
    quality = _quality(lm, probs, st, c)
    m_in = lm.num_input_columns
    w_full = torch.full((m_in,), float("nan"), dtype=torch.float64)
    w_full[lm.columns] = st.w.cpu()
    a_full = torch.full((m_in,), float("nan"), dtype=torch.float64)
    a_full[lm.columns] = a.cpu()
    used = torch.zeros(m_in, dtype=torch.bool)
    used[lm.columns] = True
    final = st
    result = CrowdlabResult(
        consensus_label=c,
        consensus_quality=quality,
        annotator_agreement=st.alpha,
        num_annotations=lm.num_annotations,
        model_weight=float(st.w_model[0]) if probs.shape[0] == 1 else st.w_model,
        annotator_weight=w_full,
        annotator_mask=used,
        majority_vote_label=mv,
        consensus_likelihood=st.lam,
        annotator_agreement_with_others=a_full,
        _posterior_fn=lambda: _posterior(lm, probs, final),
    )
    return result, st


def _prepare(labels: ArrayLike, pred_probs: ArrayLike, ndim: int) -> tuple[LabelMatrix, Tensor]:
    probs = as_probabilities(pred_probs, "pred_probs", ndim=ndim)
    lm = as_label_matrix(labels, num_classes=probs.shape[-1], device=probs.device)
    if lm.num_examples != probs.shape[-2]:
        raise ValueError(
            f"pred_probs has {probs.shape[-2]} rows (shape {tuple(probs.shape)}) but labels has "
            f"{lm.num_examples} rows; row i of both must describe the same example."
        )
    return lm, probs if ndim == 3 else probs[None]


def crowdlab(
    labels: ArrayLike,
    pred_probs: ArrayLike,
    *,
    consensus_method: ConsensusMethod = "best_quality",
    generator: torch.Generator | int | None = None,
) -> CrowdlabResult:
    """CROWDLAB consensus labels, consensus quality and weights for one model.

    Args:
        labels: ``(N, M)`` class indices, NaN where annotator j did not label example i. Every
            example needs >= 1 label and at least one example needs >= 2; annotators without
            any label are ignored (weight NaN).
        pred_probs: ``(N, K)`` out-of-sample predicted probabilities (already temperature
            scaled if wanted, see :func:`temperature_scale`).
        consensus_method: ``"best_quality"`` (argmax of the posterior, majority vote on exact
            ties) or ``"majority_vote"``.
        generator: Seed/generator for the last, random majority-vote tie-break (default seed 0).

    Returns:
        A :class:`CrowdlabResult`.

    Example::

        >>> import torch
        >>> nan = float("nan")
        >>> labels = torch.tensor([[0., 0., 1.], [1., 1., nan], [2., nan, 2.]])
        >>> probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
        >>> crowdlab(labels, probs).consensus_label.tolist()
        [0, 1, 2]
    """
    lm, probs = _prepare(labels, pred_probs, 2)
    return _run_crowdlab(lm, probs, consensus_method=consensus_method, generator=generator)[0]


def crowdlab_ensemble(
    labels: ArrayLike,
    pred_probs: ArrayLike,
    *,
    generator: torch.Generator | int | None = None,
) -> CrowdlabResult:
    """CROWDLAB (``best_quality``) with an ensemble of ``P`` models.

    Same as :func:`crowdlab` but ``pred_probs`` is ``(P, N, K)``; each member gets its own
    model weight (``model_weight`` is a ``(P,)`` tensor) and the majority-vote tie-break uses the
    members' mean probabilities.

    Example::

        >>> import torch
        >>> labels = torch.tensor([[0., 0.], [1., 0.]])
        >>> probs = torch.tensor([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
        >>> crowdlab_ensemble(labels, probs).model_weight.shape
        torch.Size([2])
    """
    lm, probs = _prepare(labels, pred_probs, 3)
    return _run_crowdlab(lm, probs, consensus_method="best_quality", generator=generator)[0]


def consensus_targets(
    labels: ArrayLike,
    pred_probs: ArrayLike | None = None,
    *,
    num_classes: int | None = None,
    generator: torch.Generator | int | None = None,
) -> tuple[Tensor, Tensor]:
    """Training targets for the labeled examples: hard consensus labels and soft targets.

    * ``pred_probs`` given and some example has >= 2 labels: CROWDLAB ``best_quality``
      consensus and its posterior (``(N, K)``, rows sum to 1).
    * ``pred_probs`` given but every example has exactly one label: that label, and its
      one-hot vector (CROWDLAB is undefined without multi-labeled examples).
    * ``pred_probs`` is None (no model yet): majority vote (tie-breaks 2-4 of
      :func:`majority_vote`) and the annotators' empirical label distribution.

    Args:
        labels: ``(N, M)`` class indices, NaN for missing.
        pred_probs: Optional ``(N, K)`` out-of-sample probabilities aligned with ``labels``.
        num_classes: ``K`` when ``pred_probs`` is None (default: largest label + 1).
        generator: Seed/generator for random majority-vote tie-breaks (default seed 0).

    Returns:
        ``(consensus (N,) int64, soft_targets (N, K) float)``.

    Example::

        >>> import torch
        >>> y, soft = consensus_targets(torch.tensor([[0., 0., 1.]]), num_classes=2)
        >>> y.tolist(), soft.tolist()
        ([0], [[0.6666666666666666, 0.3333333333333333]])
    """
    if pred_probs is None:
        lm = as_label_matrix(labels, num_classes=num_classes)
        k = num_classes if num_classes is not None else lm.max_label + 1
        if k < 2:
            raise ValueError(f"num_classes must be >= 2, got {k}; pass num_classes= the number of classes.")
        counts = label_counts(lm, k)
        mv = _majority_vote(lm, counts, None, make_generator(generator))
        soft = counts.to(torch.float64) / lm.num_annotations[:, None].to(torch.float64)
        return mv, soft
    lm, probs = _prepare(labels, pred_probs, 2)
    if bool((lm.num_annotations >= 2).any()):
        res = _run_crowdlab(lm, probs, consensus_method="best_quality", generator=generator)[0]
        return res.consensus_label, res.posterior
    y = lm.index.max(1).values
    soft = torch.nn.functional.one_hot(y, probs.shape[-1]).to(probs.dtype)
    return y, soft
