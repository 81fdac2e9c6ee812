"""Accuracy metrics: the one home for "how often does this equal the truth?".

Consensus accuracy (the datamodule's consensus labels against known true labels) and the agreement
of two label vectors (the cross-fitted heads' in-sample guard) call :func:`accuracy`; the reference
models log their test accuracy with ``torchmetrics`` inside ``test_step``. It counts in
float64: ``torchmetrics``' multiclass accuracy returns float32, which would round the reported
numbers (0.98 → 0.9800000190734863) and make them differ from the same fraction computed elsewhere.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["accuracy"]


def accuracy(preds: Any, target: Any, *, num_classes: int | None = None) -> float:
    """Multiclass accuracy: the fraction of ``preds`` equal to ``target`` (micro average), in float64.

    Args:
        preds: ``(N,)`` predicted class indices, or ``(N, K)`` probabilities / logits (argmax is taken).
        target: ``(N,)`` true class indices.
        num_classes: ``K``; inferred from ``preds``'s second dimension or the largest index if omitted.

    Returns:
        The fraction of correct predictions as a Python float (``nan`` for empty inputs).

    Example::

        >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
        0.75
    """
    preds_t = torch.as_tensor(preds)
    target_t = torch.as_tensor(target).long().reshape(-1)
    if preds_t.ndim == 2:
        num_classes = num_classes or int(preds_t.shape[1])
        preds_t = preds_t.argmax(dim=1)
    preds_t = preds_t.long().reshape(-1)
    if preds_t.shape != target_t.shape:
        raise ValueError(
            f"accuracy(preds, target): preds has {preds_t.numel()} predictions but target has "
            f"{target_t.numel()} labels; pass one prediction per target."
        )
    if target_t.numel() == 0:
        return float("nan")
    if num_classes is not None and bool(((target_t < 0) | (target_t >= num_classes)).any()):
        raise ValueError(
            f"accuracy(target=...): labels must be class indices in 0..{num_classes - 1}, got values in "
            f"{int(target_t.min())}..{int(target_t.max())}."
        )
    return float((preds_t == target_t.to(preds_t.device)).to(torch.float64).mean())
