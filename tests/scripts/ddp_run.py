"""A small multi-round active-learning run, launched by ``tests/test_ddp.py`` as a subprocess.

With ``--devices 2`` Lightning's ``strategy="ddp"`` launcher re-runs this script for rank 1. The
weights are fixed (``lr=0``) so a 1-process and a 2-process run must select the same examples.
Outputs in ``--out``: ``oracle_calls.jsonl`` (one line per request the oracle received, with the
rank that asked), ``rank<R>.json`` (every rank's final datamodule view) and, from rank 0,
``selections.json`` (the store's rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lightning.pytorch as pl
import torch
from torch.utils.data import TensorDataset

from activelab_lightning.callback import ActiveLabCallback
from activelab_lightning.data import ActiveDataModule
from activelab_lightning.loop import ActiveLearningLoop
from activelab_lightning.oracles import SimulatedOracle
from activelab_lightning.store import AnnotationStore
from tests._models import TinyMLP, make_blobs

N, D, K = 203, 4, 3  # odd pool sizes force padded DDP shards


class LoggingOracle:
    """Appends one line per received request to a file, then answers with the simulated oracle."""

    name = "logging"

    def __init__(self, inner: SimulatedOracle, path: Path) -> None:
        self.inner, self.path = inner, path

    def request(self, requests):
        rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
        with open(self.path, "a") as fh:
            fh.writelines(
                json.dumps({"rank": rank, "pid": os.getpid(), "request_id": q.request_id}) + "\n"
                for q in requests
            )
        return self.inner.request(requests)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--store", choices=["file", "memory"], default="file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--query", type=int, default=15)
    parser.add_argument("--strategy", default="activelab")
    parser.add_argument("--cv-folds", type=int, default=None)
    parser.add_argument("--continuous", action="store_true", help="one fit, acquiring after every epoch")
    args = parser.parse_args()
    torch.set_num_threads(1)

    x, y = make_blobs(N, D, K, seed=0, spread=1.5)
    path = str(args.out / "store.sqlite") if args.store == "file" else ":memory:"
    store = AnnotationStore(path, num_examples=N, class_names=["a", "b", "c"])
    simulated = SimulatedOracle(y, [0.9, 0.8, 0.7, 0.75, 0.85, 0.6], seed=0)
    dm = ActiveDataModule(
        TensorDataset(x),
        store,
        batch_size=16,
        inference_batch_size=32,
        initial_labeled=51,
        initial_labels=simulated,
        true_labels=y,
        seed=0,
    )
    callback = ActiveLabCallback(
        LoggingOracle(simulated, args.out / "oracle_calls.jsonl"),
        args.query,
        args.strategy,
        seed=0,
        every_n_epochs=1 if args.continuous else None,
    )
    torch.manual_seed(0)
    model = TinyMLP(D, K, lr=0.0)  # fixed weights
    trainer_kwargs = {
        "accelerator": "cpu",
        "devices": args.devices,
        "max_epochs": 1,
        "num_sanity_val_steps": 0,
        "strategy": "ddp" if args.devices > 1 else "auto",
    }
    if args.continuous:  # one fit; the train set grows after every epoch
        trainer = pl.Trainer(
            **{**trainer_kwargs, "max_epochs": args.rounds},
            reload_dataloaders_every_n_epochs=1,
            callbacks=[callback],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
        )
        trainer.fit(model, datamodule=dm)
    else:
        loop = ActiveLearningLoop(
            model,
            dm,
            callback,
            trainer_kwargs=trainer_kwargs,
            rounds=args.rounds,
            test_each_round=False,
            cv_folds=args.cv_folds,
        )
        loop.run()

    rank = int(os.environ.get("LOCAL_RANK", "0"))
    view = {
        "labeled_ids": dm.labeled_ids.tolist(),
        "consensus": dm.consensus_labels.tolist(),
        "num_annotations": len(store),
        "rounds": [[r.round, list(r.selected_ids), r.status] for r in store.rounds()],
    }
    (args.out / f"rank{rank}.json").write_text(json.dumps(view))
    if rank == 0:
        (args.out / "selections.json").write_text(json.dumps(view["rounds"]))


if __name__ == "__main__":
    main()
