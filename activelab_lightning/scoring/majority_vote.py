"""Majority vote over a multi-annotator label matrix, with cleanlab's tie-break chain.

Ties between the most frequent classes of an example are broken, in order, by
(1) the model's probability, (2) the *rarest* class over the whole matrix, (3) the mean
reliability of the annotators who voted for each class, and finally (4) a random choice drawn
from an explicit, seeded :class:`torch.Generator` (never a global RNG).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._validation import ArrayLike, LabelMatrix, as_label_matrix, as_probabilities, make_generator

__all__ = ["label_counts", "majority_vote"]


def label_counts(lm: LabelMatrix, num_classes: int, dtype: torch.dtype = torch.int32) -> Tensor:
    """``(N, K)`` number of annotators that gave class k to example i (an O(N·M) scatter)."""
    counts = torch.zeros(lm.num_examples, num_classes, dtype=dtype, device=lm.index.device)
    counts.scatter_add_(1, lm.index, lm.mask.to(dtype))
    return counts


def _keep_extreme(cand: Tensor, values: Tensor, *, largest: bool) -> Tensor:
    """Keep the candidates whose value equals (exactly) the max (min) among candidates.

    NaN values never qualify; if no candidate has a non-NaN value the candidates are unchanged.
    """
    fill = float("-inf") if largest else float("inf")
    v = torch.where(cand & ~torch.isnan(values), values, torch.full_like(values, fill))
    best = v.amax(1, keepdim=True) if largest else v.amin(1, keepdim=True)
    kept = cand & (v == best)
    none_left = ~kept.any(1, keepdim=True)
    return torch.where(none_left, cand, kept)


def _count_true(mask: Tensor, dim: int) -> Tensor:
    """Number of True per row/column (int64); ~10x faster than ``bool.sum`` on CPU."""
    return mask.view(torch.uint8).sum(dim, dtype=torch.int64)


def _first_true(mask: Tensor) -> Tensor:
    return mask.to(torch.uint8).argmax(1)


def _majority_vote(
    lm: LabelMatrix,
    counts: Tensor,
    probs: Tensor | None,
    generator: torch.Generator,
) -> Tensor:
    """Majority vote on validated inputs; ``counts`` from :func:`label_counts`, ``probs`` (N, K)."""
    top, label = counts.max(1)
    if lm.num_annotators < counts.shape[1]:  # O(N·M): another class's label has the top count
        same = counts.gather(1, lm.index)
        tied_rows = ((same == top[:, None]) & (lm.index != label[:, None]) & lm.mask).any(1)
    else:
        tied_rows = _count_true(counts == top[:, None], 1) > 1
    tied = tied_rows.nonzero().flatten()
    if tied.numel() == 0:
        return label
    untied = ~tied_rows
    sub = counts[tied] == top[tied, None]
    # 1. the model's probability among the tied classes (exact equality)
    if probs is not None:
        sub = _keep_extreme(sub, probs[tied].to(torch.float64), largest=True)
    # 2. the class with the fewest annotations in the whole matrix
    still = sub.sum(1) > 1
    if bool(still.any()):
        totals = counts.sum(0).to(torch.float64).expand(sub.shape[0], -1)
        sub = torch.where(still[:, None], _keep_extreme(sub, totals, largest=False), sub)
    # 3. mean reliability of the annotators voting for each class; reliability g_j = accuracy
    #    against the majority label on the count-untied examples (NaN -> mean of the others)
    still = sub.sum(1) > 1
    if bool(still.any()):
        rows = tied[still]
        on_untied = lm.mask & untied[:, None]
        hits = (lm.index == label[:, None]) & on_untied
        g = hits.sum(0).to(torch.float64) / on_untied.sum(0).to(torch.float64)
        nan = torch.isnan(g)
        if bool(nan.any()) and not bool(nan.all()):
            g = torch.where(nan, float(np.mean(g[~nan].cpu().numpy())), g)
        idx = lm.index[rows]
        msk = lm.mask[rows]
        gsum = torch.zeros(rows.numel(), counts.shape[1], dtype=torch.float64, device=counts.device)
        for j in range(lm.num_annotators):  # column order keeps sums tie-exact
            gsum.scatter_add_(1, idx[:, j : j + 1], torch.where(msk[:, j : j + 1], g[j], 0.0))
        score = gsum / counts[rows].to(torch.float64)
        sub_still = sub[still]
        sub[still] = _keep_extreme(sub_still, score, largest=True)
    # 4. random choice among what is left, from the explicit generator
    still = sub.sum(1) > 1
    if bool(still.any()):
        left = sub[still]
        n_left = left.sum(1)
        u = torch.rand(left.shape[0], generator=generator, dtype=torch.float64, device=generator.device)
        pick = torch.minimum((u.to(left.device) * n_left).floor().to(torch.int64), n_left - 1)
        chosen = (left.cumsum(1) == (pick + 1)[:, None]) & left
        sub[still] = chosen
    label[tied] = _first_true(sub)
    return label


def majority_vote(
    labels: ArrayLike,
    pred_probs: ArrayLike | None = None,
    *,
    num_classes: int | None = None,
    generator: torch.Generator | int | None = None,
) -> Tensor:
    """Majority-vote consensus label of each example, with cleanlab's tie-break chain.

    Ties between the most frequent classes of example i are broken by:

    1. ``pred_probs[i, k]`` (highest wins; exact equality), if ``pred_probs`` is given;
    2. the class with the **fewest** annotations over the whole label matrix;
    3. the highest mean reliability of the annotators who voted for the class, where an
       annotator's reliability is its agreement with the majority label on the examples
       without a count tie (NaN, i.e. no such example, is replaced by the others' mean);
    4. a uniformly random choice among the remaining classes, drawn from ``generator``
       (rows in ascending order, one draw per row).

    Deviation from cleanlab 2.9.0: cleanlab draws step 4 from numpy's *global* RNG and crashes
    when no example is free of a count tie (all reliabilities NaN, spec §7.1); here step 3 is
    skipped in that case and step 4 uses the explicit generator, so results are reproducible.

    Args:
        labels: ``(N, M)`` class indices, NaN where annotator j did not label example i.
            Annotators (columns) with no label are ignored; every example needs >= 1 label.
        pred_probs: Optional ``(N, K)`` probabilities used by tie-break 1.
        num_classes: ``K`` when ``pred_probs`` is None (default: largest label + 1).
        generator: ``torch.Generator``, an int seed, or None (= seed 0) for tie-break 4.

    Returns:
        ``(N,)`` int64 consensus labels (on the device of ``pred_probs`` if given).

    Example::

        >>> import torch
        >>> labels = torch.tensor([[0., 1., float("nan")], [1., 1., 0.]])
        >>> majority_vote(labels, torch.tensor([[0.3, 0.7], [0.5, 0.5]])).tolist()
        [1, 1]
    """
    probs = None
    device = None
    if pred_probs is not None:
        probs = as_probabilities(pred_probs, "pred_probs")
        device = probs.device
        num_classes = probs.shape[1]
    lm = as_label_matrix(labels, num_classes=num_classes, device=device)
    if probs is not None and probs.shape[0] != lm.num_examples:
        raise ValueError(
            f"pred_probs has {probs.shape[0]} rows but labels has {lm.num_examples} rows; row i "
            "of both must describe the same example."
        )
    k = num_classes if num_classes is not None else lm.max_label + 1
    counts = label_counts(lm, k)
    return _majority_vote(lm, counts, probs, make_generator(generator))
