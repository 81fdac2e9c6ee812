"""Active learning with DDP: data-parallel training and sharded pool inference on 2 CPU processes.

Run it as a script (``strategy="ddp"`` re-launches this file once per extra rank; every rank runs
the same loop in lock-step). Rank 0 scores the pool, asks the oracle, writes the store and logs;
the new labels reach every rank. ``ddp_spawn`` / notebooks are not supported in round mode (the
spawned processes' state is lost after ``fit``). On GPUs use ``--accelerator gpu --devices N``.

    python examples/ddp.py --devices 2 --rounds 3 --max-epochs 10
"""

import argparse
import os
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger

from activelab_lightning import ActiveLabCallback, ActiveLearningLoop
from activelab_lightning.experiments import WallRobotExperiment
from activelab_lightning.models import MLPClassifier
from activelab_lightning.reporting import Reporter, round_log_path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--query-size", type=int, default=100)
    parser.add_argument("--out-dir", default="runs/ddp_py")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out_dir)
    pl.seed_everything(args.seed)

    parts = WallRobotExperiment(standardize=True, batch_size=32).build(
        store_path=out / "labels.sqlite", seed=args.seed
    )
    model = MLPClassifier(input_dim=4, num_classes=parts.num_classes)
    reporter = Reporter(round_log_path(out / "labels.sqlite"))  # logs on rank 0 only
    callback = ActiveLabCallback(
        parts.oracle,
        query_size=args.query_size,
        seed=args.seed,
        true_labels=parts.true_labels,
        reporter=reporter,
    )
    trainer_kwargs = {
        "max_epochs": args.max_epochs,
        "accelerator": args.accelerator,
        "devices": args.devices,
        "strategy": "ddp" if args.devices > 1 else "auto",
    }
    loop = ActiveLearningLoop(
        model,
        parts.datamodule,
        callback,
        trainer_kwargs=trainer_kwargs,
        rounds=args.rounds,
        seed=args.seed,
        loggers=[CSVLogger(str(out), name="csv")],
        test_each_round=False,
    )
    loop.run()
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print(
            f"rounds: {[h['round'] for h in loop.history]}; learning curve: "
            f"{reporter.finish(out / 'learning_curve.png')}"
        )


if __name__ == "__main__":
    main()
