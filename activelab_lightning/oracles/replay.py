"""Replay held-back real annotations, or sample them from per-example label distributions.

Two sources:

* a **long table** ``(example, annotator, label)`` of real annotations (e.g. Snow et al. 2008 RTE,
  or the "extra labels" of a benchmark): a request gets the label of one of the example's
  annotators who has not labeled it yet, chosen by a hash of ``(seed, example, annotator id)``;
  exhausted when the example has no such annotator left;
* **per-example label distributions** ``(N, K)`` (probabilities, or counts such as CIFAR-10H):
  the ``k``-th label of an example comes from the fresh annotator ``f"{prefix}{k}"`` and is a
  deterministic draw for ``(seed, example, k)``.

Either way the answer to a request depends only on ``(seed, request)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from activelab_lightning.oracles.base import BaseOracle, stable_uniform, string_keys
from activelab_lightning.records import Annotation, LabelRequest, OracleResponse
from activelab_lightning.tables import ClassNames, LabelError, column_key, parse_int, parse_label, read_table

if TYPE_CHECKING:
    from activelab_lightning.store import AnnotationStore

__all__ = ["ReplayOracle"]

_PURPOSE_TABLE = 11
_PURPOSE_DRAW = 12
_PURPOSE_UNIT = 13


class _TableSource:
    """Held-back annotations sorted by example; vectorized selection per batch of requests."""

    def __init__(self, example_ids: np.ndarray, annotator_ids: Sequence[str], labels: np.ndarray) -> None:
        names, ann = np.unique(np.asarray(annotator_ids, dtype=object).astype(str), return_inverse=True)
        order = np.lexsort((ann, example_ids))
        ex, ann, lab = example_ids[order], ann[order].astype(np.int64), labels[order]
        same = (ex[1:] == ex[:-1]) & (ann[1:] == ann[:-1])
        conflict = same & (lab[1:] != lab[:-1])
        if conflict.any():
            i = int(np.nonzero(conflict)[0][0])
            raise ValueError(
                f"annotator {str(names[ann[i]])!r} gave example {int(ex[i])} two different labels "
                f"({int(lab[i])} and {int(lab[i + 1])}); keep one row per (example, annotator)"
            )
        keep = np.concatenate([[True], ~same])
        self.ex, self.ann, self.lab = ex[keep], ann[keep], lab[keep]
        self.names: tuple[str, ...] = tuple(str(n) for n in names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.keys = string_keys(self.names)

    def answer(self, seed: int, requests: tuple[LabelRequest, ...]) -> list[tuple[str, int] | None]:
        B, n_ann = len(requests), len(self.names)
        ex = np.fromiter((r.example_id for r in requests), dtype=np.int64, count=B)
        start = np.searchsorted(self.ex, ex, side="left")
        counts = np.searchsorted(self.ex, ex, side="right") - start
        total = int(counts.sum())
        seg_start = np.cumsum(counts) - counts
        req_of = np.repeat(np.arange(B), counts)
        rows = np.arange(total) - np.repeat(seg_start, counts) + np.repeat(start, counts)
        ann = self.ann[rows]
        used = [
            b * n_ann + self.index[a]
            for b, r in enumerate(requests)
            for a in r.existing_annotators
            if a in self.index
        ]
        priority = stable_uniform(seed, _PURPOSE_TABLE, ex[req_of], self.keys[ann])
        priority[np.isin(req_of * n_ann + ann, np.asarray(used, dtype=np.int64))] = np.inf
        order = np.lexsort((priority, req_of))
        out: list[tuple[str, int] | None] = [None] * B
        for b in np.nonzero(counts > 0)[0]:
            pos = order[seg_start[b]]
            if np.isfinite(priority[pos]):
                out[b] = (self.names[ann[pos]], int(self.lab[rows[pos]]))
        return out

    def remaining(
        self, num_examples: int, labeled: np.ndarray, labels: np.ndarray, names: Sequence[str]
    ) -> np.ndarray:
        """``(num_examples,)`` held-back labels per example not yet given by their annotator.

        ``labels`` is the store's ``(n, M)`` label matrix of the ``labeled`` ids (NaN = missing),
        ``names`` its column annotators.
        """
        n_ann = len(self.names)
        col = np.asarray([self.index.get(str(a), -1) for a in names], dtype=np.int64)
        rows, cols = np.nonzero(~np.isnan(labels)) if labels.size else (np.zeros(0, int), np.zeros(0, int))
        known = col[cols] >= 0
        used = labeled[rows[known]] * n_ann + col[cols[known]]
        free = ~np.isin(self.ex * n_ann + self.ann, used)
        return np.bincount(self.ex[free], minlength=num_examples)[:num_examples]


class _DistributionSource:
    """Labels drawn from per-example distributions, one fresh annotator id per draw index."""

    def __init__(self, dist: torch.Tensor, cap: torch.Tensor, replacement: bool, prefix: str) -> None:
        self.dist = dist
        self.cdf = dist.cumsum(-1) / dist.sum(-1, keepdim=True).clamp_min(1e-300)
        self.cap = cap  # (N,) float64, inf = unlimited
        self.replacement = replacement
        self.prefix = prefix

    def _draw_index(self, existing: tuple[str, ...]) -> int:
        taken: set[int] = set()
        p = self.prefix
        for a in existing:
            if a.startswith(p) and a[len(p) :].isdigit():
                taken.add(int(a[len(p) :]))
        k = 0
        while k in taken:
            k += 1
        return k

    def answer(self, seed: int, requests: tuple[LabelRequest, ...]) -> list[tuple[str, int] | None]:
        B = len(requests)
        ex = torch.tensor([r.example_id for r in requests], dtype=torch.int64)
        k = torch.tensor([self._draw_index(r.existing_annotators) for r in requests], dtype=torch.int64)
        ok = k.to(torch.float64) < self.cap[ex]
        labels = torch.zeros(B, dtype=torch.int64)
        if ok.any():
            e, kk = ex[ok], k[ok]
            if self.replacement:
                u = torch.from_numpy(stable_uniform(seed, _PURPOSE_DRAW, e.numpy(), kk.numpy()))
                lab = (self.cdf[e] <= u[:, None]).sum(-1).clamp_max(self.dist.shape[1] - 1)
            else:
                counts = self.dist[e].round().to(torch.int64)  # (b, K)
                n = counts.sum(-1)
                width = int(n.max())
                unit = torch.arange(width)
                pri = torch.from_numpy(
                    stable_uniform(seed, _PURPOSE_UNIT, e.numpy()[:, None], unit.numpy()[None, :])
                )
                pri[unit[None, :] >= n[:, None]] = float("inf")
                picked = pri.argsort(dim=1).gather(1, kk[:, None])  # unit of rank k
                lab = (counts.cumsum(-1) <= picked).sum(-1)
            labels[ok] = lab
        return [(f"{self.prefix}{int(k[b])}", int(labels[b])) if bool(ok[b]) else None for b in range(B)]


class ReplayOracle(BaseOracle):
    """Serve held-back real annotations from a long table ``(example, annotator, label)``.

    Args:
        example_ids: ``(T,)`` example id of each annotation.
        annotator_ids: ``(T,)`` annotator id (str) of each annotation.
        labels: ``(T,)`` class index of each annotation.
        seed: Seed of the choice among an example's remaining annotators.
        num_examples: Size of the example id space, if known (requests beyond it are errors).
        num_classes: K, if known (default ``max(labels) + 1``).
        name: Oracle name (``Annotation.source == f"oracle:{name}"``).

    Identical repeated rows are merged; one annotator giving one example two different labels is an
    error. Requests for examples absent from the table come back as ``exhausted``.

    Example::

        >>> oracle = ReplayOracle([0, 0, 1], ["ann", "bob", "ann"], [2, 1, 0])
        >>> r = LabelRequest(example_id=0, score=0.2, kind="relabel", round=3, existing_annotators=("ann",))
        >>> a = oracle.request([r]).annotations[0]
        >>> a.annotator_id, a.label
        ('bob', 1)
    """

    def __init__(
        self,
        example_ids: Sequence[int] | np.ndarray | torch.Tensor,
        annotator_ids: Sequence[str],
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        *,
        seed: int = 0,
        num_examples: int | None = None,
        num_classes: int | None = None,
        name: str = "replay",
    ) -> None:
        ex = self._int_array(example_ids, "example_ids")
        lab = self._int_array(labels, "labels")
        ann = list(annotator_ids)
        if not (len(ex) == len(ann) == len(lab)):
            raise ValueError(
                f"example_ids, annotator_ids and labels must have the same length, got "
                f"{len(ex)}, {len(ann)}, {len(lab)}"
            )
        if len(ex) == 0:
            raise ValueError(
                "the annotation table is empty; give at least one (example, annotator, label) row"
            )
        if ex.min() < 0 or (num_examples is not None and ex.max() >= num_examples):
            bad = int(ex.min()) if ex.min() < 0 else int(ex.max())
            raise ValueError(
                f"example id {bad} in the table is out of range 0 .. "
                f"{'N-1' if num_examples is None else num_examples - 1}"
            )
        if lab.min() < 0 or (num_classes is not None and lab.max() >= num_classes):
            bad = int(lab.min()) if lab.min() < 0 else int(lab.max())
            raise ValueError(
                f"label {bad} in the table is not a class index in 0 .. "
                f"{'K-1' if num_classes is None else num_classes - 1}"
            )
        self.seed = self._check_seed(seed)
        self._source: _TableSource | _DistributionSource = _TableSource(ex, ann, lab)
        super().__init__(
            name,
            num_examples=num_examples,
            num_classes=int(lab.max()) + 1 if num_classes is None else int(num_classes),
        )

    # --- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_long_table(
        cls,
        example_ids: Sequence[int] | np.ndarray | torch.Tensor,
        annotator_ids: Sequence[str],
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        **kwargs: object,
    ) -> ReplayOracle:
        """Same as the constructor (named for symmetry with :meth:`from_csv`).

        Example::

            >>> ReplayOracle.from_long_table([0], ["a"], [1]).annotator_ids
            ('a',)
        """
        return cls(example_ids, annotator_ids, labels, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        *,
        example_col: str = "example_id",
        annotator_col: str = "annotator_id",
        label_col: str = "label",
        class_names: Sequence[str] | None = None,
        **kwargs: object,
    ) -> ReplayOracle:
        """Read a long CSV table (``.csv`` or ``.csv.gz``; one row per annotation).

        The file is read by the rules of :mod:`activelab_lightning.tables` (a BOM is accepted,
        column names are compared ignoring case and surrounding spaces, class names exactly and
        then ignoring case).

        Args:
            path: The file.
            example_col: Column of integer example ids.
            annotator_col: Column of annotator ids.
            label_col: Column of labels: class indices, or class names when ``class_names`` is given.
                Rows with an empty label are skipped.
            class_names: Map label names to indices by position.
            **kwargs: Passed to the constructor (``seed``, ``num_examples``, ``num_classes``, ``name``).

        Example::

            >>> import tempfile, os
            >>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
            >>> _ = open(p, "w").write("item,worker,answer\\n0,w1,yes\\n")
            >>> ReplayOracle.from_csv(p, example_col="item", annotator_col="worker", label_col="answer",
            ...                       class_names=["no", "yes"]).num_classes
            2
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"annotation table {str(p)!r} does not exist")
        table = read_table(p, format="csv")
        cols = list(table.header or ())
        keys = table.columns or ()
        for arg, col in (
            ("example_col", example_col),
            ("annotator_col", annotator_col),
            ("label_col", label_col),
        ):
            if column_key(col) not in keys:
                raise ValueError(f"{arg}={col!r} is not a column of {p.name}; its columns are {cols}")
        example_key, annotator_key, label_key = (
            column_key(c) for c in (example_col, annotator_col, label_col)
        )
        classes = None if class_names is None else ClassNames(class_names)
        ex: list[int] = []
        ann: list[str] = []
        lab: list[int] = []
        for line, row, _ in table.rows():
            assert row is not None  # CSV rows always parse
            value = row[label_key]
            if value in (None, ""):
                continue
            example = parse_int(row[example_key])
            if example is None:
                raise ValueError(f"{p.name} line {line}: example id {row[example_key]!r} is not an integer")
            try:
                label = parse_label(value, classes, check_range=False)
            except LabelError as err:
                if err.reason == "unknown" and classes is not None:
                    raise ValueError(
                        f"{p.name} line {line}: label {value!r} is not one of class_names {list(classes.names)}"
                    ) from None
                raise ValueError(f"{p.name} line {line}: {err}") from None
            ex.append(example)
            ann.append("" if row[annotator_key] is None else str(row[annotator_key]))
            lab.append(label)
        if class_names is not None:
            kwargs.setdefault("num_classes", len(class_names))
        return cls(ex, ann, lab, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_distributions(
        cls,
        distributions: torch.Tensor | np.ndarray | Sequence[Sequence[float]],
        *,
        annotators_per_example: int | None = None,
        replacement: bool = True,
        seed: int = 0,
        annotator_prefix: str = "dist-",
        name: str = "replay",
    ) -> ReplayOracle:
        """Sample labels from per-example label distributions, with fresh annotator ids.

        The ``k``-th label of example ``i`` (``k`` = the smallest draw index whose id
        ``f"{annotator_prefix}{k}"`` is not among the request's existing annotators) is a
        deterministic draw for ``(seed, i, k)``.

        Args:
            distributions: ``(N, K)`` non-negative rows: probabilities, or integer counts (e.g.
                CIFAR-10H: how many people chose each class).
            annotators_per_example: How many labels an example can give before it is exhausted.
                Default: the row total for integer counts (as many as real annotators), unlimited
                for probabilities.
            replacement: ``True``: independent draws from the normalised row. ``False`` (integer
                counts only): replay the counted labels in a random order, each once.
            seed: Seed of the draws.
            annotator_prefix: Prefix of the fresh annotator ids.
            name: Oracle name.

        Example::

            >>> oracle = ReplayOracle.from_distributions([[0, 3, 1]], replacement=False)
            >>> reqs = [LabelRequest(0, 0.0, "new", 0)]
            >>> a = oracle.request(reqs).annotations[0]
            >>> a.annotator_id, a.label in (1, 2)
            ('dist-0', True)
        """
        d = (
            distributions
            if torch.is_tensor(distributions)
            else torch.as_tensor(np.asarray(distributions, dtype=np.float64))
        )
        d = d.to(torch.float64)
        if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 2:
            raise ValueError(f"distributions must have shape (N, K) with K >= 2, got {tuple(d.shape)}")
        if not torch.isfinite(d).all() or (d < 0).any():
            raise ValueError("distributions must hold finite values >= 0 (probabilities or counts)")
        is_counts = bool(torch.equal(d, d.round()))
        if not replacement and not is_counts:
            raise ValueError(
                "replacement=False replays counted labels and needs integer counts; got non-integer "
                "distributions (use replacement=True for probabilities)"
            )
        totals = d.sum(-1)
        if annotators_per_example is None:
            cap = totals.clone() if is_counts else torch.where(totals > 0, torch.inf, 0.0)
        else:
            if isinstance(annotators_per_example, bool) or int(annotators_per_example) < 1:
                raise ValueError(
                    f"annotators_per_example must be a positive int or None, got {annotators_per_example!r}"
                )
            cap = torch.where(totals > 0, float(annotators_per_example), 0.0)
            if not replacement:
                cap = torch.minimum(cap, totals)
        obj = cls.__new__(cls)
        obj.seed = cls._check_seed(seed)
        obj._source = _DistributionSource(d, cap, replacement, str(annotator_prefix))
        BaseOracle.__init__(obj, name, num_examples=d.shape[0], num_classes=d.shape[1])
        return obj

    # --- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _check_seed(seed: object) -> int:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {seed!r}")
        return int(seed)

    @staticmethod
    def _int_array(value: object, name: str) -> np.ndarray:
        arr = value.cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise ValueError(f"{name} must hold integers, got non-integer values")
        elif arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
        return arr.astype(np.int64)

    @property
    def annotator_ids(self) -> tuple[str, ...]:
        """The annotators of the table (sorted); empty for distribution sources."""
        return self._source.names if isinstance(self._source, _TableSource) else ()

    def exhausted_examples(self, store: AnnotationStore) -> torch.Tensor:
        """Sorted ids of the examples this oracle cannot label again: every recorded label of theirs
        is in ``store`` already (or the table has none). Selection skips them.

        Distribution sources draw fresh annotators and are never exhausted (empty result).

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> from activelab_lightning.records import Annotation
            >>> oracle = ReplayOracle([0, 0, 1], ["a", "b", "a"], [1, 1, 0], num_examples=3)
            >>> store = AnnotationStore(num_examples=3, class_names=["x", "y"])
            >>> _ = store.add_annotations([Annotation(1, "a", 0), Annotation(0, "a", 1)])
            >>> oracle.exhausted_examples(store).tolist()  # 1: "a" gave its only label; 2: none recorded
            [1, 2]
        """
        if not isinstance(self._source, _TableSource):
            return torch.zeros(0, dtype=torch.int64)
        num_examples = int(store.num_examples)
        labeled = store.labeled_ids()
        labels, names = store.label_matrix(labeled)
        left = self._source.remaining(num_examples, labeled.numpy(), labels.numpy(), names)
        return torch.from_numpy(np.nonzero(left == 0)[0].astype(np.int64))

    def _answer(self, requests: tuple[LabelRequest, ...]) -> OracleResponse:
        picks = self._source.answer(self.seed, requests)
        annotations = tuple(
            Annotation(
                example_id=r.example_id,
                annotator_id=p[0],
                label=p[1],
                round=r.round,
                source=self.source,
                request_id=r.request_id,
            )
            for r, p in zip(requests, picks)
            if p is not None
        )
        exhausted = tuple(r for r, p in zip(requests, picks) if p is None)
        return OracleResponse(annotations=annotations, exhausted=exhausted)

    def __repr__(self) -> str:
        kind = "table" if isinstance(self._source, _TableSource) else "distributions"
        return f"ReplayOracle(name={self.name!r}, source={kind!r}, seed={self.seed})"
