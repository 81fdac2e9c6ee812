"""Small, generic test fixtures: Gaussian blobs and a tiny MLP LightningModule.

``TinyMLP`` trains on ``(x, y, ...)`` batches where ``y`` is either ``(B,)`` class indices or
``(B, K)`` soft targets (``cross_entropy`` accepts both); it records every training batch's
targets and counts its training steps.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F


def make_blobs(
    n: int = 60, d: int = 4, k: int = 3, *, seed: int = 0, spread: float = 3.0
) -> tuple[Tensor, Tensor]:
    """``(x (n, d) float32, y (n,) int64)``: ``k`` Gaussian blobs, classes balanced up to rounding."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * spread
    y = torch.arange(n) % k
    y = y[torch.randperm(n, generator=g)]
    x = centers[y] + torch.randn(n, d, generator=g)
    return x.float(), y.long()


class TinyMLP(pl.LightningModule):
    """``d -> hidden -> k`` MLP with optional dropout; ``forward`` returns logits.

    Attributes:
        train_targets: The ``y`` of every training batch seen (for assertions).
        num_train_batches: Number of training steps run.
    """

    def __init__(
        self,
        in_features: int = 4,
        num_classes: int = 3,
        hidden: int = 16,
        lr: float = 0.1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )
        self.lr = lr
        self.train_targets: list[Tensor] = []
        self.num_train_batches = 0

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        self.train_targets.append(y.detach().cpu())
        self.num_train_batches += 1
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        acc = (self(x).argmax(-1) == y).float().mean()
        self.log("val/acc", acc, prog_bar=False)
        return acc

    def test_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        self.log("test/acc", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def fast_trainer(**kwargs) -> pl.Trainer:
    """A quiet CPU Trainer for tests (no logger, checkpoints, progress bar or model summary)."""
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    defaults.update(kwargs)
    return pl.Trainer(**defaults)
