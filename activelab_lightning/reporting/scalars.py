"""The scalar metrics of a round: the ``activelab/...`` namespace every logger receives.

:func:`round_scalars` flattens a :class:`~activelab_lightning.records.RoundSummary` into
``{"activelab/<name>": float}``: the summary's own scalars, mean / min / max of the labeled,
unlabeled and selected scores, and each entry of ``summary.metrics``. Unknown values are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from activelab_lightning.records import RoundSummary

__all__ = [
    "METRIC_PREFIX",
    "TEST_ACCURACY_KEYS",
    "as_float64",
    "evaluation_scalars",
    "find_test_accuracy",
    "finite_values",
    "round_scalars",
]

#: Namespace of every metric the library logs.
METRIC_PREFIX = "activelab"

#: Metric names that count as the model's test accuracy, first match wins.
TEST_ACCURACY_KEYS = ("test/acc", "test_acc", "test/accuracy", "test_accuracy")


def as_float64(values: Any) -> torch.Tensor | None:
    """``values`` as a flat float64 tensor (``None`` stays ``None``)."""
    if values is None:
        return None
    return torch.as_tensor(values, dtype=torch.float64).reshape(-1)


def finite_values(values: Any) -> torch.Tensor | None:
    """The finite entries of ``values`` as a flat float64 tensor; ``None`` if there are none."""
    tensor = as_float64(values)
    if tensor is None:
        return None
    finite = tensor[torch.isfinite(tensor)]
    return finite if finite.numel() else None


def _score_stats(name: str, values: Any) -> dict[str, float]:
    finite = finite_values(values)
    if finite is None:
        return {}
    return {
        f"scores/{name}_mean": float(finite.mean()),
        f"scores/{name}_min": float(finite.min()),
        f"scores/{name}_max": float(finite.max()),
    }


def find_test_accuracy(metrics: Mapping[str, Any] | None) -> float | None:
    """The test accuracy among a round's metrics (``test/acc`` or an alias), else ``None``.

    Example::

        >>> find_test_accuracy({"test/acc": 0.9, "val/acc": 0.8})
        0.9
    """
    metrics = metrics or {}
    for key in TEST_ACCURACY_KEYS:
        if key in metrics and metrics[key] is not None:
            return float(metrics[key])
    return None


def round_scalars(summary: RoundSummary, *, prefix: str = METRIC_PREFIX) -> dict[str, float]:
    """The scalar metrics of one round, keyed ``<prefix>/<name>``.

    Args:
        summary: The round's summary.
        prefix: Metric namespace (default ``"activelab"``).

    Returns:
        ``{"activelab/round": 2.0, "activelab/num_annotations": 1234.0, ...}``: round, annotations,
        labeled / unlabeled examples, requests (new / re-label / pending / exhausted), score summary
        (mean / min / max of labeled, unlabeled and selected scores), consensus accuracy, model and
        mean annotator weight, wall time, and each entry of ``summary.metrics`` (``test/acc`` becomes
        ``activelab/test/acc``). Unknown (``None``) values are left out.

    Example::

        >>> from activelab_lightning.records import RoundSummary
        >>> s = RoundSummary(round=0, strategy="activelab", num_annotations=10, num_labeled=8,
        ...                  num_unlabeled=2, requests=(), answers=())
        >>> round_scalars(s)["activelab/num_labeled"]
        8.0
    """
    values: dict[str, float | None] = dict(summary.scalars())
    values.update(_score_stats("labeled", summary.labeled_scores))
    values.update(_score_stats("unlabeled", summary.unlabeled_scores))
    if summary.requests:
        values.update(_score_stats("selected", [r.score for r in summary.requests]))
    values.update(summary.metrics or {})
    out: dict[str, float] = {}
    for key, value in values.items():
        if value is None:
            continue
        number = float(value)
        if math.isnan(number):
            continue
        out[f"{prefix}/{key}"] = number
    return out


def evaluation_scalars(
    round: int, values: Mapping[str, float], *, prefix: str = METRIC_PREFIX
) -> dict[str, float]:
    """The scalars of a round's held-out evaluation: ``<prefix>/round`` and each non-NaN metric.

    Example::

        >>> evaluation_scalars(3, {"test/acc": 0.9})
        {'activelab/round': 3.0, 'activelab/test/acc': 0.9}
    """
    return {
        f"{prefix}/round": float(round),
        **{f"{prefix}/{k}": v for k, v in values.items() if not math.isnan(v)},
    }
