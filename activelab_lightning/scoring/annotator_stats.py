"""Per-annotator statistics of a CROWDLAB consensus: quality, agreement, worst class, label count.

The numbers cleanlab reports as ``annotator_stats`` (spec §5), from a label matrix and the
:class:`~activelab_lightning.scoring.crowdlab.CrowdlabResult` computed on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._validation import ArrayLike, as_label_matrix
from .crowdlab import CrowdlabResult
from .majority_vote import _first_true

__all__ = ["AnnotatorStats", "annotator_stats"]


@dataclass(frozen=True)
class AnnotatorStats:
    """Per-annotator statistics, aligned with the label matrix's ``M`` columns.

    Attributes:
        quality: ``(M,)`` ``ω·lqs_j + (1-ω)·agr_j``: a blend (weighted by the model's share of the
            total weight) of the mean posterior probability of j's labels and j's agreement with
            the consensus on multi-labeled examples. NaN if j labeled no multi-labeled example.
        agreement_with_consensus: ``(M,)`` fraction of j's labels equal to the consensus.
        worst_class: ``(M,)`` int64, the class j labels least accurately (ties: more of j's
            labels, then higher mean consensus quality, then the smaller class); -1 if unused.
        num_examples_labeled: ``(M,)`` int64.
        order: ``(M',)`` int64 column positions of the used annotators, sorted by ``quality`` then
            ``agreement_with_consensus`` ascending (NaN last): the row order cleanlab reports.
    """

    quality: Tensor
    agreement_with_consensus: Tensor
    worst_class: Tensor
    num_examples_labeled: Tensor
    order: Tensor


def annotator_stats(labels: ArrayLike, result: CrowdlabResult) -> AnnotatorStats:
    """Per-annotator quality, agreement with consensus, worst class and label count.

    Args:
        labels: The ``(N, M)`` label matrix given to :func:`crowdlab`.
        result: Its :class:`CrowdlabResult`.

    Returns:
        An :class:`AnnotatorStats`.

    Example::

        >>> from activelab_lightning.scoring import crowdlab
        >>> import torch
        >>> nan = float("nan")
        >>> labels = torch.tensor([[0., 0., 1.], [1., 1., nan], [2., nan, 2.]])
        >>> probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
        >>> annotator_stats(labels, crowdlab(labels, probs)).num_examples_labeled.tolist()
        [3, 2, 2]
    """
    post = result.posterior
    k = post.shape[1]
    lm = as_label_matrix(labels, num_classes=k, device=post.device)
    if lm.num_examples != post.shape[0] or lm.num_input_columns != result.annotator_weight.numel():
        raise ValueError(
            f"labels has shape ({lm.num_examples}, {lm.num_input_columns}) but result describes "
            f"{post.shape[0]} examples and {result.annotator_weight.numel()} annotators; pass the "
            "same labels that produced result."
        )
    dt = torch.float64
    c = result.consensus_label
    idx, msk = lm.index, lm.mask
    m = lm.num_annotators
    mskf = msk.to(dt)
    count = mskf.sum(0)
    lqs = (post.to(dt).gather(1, idx) * mskf).sum(0) / count
    correct = (lm.index == c[:, None]) & msk
    multi = (lm.num_annotations >= 2)[:, None] & msk
    agr_multi = (correct & multi).sum(0).to(dt) / multi.sum(0).to(dt)
    agreement = correct.sum(0).to(dt) / count
    w = result.annotator_weight[lm.columns].to(dt)
    n_mean = float(lm.num_annotations.to(dt).mean().item())
    w_bar = float(w.sum().item()) * n_mean / m
    w_model = result.mean_model_weight
    omega = w_model / (w_model + w_bar)
    quality = omega * lqs.cpu() + (1 - omega) * agr_multi.cpu()
    # worst class: (M', K) tables of label counts, hits and summed consensus quality
    flat = (torch.arange(m, device=idx.device)[None, :] * k + idx)[msk]
    rows = msk.nonzero()[:, 0]
    size = m * k
    n_jk = torch.zeros(size, dtype=dt, device=idx.device).index_add_(0, flat, torch.ones_like(flat, dtype=dt))
    hit_jk = torch.zeros(size, dtype=dt, device=idx.device).index_add_(0, flat, correct[msk].to(dt))
    q_jk = torch.zeros(size, dtype=dt, device=idx.device).index_add_(
        0, flat, result.consensus_quality.to(dt)[rows]
    )
    n_jk, hit_jk, q_jk = (t.view(m, k) for t in (n_jk, hit_jk, q_jk))
    cand = n_jk > 0
    acc = hit_jk / n_jk
    v = torch.where(cand, acc, torch.full_like(acc, math.inf))
    cand &= v == v.amin(1, keepdim=True)
    v = torch.where(cand, n_jk, torch.full_like(n_jk, -math.inf))
    cand &= v == v.amax(1, keepdim=True)
    mean_q = q_jk / n_jk
    v = torch.where(cand, mean_q, torch.full_like(mean_q, -math.inf))
    cand &= v == v.amax(1, keepdim=True)
    worst = _first_true(cand).cpu()

    m_in = lm.num_input_columns
    cols = lm.columns

    def full(values: Tensor, fill: float, dtype: torch.dtype) -> Tensor:
        out = torch.full((m_in,), fill, dtype=dtype)
        out[cols] = values.cpu().to(dtype)
        return out

    q_sort = quality.clone()
    a_sort = agreement.cpu().clone()
    # stable lexicographic sort (quality, agreement), NaN last
    order = torch.arange(m)
    for key in (a_sort, q_sort):  # secondary key first, then a stable sort on the primary
        vals = key[order]
        vals = torch.where(torch.isnan(vals), torch.full_like(vals, math.inf), vals)
        order = order[torch.argsort(vals, stable=True)]
    return AnnotatorStats(
        quality=full(quality, math.nan, dt),
        agreement_with_consensus=full(agreement, math.nan, dt),
        worst_class=full(worst, -1, torch.int64),
        num_examples_labeled=full(count, 0, torch.int64),
        order=cols[order],
    )
