"""Accuracy metrics: the one home for "how often does this equal the truth?".

Consensus accuracy (the datamodule's consensus labels against known true labels), the model's
test accuracy and agreement between two label vectors all call :func:`accuracy`, which wraps
``torchmetrics``' multiclass accuracy (micro average).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["accuracy"]


def accuracy(preds: Any, target: Any, *, num_classes: int | None = None) -> float:
    """Multiclass accuracy with ``torchmetrics`` (micro average).

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
    from torchmetrics.functional import accuracy as tm_accuracy

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
    if num_classes is None:
        num_classes = int(max(preds_t.max(), target_t.max())) + 1
    value = tm_accuracy(preds_t, target_t, task="multiclass", num_classes=num_classes, average="micro")
    return float(value)
