"""Out-of-sample labeled-pool predictions from a single fit: cross-fitted heads.

ActiveLab and CROWDLAB assume the labeled pool's ``pred_probs`` are out-of-sample. The model that
was just trained on the labeled pool is not: it has fitted (and partly memorised) the very consensus
labels it is asked to judge, so CROWDLAB over-trusts it and the consensus drifts towards the model.
K-fold cross-validation fixes that at the cost of ``K`` extra fits per round; cross-fitted heads fix
most of it at the cost of one inference pass plus a few linear solves:

1. during the acquisition's labeled-pool pass a forward hook captures the **input of the model's
   last** ``nn.Linear`` (its penultimate features, ``(n, d)``), in the same pass that computes the
   model's own probabilities (no second pass);
2. the labeled rows are dealt into ``K`` stratified, seeded folds of their consensus targets;
3. ``K`` linear heads are fitted on the z-scored features of ``K - 1`` folds; each predicts its
   held-out fold. A head is a ridge regression of the one-hot targets (closed form, every L2
   strength from one eigendecomposition per fold, float64) whose scores go through a softmax; the
   L2 strength and the softmax sharpness (two scalars shared by all heads) are the pair with the
   lowest **out-of-fold** negative log-likelihood, so an over-confident head cannot win its own
   selection;
4. the out-of-fold probabilities replace the in-sample ones for scoring and for the CROWDLAB
   consensus; the ``K`` heads double as the ensemble of ``activelab_ensemble`` / ``disagreement``
   (one trunk pass over the unlabeled pool feeds all heads).

The trunk still saw every label, so the heads are not as independent as K-fold models; in our
measurements (``benchmarks/results/README.md``) they remove most of the over-trust at a few percent
of a fit. :class:`~activelab_lightning.loop.ActiveLearningLoop` ``(cv_folds=K)`` stays the reference.

Example::

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> features = torch.randn(200, 8, generator=g)
    >>> targets = (features[:, 0] > 0).long()
    >>> heads = fit_crossfit_heads(features, targets, num_classes=2, folds=5, seed=0)
    >>> heads.oof_probs.shape, heads.predict(features).shape
    (torch.Size([200, 2]), torch.Size([5, 200, 2]))
    >>> bool((heads.oof_probs.argmax(1) == targets).double().mean() > 0.9)
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_L2_GRID",
    "OUT_OF_SAMPLE_METHODS",
    "CrossFitHeads",
    "capture_inputs",
    "find_head",
    "fit_crossfit_heads",
    "heads_predict_fn",
    "stratified_folds",
    "with_features_predict_fn",
]

#: What ``ActiveLabCallback(out_of_sample=...)`` accepts.
OUT_OF_SAMPLE_METHODS: tuple[str, ...] = ("crossfit", "in_sample")

#: Ridge strengths tried per round, relative to the mean eigenvalue of each fold's feature Gram matrix.
DEFAULT_L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def stratified_folds(labels: Tensor, k: int, *, seed: int) -> Tensor:
    """Fold index in ``0..k-1`` per row: rows of each class shuffled (seeded) and dealt round-robin.

    Args:
        labels: ``(n,)`` integer class of each row.
        k: Number of folds.
        seed: Seeds the shuffle.

    Returns:
        ``(n,)`` int64 fold of each row; fold sizes differ by at most one per class.

    Example::

        >>> stratified_folds(torch.tensor([0, 0, 1, 1, 1, 0]), 2, seed=0).bincount().tolist()
        [3, 3]
    """
    labels = torch.as_tensor(labels, dtype=torch.int64).flatten()
    generator = torch.Generator().manual_seed(int(seed) % (2**63))
    folds = torch.empty(labels.numel(), dtype=torch.int64)
    offset = 0
    for cls in torch.unique(labels).tolist():
        rows = torch.nonzero(labels == cls).flatten()
        rows = rows[torch.randperm(rows.numel(), generator=generator)]
        folds[rows] = (torch.arange(rows.numel()) + offset) % k
        offset += rows.numel()
    return folds


def find_head(module: nn.Module, name: str | None = None) -> nn.Module | None:
    """The layer whose input is the model's penultimate representation.

    Args:
        module: The model.
        name: Dotted name of the layer in ``module.named_modules()`` (e.g. ``"net.4"`` or
            ``"classifier"``); default: the last ``nn.Linear`` registered in ``module`` (for the
            usual ``trunk → Linear`` classifiers, the output layer).

    Returns:
        The layer, or ``None`` when ``name`` is None and the model has no ``nn.Linear``.

    Raises:
        ValueError: ``name`` is not a submodule of ``module``.

    Example::

        >>> find_head(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
        Linear(in_features=8, out_features=3, bias=True)
    """
    if name is not None:
        modules = dict(module.named_modules())
        if name not in modules:
            linear = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
            raise ValueError(
                f"feature_layer={name!r} is not a submodule of {type(module).__name__}; its nn.Linear layers "
                f"are {linear[:10]}. Pass one of those (or any name from model.named_modules())."
            )
        return modules[name]
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


@contextlib.contextmanager
def capture_inputs(layer: nn.Module) -> Iterator[list[Tensor]]:
    """Record the first positional input of every ``layer`` call while the context is open.

    Yields:
        A list that receives one detached tensor per call (cleared by the caller as it likes).

    Example::

        >>> lin = nn.Linear(3, 2)
        >>> with capture_inputs(lin) as seen:
        ...     _ = lin(torch.ones(5, 3))
        >>> seen[0].shape
        torch.Size([5, 3])
    """
    seen: list[Tensor] = []

    def hook(_module: nn.Module, args: tuple, _output: object) -> None:
        if args and isinstance(args[0], Tensor):
            seen.append(args[0].detach())

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@dataclasses.dataclass(frozen=True)
class CrossFitHeads:
    """``P`` linear heads fitted on ``P - 1`` folds each, and their out-of-fold predictions.

    A head maps features ``x`` to ``softmax([z, 1] @ weight[p])`` with ``z = ((x - mean) / scale) @
    projection``.

    Attributes:
        weight: ``(P, r + 1, K)`` float64 (the sharpness folded in; the last row is the bias).
        mean: ``(d,)`` feature means used for z-scoring.
        scale: ``(d,)`` feature scales used for z-scoring.
        projection: ``(d, r)`` orthonormal projection on the top principal directions (identity when
            ``d <= max_dim``).
        folds: ``(n,)`` fold (= head that did not see it) of each training row.
        oof_probs: ``(n, K)`` float64 out-of-fold probabilities of the training rows.
        l2: The chosen ridge strength (relative to the mean eigenvalue of the features' Gram matrix).
        sharpness: The chosen softmax scale of the ridge scores.
        oof_nll: ``{l2: out-of-fold mean NLL of the targets at its best sharpness}`` over the grid.
    """

    weight: Tensor
    mean: Tensor
    scale: Tensor
    projection: Tensor
    folds: Tensor
    oof_probs: Tensor
    l2: float
    sharpness: float
    oof_nll: dict[float, float]

    @property
    def num_heads(self) -> int:
        """``P``."""
        return int(self.weight.shape[0])

    def predict(self, features: Tensor) -> Tensor:
        """``(B, d)`` features → ``(P, B, K)`` float64 probabilities of every head (on the features' device)."""
        dev = features.device
        a = _design(features, self.mean.to(dev), self.scale.to(dev), self.projection.to(dev))
        return torch.softmax(torch.matmul(a, self.weight.to(dev)), dim=-1)

    def member_probs(self, features: Tensor) -> Tensor:
        """``(P, n, K)`` ensemble probabilities of the training rows: each head's own predictions,
        except that every row's held-out head gives its out-of-fold value (as K-fold models do)."""
        probs = self.predict(features)
        rows = torch.arange(self.folds.numel())
        probs[self.folds, rows] = self.oof_probs.to(probs.device)
        return probs


def _design(features: Tensor, mean: Tensor, scale: Tensor, projection: Tensor) -> Tensor:
    z = ((features.to(torch.float64) - mean) / scale) @ projection
    return torch.cat([z, torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)], dim=1)


def _principal_directions(z: Tensor, max_dim: int, seed: int) -> Tensor:
    """``(d, r)`` orthonormal top principal directions of ``z`` (``r = min(d, n, max_dim)``); label-free."""
    n, d = z.shape
    rank = min(max_dim, n)  # no more directions than rows
    if d <= rank:
        return torch.eye(d, dtype=z.dtype, device=z.device)
    with torch.random.fork_rng(devices=[z.device] if z.device.type == "cuda" else []):
        torch.manual_seed(seed)
        _, _, v = torch.pca_lowrank(z, q=rank, center=False, niter=4)
    return v


def _nll(scores: Tensor, targets: Tensor, sharpness: float) -> float:
    logp = torch.log_softmax(sharpness * scores, dim=-1)
    return float(-logp.gather(1, targets.view(-1, 1)).mean())


def _fit_sharpness(scores: Tensor, targets: Tensor, *, steps: int = 30) -> tuple[float, float]:
    """The ``s > 0`` minimising the mean NLL of ``softmax(s * scores)`` and that NLL.

    The NLL is convex in ``s`` (log-sum-exp of linear functions), so a damped Newton iteration on
    ``s`` (gradient ``mean(E_p[score] - score_y)``, curvature ``mean(Var_p[score])``) converges in
    a few ``O(nK)`` steps.
    """
    picked = scores.gather(1, targets.view(-1, 1)).squeeze(1)
    s, value = 1.0, _nll(scores, targets, 1.0)
    for _ in range(steps):
        p = torch.softmax(s * scores, dim=-1)
        expected = (p * scores).sum(1)
        grad = float((expected - picked).mean())
        curv = float(((p * scores * scores).sum(1) - expected * expected).mean())
        if abs(grad) < 1e-9:
            break
        step = -grad / curv if curv > 1e-12 else -grad * s
        new = min(max(s + step, s / 4, 1e-3), s * 4, 1e4)
        new_value = _nll(scores, targets, new)
        while new_value > value and abs(new - s) > 1e-9 * s:  # backtrack (rare: the NLL is convex)
            new = (new + s) / 2
            new_value = _nll(scores, targets, new)
        if new_value > value:
            break
        converged = abs(new - s) <= 1e-6 * s
        s, value = new, new_value
        if converged:
            break
    return s, value


def fit_crossfit_heads(
    features: Tensor,
    targets: Tensor,
    *,
    num_classes: int,
    folds: int = 5,
    seed: int = 0,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    sharpness: float | None = None,
    max_dim: int = 256,
    fold_ids: Tensor | None = None,
) -> CrossFitHeads:
    """Fit ``folds`` linear heads on the other folds' features; out-of-fold probabilities for every row.

    Each head is a ridge regression of the one-hot targets on the z-scored features (projected on
    their top ``max_dim`` principal directions when wider), solved in closed form for every L2
    strength at once from one eigendecomposition per fold, and turned into probabilities by a
    softmax of its scores times a sharpness. The L2 strength and the sharpness (two scalars for
    all heads) are the pair with the lowest **out-of-fold** NLL, so over-confidence cannot win.
    Cost: ``O(n d r + n r² + P r³ + n K |grid|)``, no iterative solver.

    Args:
        features: ``(n, d)`` penultimate features of the labeled rows (any float dtype, CPU or GPU).
        targets: ``(n,)`` integer consensus targets in ``[0, num_classes)``.
        num_classes: ``K``.
        folds: Number of folds / heads ``P`` (>= 2).
        seed: Seeds the stratified fold assignment (and the randomized PCA when ``d > max_dim``).
        l2_grid: Ridge strengths to try, relative to the mean eigenvalue of each fold's Gram matrix.
        sharpness: A fixed softmax scale of the ridge scores; default (None): the one minimising the
            out-of-fold NLL (a convex 1-D problem, Newton's method).
        max_dim: Project wider features on this many principal directions first.
        fold_ids: ``(n,)`` fold of each row in ``[0, folds)``, instead of the seeded stratified deal.

    Returns:
        A :class:`CrossFitHeads`.

    Raises:
        ValueError: Bad shapes, ``folds < 2``, fewer rows than folds, empty grids, or non-finite features.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"fit_crossfit_heads(folds={folds!r}): must be an int >= 2.")
    if features.ndim != 2:
        raise ValueError(f"fit_crossfit_heads: features must be (n, d), got shape {tuple(features.shape)}.")
    dev = features.device
    targets = torch.as_tensor(targets, dtype=torch.int64).flatten().to(dev)
    n = features.shape[0]
    if targets.numel() != n:
        raise ValueError(f"fit_crossfit_heads: {n} feature rows but {targets.numel()} targets.")
    if n < folds:
        raise ValueError(f"fit_crossfit_heads: {n} rows cannot be split into folds={folds}.")
    if not l2_grid:
        raise ValueError("fit_crossfit_heads(l2_grid=()): give at least one L2 strength.")
    if sharpness is not None and not sharpness > 0:
        raise ValueError(f"fit_crossfit_heads(sharpness={sharpness!r}): must be > 0 (or None to fit it).")
    x = features.detach().to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("fit_crossfit_heads: the features contain NaN/inf (the model may have diverged).")
    if fold_ids is None:
        fold = stratified_folds(targets.cpu(), folds, seed=seed).to(dev)
    else:
        fold = torch.as_tensor(fold_ids, dtype=torch.int64).flatten().to(dev)
        if fold.numel() != n or (n and (int(fold.min()) < 0 or int(fold.max()) >= folds)):
            raise ValueError(
                f"fit_crossfit_heads(fold_ids=...): need {n} fold ids in [0, {folds}), got {fold.numel()} ids "
                f"in [{int(fold.min()) if n else '-'}, {int(fold.max()) if n else '-'}]."
            )
    mean = x.mean(0)
    scale = x.std(0, correction=0).clamp_min(1e-6)
    z = (x - mean) / scale
    projection = _principal_directions(z, max_dim, seed)
    z = z @ projection  # (n, r)
    y = torch.nn.functional.one_hot(targets, num_classes).to(torch.float64)
    # per-fold sufficient statistics from the fold sums: train stats = total - fold
    onehot_fold = torch.nn.functional.one_hot(fold, folds).to(torch.float64)  # (n, P)
    count = n - onehot_fold.sum(0)  # (P,) training rows of each head
    sum_z = z.sum(0) - onehot_fold.T @ z  # (P, r)
    sum_y = y.sum(0) - onehot_fold.T @ y  # (P, K)
    members = [torch.nonzero(fold == p).flatten() for p in range(folds)]
    gram_fold = torch.stack([z[m].T @ z[m] for m in members])  # (P, r, r)
    cross_fold = torch.stack([z[m].T @ y[m] for m in members])  # (P, r, K)
    mu = sum_z / count.clamp_min(1).unsqueeze(1)
    ybar = sum_y / count.clamp_min(1).unsqueeze(1)
    gram = (z.T @ z) - gram_fold - count.view(-1, 1, 1) * mu.unsqueeze(2) * mu.unsqueeze(1)
    cross = (z.T @ y) - cross_fold - count.view(-1, 1, 1) * mu.unsqueeze(2) * ybar.unsqueeze(1)
    evals, evecs = torch.linalg.eigh(gram)  # (P, r), (P, r, r)
    evals = evals.clamp_min(0.0)
    level = evals.mean(1, keepdim=True).clamp_min(1e-12)  # (P, 1)
    rotated = evecs.transpose(1, 2) @ cross  # (P, r, K)
    a = torch.cat([z, torch.ones(n, 1, dtype=z.dtype, device=dev)], dim=1)
    best: tuple[float, float, float, Tensor, Tensor] | None = None
    scores_by_l2: dict[float, float] = {}
    for l2 in sorted(float(v) for v in l2_grid):
        coef = evecs @ (rotated / (evals + l2 * level).unsqueeze(2))  # (P, r, K)
        bias = ybar - (mu.unsqueeze(1) @ coef).squeeze(1)  # (P, K)
        weight = torch.cat([coef, bias.unsqueeze(1)], dim=1)  # (P, r + 1, K)
        oof_scores = torch.empty(n, num_classes, dtype=torch.float64, device=dev)
        for p, held in enumerate(members):  # each row by its held-out head
            oof_scores[held] = a[held] @ weight[p]
        if sharpness is None:
            sharp, nll = _fit_sharpness(oof_scores, targets)
        else:
            sharp, nll = float(sharpness), _nll(oof_scores, targets, float(sharpness))
        scores_by_l2[l2] = nll
        if best is None or nll < best[1] - 1e-12:
            best = (l2, nll, sharp, weight, oof_scores)
    assert best is not None
    l2, _, sharp, weight, oof_scores = best
    return CrossFitHeads(
        weight=(weight * sharp).cpu(),
        mean=mean.cpu(),
        scale=scale.cpu(),
        projection=projection.cpu(),
        folds=fold.cpu(),
        oof_probs=torch.softmax(sharp * oof_scores, dim=-1).cpu(),
        l2=l2,
        sharpness=sharp,
        oof_nll=scores_by_l2,
    )


def _captured_features(seen: list[Tensor], layer: nn.Module, batch: int) -> Tensor:
    if not seen:
        raise ValueError(
            f"The feature layer {type(layer).__name__} was not called during the forward pass, so there are no "
            f"penultimate features for out_of_sample='crossfit'. Pass feature_layer=<name of the layer whose "
            f"input is the representation> or out_of_sample='in_sample'."
        )
    f = seen[-1]
    if f.ndim != 2 or f.shape[0] != batch:
        raise ValueError(
            f"The input of the feature layer {type(layer).__name__} has shape {tuple(f.shape)} for a batch of "
            f"{batch} examples; out_of_sample='crossfit' needs one (B, d) feature row per example. Pass "
            f"feature_layer=<name of the classifier layer> or out_of_sample='in_sample'."
        )
    return f


def with_features_predict_fn(
    base: Callable[[nn.Module, Any], Tensor], layer: nn.Module, num_classes: int
) -> Callable[[nn.Module, Any], Tensor]:
    """A ``predict_fn`` returning ``(B, K + d)``: ``base``'s probabilities, then ``layer``'s input.

    One forward pass gives both; split the columns after gathering (``validate=False`` in the
    prediction loop, since the rows are not probabilities).
    """

    def predict(module: nn.Module, x: Any) -> Tensor:
        from activelab_lightning.predictions import _check_output

        with capture_inputs(layer) as seen:
            probs = base(module, x)
        if not isinstance(probs, Tensor) or probs.ndim != 2:  # the usual "(B, K)" error
            n = probs.shape[0] if isinstance(probs, Tensor) and probs.ndim else 0
            _check_output(probs, n, None, "predict_fn / forward", module)
        if probs.shape[1] != num_classes:
            raise ValueError(
                f"Probabilities for the labeled pool must have shape (B, {num_classes}) (one column per class of "
                f"the store), but got shape {tuple(probs.shape)}. If the module does not return (B, K) logits, "
                f"pass `predict_fn=` (or define `predict_proba`)."
            )
        feats = _captured_features(seen, layer, probs.shape[0])
        dtype = torch.promote_types(probs.dtype, feats.dtype)
        return torch.cat([probs.to(dtype), feats.to(probs.device, dtype)], dim=1)

    return predict


def heads_predict_fn(
    base: Callable[[nn.Module, Any], Tensor], layer: nn.Module, heads: CrossFitHeads
) -> Callable[[nn.Module, Any], Tensor]:
    """A ``predict_fn`` returning ``(B, P * K)``: every head's probabilities from one trunk pass.

    Reshape a ``(b, P * K)`` result with ``probs.view(b, P, K).transpose(0, 1)`` to ``(P, b, K)``.
    """

    def predict(module: nn.Module, x: Any) -> Tensor:
        with capture_inputs(layer) as seen:
            probs = base(module, x)
        feats = _captured_features(seen, layer, probs.shape[0])
        out = heads.predict(feats)  # (P, B, K)
        return out.transpose(0, 1).reshape(out.shape[1], -1)

    return predict
