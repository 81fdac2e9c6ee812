"""The ActiveLab paper's Wall Robot benchmark with the library's Lightning loop — one command.

Protocol (Goh & Mueller 2023, ``wall-robot``; see ``benchmarks/results/README.md``):

* data: :func:`~activelab_lightning.datasets.make_paper_setup` — 4-sensor Wall Robot, class-stratified
  3,000-row subset, 1,000 test rows, 1,000 labeled + 1,000 unlabeled training rows, 30 simulated
  annotators (noise-matrix trace 0.85·K), thinned so most examples start with one label
  (``--variant completely_labeled``: all 2,000 rows labeled, trace 0.80·K, no unlabeled pool). The
  data and the label noise are fixed (setup seed 123); the run seed varies model init, CV shuffling,
  random scores and the oracle's choice of annotator (``setup.make_oracle(seed)``).
* model: a one-hidden-layer MLP (100 units, Adam) trained with Lightning each round on the consensus
  labels; labeled ``pred_probs`` out-of-sample from the callback's cross-fitted heads (the library default,
  one fit per round), the loop's 5 fold models (``--cv-folds 5``, as in the paper, 6 fits per round)
  or in-sample (``--in-sample``, the old default).
* rounds: ``--rounds 20`` measurement points (round 0 = before any new label), i.e. 19 acquisitions
  of ``--query-size 100`` requests; round ``r``'s model is trained on the consensus after ``r``
  acquisitions and tested on the 1,000 test rows; consensus accuracy is measured on the labeled set
  against the true labels at the same point (:func:`common.measure_run`).
* consensus: CROWDLAB (``best_quality``) for every method by default; ``--consensus majority_vote``
  is the paper's rule for its baselines (majority vote, model as tie-break).

Runs are independent processes (``--jobs``, one per core, ``OMP_NUM_THREADS=1``); each writes
``<out>/runs/<strategy>-s<seed>.json`` and is skipped when that file exists (resume). The
aggregate ``<out>/results.json``, ``<out>/results.md`` and ``<out>/curves.png`` are written by
:mod:`report` at the end.

Example::

    OMP_NUM_THREADS=1 python benchmarks/paper/wall_robot.py --out benchmarks/results/wall_robot
    python benchmarks/paper/wall_robot.py --quick --out /tmp/wr-quick
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

STRATEGIES = common.STRATEGIES
QUICK = {"seeds": [0], "rounds": 3, "strategies": ["random", "activelab"], "epochs": 10}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--variant", choices=("paper", "completely_labeled"), default="paper")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--rounds", type=int, default=20, help="measurement points, round 0 included")
    p.add_argument("--query-size", type=int, default=100)
    p.add_argument(
        "--cv-folds",
        type=int,
        default=0,
        help="K > 1: the loop's K-fold reference (K extra fits per round); 0: one fit per round",
    )
    p.add_argument(
        "--out-of-sample",
        choices=("crossfit", "in_sample"),
        default="crossfit",
        help="the callback's labeled-pool predictions when --cv-folds is 0 (crossfit = the library default)",
    )
    p.add_argument("--in-sample", action="store_true", help="alias of --out-of-sample in_sample --cv-folds 0")
    p.add_argument(
        "--setup-seed", type=int, default=123, help="data / noise seed (123 = the paper benchmark)"
    )
    p.add_argument(
        "--temperature-objective", choices=("class-position", "cleanlab-2.9"), default="class-position"
    )
    p.add_argument(
        "--consensus",
        choices=("best_quality", "majority_vote"),
        default="best_quality",
        help="CROWDLAB consensus of the training targets (majority_vote = the paper's baselines)",
    )
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--hidden", type=int, nargs="+", default=[100])
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay of the MLP")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (one per core)")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: {QUICK['strategies']}, seed 0, {QUICK['rounds']} rounds, {QUICK['epochs']} epochs",
    )
    p.add_argument("--label", default=None, help="name of this benchmark in the report")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/wall_robot"))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.strategies, args.epochs = (
            QUICK["seeds"],
            QUICK["rounds"],
            QUICK["strategies"],
            QUICK["epochs"],
        )
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: need at least 1 (round 0 = before any new label)")
    if args.in_sample:
        args.out_of_sample, args.cv_folds = "in_sample", 0
    if args.cv_folds == 1 or args.cv_folds < 0:
        p.error(f"--cv-folds {args.cv_folds}: 0 (one fit per round) or >= 2")
    if (
        args.out_of_sample == "in_sample"
        and not args.cv_folds
        and any(s in ("disagreement", "activelab_ensemble") for s in args.strategies)
    ):
        p.error(
            "--out-of-sample in_sample: the ensemble strategies (disagreement, activelab_ensemble) need the "
            "cross-fitted heads or the CV fold models; drop them from --strategies"
        )
    return args


def protocol(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that define the benchmark (stored next to the results)."""
    return {
        "benchmark": "wall_robot",
        "variant": args.variant,
        "rounds": args.rounds,
        "acquisitions": args.rounds - 1,
        "query_size": args.query_size,
        "seeds": args.seeds,
        "pred_probs": f"{args.cv_folds}-fold CV" if args.cv_folds else args.out_of_sample,
        "setup_seed": args.setup_seed,
        "temperature_objective": args.temperature_objective,
        "consensus": args.consensus,
        "model": {
            "type": "MLP",
            "hidden": args.hidden,
            "lr": args.lr,
            "weight_decay": getattr(args, "weight_decay", 0.0),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": "Adam",
            "features": "standardized",
        },
        "data": (
            f"make_paper_setup(seed={args.setup_seed}, standardize=True"
            + (", completely_labeled=True)" if args.variant == "completely_labeled" else ")")
        ),
        "quick": bool(args.quick),
    }


def run_one(args: argparse.Namespace, strategy: str, seed: int) -> dict[str, Any]:
    """One active-learning run; returns per-round curves (see :func:`common.measure_run`)."""
    import torch

    from activelab_lightning import ActiveDataModule, ActiveLabCallback, AnnotationStore
    from activelab_lightning.datasets import make_paper_setup
    from activelab_lightning.models import MLPClassifier

    torch.set_num_threads(1)
    setup = make_paper_setup(
        seed=args.setup_seed, standardize=True, completely_labeled=args.variant == "completely_labeled"
    )
    store = AnnotationStore(":memory:", num_examples=len(setup.dataset), class_names=setup.class_names)
    dm = ActiveDataModule(
        setup.dataset,
        store,
        test_dataset=setup.test_dataset,
        batch_size=args.batch_size,
        inference_batch_size=4096,
        initial_labels=list(setup.initial_annotations),
        true_labels=setup.true_labels,
        consensus_method=args.consensus,
        seed=seed,
    )
    callback = ActiveLabCallback(
        setup.make_oracle(seed),
        query_size=args.query_size,
        strategy=strategy,
        seed=seed,
        temperature_objective=args.temperature_objective,
        true_labels=setup.true_labels,
        reporter=None,
        out_of_sample=args.out_of_sample,
    )

    def model() -> MLPClassifier:
        return MLPClassifier(
            setup.features.shape[1],
            setup.num_classes,
            hidden_dims=tuple(args.hidden),
            dropout=0.0,
            lr=args.lr,
            weight_decay=getattr(args, "weight_decay", 0.0),
        )

    result = common.measure_run(
        model,
        dm,
        callback,
        rounds=args.rounds,
        cv_folds=args.cv_folds or None,
        seed=seed,
        trainer_kwargs={"max_epochs": args.epochs, "accelerator": "cpu", "devices": 1},
    )
    return {"strategy": strategy, "seed": seed, **result}


def _worker(job: tuple[argparse.Namespace, str, int]) -> str:
    args, strategy, seed = job
    result = run_one(args, strategy, seed)
    result["protocol"] = protocol(args)
    return common.write_run(common.run_file(args.out, strategy, seed), result)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return common.run_benchmark(args, _worker, protocol(args), args.label or args.out.name)


if __name__ == "__main__":
    sys.exit(main())
