"""A round's :class:`~activelab_lightning.records.RoundSummary`, built from the datamodule after the refresh.

What the callback hands to the reporters: sizes, requests and answers, scores, the consensus
accuracy (when true labels are known), CROWDLAB's model and mean annotator weights of the consensus
that made the next training targets, per-annotator quality rows, and the round's diagnostics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from activelab_lightning.metrics import accuracy
from activelab_lightning.records import Annotation, LabelRequest, RoundSummary
from activelab_lightning.scoring import annotator_stats

__all__ = ["REPORTED_DIAGNOSTICS", "summarize_round"]

#: Diagnostics passed on to the loggers and the round log as ``RoundSummary.metrics``.
REPORTED_DIAGNOSTICS = (
    "temperature",
    "crossfit_l2",
    "crossfit_oof_nll",
    "agreement_in_sample",
    "agreement_out_of_fold",
)


def summarize_round(
    datamodule: Any,
    *,
    round: int,
    strategy: str,
    requests: Sequence[LabelRequest],
    answers: Sequence[Annotation],
    num_pending: int,
    num_exhausted: int,
    labeled_scores: torch.Tensor | None,
    unlabeled_scores: torch.Tensor | None,
    round_state: dict[str, Any] | None,
    diagnostics: dict[str, float],
    num_replaced: int = 0,
    num_skipped: int = 0,
    true_labels: torch.Tensor | None = None,
    seconds: float = 0.0,
) -> RoundSummary:
    """The summary of one round, read from the refreshed datamodule.

    Args:
        datamodule: The refreshed ``ActiveDataModule`` (its ``store``, pools, consensus and last
            CROWDLAB result).
        round: The round.
        strategy: The strategy's name.
        requests: The round's requests.
        answers: The answers stored in this call.
        num_pending: Requests still unanswered.
        num_exhausted: Requests the oracle could not serve.
        num_replaced: Requests added in the round to replace exhausted ones.
        num_skipped: Candidates skipped because an oracle had reported them exhausted before.
        labeled_scores: ``(n,)`` labeled-pool scores (None when the round was resumed).
        unlabeled_scores: Up to 100k unlabeled scores (None when none).
        round_state: The round's refresh state (ids the consensus was computed on).
        diagnostics: The strategy's and the heads' diagnostics (temperature, crossfit_*...).
        true_labels: ``(num_examples,)`` ground truth, if known: gives the consensus accuracy.
        seconds: Wall time of the acquisition.
    """
    store = datamodule.store
    labeled = torch.as_tensor(datamodule.labeled_ids, dtype=torch.int64)
    consensus_accuracy = None
    if true_labels is not None:
        consensus = torch.as_tensor(datamodule.consensus_labels, dtype=torch.int64)
        if labeled.numel():
            consensus_accuracy = accuracy(consensus, true_labels[labeled])
    elif callable(getattr(datamodule, "consensus_accuracy", None)):
        consensus_accuracy = datamodule.consensus_accuracy()
    weights = _consensus_weights(datamodule) or diagnostics
    return RoundSummary(
        round=round,
        strategy=strategy,
        num_annotations=len(store),
        num_labeled=int(labeled.numel()),
        num_unlabeled=int(torch.as_tensor(datamodule.unlabeled_ids).numel()),
        requests=tuple(requests),
        answers=tuple(answers),
        num_pending=num_pending,
        num_exhausted=num_exhausted,
        num_replaced=num_replaced,
        num_skipped=num_skipped,
        labeled_scores=labeled_scores,
        unlabeled_scores=unlabeled_scores,
        consensus_accuracy=consensus_accuracy,
        annotator_stats=_annotator_rows(datamodule, round_state),
        model_weight=weights.get("model_weight"),
        mean_annotator_weight=weights.get("mean_annotator_weight"),
        metrics={k: diagnostics[k] for k in REPORTED_DIAGNOSTICS if k in diagnostics} or None,
        seconds=seconds,
    )


def _consensus_weights(datamodule: Any) -> dict[str, float]:
    """CROWDLAB's model weight and mean annotator weight of the datamodule's last consensus (the
    weights that made this round's training targets, for every strategy); empty without one."""
    result = getattr(datamodule, "last_crowdlab", None)
    if result is None:
        return {}
    weights = torch.as_tensor(result.annotator_weight, dtype=torch.float64)
    used = weights[torch.as_tensor(result.annotator_mask, dtype=torch.bool)]
    used = used[torch.isfinite(used)]
    return {
        "model_weight": float(torch.as_tensor(result.model_weight, dtype=torch.float64).mean()),
        "mean_annotator_weight": float(used.mean()) if used.numel() else float("nan"),
    }


def _annotator_rows(datamodule: Any, round_state: dict[str, Any] | None) -> tuple[dict[str, Any], ...]:
    """Per-annotator quality rows of the datamodule's last CROWDLAB consensus (empty without one).

    The consensus ran on the labeled examples that had probabilities (``round_state["ids"]``), with
    the label matrix of all labeled examples restricted to those rows.
    """
    result = getattr(datamodule, "last_crowdlab", None)
    names = list(getattr(datamodule, "last_annotators", None) or [])
    if result is None or not names or round_state is None:
        return ()
    labeled = torch.as_tensor(datamodule.labeled_ids, dtype=torch.int64)
    labels, columns = datamodule.store.label_matrix(labeled)
    rows = labels[torch.isin(labeled, torch.as_tensor(round_state["ids"], dtype=torch.int64))]
    if list(columns) != names or rows.shape[0] != result.posterior.shape[0]:
        return ()  # the consensus was computed on other rows: no stats rather than wrong ones
    stats = annotator_stats(rows, result)
    return tuple(
        {
            "annotator_id": names[j],
            "quality": float(stats.quality[j]),
            "agreement": float(stats.agreement_with_consensus[j]),
            "worst_class": int(stats.worst_class[j]),
            "num_labeled": int(stats.num_examples_labeled[j]),
        }
        for j in stats.order.tolist()
    )
