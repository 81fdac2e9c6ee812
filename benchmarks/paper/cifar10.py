"""CIFAR-10 images with CIFAR-10H-sampled annotators: random vs good_random vs entropy vs ActiveLab.

Data (never downloaded): ``<data-dir>/cifar10_test/cifar10_test.npz`` (the 10,000 CIFAR-10 test images)
and ``<data-dir>/cifar10h_counts/cifar10h_counts.npz`` (CIFAR-10H: how many people chose each class per
image). :class:`~activelab_lightning.experiments.Cifar10Experiment` splits the images (fixed split seed 0)
into test images and a pool; ``initial`` pool images start with one label; every requested label is a
draw from that image's CIFAR-10H counts (a fresh annotator id per draw, so annotator identity — which
the paper's real CIFAR-10H annotators had — is not modelled; the per-annotation file is not available).
Unlike the paper, the initial labels are not thinned to the worst annotators, so the consensus starts
around 0.95 instead of 0.82.

Two scales:

* ``--scale cpu`` (default, reduced, runs on a 2-core CPU): the first 5,000 images, 2,000 test /
  3,000 pool, 500 labeled at start, 200 requests per round, 8 rounds (round 0 included), a small CNN
  (``SmallCNN(width=16)``, 15 epochs of batch 32, Adam 1e-3), in-sample labeled ``pred_probs`` (no CV: 5 extra CNN
  fits per round would be 6× the cost).
* ``--scale paper`` (for a GPU): the paper's sizes — 5,000 test / 5,000 pool, 1,000 labeled / 4,000
  unlabeled, 500 requests per round, 13 rounds, 5-fold CV, ``SmallCNN(width=32)``, 30 epochs.

Example::

    OMP_NUM_THREADS=1 python benchmarks/paper/cifar10.py --data-dir ../shared/data --out benchmarks/results/cifar10
    python benchmarks/paper/cifar10.py --data-dir ../shared/data --scale paper --jobs 1   # on a GPU
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

STRATEGIES = ("random", "good_random", "entropy", "least_confidence", "activelab")
SCALES: dict[str, dict[str, Any]] = {
    "cpu": {
        "subset": 5000,
        "test_size": 2000,
        "initial": 500,
        "query_size": 200,
        "rounds": 8,
        "cv_folds": None,
        "width": 16,
        "epochs": 15,
        "batch_size": 32,
        "accelerator": "cpu",
    },
    "paper": {
        "subset": None,
        "test_size": 5000,
        "initial": 1000,
        "query_size": 500,
        "rounds": 13,
        "cv_folds": 5,
        "width": 32,
        "epochs": 30,
        "batch_size": 128,
        "accelerator": "auto",
    },
    "quick": {
        "subset": 400,
        "test_size": 100,
        "initial": 100,
        "query_size": 20,
        "rounds": 3,
        "cv_folds": None,
        "width": 4,
        "epochs": 1,
        "batch_size": 64,
        "accelerator": "cpu",
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--data-dir", type=Path, required=True, help="folder with cifar10_test/ and cifar10h_counts/"
    )
    p.add_argument("--scale", choices=("cpu", "paper"), default="cpu")
    p.add_argument(
        "--strategies",
        nargs="+",
        default=["random", "good_random", "entropy", "activelab"],
        choices=STRATEGIES,
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=None, help="override the scale's number of rounds")
    p.add_argument("--epochs", type=int, default=None, help="override the scale's epochs per fit")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument(
        "--quick", action="store_true", help="smoke test: random + activelab, seed 0, 3 tiny rounds"
    )
    p.add_argument("--label", default=None)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/cifar10"))
    args = p.parse_args(argv)
    args.settings = dict(SCALES["quick" if args.quick else args.scale])
    if args.quick:
        args.seeds, args.strategies = [0], ["random", "activelab"]
    if args.rounds is not None:
        args.settings["rounds"] = args.rounds
    if args.epochs is not None:
        args.settings["epochs"] = args.epochs
    for name in ("cifar10_test/cifar10_test.npz", "cifar10h_counts/cifar10h_counts.npz"):
        if not (args.data_dir / name).is_file():
            p.error(f"--data-dir {args.data_dir}: no {name} there (expected the shared data folder layout)")
    return args


def protocol(args: argparse.Namespace) -> dict[str, Any]:
    s = args.settings
    return {
        "benchmark": "cifar10",
        "scale": "quick" if args.quick else args.scale,
        "rounds": s["rounds"],
        "acquisitions": s["rounds"] - 1,
        "query_size": s["query_size"],
        "seeds": args.seeds,
        "images": s["subset"] or 10000,
        "test_size": s["test_size"],
        "initial_labeled": s["initial"],
        "pred_probs": "in-sample" if s["cv_folds"] is None else f"{s['cv_folds']}-fold CV",
        "temperature_objective": "class-position",
        "consensus": "best_quality",
        "annotators": "draws from the CIFAR-10H per-image counts (one fresh annotator id per draw)",
        "model": {
            "type": "SmallCNN",
            "width": s["width"],
            "epochs": s["epochs"],
            "batch_size": s["batch_size"],
            "optimizer": "Adam lr=1e-3 wd=5e-4",
        },
        "quick": bool(args.quick),
    }


def _worker(job: tuple[argparse.Namespace, str, int]) -> str:
    args, strategy, seed = job
    import torch

    from activelab_lightning import ActiveLabCallback
    from activelab_lightning.experiments import Cifar10Experiment
    from activelab_lightning.models import SmallCNN

    torch.set_num_threads(1)
    s = args.settings
    experiment = Cifar10Experiment(
        path=str(args.data_dir / "cifar10_test" / "cifar10_test.npz"),
        counts_path=str(args.data_dir / "cifar10h_counts" / "cifar10h_counts.npz"),
        subset=s["subset"],
        test_size=s["test_size"],
        initial_labeled=s["initial"],
        split_seed=0,
        batch_size=s["batch_size"],
        inference_batch_size=1024,
    )
    parts = experiment.build(store_path=":memory:", seed=seed)
    callback = ActiveLabCallback(
        parts.oracle,
        query_size=s["query_size"],
        strategy=strategy,
        seed=seed,
        true_labels=parts.true_labels,
        reporter=None,
    )

    def model() -> SmallCNN:
        return SmallCNN(num_classes=parts.num_classes, width=s["width"])

    result = common.measure_run(
        model,
        parts.datamodule,
        callback,
        rounds=s["rounds"],
        cv_folds=s["cv_folds"],
        seed=seed,
        trainer_kwargs={"max_epochs": s["epochs"], "accelerator": s["accelerator"], "devices": 1},
    )
    result.update(strategy=strategy, seed=seed, protocol=protocol(args))
    return common.write_run(common.run_file(args.out, strategy, seed), result)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    label = args.label or f"CIFAR-10 + CIFAR-10H annotators ({protocol(args)['scale']} scale)"
    return common.run_benchmark(args, _worker, protocol(args), label)


if __name__ == "__main__":
    sys.exit(main())
