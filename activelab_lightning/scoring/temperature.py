"""Temperature search and scaling of predicted probabilities (spec §4).

The temperature minimises the soft cross-entropy between the temperature-scaled model
probabilities and the annotators' empirical label distribution of each example. Two objectives:

* ``"class-position"`` (default, what the ActiveLab paper describes): the empirical distribution
  puts the fraction of annotators that chose class k at position k.
* ``"cleanlab-2.9"``: reproduces cleanlab 2.9.0, whose count helper writes each example's
  non-zero class counts *left-aligned* (positions 0..u-1 instead of the classes' own positions;
  spec §4.1/§7.2). Use it to get cleanlab's numbers exactly.

The empirical distribution is computed once (sparse: at most ``min(M, K)`` non-zeros per row)
and reused for all 13-18 candidate temperatures.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._threads import serial_torch
from ._validation import (
    ArrayLike,
    LabelMatrix,
    TemperatureObjective,
    as_label_matrix,
    as_probabilities,
    check_objective,
)
from .majority_vote import label_counts

__all__ = [
    "COARSE_GRID",
    "empirical_distribution",
    "find_temperature",
    "temperature_scale",
]

COARSE_GRID: tuple[float, ...] = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0, 3.0, 5.0, 8.0)
_EPS_T = 1e-6
_EPS_LOG = 1e-30


def _present_classes(counts: Tensor, lm: LabelMatrix | None) -> tuple[Tensor, Tensor, Tensor]:
    """``(rows, classes, counts)`` of the non-zero label counts, row-major, classes ascending.

    From the ``(N, M)`` label matrix when it is narrower than ``counts`` (O(N·M log M) instead
    of O(N·K)); both give the same entries in the same order.
    """
    if lm is None or lm.num_annotators >= counts.shape[1]:
        nz = counts > 0
        rows, cls = nz.nonzero(as_tuple=True)
        return rows, cls, counts[nz]  # same (row-major) order as nonzero()
    k = counts.shape[1]
    key = torch.where(lm.mask, lm.index, k).sort(1).values  # missing labels sort last
    first = key < k
    first[:, 1:] &= key[:, 1:] != key[:, :-1]
    rows, j = first.nonzero(as_tuple=True)
    cls = key[rows, j]
    return rows, cls, counts[rows, cls]


def _sparse_empirical(
    counts: Tensor, objective: TemperatureObjective, lm: LabelMatrix | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Non-zero entries ``(rows, cols, values)`` of the empirical distribution, row-major order.

    ``lm`` (optional, the label matrix behind ``counts``) makes it O(N·M) when M < K.
    """
    rows, cls, c = _present_classes(counts, lm)
    c = c.to(torch.float64)
    n = torch.zeros(counts.shape[0], dtype=torch.float64, device=counts.device).index_add_(0, rows, c)
    vals = c / n[rows]
    if objective == "cleanlab-2.9":  # rank of the class among the row's present classes
        per_row = torch.bincount(rows, minlength=counts.shape[0])  # O(nnz), rows are sorted
        start = per_row.cumsum(0) - per_row
        cols = torch.arange(rows.numel(), device=rows.device) - start[rows]
    else:
        cols = cls
    return rows, cols, vals


def empirical_distribution(
    labels: ArrayLike,
    num_classes: int,
    *,
    objective: TemperatureObjective = "class-position",
) -> Tensor:
    """Annotators' empirical label distribution of each example.

    Args:
        labels: ``(N, M)`` class indices, NaN for missing.
        num_classes: ``K``.
        objective: ``"class-position"`` (fraction of votes for class k at position k) or
            ``"cleanlab-2.9"`` (cleanlab 2.9.0's left-aligned counts).

    Returns:
        ``(N, K)`` float64, rows sum to 1.

    Example::

        >>> import torch
        >>> nan = float("nan")
        >>> empirical_distribution(torch.tensor([[2., 2., nan]]), 3).tolist()
        [[0.0, 0.0, 1.0]]
        >>> empirical_distribution(torch.tensor([[2., 2., nan]]), 3, objective="cleanlab-2.9").tolist()
        [[1.0, 0.0, 0.0]]
    """
    check_objective(objective, "objective")
    lm = as_label_matrix(labels, num_classes=num_classes)
    rows, cols, vals = _sparse_empirical(label_counts(lm, num_classes), objective)
    out = torch.zeros(lm.num_examples, num_classes, dtype=torch.float64)
    out[rows, cols] = vals
    return out


class _Objective:
    """Soft cross-entropy ``J(T)`` for one probability matrix and one empirical distribution.

    ``J(T) = -mean_i Σ_k E_ik · log(max(s_ik, 1e-30)) / log K`` with
    ``log s_ik = log p_ik / T - log S_i(T)`` and ``S_i(T) = Σ_k p_ik^(1/T)``. Only ``S_i`` needs
    a pass over the ``(N, K)`` matrix; the rest touches the sparse non-zeros of ``E``, or just
    ``N`` numbers when no ``s_ik`` can fall below the 1e-30 floor.
    """

    _LOG_FLOOR = math.log(_EPS_LOG)

    def __init__(
        self, probs: Tensor, counts: Tensor, objective: TemperatureObjective, lm: LabelMatrix | None = None
    ) -> None:
        rows, cols, vals = _sparse_empirical(counts, objective, lm)
        dev, k = probs.device, probs.shape[1]
        self.rows, self.vals = rows.to(dev), vals.to(device=dev, dtype=probs.dtype)
        flat = self.rows * k + cols.to(dev)
        self.logp_at = torch.log(probs.reshape(-1)[flat])  # -inf where p == 0
        self.n = probs.shape[0]
        # Σ_k E_ik log p_ik per row (for the floor-free fast path), and its smallest log p
        self.min_logp_at = float(self.logp_at.min().item()) if self.logp_at.numel() else 0.0
        self.row_logp = (
            torch.zeros(self.n, dtype=probs.dtype, device=dev).index_add_(
                0, self.rows, self.vals * self.logp_at
            )
            if math.isfinite(self.min_logp_at)
            else None
        )
        self.probs = probs
        self._logp: dict[torch.dtype, Tensor] = {}
        self._buf: dict[torch.dtype, Tensor] = {}
        self.log_k = math.log(k)

    def __call__(self, temperature: float, dtype: torch.dtype | None = None) -> float:
        dtype = dtype or self.probs.dtype
        if dtype not in self._logp:
            self._logp[dtype] = torch.log(self.probs.to(dtype))
            self._buf[dtype] = torch.empty_like(self._logp[dtype])
        buf = self._buf[dtype]
        torch.div(self._logp[dtype], max(temperature, _EPS_T), out=buf)
        return self.from_row_sums(temperature, buf.exp_().sum(1))

    def from_row_sums(self, temperature: float, row_sums: Tensor) -> float:
        """``J(T)`` given ``S_i(T) = Σ_k p_ik^(1/T)``."""
        t = max(temperature, _EPS_T)
        log_s_row = torch.log(row_sums.to(self.probs.dtype))
        # log S_i <= max(0, log K) for any T, so the floor is unreachable when this holds:
        if self.row_logp is not None and self.min_logp_at / t - max(0.0, self.log_k) > self._LOG_FLOOR:
            ce = log_s_row - self.row_logp / t  # rows of E sum to 1
        else:
            log_s = (self.logp_at / t - log_s_row[self.rows]).clamp(min=self._LOG_FLOOR)
            ce = torch.zeros(self.n, dtype=log_s.dtype, device=log_s.device)
            ce.index_add_(0, self.rows, -self.vals * log_s)
        return float((ce / self.log_k).mean().item())

    def row_sums32(self, temperatures: list[float]) -> dict[float, Tensor]:
        """float32 ``S_i(T)`` for several temperatures in one cache-friendly sweep over rows.

        The sweep is memory-bound: each block of rows is read once and reused for every
        temperature while it sits in cache.
        """
        if self.probs.device.type == "cpu":
            return self._row_sums32_cpu(temperatures)
        if torch.float32 not in self._logp:
            self._logp[torch.float32] = torch.log(self.probs.to(torch.float32))
        logp = self._logp[torch.float32]
        n, k = logp.shape
        step = max(1, _SWEEP_ELEMENTS // k)
        sums = {t: torch.empty(n, dtype=torch.float32, device=logp.device) for t in temperatures}
        buf = torch.empty(min(step, n), k, dtype=torch.float32, device=logp.device)
        for start in range(0, n, step):
            block = logp[start : start + step]
            out = buf[: block.shape[0]]
            for t in temperatures:
                torch.div(block, max(t, _EPS_T), out=out)
                torch.sum(out.exp_(), 1, out=sums[t][start : start + step])
        return sums

    def _row_sums32_cpu(self, temperatures: list[float]) -> dict[float, Tensor]:
        """:meth:`row_sums32` on CPU: float32 ``log p`` per block too (numpy's SIMD log/exp)."""
        p = self.probs.detach().numpy()
        n, k = p.shape
        step = max(1, _SWEEP_ELEMENTS // k)
        sums = {t: torch.empty(n, dtype=torch.float32) for t in temperatures}
        logp = np.empty((min(step, n), k), dtype=np.float32)
        buf = np.empty_like(logp)
        buf_t = torch.from_numpy(buf)
        with np.errstate(divide="ignore"), serial_torch():  # log(0) = -inf, whose exp is 0
            for start in range(0, n, step):
                stop = min(start + step, n)
                lp, b, bt = logp[: stop - start], buf[: stop - start], buf_t[: stop - start]
                np.log(p[start:stop], out=lp, dtype=np.float32)
                for t in temperatures:
                    np.divide(lp, np.float32(max(t, _EPS_T)), out=b)
                    np.exp(b, out=b)
                    torch.sum(bt, 1, out=sums[t][start:stop])
        return sums


def _argmin(values: list[float]) -> int:
    """First index of the minimum; a NaN wins (numpy semantics)."""
    for i, v in enumerate(values):
        if math.isnan(v):
            return i
    return min(range(len(values)), key=values.__getitem__)


def _fine_grid(j: int) -> list[float]:
    g = COARSE_GRID
    fine: list[float] = []
    if j > 0:
        step = (g[j] - g[j - 1]) / 4
        fine += [t * step + g[j - 1] for t in range(4)]
    if j < len(g) - 1:
        step = (g[j + 1] - g[j]) / 4
        fine += [t * step + g[j] for t in range(4)] + [g[j + 1]]
    return fine


# float32 screening: |J32 - J64| is ~1e-7 (measured <1e-7 relative, bounded by ~1e-7/log K
# absolute) for K <= _SCREEN_MAX_K, far below the margin; only grid points within the margin
# of the minimum are evaluated in float64, and none if a single point is within it.
_SCREEN_MARGIN = 1e-4
_SCREEN_MAX_K = 1024
_SWEEP_ELEMENTS = 1 << 17  # float32 elements per row block of the sweep (512 KiB)
_SCALE_BLOCK_ELEMENTS = 1 << 15  # float64 elements per row block of temperature scaling (256 KiB)


class _DenseObjective:
    """``J(T)`` evaluated densely in numpy with cleanlab's exact operation order (CPU float64).

    Used only to rank grid points whose float32 values are too close to call, so that even
    exactly flat objectives (e.g. uniform pred_probs) pick the same temperature as cleanlab.
    """

    def __init__(self, probs: Tensor, counts: Tensor, objective: TemperatureObjective) -> None:
        p = probs.detach().numpy()
        self.logp = np.log(p, where=p > 0, out=np.full(p.shape, -np.inf))
        rows, cols, vals = _sparse_empirical(counts, objective)
        self.dist = np.zeros(p.shape)
        self.dist[rows.numpy(), cols.numpy()] = vals.numpy()
        self.log_k = np.log(p.shape[1])

    def __call__(self, temperature: float) -> float:
        x = np.exp(self.logp / max(temperature, _EPS_T))
        s = x / np.sum(x, axis=1, keepdims=True)
        ce = -np.sum(self.dist * np.log(np.clip(s, _EPS_LOG, None)), axis=1) / self.log_k
        return float(np.mean(ce))


def _search(
    probs: Tensor, counts: Tensor, objective: TemperatureObjective, lm: LabelMatrix | None = None
) -> float:
    obj = _Objective(probs, counts, objective, lm)
    exact: dict[float, float] = {}
    approx: dict[float, float] = {}
    cpu64 = probs.dtype == torch.float64 and probs.device.type == "cpu"
    screen = probs.dtype == torch.float64 and probs.shape[1] <= _SCREEN_MAX_K
    dense: list[_DenseObjective] = []

    def exact_value(t: float) -> float:  # grid points shared by both grids are evaluated once
        if t not in exact:
            if cpu64:
                if not dense:
                    dense.append(_DenseObjective(probs, counts, objective))
                exact[t] = dense[0](t)
            else:
                exact[t] = obj(t)
        return exact[t]

    def values(grid: list[float] | tuple[float, ...]) -> list[float]:
        if not screen:
            return [exact_value(t) for t in grid]
        todo = [t for t in grid if t not in approx]
        if todo:
            approx.update({t: obj.from_row_sums(t, v) for t, v in obj.row_sums32(todo).items()})
        rough = [approx[t] for t in grid]
        if any(math.isnan(v) for v in rough):
            return [exact_value(t) for t in grid]
        lo = min(rough)
        cut = lo + _SCREEN_MARGIN * abs(lo) + 1e-6
        near = [r <= cut for r in rough]
        if sum(near) == 1:  # a clear winner: no float64 evaluation needed
            return [0.0 if m else math.inf for m in near]
        return [exact_value(t) if m else math.inf for t, m in zip(grid, near)]

    j = _argmin(values(COARSE_GRID))
    fine = _fine_grid(j)
    return fine[_argmin(values(fine))]


def find_temperature(
    labels: ArrayLike,
    pred_probs: ArrayLike,
    *,
    objective: TemperatureObjective = "class-position",
) -> float:
    """Temperature that best calibrates ``pred_probs`` to the annotators' label distribution.

    Coarse grid ``(0.1, 0.2, 0.5, 0.8, 1, 2, 3, 5, 8)``, then a fine linear grid around the best
    coarse value (as cleanlab: the result lies in ``[0.1, 7.25]``). The objective is the mean over
    all labeled examples of the soft cross-entropy (base ``K``) between the empirical label
    distribution and ``softmax(log(pred_probs) / T)``.

    Args:
        labels: ``(N, M)`` class indices, NaN for missing.
        pred_probs: ``(N, K)`` out-of-sample predicted probabilities (rows sum to 1).
        objective: ``"class-position"`` (default, the paper) or ``"cleanlab-2.9"`` (cleanlab
            2.9.0's left-aligned counts, spec §4.1).

    Returns:
        The temperature ``T*`` (a float).

    Example::

        >>> import torch
        >>> labels = torch.tensor([[0., 0.], [1., 1.], [0., 1.]])
        >>> probs = torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.5, 0.5]])
        >>> find_temperature(labels, probs) < 1.0  # the model is under-confident
        True
    """
    check_objective(objective, "objective")
    probs = as_probabilities(pred_probs, "pred_probs")
    lm = as_label_matrix(labels, num_classes=probs.shape[1], device=probs.device)
    if lm.num_examples != probs.shape[0]:
        raise ValueError(
            f"pred_probs has {probs.shape[0]} rows but labels has {lm.num_examples} rows; row i "
            "of both must describe the same example."
        )
    return _search(probs, label_counts(lm, probs.shape[1]), objective, lm)


def _temperature_scale(probs: Tensor, temperature: float) -> Tensor:
    if probs.device.type == "cpu" and probs.dtype == torch.float64:
        # numpy on CPU: the same ufuncs and summation order as cleanlab, so values are
        # bit-identical (exact ties between different rows, e.g. across ensemble members, and
        # hence tie-breaks, then resolve exactly as in cleanlab). Every step is elementwise or a
        # per-row sum, so it runs on cache-sized row blocks with the same per-row results.
        src = probs.detach().contiguous().numpy()
        a = np.empty_like(src)
        src_rows, rows = src.reshape(-1, src.shape[-1]), a.reshape(-1, a.shape[-1])
        t = max(temperature, _EPS_T)
        step = max(1, _SCALE_BLOCK_ELEMENTS // max(rows.shape[1], 1))
        for start in range(0, rows.shape[0], step):
            b = rows[start : start + step]
            np.maximum(src_rows[start : start + step], _EPS_LOG, out=b)  # = np.clip(p, 1e-30, None)
            b /= np.sum(b, axis=-1, keepdims=True)
            np.log(b, out=b)
            b /= t
            np.exp(b, out=b)
            b /= np.sum(b, axis=-1, keepdims=True)
            b /= np.sum(b, axis=-1, keepdims=True)
        return torch.from_numpy(a)
    p = probs.clamp(min=_EPS_LOG)
    p /= p.sum(-1, keepdim=True)
    p.log_().div_(max(temperature, _EPS_T)).exp_()
    p /= p.sum(-1, keepdim=True)
    p /= p.sum(-1, keepdim=True)
    return p


def temperature_scale(pred_probs: ArrayLike, temperature: float) -> Tensor:
    """Apply a temperature to probabilities: ``softmax(log(max(p, 1e-30)) / T)`` per row.

    Rows are first floored at 1e-30 and renormalised (so even ``T = 1`` maps exact zeros to
    1e-30), as in cleanlab. Works on ``(N, K)`` and ``(P, N, K)`` inputs.

    Args:
        pred_probs: ``(..., K)`` probabilities.
        temperature: ``T > 0``; ``T < 1`` sharpens, ``T > 1`` flattens.

    Returns:
        A new tensor of the same shape (float64 on CPU by default).

    Example::

        >>> import torch
        >>> [round(v, 4) for v in temperature_scale(torch.tensor([[0.8, 0.2]]), 2.0)[0].tolist()]
        [0.6667, 0.3333]
    """
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}.")
    ndim = 3 if getattr(pred_probs, "ndim", 2) == 3 else 2
    probs = as_probabilities(pred_probs, "pred_probs", ndim=ndim, allow_empty=True)
    return _temperature_scale(probs, float(temperature))
