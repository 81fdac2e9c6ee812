"""The quickstart in Python: ActiveLab on the bundled Wall Robot data with simulated annotators.

The same experiment as ``activelab run --config configs/quickstart.yaml``: 30 simulated annotators
(~85% accurate), 1,000 of 2,000 pool rows with noisy initial labels, an MLP, a few rounds of 100
label requests. Each round's metrics go to a CSV logger and an offline W&B run (no account needed);
the round log, the learning curve and the annotation store land in ``--out-dir``.

    python examples/quickstart.py --rounds 5 --max-epochs 20
"""

import argparse
import os
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from activelab_lightning import ActiveLabCallback, ActiveLearningLoop
from activelab_lightning.experiments import WallRobotExperiment
from activelab_lightning.models import MLPClassifier
from activelab_lightning.reporting import Reporter, round_log_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--query-size", type=int, default=100)
    parser.add_argument("--out-dir", default="runs/quickstart_py")
    parser.add_argument("--no-wandb", action="store_true", help="log to CSV only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    out = Path(args.out_dir)
    pl.seed_everything(args.seed)

    # data: pool, annotation store (resumable), datamodule with the noisy initial labels, simulated oracle
    parts = WallRobotExperiment(standardize=True).build(store_path=out / "labels.sqlite", seed=args.seed)
    model = MLPClassifier(input_dim=4, num_classes=parts.num_classes, hidden_dims=(64, 64), lr=1e-2)
    reporter = Reporter(round_log_path(out / "labels.sqlite"))  # round log + console table
    callback = ActiveLabCallback(
        parts.oracle,
        query_size=args.query_size,
        strategy="activelab_ensemble",
        seed=args.seed,
        true_labels=parts.true_labels,
        reporter=reporter,
    )
    loggers = [CSVLogger(str(out), name="csv")]
    if not args.no_wandb:
        loggers.append(WandbLogger(save_dir=str(out), project="activelab-quickstart", offline=True))
    loop = ActiveLearningLoop(
        model,
        parts.datamodule,
        callback,
        trainer_kwargs={"max_epochs": args.max_epochs},
        rounds=args.rounds,
        seed=args.seed,
        loggers=loggers,
    )
    history = loop.run()  # resumes from the store if re-run
    for row in history:  # the model of each round, tested after its acquisition
        if row["test"]:
            reporter.log_evaluation(row["round"], row["test"], loggers=loggers)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
    png = reporter.finish(out / "learning_curve.png")
    print(f"round log: {reporter.round_log}\nlearning curve: {png}")


if __name__ == "__main__":
    main()
