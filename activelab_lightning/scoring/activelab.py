"""ActiveLab acquisition scores for labeled and unlabeled examples (spec §6).

Lower score = the example needs a (new or additional) label more. Labeled and unlabeled scores
are on one scale, so both pools can be ranked together.

* Labeled, some example has >= 2 labels: temperature-scale ``pred_probs`` (§4), run CROWDLAB
  (§5) and shrink each example's consensus quality ``Q_i`` toward ``1/K`` with the weight of
  an "average annotator":
  ``score_i = ((Σ_{j∈i} w_j + w_M)·Q_i + w̄/K) / (Σ_{j∈i} w_j + w_M + w̄)``.
* Labeled, every example has exactly one label: ``T = 1``, all weights 1,
  ``score_i = (2·p[i, y_i] + 1/K) / 3``.
* Unlabeled: ``score_u = (w_M · max_k p̃[u, k] + w̄/K) / (w_M + w̄)`` with the labeled set's
  temperature and weights (``T = w_M = w̄ = 1`` without labeled data).
* Ensembles of ``P`` models: per-member temperatures and model weights; unlabeled examples are
  scored at the majority vote of the members' predicted classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._threads import serial_torch
from ._validation import (
    _ROW_SUM_TOL,
    ArrayLike,
    LabelMatrix,
    TemperatureObjective,
    as_label_matrix,
    as_probabilities,
    check_objective,
    check_probability_values,
    make_generator,
)
from .crowdlab import CrowdlabResult, _run_crowdlab
from .majority_vote import _majority_vote, label_counts
from .temperature import _EPS_LOG, _EPS_T, _search, _temperature_scale

__all__ = ["activelab_scores", "activelab_scores_ensemble"]


@dataclass(frozen=True)
class _Fit:
    """What the labeled pass leaves for scoring unlabeled examples (and the labeled scores)."""

    temperature: tuple[float, ...]  # (P,)
    model_weight: tuple[float, ...]  # (P,)
    mean_annotator_weight: float
    num_classes: int | None
    labeled_scores: Tensor
    crowdlab: CrowdlabResult | None
    single_label: bool


def _no_labels_fit(num_models: int, dtype: torch.dtype = torch.float64) -> _Fit:
    return _Fit(
        temperature=(1.0,) * num_models,
        model_weight=(1.0,) * num_models,
        mean_annotator_weight=1.0,
        num_classes=None,
        labeled_scores=torch.empty(0, dtype=dtype),
        crowdlab=None,
        single_label=False,
    )


def _check_labels_and_probs(labels: ArrayLike, probs: Tensor) -> LabelMatrix:
    if labels is None:
        raise ValueError(
            "labels is None but pred_probs was given; pass the (N, M) label matrix of the "
            "labeled examples (NaN for missing), or pred_probs=None to score unlabeled only."
        )
    lm = as_label_matrix(labels, num_classes=probs.shape[-1], device=probs.device)
    if lm.num_examples != probs.shape[-2]:
        raise ValueError(
            f"pred_probs has {probs.shape[-2]} rows (shape {tuple(probs.shape)}) but labels has "
            f"{lm.num_examples} rows; row i of both must describe the same example."
        )
    return lm


@serial_torch()
def _fit(
    labels: ArrayLike,
    probs: Tensor,
    objective: TemperatureObjective,
    generator: torch.Generator | int | None,
) -> _Fit:
    """Labeled pass on validated ``(P, N, K)`` probabilities."""
    lm = _check_labels_and_probs(labels, probs)
    n_models, _, k = probs.shape
    if bool((lm.num_annotations == 1).all()):
        mean_probs = probs[0] if n_models == 1 else probs.mean(0)
        label = lm.index.max(1).values
        q = mean_probs.gather(1, label[:, None]).squeeze(1)
        w_row = 1.0 + n_models
        scores = (w_row * q + (1.0 / k) * 1.0) / (w_row + 1.0)
        return _Fit(
            temperature=(1.0,) * n_models,
            model_weight=(1.0,) * n_models,
            mean_annotator_weight=1.0,
            num_classes=k,
            labeled_scores=scores,
            crowdlab=None,
            single_label=True,
        )
    counts = label_counts(lm, k)
    temps = tuple(_search(probs[p], counts, objective, lm) for p in range(n_models))
    if n_models == 1:
        scaled = _temperature_scale(probs[0], temps[0])[None]
    else:
        scaled = torch.stack([_temperature_scale(probs[p], temps[p]) for p in range(n_models)])
    res, st = _run_crowdlab(lm, scaled, consensus_method="best_quality", generator=generator, counts=counts)
    w_bar = res.mean_annotator_weight
    w_model = float(st.w_model.sum().item())
    total = st.row_weight + w_model
    scores = (total * res.consensus_quality + (1.0 / k) * w_bar) / (total + w_bar)
    return _Fit(
        temperature=temps,
        model_weight=tuple(st.w_model.tolist()),
        mean_annotator_weight=w_bar,
        num_classes=k,
        labeled_scores=scores,
        crowdlab=res,
        single_label=False,
    )


_UNLABELED = "pred_probs_unlabeled"
_BLOCK_ELEMENTS = 1 << 16  # float64 elements per row block when scoring unlabeled rows (512 KiB)
_LOG_NORMAL = -700.0  # exp(x) is a normal float64 for x above this


def _max_scaled_probability(q: Tensor, temperature: float, validate_as: str | None = None) -> Tensor:
    """``max_k temperature_scale(q, T)[u, k]`` row by row, without the scaled matrix.

    With ``p' = max(p, 1e-30)``: ``max_k softmax(log p' / T) = max_k p'^(1/T) / Σ_k p'^(1/T)``
    (the normalisation of ``p'`` cancels). On CPU float64 it runs over cache-sized row blocks,
    each read from memory once: (optional) validation, ``log``, scale, ``exp``, row sum and
    row max while the block sits in cache. Every operation is row-local, so a row's result
    does not depend on the batch it arrives in.

    Args:
        q: ``(U, K)`` probabilities.
        temperature: ``T``.
        validate_as: If given, also check the values of ``q`` (as
            :func:`check_probability_values` with this argument name) in the same pass.

    Returns:
        ``(U,)`` the largest temperature-scaled probability of each row.
    """
    t = max(temperature, _EPS_T)
    if q.device.type != "cpu" or q.dtype != torch.float64:
        if validate_as is not None:
            check_probability_values(q, validate_as)
        z = q.clamp(min=_EPS_LOG).log_()
        z.sub_(z.amax(1, keepdim=True)).div_(t).exp_()
        return z.sum(1).reciprocal_()
    q = q.detach().contiguous()
    a = q.numpy()
    n, k = a.shape
    top, den = torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
    sums = torch.empty(n, dtype=torch.float64) if validate_as is not None else None
    step = max(1, _BLOCK_ELEMENTS // max(k, 1))
    buf = np.empty((min(step, n), k))
    buf_t = torch.from_numpy(buf)
    inv_t = 1.0 / t
    # Valid rows have p_max >= (1 - tol) / K, so exp(log p_max / T) stays a normal float and the
    # usual max-shift is unnecessary unless K is astronomically large or T tiny.
    shift = math.log((1.0 - _ROW_SUM_TOL) / k) * inv_t < _LOG_NORMAL
    with serial_torch():
        for start in range(0, n, step):
            stop = min(start + step, n)
            x, xt = a[start:stop], q[start:stop]
            b, bt = buf[: stop - start], buf_t[: stop - start]
            lo = float(x.min())
            if sums is not None:
                torch.sum(xt, 1, out=sums[start:stop])
                if not lo >= 0.0:  # negative or NaN
                    return _validate_then_retry(q, temperature, validate_as)
            src, src_t = x, xt
            if not lo >= _EPS_LOG:  # floor only blocks that need it (max(p, 1e-30) is a no-op otherwise)
                np.maximum(x, _EPS_LOG, out=b)
                src, src_t = b, bt
            if t != 1.0:
                np.log(src, out=b)
                if shift:
                    b -= b.max(1, keepdims=True)
                b *= inv_t
                np.exp(b, out=b)
                src_t = bt
            torch.sum(src_t, 1, out=den[start:stop])
            torch.amax(src_t, 1, out=top[start:stop])
    if sums is not None and not bool(((sums - 1.0).abs() <= _ROW_SUM_TOL).all()):
        return _validate_then_retry(q, temperature, validate_as)
    return top.div_(den)


def _validate_then_retry(q: Tensor, temperature: float, name: str | None) -> Tensor:
    """Raise the validation error for ``q``; if the full check passes after all, score unchecked."""
    check_probability_values(q, name or "pred_probs_unlabeled")
    return _max_scaled_probability(q, temperature)


@serial_torch()
def _score_unlabeled(fit: _Fit, q: Tensor, validate_as: str | None = None) -> Tensor:
    """Single-model unlabeled scores for ``(U, K)`` probabilities (row-wise).

    ``validate_as``: check the values of ``q`` in the same pass (the argument name for errors).
    """
    k = q.shape[-1]
    w_m, w_bar = fit.model_weight[0], fit.mean_annotator_weight
    top = _max_scaled_probability(q, fit.temperature[0], validate_as)
    return (w_m * top + (1.0 / k) * w_bar) / (w_m + w_bar)


@serial_torch()
def _score_unlabeled_ensemble(fit: _Fit, q: Tensor, generator: torch.Generator) -> Tensor:
    """Ensemble unlabeled scores for validated ``(P, U, K)`` probabilities."""
    n_models, n, k = q.shape
    if n == 0:
        return torch.empty(0, dtype=q.dtype, device=q.device)
    scaled = [_temperature_scale(q[p], fit.temperature[p]) for p in range(n_models)]
    votes = torch.stack([s.argmax(1) for s in scaled], 1)
    mean = scaled[0].clone()
    for s in scaled[1:]:
        mean += s
    mean /= n_models
    lm = LabelMatrix(
        index=votes,
        mask=torch.ones_like(votes, dtype=torch.bool),
        columns=torch.arange(n_models),
        num_input_columns=n_models,
        num_annotations=torch.full((n,), n_models, dtype=torch.int64, device=q.device),
    )
    c = _majority_vote(lm, label_counts(lm, k), mean, generator)
    wm, w_bar = fit.model_weight, fit.mean_annotator_weight
    num = scaled[0].gather(1, c[:, None]).squeeze(1) * wm[0]
    for p in range(1, n_models):
        num += scaled[p].gather(1, c[:, None]).squeeze(1) * wm[p]
    return (num + (1.0 / k) * w_bar) / (sum(wm) + w_bar)


def _unlabeled_probs(
    x: ArrayLike, fit: _Fit, ndim: int, num_models: int | None = None, *, check_values: bool = True
) -> Tensor:
    q = as_probabilities(
        x,
        _UNLABELED,
        ndim=ndim,
        num_classes=fit.num_classes,
        allow_empty=True,
        check_values=check_values,
    )
    if num_models is not None and q.shape[0] != num_models:
        raise ValueError(
            f"pred_probs_unlabeled has P = {q.shape[0]} models (shape {tuple(q.shape)}) but the "
            f"labeled pred_probs have P = {num_models}; pass the same ensemble members for both."
        )
    return q


def activelab_scores(
    labels: ArrayLike | None = None,
    pred_probs: ArrayLike | None = None,
    pred_probs_unlabeled: ArrayLike | None = None,
    *,
    temperature_objective: TemperatureObjective = "class-position",
    generator: torch.Generator | int | None = None,
) -> tuple[Tensor, Tensor]:
    """ActiveLab scores of labeled and unlabeled examples (lower = label it next).

    Args:
        labels: ``(N, M)`` class indices of the labeled examples, NaN where annotator j did not
            label example i (every example needs >= 1 label; empty annotator columns are ignored).
        pred_probs: ``(N, K)`` out-of-sample predicted probabilities of the labeled examples.
        pred_probs_unlabeled: ``(U, K)`` predicted probabilities of unlabeled examples (U may be 0).
        temperature_objective: ``"class-position"`` (default, the paper) or ``"cleanlab-2.9"``
            (reproduces cleanlab 2.9.0's left-aligned counts, spec §4.1).
        generator: Seed/generator for the random last majority-vote tie-break (default seed 0).

    Returns:
        ``(labeled_scores (N,), unlabeled_scores (U,))``; a part that was not requested is an
        empty tensor.

    Raises:
        ValueError: Nothing to score, labels without pred_probs (or vice versa), shape/K
            mismatches, or invalid probabilities/labels (see the message).

    Example::

        >>> import torch
        >>> nan = float("nan")
        >>> labels = torch.tensor([[0., 0., 1.], [1., nan, 1.], [0., 1., nan]])
        >>> probs = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
        >>> lab, unl = activelab_scores(labels, probs, torch.tensor([[0.9, 0.1]]))
        >>> lab.shape, unl.shape
        (torch.Size([3]), torch.Size([1]))
    """
    check_objective(temperature_objective)
    if pred_probs is None and pred_probs_unlabeled is None:
        raise ValueError("pred_probs and pred_probs_unlabeled are both None; pass at least one of them.")
    if pred_probs is None:
        if labels is not None:
            raise ValueError(
                "labels were given without pred_probs; pass the labeled examples' (N, K) "
                "pred_probs too (or labels=None to score unlabeled examples only)."
            )
        fit = _no_labels_fit(1)
    else:
        probs = as_probabilities(pred_probs, "pred_probs")
        fit = _fit(labels, probs[None], temperature_objective, generator)
    if pred_probs_unlabeled is None:
        return fit.labeled_scores, fit.labeled_scores.new_empty(0)
    q = _unlabeled_probs(pred_probs_unlabeled, fit, 2, check_values=False)
    return fit.labeled_scores.to(q.dtype), _score_unlabeled(fit, q, validate_as=_UNLABELED)


def activelab_scores_ensemble(
    labels: ArrayLike | None = None,
    pred_probs: ArrayLike | None = None,
    pred_probs_unlabeled: ArrayLike | None = None,
    *,
    temperature_objective: TemperatureObjective = "class-position",
    generator: torch.Generator | int | None = None,
) -> tuple[Tensor, Tensor]:
    """ActiveLab scores with an ensemble of ``P`` models (lower = label it next).

    Like :func:`activelab_scores` with ``(P, N, K)`` / ``(P, U, K)`` probabilities: each member
    gets its own temperature and model weight; an unlabeled example is scored by the weighted
    mixture of the members' probabilities at the members' majority-vote class. Inputs are never
    modified (cleanlab 2.9.0 scales the caller's arrays in place).

    The majority vote over the members uses the tie-break chain of :func:`majority_vote`, whose
    steps 2-4 depend on the whole unlabeled set passed in one call (as in cleanlab).

    Example::

        >>> import torch
        >>> labels = torch.tensor([[0., 0.], [1., 0.], [1., 1.]])
        >>> probs = torch.tensor([[[.8, .2], [.4, .6], [.3, .7]], [[.6, .4], [.5, .5], [.2, .8]]])
        >>> lab, unl = activelab_scores_ensemble(labels, probs, probs[:, :2])
        >>> lab.shape, unl.shape
        (torch.Size([3]), torch.Size([2]))
    """
    check_objective(temperature_objective)
    if pred_probs is None and pred_probs_unlabeled is None:
        raise ValueError("pred_probs and pred_probs_unlabeled are both None; pass at least one of them.")
    n_models = None
    if pred_probs is None:
        if labels is not None:
            raise ValueError(
                "labels were given without pred_probs; pass the labeled examples' (P, N, K) "
                "pred_probs too (or labels=None to score unlabeled examples only)."
            )
        fit = None
    else:
        probs = as_probabilities(pred_probs, "pred_probs", ndim=3)
        n_models = probs.shape[0]
        fit = _fit(labels, probs, temperature_objective, generator)
    if pred_probs_unlabeled is None:
        assert fit is not None
        return fit.labeled_scores, fit.labeled_scores.new_empty(0)
    if fit is None:
        q = as_probabilities(pred_probs_unlabeled, "pred_probs_unlabeled", ndim=3, allow_empty=True)
        fit = _no_labels_fit(q.shape[0])
    else:
        q = _unlabeled_probs(pred_probs_unlabeled, fit, 3, n_models)
    gen = make_generator(generator)
    return fit.labeled_scores.to(q.dtype), _score_unlabeled_ensemble(fit, q, gen)
