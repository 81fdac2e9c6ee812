"""Lowest-``k`` selection over labeled ∪ unlabeled, with a deterministic tie-break by example id.

:func:`select_lowest` and its streaming twin :class:`LowestK` keep the ``k`` lowest scores
(float64; ties broken by the smaller example id), so the result does not depend on how the pool
was batched or sharded.

Example::

    >>> import torch
    >>> top = LowestK(2)
    >>> top.update(torch.tensor([5, 3]), torch.tensor([0.2, 0.1]))
    >>> top.update(torch.tensor([7]), torch.tensor([0.1]))
    >>> top.result()[0].tolist()
    [3, 7]
"""

from __future__ import annotations

import torch

__all__ = ["LowestK", "select_lowest"]


def _check_scores(ids: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.as_tensor(ids)
    scores = torch.as_tensor(scores)
    if ids.ndim != 1 or scores.shape != ids.shape:
        raise ValueError(
            f"Expected `ids` and `scores` to be 1-D of the same length, but got shapes "
            f"{tuple(ids.shape)} and {tuple(scores.shape)}."
        )
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"Expected integer example ids, but got dtype {ids.dtype}.")
    scores = scores.detach().to("cpu", torch.float64)
    if bool(torch.isnan(scores).any()):
        raise ValueError(
            f"Got {int(torch.isnan(scores).sum())} NaN scores (e.g. for example ids "
            f"{ids[torch.isnan(scores).cpu()][:5].tolist()}); check the model's probabilities for NaN."
        )
    return ids.detach().to("cpu", torch.int64), scores


def _lexsort_lowest(ids: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` smallest ``(score, id)`` pairs, in that order."""
    by_id = torch.argsort(ids, stable=True)
    by_score = torch.argsort(scores[by_id], stable=True)
    return by_id[by_score[:k]]


def select_lowest(ids: torch.Tensor, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` examples with the lowest scores; ties go to the smaller example id.

    Args:
        ids: ``(N,)`` integer example ids (unique).
        scores: ``(N,)`` scores (compared in float64).
        k: How many to select; more than ``N`` selects all.

    Returns:
        ``(ids (k,), scores (k,))`` in selection order (ascending score, then id).

    Example::

        >>> select_lowest(torch.tensor([5, 3, 8]), torch.tensor([0.2, 0.2, 0.1]), 2)[0].tolist()
        [8, 3]
    """
    if k < 0:
        raise ValueError(f"Expected `k` to be >= 0, but got {k}.")
    ids, scores = _check_scores(ids, scores)
    order = _lexsort_lowest(ids, scores, k)
    return ids[order], scores[order]


class LowestK:
    """Streaming :func:`select_lowest`: feed batches with :meth:`update`, read :meth:`result`.

    Memory is ``O(k + batch)``; the result does not depend on how the ids were batched (the order
    ``(score, id)`` is total). Optional ``extras`` (e.g. ``(B, K)`` probabilities) ride along with
    each row so the winners' rows are kept without storing the pool.

    Example::

        >>> top = LowestK(2)
        >>> top.update(torch.tensor([1, 2]), torch.tensor([0.5, 0.1]))
        >>> top.update(torch.tensor([3]), torch.tensor([0.1]))
        >>> top.result()[0].tolist()
        [2, 3]
    """

    def __init__(self, k: int) -> None:
        if k < 0:
            raise ValueError(f"Expected `k` to be >= 0, but got {k}.")
        self.k = int(k)
        self._ids = torch.zeros(0, dtype=torch.int64)
        self._scores = torch.zeros(0, dtype=torch.float64)
        self._extras: torch.Tensor | None = None
        self.num_seen = 0

    def update(self, ids: torch.Tensor, scores: torch.Tensor, extras: torch.Tensor | None = None) -> None:
        """Merge one batch: ``ids (B,)``, ``scores (B,)``, optional ``extras (B, ...)``."""
        ids, scores = _check_scores(ids, scores)
        self.num_seen += int(ids.numel())
        if extras is not None and extras.shape[0] != ids.shape[0]:
            raise ValueError(f"`extras` has {extras.shape[0]} rows for {ids.shape[0]} ids.")
        if self._ids.numel() >= self.k:
            # The buffer is full and sorted: only rows scoring at most its worst score can enter
            # (equal scores may still win on the id). Keeps each merge small.
            if self.k == 0:
                return
            candidates = scores <= self._scores[-1]
            if not bool(candidates.any()):
                return
            if not bool(candidates.all()):
                ids, scores = ids[candidates], scores[candidates]
                extras = extras[candidates.to(extras.device)] if extras is not None else None
        cat_ids = torch.cat([self._ids, ids])
        cat_scores = torch.cat([self._scores, scores])
        cat_extras = None
        if extras is not None:
            extras = extras.detach().cpu()
        if extras is not None or self._extras is not None:
            # rows fed without extras carry NaN rows, so ids and extras stay aligned
            like = extras if extras is not None else self._extras
            assert like is not None
            previous = self._extras
            if previous is None:
                previous = torch.full((self._ids.numel(), *like.shape[1:]), float("nan"), dtype=like.dtype)
            if extras is None:
                extras = torch.full((ids.numel(), *like.shape[1:]), float("nan"), dtype=like.dtype)
            cat_extras = torch.cat([previous.to(extras.dtype), extras])
        keep = _lexsort_lowest(cat_ids, cat_scores, self.k)  # kept sorted: the last row is the worst
        cat_ids, cat_scores = cat_ids[keep], cat_scores[keep]
        cat_extras = cat_extras[keep] if cat_extras is not None else None
        self._ids, self._scores, self._extras = cat_ids, cat_scores, cat_extras

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (k,), scores (k,))`` of the lowest ``k`` seen so far, in selection order."""
        return self._ids.clone(), self._scores.clone()

    def extras_of(self, ids: torch.Tensor) -> torch.Tensor | None:
        """The ``extras`` rows kept for the given (selected) ids, in that order."""
        if self._extras is None:
            return None
        position = {int(i): p for p, i in enumerate(self._ids.tolist())}
        return self._extras[[position[int(i)] for i in ids.tolist()]]
