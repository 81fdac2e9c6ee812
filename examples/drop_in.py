"""Drop ActiveLab into an existing Lightning script.

The script below is an ordinary Lightning training script (a model, a dataset, a Trainer). The lines
marked ``# + activelab`` are all it takes to turn it into active learning with re-labeling: an
annotation store, the ActiveDataModule in place of your DataLoader, the ActiveLabCallback, and a
loop of rounds (one fresh Trainer per round).

    python examples/drop_in.py --rounds 3 --max-epochs 10
"""

import argparse

import lightning.pytorch as pl
import torch
from torch.utils.data import TensorDataset

from activelab_lightning import ActiveDataModule, ActiveLabCallback, AnnotationStore  # + activelab
from activelab_lightning.datasets import make_paper_setup  # + activelab (the bundled demo data)


class LitClassifier(pl.LightningModule):  # your existing model, unchanged
    def __init__(self, input_dim: int = 4, num_classes: int = 4) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(input_dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, num_classes)
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--query-size", type=int, default=50)
    parser.add_argument(
        "--store", default=":memory:", help="annotation store file (':memory:' keeps nothing)"
    )
    args = parser.parse_args()
    pl.seed_everything(0)

    demo = make_paper_setup(standardize=True)  # pool features, noisy initial labels, simulated annotators
    dataset: TensorDataset = demo.dataset

    store = AnnotationStore(
        args.store, num_examples=len(dataset), class_names=demo.class_names
    )  # + activelab
    datamodule = ActiveDataModule(
        dataset,
        store,
        batch_size=64,  # + activelab
        initial_labels=list(demo.initial_annotations),
        true_labels=demo.true_labels,
    )
    callback = ActiveLabCallback(
        demo.oracle,
        query_size=args.query_size,  # + activelab
        true_labels=demo.true_labels,
        reporter=None,
    )
    for _round in range(args.rounds):  # + activelab: one fresh Trainer per round
        model = LitClassifier()
        trainer = pl.Trainer(
            max_epochs=args.max_epochs,
            callbacks=[callback],
            logger=False,  # + callback
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, datamodule=datamodule)  # + datamodule= instead of your train loader
        s = callback.last_summary
        print(
            f"round {s.round}: {s.num_new} new + {s.num_relabel} re-labels -> {s.num_annotations} annotations, "
            f"consensus accuracy {s.consensus_accuracy:.3f}"
        )


if __name__ == "__main__":
    main()
