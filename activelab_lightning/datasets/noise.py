"""Synthetic label noise: class-conditional noise matrices and noisy annotators.

Conventions (the same as the ActiveLab paper's benchmarks): a *noise matrix* ``T`` has shape
``(K, K)`` with ``T[given, true] = P(given label | true label)``, so every **column** sums to 1
and the trace is the sum of the per-class probabilities of a correct label.

This is an independent implementation of the paper's generator:

* :func:`generate_noise_matrix_from_trace` draws the per-class noise masses ``1 - T[k, k]`` as a
  uniform point of the simplex scaled to ``K - trace`` (so the trace is exact), spreads each
  column's mass over the other classes uniformly at random, and redraws until the matrix is
  *valid* for the class prior (see :func:`noise_matrix_is_valid`).
* :func:`generate_noisy_labels` flips **exactly** ``floor(T[j, k] * n_k)`` of the ``n_k`` examples
  of true class ``k`` to class ``j`` (chosen at random), as the paper's generator does, so every
  simulated annotator realises the noise matrix almost exactly.

Random numbers come from a ``torch.Generator``; the same seed gives the same matrices and labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "class_prior_of",
    "generate_noise_matrix_from_trace",
    "generate_noisy_labels",
    "noise_matrix_is_valid",
]

_TOL = 1e-6


def _as_float64(value: object, name: str) -> torch.Tensor:
    try:
        return torch.as_tensor(
            np.asarray(value, dtype=np.float64) if not torch.is_tensor(value) else value, dtype=torch.float64
        )
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}: {err}") from None


def _as_labels(value: object, name: str) -> torch.Tensor:
    t = torch.as_tensor(value) if torch.is_tensor(value) else torch.as_tensor(np.asarray(value))
    if t.dtype.is_floating_point:
        if not torch.equal(t, t.round()):
            raise ValueError(
                f"{name} must hold integer class indices, got non-integer values such as "
                f"{t[t != t.round()][0].item()!r}"
            )
    elif t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    t = t.to(torch.int64)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(t.shape)}")
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name} must hold class indices >= 0, got {int(t.min())}")
    return t


def _generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


def class_prior_of(true_labels: Sequence[int] | torch.Tensor | np.ndarray, num_classes: int) -> torch.Tensor:
    """Fraction of examples in each class.

    Args:
        true_labels: ``(N,)`` class indices in ``0 .. num_classes-1``.
        num_classes: ``K``.

    Returns:
        ``(K,)`` float64 tensor summing to 1.

    Example::

        >>> class_prior_of([0, 0, 1, 2], 3).tolist()
        [0.5, 0.25, 0.25]
    """
    y = _as_labels(true_labels, "true_labels")
    if y.numel() == 0:
        raise ValueError("true_labels is empty; the class prior needs at least one label")
    if int(y.max()) >= num_classes:
        raise ValueError(
            f"true_labels holds class {int(y.max())} but num_classes={num_classes}; "
            f"pass num_classes > {int(y.max())}"
        )
    return torch.bincount(y, minlength=num_classes).to(torch.float64) / y.numel()


def _check_noise_matrix(noise_matrix: object) -> torch.Tensor:
    nm = _as_float64(noise_matrix, "noise_matrix")
    if nm.ndim != 2 or nm.shape[0] != nm.shape[1] or nm.shape[0] < 2:
        raise ValueError(
            f"noise_matrix must be a square (K, K) matrix with K >= 2, got shape {tuple(nm.shape)}"
        )
    if not torch.isfinite(nm).all() or (nm < -_TOL).any():
        raise ValueError("noise_matrix must hold finite probabilities >= 0")
    col = nm.sum(0)
    if ((col - 1).abs() > _TOL).any():
        raise ValueError(
            f"noise_matrix columns must sum to 1 (T[given, true] = P(given | true)), got column sums "
            f"{[round(v, 6) for v in col.tolist()]}; if your rows sum to 1, pass the transpose"
        )
    return nm.clamp_min(0.0)


def _check_prior(class_prior: object, num_classes: int) -> torch.Tensor:
    py = _as_float64(class_prior, "class_prior")
    if py.shape != (num_classes,):
        raise ValueError(f"class_prior must have shape ({num_classes},), got {tuple(py.shape)}")
    if (py < 0).any() or abs(float(py.sum()) - 1.0) > _TOL:
        raise ValueError(f"class_prior must be >= 0 and sum to 1, got {py.tolist()}")
    return py


def noise_matrix_is_valid(
    noise_matrix: torch.Tensor | np.ndarray, class_prior: torch.Tensor | np.ndarray
) -> bool:
    """Whether a noise matrix still lets a learner recover the true classes.

    A matrix is valid when, for every class ``k``, a label ``k`` is more likely given true class
    ``k`` than overall: ``P(given=k | true=k) > P(given=k) = sum_j T[k, j] * prior[j]``.

    Args:
        noise_matrix: ``(K, K)`` with ``T[given, true]``, columns summing to 1.
        class_prior: ``(K,)`` fraction of examples in each true class.

    Returns:
        ``True`` if valid.

    Example::

        >>> noise_matrix_is_valid(torch.tensor([[0.9, 0.2], [0.1, 0.8]]), torch.tensor([0.5, 0.5]))
        True
    """
    nm = _check_noise_matrix(noise_matrix)
    py = _check_prior(class_prior, nm.shape[0])
    p_given = nm @ py
    return bool((p_given < nm.diagonal()).all())


def _simplex(n: int, total: float, generator: torch.Generator) -> torch.Tensor:
    """A uniform point of the simplex ``{x >= 0, sum x = total}`` in ``n`` dimensions."""
    e = -torch.log(torch.rand(n, generator=generator, dtype=torch.float64).clamp_min(1e-300))
    return total * e / e.sum()


def generate_noise_matrix_from_trace(
    num_classes: int,
    trace: float,
    *,
    class_prior: torch.Tensor | np.ndarray | Sequence[float] | None = None,
    valid: bool = True,
    min_trace_prob: float = 1e-5,
    max_iter: int = 10_000,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw a random class-conditional noise matrix with a given trace.

    Args:
        num_classes: ``K >= 2``.
        trace: Sum of the diagonal, in ``(1, K]`` (``(0, K]`` when ``valid=False``); e.g. ``0.85 * K``
            for annotators who are right 85 % of the time on average over classes.
        class_prior: ``(K,)`` fraction of each true class, used by the validity check
            (default: uniform). The paper passes the training split's class prior.
        valid: Redraw until :func:`noise_matrix_is_valid` holds.
        min_trace_prob: Smallest allowed diagonal entry.
        max_iter: Draws to try before giving up.
        seed: Seed of a fresh generator (ignored when ``generator`` is given; default 0).
        generator: Source of randomness.

    Returns:
        ``(K, K)`` float64 tensor ``T[given, true]``, columns summing to 1, ``trace(T) == trace``.

    Raises:
        ValueError: for an impossible trace or bad prior; RuntimeError if no valid matrix was found.

    Example::

        >>> T = generate_noise_matrix_from_trace(4, 0.85 * 4, class_prior=[0.4, 0.3, 0.1, 0.2], seed=123)
        >>> round(float(T.trace()), 6), T.sum(0).allclose(torch.ones(4, dtype=torch.float64))
        (3.4, True)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    K = int(num_classes)
    trace = float(trace)
    low = 1.0 if valid else 0.0
    if not (low < trace <= K):
        hint = (
            f" (it is the sum of the diagonal: e.g. 0.85 * K = {0.85 * K:g} for K={K})" if trace <= 1 else ""
        )
        raise ValueError(
            f"trace must be in ({low:g}, {K}] for num_classes={K} and valid={valid}, got {trace}{hint}"
        )
    if not (0.0 <= min_trace_prob <= trace / K):
        raise ValueError(f"min_trace_prob must be in [0, trace / K = {trace / K:g}], got {min_trace_prob}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    py = (
        torch.full((K,), 1.0 / K, dtype=torch.float64)
        if class_prior is None
        else _check_prior(class_prior, K)
    )
    g = _generator(generator, seed)
    noise_total = K - trace
    off = ~torch.eye(K, dtype=torch.bool)
    for _ in range(max_iter):
        mass = _simplex(K, noise_total, g)  # 1 - diagonal
        if (mass > 1.0 - min_trace_prob + 1e-12).any():
            continue
        nm = torch.zeros(K, K, dtype=torch.float64)
        nm.diagonal().copy_(1.0 - mass)
        spread = -torch.log(torch.rand(K, K - 1, generator=g, dtype=torch.float64).clamp_min(1e-300))
        spread = spread / spread.sum(1, keepdim=True) * mass[:, None]  # row k = column k's off-diagonal
        nm.T[off] = spread.reshape(-1)
        if not valid or noise_matrix_is_valid(nm, py):
            return nm
    raise RuntimeError(
        f"no valid noise matrix with trace {trace} for class_prior {py.tolist()} in {max_iter} draws; "
        "raise the trace, raise max_iter, or pass valid=False"
    )


def generate_noisy_labels(
    true_labels: torch.Tensor | np.ndarray | Sequence[int],
    noise_matrix: torch.Tensor | np.ndarray,
    *,
    num_annotators: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noisy labels that realise a noise matrix (almost) exactly.

    For each true class ``k`` with ``n_k`` examples and each other class ``j``, exactly
    ``floor(T[j, k] * n_k)`` examples of class ``k``, chosen at random, get label ``j``; the rest keep
    label ``k``. Each annotator (column) is drawn independently.

    Args:
        true_labels: ``(N,)`` class indices.
        noise_matrix: ``(K, K)`` with ``T[given, true]`` (columns sum to 1).
        num_annotators: If given, draw that many independent annotators.
        seed: Seed of a fresh generator (ignored when ``generator`` is given; default 0).
        generator: Source of randomness.

    Returns:
        ``(N,)`` int64 labels, or ``(N, num_annotators)`` when ``num_annotators`` is given.

    Example::

        >>> T = torch.tensor([[0.8, 0.0], [0.2, 1.0]], dtype=torch.float64)
        >>> labels = generate_noisy_labels(torch.tensor([0] * 10 + [1] * 10), T, seed=0)
        >>> int((labels[:10] == 1).sum()), int((labels[10:] == 0).sum())
        (2, 0)
    """
    y = _as_labels(true_labels, "true_labels")
    nm = _check_noise_matrix(noise_matrix)
    K = nm.shape[0]
    if y.numel() and int(y.max()) >= K:
        raise ValueError(f"true_labels holds class {int(y.max())} but noise_matrix is {K} x {K}")
    if num_annotators is not None and (isinstance(num_annotators, bool) or int(num_annotators) < 1):
        raise ValueError(f"num_annotators must be a positive int or None, got {num_annotators!r}")
    A = 1 if num_annotators is None else int(num_annotators)
    g = _generator(generator, seed)
    out = y.unsqueeze(0).repeat(A, 1)  # (A, N)
    for k in range(K):
        idx = torch.nonzero(y == k).squeeze(1)
        n_k = idx.numel()
        if n_k == 0:
            continue
        counts = torch.floor(nm[:, k] * n_k + 1e-9).to(torch.int64)
        counts[k] = 0
        if int(counts.sum()) > n_k:  # cannot happen for a column summing to 1; guard rounding
            continue
        template = torch.full((n_k,), k, dtype=torch.int64)
        template[: int(counts.sum())] = torch.repeat_interleave(torch.arange(K), counts)
        order = torch.argsort(torch.rand(A, n_k, generator=g), dim=1)
        out.scatter_(1, idx[order], template.expand(A, n_k).contiguous())
    return out[0] if num_annotators is None else out.T.contiguous()
