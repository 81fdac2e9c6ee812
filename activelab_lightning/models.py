"""Two small, standard classifiers for the configs and examples (not part of the algorithm).

* :class:`MLPClassifier` for tabular features ``(B, D)`` (the Wall Robot data).
* :class:`SmallCNN` for 32×32 RGB images ``(B, 3, 32, 32)`` float, or ``(B, 32, 32, 3)`` uint8 as
  stored in ``cifar10_test.npz`` (converted on the fly, so the pool stays 4× smaller in memory).

Both return logits from ``forward``; the library's pool inference applies ``softmax``. Both accept
hard ``(B,)`` int64 targets or soft ``(B, K)`` float targets (``ActiveDataModule(soft_targets=True)``),
and log ``train/loss``, ``val/acc`` and ``test/acc`` (torchmetrics), which the
:class:`~activelab_lightning.loop.ActiveLearningLoop` reports per round.

Example::

    >>> import torch
    >>> model = MLPClassifier(input_dim=4, num_classes=3, hidden_dims=(8,))
    >>> model(torch.randn(5, 4)).shape
    torch.Size([5, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

__all__ = ["MLPClassifier", "SmallCNN"]


def _check_positive(owner: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}({name}={value!r}): must be a positive int.")


class _Classifier(pl.LightningModule):
    """Shared training / evaluation logic: cross-entropy on hard or soft targets, Adam."""

    def __init__(self, num_classes: int, lr: float, weight_decay: float) -> None:
        super().__init__()
        _check_positive(type(self).__name__, "num_classes", num_classes)
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}(lr={lr!r}): the learning rate must be > 0.")
        self.num_classes = num_classes
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def _step(self, batch: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        return loss, logits, y

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        loss, _, y = self._step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=y.shape[0])
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        loss, logits, y = self._step(batch)
        target = y.argmax(-1) if y.ndim == 2 else y
        self.val_acc(logits, target)
        self.log("val/loss", loss, batch_size=y.shape[0])
        self.log("val/acc", self.val_acc, batch_size=y.shape[0])

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        _, logits, y = self._step(batch)
        target = y.argmax(-1) if y.ndim == 2 else y
        self.test_acc(logits, target)
        self.log("test/acc", self.test_acc, batch_size=y.shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class MLPClassifier(_Classifier):
    """A multilayer perceptron for tabular features.

    Args:
        input_dim: Number of features ``D``.
        num_classes: Number of classes ``K``.
        hidden_dims: Widths of the hidden layers (ReLU, dropout after each).
        dropout: Dropout probability.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.

    Shapes:
        ``forward``: ``(B, D)`` float → ``(B, K)`` logits.

    Example::

        >>> MLPClassifier(input_dim=4, num_classes=4).hparams["hidden_dims"]
        [64, 64]
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_dims: Sequence[int] = (64, 64),
        dropout: float = 0.1,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(num_classes, lr, weight_decay)
        _check_positive("MLPClassifier", "input_dim", input_dim)
        for width in hidden_dims:
            _check_positive("MLPClassifier", "hidden_dims[...]", width)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPClassifier(dropout={dropout!r}): must be in [0, 1).")
        self.save_hyperparameters(
            {
                "input_dim": input_dim,
                "num_classes": num_classes,
                "hidden_dims": list(hidden_dims),
                "dropout": dropout,
                "lr": lr,
                "weight_decay": weight_decay,
            }
        )
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, D)`` → ``(B, K)`` logits."""
        if x.ndim != 2 or x.shape[1] != self.hparams["input_dim"]:
            raise ValueError(
                f"MLPClassifier.forward(x): expected shape (B, {self.hparams['input_dim']}) (input_dim), "
                f"got {tuple(x.shape)}."
            )
        return self.net(x.float())


class SmallCNN(_Classifier):
    """A small convolutional network for 32×32 RGB images (CIFAR-10 sized).

    Three conv blocks (conv 3×3 → batch norm → ReLU → 2×2 max-pool) of ``width``, ``2·width`` and
    ``4·width`` channels, global average pooling and a linear head.

    Args:
        num_classes: Number of classes ``K``.
        width: Channels of the first block.
        dropout: Dropout before the head.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.

    Shapes:
        ``forward``: ``(B, 3, 32, 32)`` float in ``[0, 1]``, or ``(B, 32, 32, 3)`` uint8 in ``[0, 255]``
        → ``(B, K)`` logits.

    Example::

        >>> SmallCNN(num_classes=10, width=4)(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 32,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
    ) -> None:
        super().__init__(num_classes, lr, weight_decay)
        _check_positive("SmallCNN", "width", width)
        self.save_hyperparameters()
        blocks: list[nn.Module] = []
        channels = 3
        for out in (width, 2 * width, 4 * width):
            blocks += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes))
        self.register_buffer(
            "mean", torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Images → ``(B, K)`` logits (uint8 NHWC is converted to float NCHW first)."""
        if x.dtype == torch.uint8:
            if x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(
                    f"SmallCNN.forward(x): uint8 images must be (B, H, W, 3), got {tuple(x.shape)}."
                )
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"SmallCNN.forward(x): expected (B, 3, H, W) float images, got {tuple(x.shape)}."
            )
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        x = (x - mean) / std
        features = self.features(x)
        return self.head(nn.functional.adaptive_avg_pool2d(features, 1))
