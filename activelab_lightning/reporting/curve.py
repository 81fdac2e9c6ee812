"""The learning-curve PNG: accuracy vs. number of annotations, one point per round."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from activelab_lightning.records import RoundSummary
from activelab_lightning.reporting.round_log import curve_rows

__all__ = ["plot_learning_curve"]


def plot_learning_curve(
    history: Sequence[RoundSummary | Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str = "ActiveLab learning curve",
) -> Path:
    """Write a PNG of accuracy vs. number of annotations (one point per round).

    Plots test accuracy (the model on held-out data, against the annotations it was trained on) and
    consensus accuracy (the consensus labels against ground truth, against the annotations after the
    round), whichever the rounds report.

    Args:
        history: Round summaries, or round-log records as returned by
            :func:`~activelab_lightning.reporting.read_round_log`.
        path: Where to write the PNG (parent folders are created).
        title: Figure title.

    Returns:
        The written path.

    Example::

        >>> plot_learning_curve(read_round_log("run/labels.sqlite.rounds.jsonl"), "run/curve.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    rows = curve_rows(history)
    if not rows:
        raise ValueError(
            "plot_learning_curve(history=[]): there is nothing to plot; run at least one round first."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    plotted = False
    # the model of round r was trained before the round's answers arrived; the consensus includes them
    for key, x_key, label, marker in (
        ("test_accuracy", "num_annotations_trained", "model (test accuracy)", "o"),
        ("consensus_accuracy", "num_annotations", "consensus labels", "s"),
    ):
        points = [
            (row[x_key] if row.get(x_key) is not None else row["num_annotations"], row[key])
            for row in rows
            if row[key] is not None
        ]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=label)
            plotted = True
    if not plotted:
        ax.text(
            0.5, 0.5, "no ground truth: accuracy unknown", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_xlabel("number of annotations")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if plotted:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path
