"""CIFAR-10 with images: a small CNN, annotators sampled from the CIFAR-10H human label counts.

Needs the two files of the shared data folder (never downloaded here):
``<data-dir>/cifar10_test/cifar10_test.npz`` (the 10,000 test images, uint8 ``(N, 32, 32, 3)``) and
``<data-dir>/cifar10h_counts/cifar10h_counts.npz`` (how many people chose each class per image).

    python examples/cifar10.py --data-dir ../shared/data --rounds 5 --max-epochs 15
    python examples/cifar10.py --data-dir ../shared/data --subset 2000 --rounds 2 --max-epochs 2  # quick look
"""

import argparse
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger

from activelab_lightning import ActiveLabCallback, ActiveLearningLoop
from activelab_lightning.experiments import Cifar10Experiment
from activelab_lightning.models import SmallCNN
from activelab_lightning.reporting import Reporter, round_log_path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", required=True, help="folder holding cifar10_test/ and cifar10h_counts/")
    parser.add_argument("--subset", type=int, default=None, help="use only the first N images")
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--initial-labeled", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--query-size", type=int, default=500)
    parser.add_argument("--width", type=int, default=32, help="channels of the CNN's first block")
    parser.add_argument("--out-dir", default="runs/cifar10_py")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out, data = Path(args.out_dir), Path(args.data_dir)
    pl.seed_everything(args.seed)

    experiment = Cifar10Experiment(
        path=str(data / "cifar10_test" / "cifar10_test.npz"),
        counts_path=str(data / "cifar10h_counts" / "cifar10h_counts.npz"),
        subset=args.subset,
        test_size=args.test_size,
        initial_labeled=args.initial_labeled,
    )
    parts = experiment.build(store_path=out / "labels.sqlite", seed=args.seed)
    model = SmallCNN(num_classes=parts.num_classes, width=args.width)
    reporter = Reporter(round_log_path(out / "labels.sqlite"))
    callback = ActiveLabCallback(
        parts.oracle,
        query_size=args.query_size,
        seed=args.seed,
        true_labels=parts.true_labels,
        reporter=reporter,
    )
    loggers = [CSVLogger(str(out), name="csv")]
    loop = ActiveLearningLoop(
        model,
        parts.datamodule,
        callback,
        trainer_kwargs={"max_epochs": args.max_epochs},
        rounds=args.rounds,
        seed=args.seed,
        loggers=loggers,
    )
    for row in loop.run():
        if row["test"]:
            reporter.log_evaluation(row["round"], row["test"], loggers=loggers)
    print(f"learning curve: {reporter.finish(out / 'learning_curve.png')}")


if __name__ == "__main__":
    main()
