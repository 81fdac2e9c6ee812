"""Per-round reporting: every Lightning logger, W&B extras, the round log, console and plots.

One :class:`~activelab_lightning.records.RoundSummary` per acquisition round goes through
:meth:`Reporter.log_round`, which (on rank 0 only)

* logs the round's scalars under ``activelab/...`` through **every** logger in ``trainer.loggers``
  (W&B, CSV, TensorBoard alike) with ``step=summary.round``: a fresh Trainer per round resets
  ``global_step``, so ``activelab/round`` is the x-axis (:mod:`.scalars`, :mod:`.loggers`);
* adds logger-specific extras behind one check of the logger's kind: for W&B score histograms, a
  table of the round's selected examples, an annotator-quality table and learning curves; for
  TensorBoard score histograms (:mod:`.loggers`);
* appends one JSON object per round to the round log (JSONL, append + fsync), the stable record of
  what was asked and answered, and rewrites a small learning-curve CSV next to it (:mod:`.round_log`);
* prints a one-row summary table on the console with ``rich`` (:mod:`.console`).

:meth:`Reporter.finish` prints the whole table and writes the learning-curve PNG (accuracy vs.
number of annotations, :mod:`.curve`). :meth:`Reporter.track` wraps a pool-inference iterator in a
``rich`` progress bar on long pools.

Example::

    >>> from activelab_lightning.reporting import Reporter
    >>> reporter = Reporter("run/store.sqlite.rounds.jsonl", console=False)  # doctest: +SKIP
    >>> reporter.log_round(trainer, summary)                                 # doctest: +SKIP
    >>> reporter.finish("run/learning_curve.png")                            # doctest: +SKIP
"""

from __future__ import annotations

from activelab_lightning.metrics import accuracy
from activelab_lightning.reporting.curve import plot_learning_curve
from activelab_lightning.reporting.reporter import Reporter
from activelab_lightning.reporting.round_log import read_round_log, round_log_path
from activelab_lightning.reporting.scalars import METRIC_PREFIX, round_scalars

__all__ = [
    "METRIC_PREFIX",
    "Reporter",
    "accuracy",
    "plot_learning_curve",
    "read_round_log",
    "round_log_path",
    "round_scalars",
]
