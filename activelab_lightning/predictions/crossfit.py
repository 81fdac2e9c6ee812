"""Out-of-sample labeled-pool predictions from a single fit: cross-fitted heads.

ActiveLab and CROWDLAB assume the labeled pool's ``pred_probs`` are out-of-sample. The model that
was just trained on the labeled pool is not: it has fitted (and partly memorised) the very consensus
labels it is asked to judge, so CROWDLAB over-trusts it and the consensus drifts towards the model.
K-fold cross-validation fixes that at the cost of ``K`` extra fits per round; cross-fitted heads fix
most of it at the cost of one inference pass plus a few small L-BFGS solves:

1. during the acquisition's labeled-pool pass a forward hook captures the **input of the model's
   last** ``nn.Linear`` (its penultimate features, ``(n, d)``), in the same pass that computes the
   model's own probabilities (no second pass);
2. the labeled rows are dealt into ``K`` stratified, seeded folds of their consensus targets;
3. ``K`` multinomial logistic heads (float64, L2 on the weights, L-BFGS, one solve per head) are
   fitted on the z-scored features of ``K - 1`` folds; each predicts its held-out fold. The L2
   strength is chosen from a small grid by the **out-of-fold** negative log-likelihood, so an
   over-confident head cannot win its own selection;
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

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_L2_GRID",
    "OUT_OF_SAMPLE_METHODS",
    "CrossFitHeads",
    "fit_crossfit_heads",
    "stratified_folds",
]

#: What ``ActiveLabCallback(out_of_sample=...)`` accepts.
OUT_OF_SAMPLE_METHODS: tuple[str, ...] = ("crossfit", "in_sample")

#: L2 strengths tried per round (per-row mean cross-entropy + ``l2 / 2 * ||W||^2``, z-scored features).
DEFAULT_L2_GRID: tuple[float, ...] = (1.0, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3)


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


@dataclasses.dataclass(frozen=True)
class CrossFitHeads:
    """``P`` linear heads fitted on ``P - 1`` folds each, and their out-of-fold predictions.

    A head maps features ``x`` to ``softmax([z, 1] @ weight[p])`` with ``z = ((x - mean) / scale) @
    projection``.

    Attributes:
        weight: ``(P, r + 1, K)`` float64 (the last row is the bias).
        mean: ``(d,)`` feature means used for z-scoring.
        scale: ``(d,)`` feature scales used for z-scoring.
        projection: ``(d, r)`` orthonormal projection on the top principal directions (identity when
            ``d <= max_dim``).
        folds: ``(n,)`` fold (= head that did not see it) of each training row.
        oof_probs: ``(n, K)`` float64 out-of-fold probabilities of the training rows.
        l2: The chosen L2 strength.
        oof_nll: ``{l2: out-of-fold mean NLL of the targets}`` over the grid.
    """

    weight: Tensor
    mean: Tensor
    scale: Tensor
    projection: Tensor
    folds: Tensor
    oof_probs: Tensor
    l2: float
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


def _solve(a: Tensor, onehot: Tensor, weight: Tensor, l2: float, w0: Tensor, max_iter: int) -> Tensor:
    """Minimise ``sum_i weight_i CE(a_i W, y_i) + l2/2 ||W[:-1]||²`` (``weight`` sums to 1) by L-BFGS.

    One head at a time (a head's optimisation path never depends on another fold's rows). The
    gradient is written out (``a^T (softmax(aW) - Y)``): no autograd graph per evaluation.
    """
    w = w0.clone()
    w.grad = torch.zeros_like(w)
    opt = torch.optim.LBFGS(
        [w],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    penalty = torch.ones_like(w)
    penalty[-1] = 0.0  # no L2 on the bias row
    weighted_a = a * weight.unsqueeze(1)

    def closure() -> Tensor:
        logp = torch.log_softmax(a @ w, dim=-1)
        loss = -(weight * (logp * onehot).sum(1)).sum() + 0.5 * l2 * (penalty * w * w).sum()
        w.grad = weighted_a.T @ (logp.exp() - onehot) + l2 * penalty * w
        return loss

    with torch.no_grad():
        opt.step(closure)
    return w.detach()


def fit_crossfit_heads(
    features: Tensor,
    targets: Tensor,
    *,
    num_classes: int,
    folds: int = 5,
    seed: int = 0,
    l2_grid: Sequence[float] = DEFAULT_L2_GRID,
    max_iter: int = 25,
    max_dim: int = 256,
    fold_ids: Tensor | None = None,
) -> CrossFitHeads:
    """Fit ``folds`` linear heads on the other folds' features; out-of-fold probabilities for every row.

    Each head is a multinomial logistic regression (float64, L2 on the weights, L-BFGS with the
    gradient written out) of the targets on the z-scored features, projected on their top
    ``max_dim`` principal directions when wider (label-free). The L2 strengths are tried from strong
    to weak, each warm-started from the previous solution; the one whose **out-of-fold** NLL is
    lowest is kept, so an over-confident head cannot win its own selection.

    Args:
        features: ``(n, d)`` penultimate features of the labeled rows (any float dtype, CPU or GPU;
            the heads are fitted on that device).
        targets: ``(n,)`` integer consensus targets in ``[0, num_classes)``.
        num_classes: ``K``.
        folds: Number of folds / heads ``P`` (>= 2).
        seed: Seeds the stratified fold assignment (and the randomized PCA when ``d > max_dim``).
        l2_grid: L2 strengths to try (per-row mean cross-entropy + ``l2 / 2 * ||W||²``).
        max_iter: L-BFGS iterations per head and grid point.
        max_dim: Project wider features on this many principal directions first.
        fold_ids: ``(n,)`` fold of each row in ``[0, folds)``, instead of the seeded stratified deal.

    Returns:
        A :class:`CrossFitHeads`.

    Raises:
        ValueError: Bad shapes, ``folds < 2``, fewer rows than folds, an empty grid, or non-finite features.
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
    z = z @ projection
    a = torch.cat([z, torch.ones(n, 1, dtype=z.dtype, device=dev)], dim=1)  # = _design(x, ...), (n, r + 1)
    onehot = torch.nn.functional.one_hot(targets, num_classes).to(torch.float64)
    train = (fold.unsqueeze(0) != torch.arange(folds, device=dev).unsqueeze(1)).to(torch.float64)
    train = train / train.sum(1, keepdim=True).clamp_min(1.0)  # (P, n): each head's mean over its rows
    members = [torch.nonzero(fold == p).flatten() for p in range(folds)]
    w = torch.zeros(folds, a.shape[1], num_classes, dtype=torch.float64, device=dev)
    best: tuple[float, float, Tensor, Tensor] | None = None
    scores: dict[float, float] = {}
    for l2 in sorted((float(v) for v in l2_grid), reverse=True):  # strong → weak, warm-started
        w = torch.stack([_solve(a, onehot, train[p], l2, w[p], max_iter) for p in range(folds)])
        oof = torch.empty(n, num_classes, dtype=torch.float64, device=dev)
        for p, held in enumerate(members):  # each row by its held-out head
            oof[held] = torch.softmax(a[held] @ w[p], dim=-1)
        nll = float(-(oof.gather(1, targets.view(-1, 1)).clamp_min(1e-300).log()).mean())
        scores[l2] = nll
        if best is None or nll < best[1] - 1e-12:
            best = (l2, nll, w.clone(), oof)
    assert best is not None
    l2, _, w, oof = best
    return CrossFitHeads(
        weight=w.cpu(),
        mean=mean.cpu(),
        scale=scale.cpu(),
        projection=projection.cpu(),
        folds=fold.cpu(),
        oof_probs=oof.cpu(),
        l2=l2,
        oof_nll=scores,
    )
