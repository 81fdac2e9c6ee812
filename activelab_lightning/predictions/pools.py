"""The acquisition's passes over the labeled and unlabeled pools.

What :class:`~activelab_lightning.callback.ActiveLabCallback` asks of predictions each round:

* :func:`labeled_pass` — one pass over the labeled pool that returns the model's own probabilities
  **and** its penultimate features (same forward pass), then fits the cross-fitted heads on rank 0
  (:mod:`~activelab_lightning.predictions.crossfit`) whose out-of-fold probabilities make the
  labeled pool's ``pred_probs`` out-of-sample;
* :func:`predict_pool` — plain ``(n, K)`` probabilities of a pool (the in-sample path, ensemble
  members);
* :func:`unlabeled_batches` — the unlabeled pool streamed as ``(ids, probs)`` batches re-cut to
  exactly ``inference_batch_size`` rows, from one model, several members, or one trunk pass feeding
  every head.

All of them are collective under DDP (every rank calls them and gets the same rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from activelab_lightning._distributed import on_rank_zero
from activelab_lightning.metrics import accuracy
from activelab_lightning.predictions.crossfit import CrossFitHeads, fit_crossfit_heads
from activelab_lightning.predictions.features import find_head, heads_predict_fn, with_features_predict_fn
from activelab_lightning.predictions.inference import (
    PoolSource,
    PredictFn,
    _check_probabilities,
    _module_device,
    _resolve_predict_fn,
    collect_predictions,
    iter_predictions,
)

__all__ = [
    "IN_SAMPLE_GAP",
    "LabeledPass",
    "check_pool_ids",
    "check_pool_probs",
    "labeled_pass",
    "predict_pool",
    "unlabeled_batches",
]

#: In-sample agreement with the consensus this far above the out-of-fold one: the in-sample guard warns.
IN_SAMPLE_GAP = 0.05


def check_pool_probs(
    probs: Any, num_classes: int, where: str, rows: int | None = None, *, finite: bool = True
) -> Tensor:
    """``probs`` as a ``(rows, K)`` float64 CPU tensor, or a ``ValueError`` naming the pool and the fix."""
    probs = torch.as_tensor(probs).detach().to("cpu", torch.float64)
    if probs.ndim != 2 or probs.shape[1] != num_classes or (rows is not None and probs.shape[0] != rows):
        want = f"({rows if rows is not None else 'B'}, {num_classes})"
        raise ValueError(
            f"Probabilities for the {where} must have shape {want} (one row per example, one column per "
            f"class of the store), but got shape {tuple(probs.shape)}. If the module does not return "
            f"(B, K) logits, pass `predict_fn=` (or define `predict_proba`)."
        )
    if finite and probs.numel() and not bool(torch.isfinite(probs).all()):
        raise ValueError(f"Probabilities for the {where} contain NaN/inf; the model may have diverged.")
    return probs


def check_pool_ids(got: Any, expected: Tensor, where: str) -> None:
    """Raise unless the inference returned exactly ``expected`` ids, in order."""
    got = torch.as_tensor(got).to(torch.int64).cpu()
    if not torch.equal(got, expected):
        raise RuntimeError(
            f"Inference over the {where} returned example ids {got[:5].tolist()}... for requested ids "
            f"{expected[:5].tolist()}... ({got.numel()} vs {expected.numel()} rows): every pool batch must "
            f"carry its stable example ids, in order."
        )


def predict_pool(
    trainer: Any,
    module: nn.Module,
    datamodule: PoolSource,
    ids: Tensor,
    num_classes: int,
    *,
    predict_fn: PredictFn | None,
    where: str = "labeled pool",
) -> Tensor:
    """``(n, K)`` float64 probabilities of ``module`` over ``ids`` (``(0, K)`` for an empty pool)."""
    if ids.numel() == 0:
        return torch.zeros(0, num_classes, dtype=torch.float64)
    got, probs = collect_predictions(
        trainer, module, datamodule, ids, predict_fn=predict_fn, num_classes=num_classes
    )
    check_pool_ids(got, ids, where)
    return check_pool_probs(probs, num_classes, where)


@dataclasses.dataclass
class LabeledPass:
    """What :func:`labeled_pass` produced.

    Attributes:
        skipped: Why no heads were made this round (then every other field is empty and the caller
            predicts in-sample); ``None`` when they were.
        model_probs: ``(n, K)`` the model's own (in-sample) probabilities of the labeled pool.
        features: ``(n, d)`` its penultimate features.
        heads: The cross-fitted heads (``heads.oof_probs`` is the out-of-sample ``(n, K)``).
        layer: The layer whose input the features are.
        diagnostics: ``crossfit_l2``, ``crossfit_oof_nll``, ``agreement_in_sample``,
            ``agreement_out_of_fold``.
        guard_warning: The in-sample guard's message, when the in-sample agreement lies more than
            :data:`IN_SAMPLE_GAP` above the out-of-fold one in ``"in_sample"`` mode.
    """

    skipped: str | None = None
    model_probs: Tensor | None = None
    features: Tensor | None = None
    heads: CrossFitHeads | None = None
    layer: nn.Module | None = None
    diagnostics: dict[str, float] = dataclasses.field(default_factory=dict)
    guard_warning: str | None = None


def labeled_pass(
    trainer: Any,
    module: nn.Module,
    datamodule: Any,
    labeled_ids: Tensor,
    targets: Tensor,
    num_classes: int,
    *,
    folds: int,
    seed: int,
    predict_fn: PredictFn | None,
    feature_layer: str | None,
    measure_only: bool = False,
) -> LabeledPass:
    """One labeled-pool pass that also captures the penultimate features, then the cross-fitted heads.

    Args:
        trainer: The running Trainer (or None: one process).
        module: The trained model.
        datamodule: Its pool source (``pool_dataloader``).
        labeled_ids: ``(n,)`` ids of the labeled pool.
        targets: ``(n,)`` the consensus labels the heads are fitted to.
        num_classes: ``K``.
        folds: Folds (and heads).
        seed: Seeds the folds.
        predict_fn: The user's ``predict_fn`` (or None).
        feature_layer: Name of the layer whose input is the representation (None: last ``nn.Linear``).
        measure_only: ``"in_sample"`` mode: one L2 strength and a short solve, only to measure how far
            the in-sample agreement with the consensus lies above the out-of-fold one (the guard).

    Returns:
        A :class:`LabeledPass`; ``skipped`` says why when no heads could be made (no ``nn.Linear``,
        fewer than ``2 * folds`` rows or fewer than 2 classes).
    """
    layer = find_head(module, feature_layer)
    if layer is None:
        return LabeledPass(skipped="the model has no nn.Linear layer")
    targets = torch.as_tensor(targets, dtype=torch.int64)
    n = int(labeled_ids.numel())
    num_targets = torch.unique(targets).numel()
    if n < 2 * folds or num_targets < 2:
        return LabeledPass(skipped=f"{n} labeled rows / {num_targets} classes are too few to fold")
    base, source = _resolve_predict_fn(module, predict_fn)
    ids, out = collect_predictions(
        trainer,
        module,
        datamodule,
        labeled_ids,
        predict_fn=with_features_predict_fn(base, layer, num_classes),
        num_classes=num_classes,
        validate=False,
    )
    check_pool_ids(ids, labeled_ids, "labeled pool")
    model_probs = check_pool_probs(out[:, :num_classes], num_classes, "labeled pool")
    _check_probabilities(model_probs[: min(n, 4096)], source, module)
    features = out[:, num_classes:]
    cheap: dict[str, Any] = {"l2_grid": (1e-2,), "max_iter": 10} if measure_only else {}
    device = _module_device(module)  # the heads are fitted where the model lives (GPU if any)
    heads: CrossFitHeads = on_rank_zero(
        trainer,
        lambda: fit_crossfit_heads(
            features.to(device), targets.to(device), num_classes=num_classes, folds=folds, seed=seed, **cheap
        ),
    )
    agree_model = accuracy(model_probs, targets, num_classes=num_classes)
    agree_oof = accuracy(heads.oof_probs, targets, num_classes=num_classes)
    warning = None
    if measure_only and agree_model - agree_oof > IN_SAMPLE_GAP:
        warning = (
            f"the model agrees with the consensus on {agree_model:.1%} of the labeled pool, but only "
            f"{agree_oof:.1%} out of fold. Its labeled-pool predictions look in-sample (memorised), which "
            f"makes CROWDLAB over-trust the model."
        )
    return LabeledPass(
        model_probs=model_probs,
        features=features,
        heads=heads,
        layer=layer,
        diagnostics={
            "crossfit_l2": heads.l2,
            "crossfit_oof_nll": heads.oof_nll[heads.l2],
            "agreement_in_sample": agree_model,
            "agreement_out_of_fold": agree_oof,
        },
        guard_warning=warning,
    )


def unlabeled_batches(
    trainer: Any,
    datamodule: Any,
    ids: Tensor,
    modules: Sequence[nn.Module],
    num_classes: int,
    *,
    predict_fn: PredictFn | None,
    stack: bool,
    heads: tuple[CrossFitHeads, nn.Module] | None = None,
    track: Callable[..., Iterable[Any]] | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(ids (b,), probs (b, K) or (P, b, K))`` over the unlabeled pool, in ``ids`` order.

    Collective under DDP (every rank must exhaust it). Batches are re-cut to exactly
    ``datamodule.inference_batch_size`` rows, so the scoring sees the same batches (and random
    strategies draw the same numbers) whatever the number of ranks.

    Args:
        trainer: The running Trainer (or None).
        datamodule: The pool source.
        ids: ``(n,)`` unlabeled ids.
        modules: The model (or the ensemble members) whose probabilities to stream.
        num_classes: ``K``.
        predict_fn: The user's ``predict_fn`` (or None).
        stack: Stack the members' probabilities to ``(P, b, K)`` (ensemble strategies).
        heads: ``(heads, layer)``: one trunk pass of ``modules[0]`` feeds every head instead;
            batches are ``(P, b, K)``.
        track: Optional progress wrapper ``track(iterable, total=n)``.
    """
    if ids.numel() == 0:
        return
    size = int(getattr(datamodule, "inference_batch_size", 4096))
    streams: list[Iterable[tuple[Tensor, Tensor]]]
    if heads is not None:
        fitted, layer = heads
        base, _ = _resolve_predict_fn(modules[0], predict_fn)
        trunk = iter_predictions(
            trainer,
            modules[0],
            datamodule,
            ids,
            predict_fn=heads_predict_fn(base, layer, fitted),
            validate=False,
        )
        streams = [
            (
                (batch_ids, p.view(p.shape[0], fitted.num_heads, num_classes).transpose(0, 1))
                for batch_ids, p in trunk
            )
        ]
    else:
        streams = [
            iter_predictions(trainer, module, datamodule, ids, predict_fn=predict_fn) for module in modules
        ]
    stream: Iterable[Any] = zip(*streams)
    if track is not None:
        stream = track(stream, total=int(ids.numel()))
    buffer_ids: list[Tensor] = []
    buffer_probs: list[Tensor] = []
    buffered = 0
    seen = 0
    for parts in stream:
        batch_ids = parts[0][0]
        if heads is not None:
            stacked = parts[0][1]
        else:
            probs = [check_pool_probs(p, num_classes, "unlabeled pool", finite=False) for _, p in parts]
            stacked = torch.stack(probs) if stack else probs[0]
        seen += int(batch_ids.numel())
        if not buffered and batch_ids.numel() == size:  # the usual case: nothing to re-cut
            yield batch_ids, stacked
            continue
        buffer_ids.append(batch_ids)
        buffer_probs.append(stacked)
        buffered += int(batch_ids.numel())
        while buffered >= size or (seen == ids.numel() and buffered):
            all_ids = torch.cat(buffer_ids)
            all_probs = torch.cat(buffer_probs, dim=-2)
            take = min(size, buffered)
            yield all_ids[:take], all_probs[..., :take, :]
            buffer_ids, buffer_probs = [all_ids[take:]], [all_probs[..., take:, :]]
            buffered -= take
