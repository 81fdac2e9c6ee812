"""Consensus training targets of the labeled examples, as a pure function of the annotations.

:func:`compute_consensus` takes the label matrix of the labeled examples (from the store), the
latest out-of-sample probabilities with their example ids (if any) and the settings, and returns
a :class:`Consensus`: the hard consensus labels, the soft labels, and the CROWDLAB result.

* Without probabilities: the majority vote (ties broken by seeded draws); soft labels are the
  annotators' vote shares.
* With probabilities: CROWDLAB (``consensus_method``) over the labeled examples that have a row,
  the majority vote for the others; CROWDLAB needs one example with >= 2 labels, until then the
  (single) labels are the consensus (ties broken by the probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from activelab_lightning.scoring.crowdlab import ConsensusMethod, CrowdlabResult, crowdlab
from activelab_lightning.scoring.majority_vote import majority_vote

__all__ = ["Consensus", "compute_consensus", "vote_fractions"]


@dataclass(frozen=True)
class Consensus:
    """The consensus targets of ``n`` labeled examples (rows aligned with their ids).

    Attributes:
        labels: ``(n,)`` int64 consensus class of each labeled example.
        soft_labels: ``(n, K)`` float32 CROWDLAB posterior (rows with probabilities, when CROWDLAB
            ran) or the annotators' vote shares.
        pred_ids: ``(p,)`` int64 labeled ids that had a probability row, or None.
        pred_probs: ``(p, K)`` float64 their probabilities, or None.
        crowdlab: The :class:`CrowdlabResult` when CROWDLAB ran, else None.
        annotators: Annotator ids of ``crowdlab.annotator_weight`` (empty without CROWDLAB).
    """

    labels: Tensor
    soft_labels: Tensor
    pred_ids: Tensor | None = None
    pred_probs: Tensor | None = None
    crowdlab: CrowdlabResult | None = None
    annotators: list[str] = field(default_factory=list)

    def targets(self, soft: bool) -> Tensor:
        """The training targets: :attr:`soft_labels` ``(n, K)`` if ``soft`` else :attr:`labels` ``(n,)``."""
        return self.soft_labels if soft else self.labels


def vote_fractions(labels: Tensor, num_classes: int) -> Tensor:
    """``(n, K)`` float64 share of each example's annotators that chose class k.

    Args:
        labels: ``(n, M)`` float label matrix, NaN for missing.
        num_classes: ``K``.
    """
    present = ~torch.isnan(labels)
    idx = torch.where(present, labels, torch.zeros((), dtype=labels.dtype)).to(torch.int64)
    counts = torch.zeros(labels.shape[0], num_classes, dtype=torch.float64)
    counts.scatter_add_(1, idx, present.to(torch.float64))
    return counts / counts.sum(1, keepdim=True).clamp_min(1.0)


def compute_consensus(
    labeled_ids: Tensor,
    labels: Tensor,
    annotators: Sequence[str],
    *,
    num_classes: int,
    pred_probs: Tensor | None = None,
    pred_ids: Tensor | None = None,
    consensus_method: ConsensusMethod = "best_quality",
    seed: int = 0,
) -> Consensus:
    """Consensus labels and soft labels of the labeled examples (see the module docstring).

    Args:
        labeled_ids: ``(n,)`` int64 sorted ids of the labeled examples.
        labels: ``(n, M)`` float64 label matrix of ``labeled_ids`` (NaN = missing), as
            ``AnnotationStore.label_matrix`` returns it; not read when ``n == 0``.
        annotators: The ``M`` annotator ids of the columns of ``labels``.
        num_classes: ``K``.
        pred_probs: ``(p, K)`` float64 out-of-sample probabilities, or None.
        pred_ids: ``(p,)`` distinct int64 example ids of the rows of ``pred_probs`` (may include
            unlabeled examples, ignored, and miss labeled ones, majority vote); both or neither.
        consensus_method: CROWDLAB's ``"best_quality"`` or ``"majority_vote"``.
        seed: Seeds the random majority-vote tie-breaks (one generator, drawn from in order: the
            majority vote, then CROWDLAB or the single-label vote).

    Returns:
        The :class:`Consensus`, rows aligned with ``labeled_ids``.
    """
    k = num_classes
    gen = torch.Generator()
    gen.manual_seed(seed)
    if labeled_ids.numel() == 0:
        return Consensus(torch.zeros(0, dtype=torch.int64), torch.zeros(0, k, dtype=torch.float32))
    result: CrowdlabResult | None = None
    kept_ids: Tensor | None = None
    kept_probs: Tensor | None = None
    consensus = majority_vote(labels, num_classes=k, generator=gen).to(torch.int64).cpu()
    soft = vote_fractions(labels, k)
    if pred_probs is not None and pred_ids is not None:
        size = int(labeled_ids.max()) + 1  # ids beyond the largest labeled id never match
        inside = pred_ids < size
        row_of = torch.full((size,), -1, dtype=torch.int64)
        row_of[pred_ids[inside]] = torch.nonzero(inside).reshape(-1)
        rows = row_of[labeled_ids]
        known = rows >= 0
        if bool(known.any()):
            sub, sub_probs = labels[known], pred_probs[rows[known]]
            kept_ids, kept_probs = labeled_ids[known], sub_probs
            if bool(((~torch.isnan(sub)).sum(1) >= 2).any()):
                result = crowdlab(sub, sub_probs, consensus_method=consensus_method, generator=gen)
                consensus[known] = result.consensus_label.to(torch.int64).cpu()
                soft[known] = result.posterior.to(torch.float64).cpu()
            else:  # every row has one label: that label is the consensus
                consensus[known] = majority_vote(sub, sub_probs, generator=gen).to(torch.int64).cpu()
    return Consensus(
        labels=consensus,
        soft_labels=soft.to(torch.float32),
        pred_ids=kept_ids,
        pred_probs=kept_probs,
        crowdlab=result,
        annotators=list(annotators) if result is not None else [],
    )
