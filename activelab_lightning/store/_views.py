"""Derived views of the annotation log: label matrix, label counts, labeled ids, annotators.

Every view comes from one ``SELECT`` of the log, reduced with vectorized torch ops to the effective
labels (the latest label per example and annotator, so a correction replaces what it corrects),
and cached until the database changes (``PRAGMA data_version``). ``torch`` is imported inside the
views only, so that opening a store does not pay for the torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from activelab_lightning.store._db import StoreBase

if TYPE_CHECKING:
    import torch

__all__ = ["ViewsMixin"]


@dataclass(frozen=True)
class _Derived:
    """Effective labels (latest per example and annotator), in log order (internal).

    ``example_ids``, ``cols`` and ``labels`` are ``(A,)`` int64 tensors, one entry per
    (example, annotator) pair; ``cols`` index ``annotators``; ``counts`` is ``(N,)``.
    """

    example_ids: torch.Tensor
    cols: torch.Tensor
    labels: torch.Tensor
    annotators: tuple[str, ...]
    counts: torch.Tensor


class ViewsMixin(StoreBase):
    """Label matrix, label counts, labeled / unlabeled ids and annotators of a store."""

    def _derived(self) -> _Derived:
        import torch

        with self._lock:
            conn = self._connection()
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if self._cache is not None and self._cache_version == version:
                return self._cache
            with self._snapshot():
                annotators = conn.execute("SELECT col, annotator_id FROM annotators ORDER BY col").fetchall()
                rows = conn.execute(
                    "SELECT a.example_id, n.col, a.label FROM annotations AS a "
                    "JOIN annotators AS n ON n.annotator_id = a.annotator_id ORDER BY a.id"
                ).fetchall()
            names = tuple(a for _, a in annotators)
            table = torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)
            ex, stored_col, lab = table.unbind(1)
            # annotator columns -> 0..M-1 in first-seen order
            col_of = torch.full((max((c for c, _ in annotators), default=0) + 1,), -1, dtype=torch.int64)
            col_of[torch.tensor([c for c, _ in annotators], dtype=torch.int64)] = torch.arange(
                len(annotators), dtype=torch.int64
            )
            col = col_of[stored_col]
            # Latest log row per (example, annotator) wins (corrections come after what they correct).
            keys = ex * max(len(names), 1) + col
            order = torch.argsort(keys, stable=True)
            sorted_keys = keys[order]
            last = torch.ones_like(sorted_keys, dtype=torch.bool)
            last[:-1] = sorted_keys[1:] != sorted_keys[:-1]
            keep = torch.sort(order[last]).values  # back to log order
            ex, col, lab = ex[keep], col[keep], lab[keep]
            counts = torch.bincount(ex, minlength=self.num_examples)
            self._cache = _Derived(example_ids=ex, cols=col, labels=lab, annotators=names, counts=counts)
            self._cache_version = version
            return self._cache

    def _ids_tensor(self, example_ids: object, name: str = "example_ids") -> torch.Tensor:
        import torch

        ids = torch.as_tensor(example_ids)
        if ids.numel() == 0:
            return torch.zeros(0, dtype=torch.int64)
        if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
            raise TypeError(f"{name} must hold integer example ids, got dtype {ids.dtype}.")
        ids = ids.to(torch.int64).reshape(-1)
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.num_examples:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{name} contains {bad}, outside 0..{self.num_examples - 1} "
                    f"(num_examples={self.num_examples})."
                )
        return ids

    def label_counts(self) -> torch.Tensor:
        """``(num_examples,)`` int64: labels per example (a correction is not one more)."""
        return self._derived().counts.clone()

    def labeled_ids(self) -> torch.Tensor:
        """Sorted int64 ids of the examples with at least one label."""
        import torch

        return torch.nonzero(self._derived().counts > 0).reshape(-1)

    def unlabeled_ids(self) -> torch.Tensor:
        """Sorted int64 ids of the examples with no label."""
        import torch

        return torch.nonzero(self._derived().counts == 0).reshape(-1)

    @property
    def annotators(self) -> tuple[str, ...]:
        """All annotator ids, in first-seen order."""
        return self._derived().annotators

    def annotator_counts(self) -> dict[str, int]:
        """``annotator_id -> number of examples they labeled``, in first-seen order."""
        import torch

        d = self._derived()
        counts = torch.bincount(d.cols, minlength=len(d.annotators)).tolist()
        return dict(zip(d.annotators, counts, strict=True))

    def label_matrix(self, example_ids: Any = None) -> tuple[torch.Tensor, list[str]]:
        """The dense multi-annotator label matrix.

        Args:
            example_ids: ``(n,)`` distinct example ids giving the rows, in order (any int sequence,
                numpy array or tensor). Default: all labeled ids, sorted.

        Returns:
            ``(labels, annotators)``: ``labels`` is an ``(n, M)`` float64 tensor with the class index
            given by annotator ``j`` to example ``example_ids[i]`` (their latest correction, if any) and
            NaN where they gave none; the ``M`` columns are the annotators with at least one label
            among these rows, in first-seen order, and ``annotators`` names them.

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> from activelab_lightning.records import Annotation
            >>> store = AnnotationStore(num_examples=3, class_names=["a", "b"])
            >>> store.add_annotations([Annotation(2, "x", 1), Annotation(0, "y", 0), Annotation(2, "y", 1)])
            3
            >>> store.label_matrix()
            (tensor([[nan, 0.],
                    [1., 1.]], dtype=torch.float64), ['x', 'y'])
        """
        import torch

        d = self._derived()
        if example_ids is None:
            ids = torch.nonzero(d.counts > 0).reshape(-1)
        else:
            ids = self._ids_tensor(example_ids)
            if torch.unique(ids).numel() != ids.numel():
                uniq, counts = torch.unique(ids, return_counts=True)
                raise ValueError(
                    f"example_ids must be distinct, got repeated ids {uniq[counts > 1][:5].tolist()}."
                )
        n = ids.numel()
        row_of = torch.full((self.num_examples,), -1, dtype=torch.int64)
        row_of[ids] = torch.arange(n, dtype=torch.int64)
        rows = row_of[d.example_ids]
        selected = rows >= 0
        rows, cols, labels = rows[selected], d.cols[selected], d.labels[selected]
        used = torch.unique(cols)  # sorted = first-seen order
        col_of = torch.full((len(d.annotators),), -1, dtype=torch.int64)
        col_of[used] = torch.arange(used.numel(), dtype=torch.int64)
        matrix = torch.full((n, used.numel()), float("nan"), dtype=torch.float64)
        matrix[rows, col_of[cols]] = labels.to(torch.float64)
        return matrix, [d.annotators[c] for c in used.tolist()]

    def annotators_of(self, example_ids: Any) -> list[tuple[str, ...]]:
        """For each example id, the annotators who labeled it, in the order they did.

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> from activelab_lightning.records import Annotation
            >>> store = AnnotationStore(num_examples=3, class_names=["a", "b"])
            >>> store.add_annotations([Annotation(2, "x", 1), Annotation(2, "y", 0)])
            2
            >>> store.annotators_of([2, 0])
            [('x', 'y'), ()]
        """
        import torch

        d = self._derived()
        ids = self._ids_tensor(example_ids)
        row_of = torch.full((self.num_examples,), -1, dtype=torch.int64)
        row_of[ids] = torch.arange(ids.numel(), dtype=torch.int64)
        rows = row_of[d.example_ids]
        selected = torch.nonzero(rows >= 0).reshape(-1)
        by_example: dict[int, list[str]] = {}
        for e, c in zip(d.example_ids[selected].tolist(), d.cols[selected].tolist(), strict=True):
            by_example.setdefault(e, []).append(d.annotators[c])
        return [tuple(by_example.get(e, ())) for e in ids.tolist()]
