"""Shared pieces of the paper benchmarks: one measured run of the loop, and the parallel driver.

A benchmark run has ``rounds`` measurement points (round 0 = before any new label). The
:class:`~activelab_lightning.loop.ActiveLearningLoop` acquires at the end of each round's fit, so
``rounds - 1`` loop rounds give the model accuracy of points ``0 .. rounds-2`` and the consensus
after each acquisition; one last fit on the final consensus gives point ``rounds - 1``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Every strategy the paper benchmarks compare, in report order.
STRATEGIES: tuple[str, ...] = (
    "random",
    "good_random",
    "entropy",
    "least_confidence",
    "margin",
    "disagreement",
    "activelab",
    "activelab_ensemble",
)

TRAINER_DEFAULTS: dict[str, Any] = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "enable_checkpointing": False,
    "num_sanity_val_steps": 0,
}


def measure_run(
    model: Callable[[], Any],
    datamodule: Any,
    callback: Any,
    *,
    rounds: int,
    cv_folds: int | None,
    seed: int,
    trainer_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Run ``rounds - 1`` acquisitions plus a final fit; return per-round curves.

    Returns:
        ``model_acc`` / ``consensus_acc`` / ``num_annotations`` / ``num_labeled`` (``rounds`` values each),
        ``num_new`` / ``temperature`` / ``round_seconds`` (one per acquisition), ``seconds``.
    """
    import lightning.pytorch as pl

    from activelab_lightning import ActiveLearningLoop
    from activelab_lightning.selection import round_seed

    started = time.perf_counter()
    store = datamodule.store
    kwargs = {**TRAINER_DEFAULTS, **trainer_kwargs}
    consensus = [datamodule.consensus_accuracy()]
    annotations = [len(store)]
    labeled = [int(datamodule.labeled_ids.numel())]
    loop = ActiveLearningLoop(
        model, datamodule, callback, trainer_kwargs=kwargs, rounds=rounds - 1, cv_folds=cv_folds, seed=seed
    )
    history = loop.run()
    for row in history:
        consensus.append(row["consensus_accuracy"])
        annotations.append(row["num_annotations"])
        labeled.append(row["num_labeled"])
    model_acc = [float(row["test"]["test/acc"]) for row in history]
    pl.seed_everything(round_seed(seed, rounds - 1) % (2**32), workers=True, verbose=False)
    final = model()
    trainer = pl.Trainer(**kwargs)
    trainer.fit(final, datamodule=datamodule)
    model_acc.append(float(trainer.test(final, datamodule=datamodule, verbose=False)[0]["test/acc"]))
    return {
        "model_acc": model_acc,
        "consensus_acc": consensus,
        "num_annotations": annotations,
        "num_labeled": labeled,
        "num_new": [row["num_new"] for row in history],
        "temperature": [h.get("temperature") for h in callback.history],
        "round_seconds": [row["seconds"] for row in history],
        "seconds": time.perf_counter() - started,
    }


def run_file(out: Path, strategy: str, seed: int) -> Path:
    """Where one run's JSON lives."""
    return out / "runs" / f"{strategy}-s{seed}.json"


def write_run(path: Path, result: dict[str, Any]) -> str:
    """Atomically write one run's JSON; return a one-line summary."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)
    model, consensus = result["model_acc"], result["consensus_acc"]
    return (
        f"{result['strategy']} seed {result['seed']}: model AUC {sum(model) / len(model):.4f}, "
        f"consensus AUC {sum(consensus) / len(consensus):.4f}, {result['seconds']:.0f} s"
    )


def drive(worker: Callable[[Any], str], jobs: list[Any], *, processes: int) -> float:
    """Run ``worker(job)`` for every job, ``processes`` at a time (fresh spawned process per job);
    print each summary line; return the wall time in seconds."""
    started = time.perf_counter()
    if processes > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(min(processes, len(jobs)), maxtasksperchild=1) as pool:
            for line in pool.imap_unordered(worker, jobs):
                print(line, flush=True)
    else:
        for job in jobs:
            print(worker(job), flush=True)
    return time.perf_counter() - started


def import_report() -> Any:
    """The sibling ``report`` module (the scripts run as files, not as a package)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import report

    return report


def run_benchmark(args: Any, worker: Callable[[Any], str], protocol: dict[str, Any], label: str) -> int:
    """The ``main`` of every benchmark script: run the ``(args, strategy, seed)`` jobs whose run file
    is missing (an interrupted command resumes), then write ``results.json``/``.md``/``curves.png``."""
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    jobs = [
        (args, s, seed)
        for seed in args.seeds
        for s in args.strategies
        if not run_file(args.out, s, seed).exists()
    ]
    wall = drive(worker, jobs, processes=args.jobs)
    import_report().write_report(
        args.out, protocol, label=label, wall_seconds=wall, strategies=args.strategies, seeds=args.seeds
    )
    print(f"wrote {args.out}/results.json, results.md, curves.png (wall {wall:.0f} s)")
    return 0
