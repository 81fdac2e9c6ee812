"""Simulated noisy annotators that answer from the true labels.

Every annotator ``a`` gives example ``i`` one fixed label ``label(i, a)`` no matter when it is
asked (as the paper's "extra labels" matrices): either read from a label pool drawn up front (the
paper's generator, or a pool you pass), or derived from a hash of ``(seed, i, a)`` and the
annotator's confusion matrix. Which annotator answers a request is also a hash of
``(seed, example_id)``: each example has a fixed random order of the roster, and a request gets
the first annotator in that order who has not labeled the example yet. Answers therefore depend
on ``(seed, request)`` only, never on call order or batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from activelab_lightning.datasets.noise import (
    class_prior_of,
    generate_noise_matrix_from_trace,
    generate_noisy_labels,
)
from activelab_lightning.oracles.base import BaseOracle, stable_uniform
from activelab_lightning.records import Annotation, LabelRequest, OracleResponse

__all__ = ["SimulatedOracle"]

_PURPOSE_ORDER = 1
_PURPOSE_LABEL = 2
_PAPER_TRACE_FRACTION = 0.85
_PAPER_NUM_ANNOTATORS = 30


def _labels_tensor(value: object, name: str) -> torch.Tensor:
    t = value if torch.is_tensor(value) else torch.as_tensor(np.asarray(value))
    if t.dtype.is_floating_point:
        if not torch.isfinite(t).all() or not torch.equal(t, t.round()):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
    elif t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    return t.to(torch.int64)


def _smallest_int_dtype(num_classes: int) -> torch.dtype:
    return torch.uint8 if num_classes <= 255 else (torch.int16 if num_classes <= 32767 else torch.int32)


class SimulatedOracle(BaseOracle):
    """A roster of noisy simulated annotators.

    Args:
        true_labels: ``(N,)`` true class of every example id ``0 .. N-1``.
        annotators: The roster. One of

            * ``int`` A — A annotators sharing one noise matrix from the paper's generator
              (trace ``noise_trace``, default ``0.85 * K``), labels pre-drawn with exact flip counts;
            * ``"paper"`` — the same with 30 annotators;
            * a sequence / 1-D tensor of A accuracies in ``[0, 1]`` — annotator ``a`` is right with
              probability ``accuracies[a]``, otherwise uniform over the other classes;
            * an ``(A, K, K)`` tensor of confusion matrices ``C[a, true, given]``, rows summing to 1.

            Default: 30 (``"paper"``). Must be left ``None`` when ``pool_labels`` is given.
        noise_trace: Trace (sum of the diagonal, e.g. ``0.85 * K``) of the shared noise matrix; only
            with an ``int`` / ``"paper"`` roster.
        class_prior: ``(K,)`` prior for the noise matrix's validity check (default: the class
            frequencies of ``true_labels``).
        pool_labels: ``(N, A)`` labels every annotator gives every example, drawn elsewhere (e.g. by
            :func:`activelab_lightning.datasets.make_paper_setup`).
        num_classes: K (default: from the confusion matrices, else ``max(true_labels) + 1``).
        seed: Seed of every random choice.
        annotator_prefix: Annotator ids are ``f"{prefix}{a:02d}"``.
        annotator_ids: Explicit annotator ids (length A) instead of the prefix.
        name: Oracle name (``Annotation.source == f"oracle:{name}"``).

    Attributes:
        annotator_ids: ``tuple[str, ...]`` of length A.
        noise_matrix: ``(K, K)`` float64 ``T[given, true]`` for the paper generator, else ``None``.
        label_pool: ``(N, A)`` int64 labels when pre-drawn or given, else ``None``.

    Example::

        >>> y = torch.tensor([0, 1, 2, 1, 0])
        >>> oracle = SimulatedOracle(y, [1.0, 1.0], seed=0)
        >>> resp = oracle.request([LabelRequest(example_id=2, score=0.1, kind="new", round=0)])
        >>> resp.annotations[0].label, resp.annotations[0].annotator_id in oracle.annotator_ids
        (2, True)
    """

    def __init__(
        self,
        true_labels: torch.Tensor | np.ndarray | Sequence[int],
        annotators: int | Literal["paper"] | Sequence[float] | torch.Tensor | np.ndarray | None = None,
        *,
        noise_trace: float | None = None,
        class_prior: torch.Tensor | np.ndarray | Sequence[float] | None = None,
        pool_labels: torch.Tensor | np.ndarray | None = None,
        num_classes: int | None = None,
        seed: int = 0,
        annotator_prefix: str = "sim-",
        annotator_ids: Sequence[str] | None = None,
        name: str = "simulated",
    ) -> None:
        y = _labels_tensor(true_labels, "true_labels")
        if y.ndim != 1 or y.numel() == 0:
            raise ValueError(f"true_labels must be a non-empty 1-D (N,) array, got shape {tuple(y.shape)}")
        if int(y.min()) < 0:
            raise ValueError(f"true_labels must be class indices >= 0, got {int(y.min())}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = int(seed)
        self._true = y
        confusion: torch.Tensor | None = None
        self.noise_matrix: torch.Tensor | None = None
        self._pool: torch.Tensor | None = None

        if pool_labels is not None:
            if annotators is not None or noise_trace is not None:
                raise ValueError(
                    "pass either pool_labels or annotators/noise_trace, not both: pool_labels already "
                    "fixes every annotator's labels"
                )
            pool = _labels_tensor(pool_labels, "pool_labels")
            if pool.ndim != 2 or pool.shape[0] != y.numel() or pool.shape[1] < 1:
                raise ValueError(
                    f"pool_labels must have shape (N, A) = ({y.numel()}, A >= 1) to match "
                    f"true_labels, got {tuple(pool.shape)}"
                )
            K = self._num_classes(num_classes, y, int(pool.max()) + 1)
            if int(pool.min()) < 0:
                raise ValueError(
                    f"pool_labels must hold class indices in 0 .. {K - 1}, got {int(pool.min())}"
                )
            self._pool = pool.to(_smallest_int_dtype(K))
            A = pool.shape[1]
        elif (
            isinstance(annotators, str)
            or annotators is None
            or (isinstance(annotators, (int, np.integer)) and not isinstance(annotators, bool))
        ):
            if isinstance(annotators, str) and annotators != "paper":
                raise ValueError(
                    f"annotators must be an int, 'paper', accuracies or confusion matrices, got "
                    f"{annotators!r}"
                )
            A = _PAPER_NUM_ANNOTATORS if annotators in (None, "paper") else int(annotators)
            if A < 1:
                raise ValueError(f"annotators must be >= 1 when it is a count, got {A}")
            K = self._num_classes(num_classes, y)
            trace = _PAPER_TRACE_FRACTION * K if noise_trace is None else float(noise_trace)
            prior = class_prior_of(y, K) if class_prior is None else class_prior
            g = torch.Generator().manual_seed(self.seed)
            self.noise_matrix = generate_noise_matrix_from_trace(K, trace, class_prior=prior, generator=g)
            self._pool = generate_noisy_labels(y, self.noise_matrix, num_annotators=A, generator=g).to(
                _smallest_int_dtype(K)
            )
        else:
            if noise_trace is not None:
                raise ValueError(
                    "noise_trace only applies to an int or 'paper' roster; with accuracies or "
                    "confusion matrices leave it None"
                )
            try:
                arr = (
                    annotators
                    if torch.is_tensor(annotators)
                    else torch.as_tensor(np.asarray(annotators, dtype=np.float64))
                )
            except (TypeError, ValueError):
                raise TypeError(
                    f"annotators must be an int, 'paper', a sequence of accuracies or an (A, K, K) "
                    f"array of confusion matrices, got {type(annotators).__name__}"
                ) from None
            arr = arr.to(torch.float64)
            if arr.ndim == 1:
                K = self._num_classes(num_classes, y)
                confusion = self._confusion_from_accuracies(arr, K)
            elif arr.ndim == 3:
                K = self._num_classes(num_classes, y, arr.shape[1])
                confusion = self._check_confusion(arr, K)
            else:
                raise ValueError(
                    f"annotators as an array must be 1-D accuracies (A,) or confusion matrices "
                    f"(A, K, K), got shape {tuple(arr.shape)}"
                )
            A = confusion.shape[0]
            self._cdf = confusion.cumsum(-1)

        self._confusion = confusion
        if annotator_ids is not None:
            ids = tuple(str(a) for a in annotator_ids)
            if len(ids) != A or len(set(ids)) != A:
                raise ValueError(
                    f"annotator_ids must be {A} distinct ids (one per annotator), got {len(ids)} "
                    f"with {len(set(ids))} distinct"
                )
        else:
            width = max(2, len(str(A - 1)))
            ids = tuple(f"{annotator_prefix}{a:0{width}d}" for a in range(A))
        self.annotator_ids: tuple[str, ...] = ids
        self._index = {a: i for i, a in enumerate(ids)}
        super().__init__(name, num_examples=y.numel(), num_classes=K)

    # --- construction helpers -------------------------------------------------------------------

    @staticmethod
    def _num_classes(num_classes: int | None, y: torch.Tensor, implied: int | None = None) -> int:
        top = int(y.max()) + 1
        if num_classes is None:
            K = max(top, implied or 0, 2)
        else:
            if (
                isinstance(num_classes, bool)
                or not isinstance(num_classes, (int, np.integer))
                or num_classes < 2
            ):
                raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
            K = int(num_classes)
            if implied is not None and implied > K:
                raise ValueError(
                    f"num_classes={K} but the annotators' labels imply at least {implied} classes"
                )
        if top > K:
            raise ValueError(
                f"true_labels holds class {top - 1}, out of range for {K} classes; pass "
                f"num_classes >= {top} or fix the labels"
            )
        return K

    @staticmethod
    def _confusion_from_accuracies(acc: torch.Tensor, K: int) -> torch.Tensor:
        if acc.numel() == 0:
            raise ValueError("annotators is an empty list of accuracies; give at least one annotator")
        if not torch.isfinite(acc).all() or (acc < 0).any() or (acc > 1).any():
            raise ValueError(f"accuracies must be in [0, 1], got {acc.tolist()}")
        off = (1.0 - acc) / (K - 1)
        conf = off[:, None, None].expand(-1, K, K).clone()
        conf.diagonal(dim1=1, dim2=2).copy_(acc[:, None].expand(-1, K))
        return conf

    @staticmethod
    def _check_confusion(conf: torch.Tensor, K: int) -> torch.Tensor:
        if conf.shape[1:] != (K, K) or conf.shape[0] < 1:
            raise ValueError(
                f"confusion matrices must have shape (A, K, K) with K={K}, got {tuple(conf.shape)}"
            )
        if not torch.isfinite(conf).all() or (conf < 0).any():
            raise ValueError("confusion matrices must hold finite probabilities >= 0")
        sums = conf.sum(-1)
        bad = (sums - 1).abs() > 1e-6
        if bad.any():
            a, k = (int(v) for v in torch.nonzero(bad)[0])
            raise ValueError(
                f"confusion matrix rows must sum to 1 (C[a, true, given] = P(given | true)); annotator {a}, true "
                f"class {k} sums to {float(sums[a, k]):.6g}; normalise the rows (or transpose a T[given, true] matrix)"
            )
        return conf / sums[..., None]

    # --- reporting ------------------------------------------------------------------------------

    @property
    def num_annotators(self) -> int:
        """A, the size of the roster."""
        return len(self.annotator_ids)

    @property
    def true_labels(self) -> torch.Tensor:
        """``(N,)`` int64 true labels (a copy)."""
        return self._true.clone()

    @property
    def label_pool(self) -> torch.Tensor | None:
        """``(N, A)`` int64 pre-drawn labels, or ``None`` when labels are hash-derived."""
        return None if self._pool is None else self._pool.to(torch.int64)

    @property
    def confusion_matrices(self) -> torch.Tensor:
        """``(A, K, K)`` float64 ``C[a, true, given]`` (rows sum to 1).

        Hash-derived annotators: the matrices they sample from. Pre-drawn pools: the empirical
        matrices of the pool against the true labels (rows of absent classes are uniform).
        """
        if self._confusion is not None:
            return self._confusion.clone()
        K = self.num_classes
        assert self._pool is not None and K is not None
        pool = self._pool.to(torch.int64)
        A = pool.shape[1]
        flat = (torch.arange(A)[None, :] * K * K + self._true[:, None] * K + pool).reshape(-1)
        counts = torch.bincount(flat, minlength=A * K * K).reshape(A, K, K).to(torch.float64)
        rows = counts.sum(-1, keepdim=True)
        return torch.where(rows > 0, counts / rows.clamp_min(1), torch.full_like(counts, 1.0 / K))

    @property
    def accuracies(self) -> torch.Tensor:
        """``(A,)`` float64 accuracy of each annotator over all N examples.

        Exact for pre-drawn pools; for hash-derived annotators the expectation
        ``sum_k prior_k * C[a, k, k]`` under the class frequencies of the true labels.
        """
        if self._pool is not None:
            return (self._pool.to(torch.int64) == self._true[:, None]).to(torch.float64).mean(0)
        assert self._confusion is not None and self.num_classes is not None
        prior = class_prior_of(self._true, self.num_classes)
        return (self._confusion.diagonal(dim1=1, dim2=2) * prior).sum(-1)

    def label_of(
        self, example_ids: torch.Tensor | Sequence[int], annotator_ids: Sequence[str] | str
    ) -> torch.Tensor:
        """The label each annotator gives each example (whether or not it was ever requested).

        Args:
            example_ids: ``(B,)`` example ids.
            annotator_ids: ``(B,)`` annotator ids (one per example) or one id for all.

        Returns:
            ``(B,)`` int64 labels.

        Example::

            >>> o = SimulatedOracle([0, 1], [1.0])
            >>> o.label_of([0, 1], "sim-00").tolist()
            [0, 1]
        """
        ex = torch.as_tensor(np.asarray(example_ids, dtype=np.int64)).reshape(-1)
        if ex.numel() and (int(ex.min()) < 0 or int(ex.max()) >= self._true.numel()):
            raise ValueError(
                f"example ids must be in 0 .. {self._true.numel() - 1}, got {ex.tolist()[:5]}..."
            )
        names = [annotator_ids] * ex.numel() if isinstance(annotator_ids, str) else list(annotator_ids)
        if len(names) != ex.numel():
            raise ValueError(f"annotator_ids must have one id per example ({ex.numel()}), got {len(names)}")
        unknown = [a for a in names if a not in self._index]
        if unknown:
            raise ValueError(
                f"unknown annotator id {unknown[0]!r}; this oracle's roster is "
                f"{self.annotator_ids[0]!r} .. {self.annotator_ids[-1]!r}"
            )
        ann = torch.tensor([self._index[a] for a in names], dtype=torch.int64)
        return self._labels(ex, ann)

    # --- answering ------------------------------------------------------------------------------

    def _labels(self, ex: torch.Tensor, ann: torch.Tensor) -> torch.Tensor:
        if self._pool is not None:
            return self._pool[ex, ann].to(torch.int64)
        u = torch.from_numpy(stable_uniform(self.seed, _PURPOSE_LABEL, ex.numpy(), ann.numpy()))
        cdf = self._cdf[ann, self._true[ex]]  # (B, K)
        label = (cdf <= u[:, None]).sum(-1)
        return label.clamp_max(cdf.shape[-1] - 1)

    def _answer(self, requests: tuple[LabelRequest, ...]) -> OracleResponse:
        B, A = len(requests), self.num_annotators
        ex = np.fromiter((r.example_id for r in requests), dtype=np.int64, count=B)
        used_rows: list[int] = []
        used_cols: list[int] = []
        for b, r in enumerate(requests):
            for name in r.existing_annotators:
                a = self._index.get(name)
                if a is not None:
                    used_rows.append(b)
                    used_cols.append(a)
        priority = stable_uniform(self.seed, _PURPOSE_ORDER, ex[:, None], np.arange(A)[None, :])
        priority[used_rows, used_cols] = np.inf
        choice = priority.argmin(1)
        ok = np.isfinite(priority[np.arange(B), choice])
        ex_t = torch.from_numpy(ex[ok])
        ann_t = torch.from_numpy(choice[ok].astype(np.int64))
        labels = self._labels(ex_t, ann_t).tolist()
        answered = [r for r, k in zip(requests, ok) if k]
        annotations = tuple(
            Annotation(
                example_id=r.example_id,
                annotator_id=self.annotator_ids[a],
                label=int(lab),
                round=r.round,
                source=self.source,
                request_id=r.request_id,
            )
            for r, a, lab in zip(answered, ann_t.tolist(), labels)
        )
        exhausted = tuple(r for r, k in zip(requests, ok) if not k)
        return OracleResponse(annotations=annotations, exhausted=exhausted)

    def __repr__(self) -> str:
        return (
            f"SimulatedOracle(name={self.name!r}, num_examples={self.num_examples}, "
            f"num_annotators={self.num_annotators}, num_classes={self.num_classes}, seed={self.seed})"
        )
