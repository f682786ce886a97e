"""The report's dense network as a plain nn.Module, and the LightningModule that trains it."""

from __future__ import annotations

import functools

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from digitnet.errors import DigitnetError
from digitnet.optim import fused_if_available, half_cosine


class Dropout(nn.Dropout):
    """nn.Dropout with its mask drawn as uniform noise >= p on the CPU: the same distribution, but torch's
    CPU `bernoulli_` costs more than the 512x512 matmul beside it (see the README's Speed section)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        return x * torch.rand_like(x).ge_(self.p).mul_(1 / (1 - self.p))  # (B, H) mask: 0 or 1/(1-p)


class MLP(nn.Sequential):
    """Flatten -> [Linear -> ReLU -> Dropout] per hidden layer -> Linear to class logits.

    With the defaults this is the Keras report's model: 784-512-512-10, ReLU, dropout 0.2.
    Weights start Glorot-uniform and biases at zero, Keras's defaults for Dense layers.
    """

    def __init__(self, hidden_sizes: tuple[int, ...] = (512, 512), dropout: float = 0.2,
                 in_features: int = 28 * 28, num_classes: int = 10) -> None:  # fmt: skip
        layers: list[nn.Module] = [nn.Flatten()]  # (B, 1, 28, 28) -> (B, 784)
        for size in hidden_sizes:
            layers += [nn.Linear(in_features, size), nn.ReLU(), Dropout(dropout)]
            in_features = size
        layers.append(nn.Linear(in_features, num_classes))  # (B, hidden) -> (B, 10) logits
        super().__init__(*layers)
        for layer in self:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)


def accuracy() -> MulticlassAccuracy:
    # validate_args=False: the argument checks read values back from the device at every update.
    return MulticlassAccuracy(num_classes=10, average="micro", validate_args=False)


class DigitClassifier(L.LightningModule):
    """Trains `MLP` with cross-entropy on its logits; loss and accuracy per split.

    Args:
        hidden_sizes: Width of each hidden layer.
        dropout: Dropout probability after each hidden layer.
        optimizer: Any torch.optim optimizer and its arguments, e.g. from the command line
            `--model.optimizer=SGD --model.optimizer.lr=0.05 --model.optimizer.momentum=0.9`.
            None means Adam with torch's defaults (None, not Adam, as the default: an optimizer named on
            the command line then starts from its own defaults rather than Adam's lr and eps).
        lr_scheduler: Optional torch.optim.lr_scheduler class and arguments, stepped once per epoch
            (ReduceLROnPlateau watches val/loss).
        cosine_decay: Without an lr_scheduler, decay the learning rate to zero along a half cosine over
            all training steps (see the README's Results); False keeps the report's constant learning rate.
    """

    def __init__(
        self,
        hidden_sizes: tuple[int, ...] = (512, 512),
        dropout: float = 0.2,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        cosine_decay: bool = True,
    ) -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise DigitnetError(f"--model.dropout must be in [0, 1), got {dropout}")
        self.save_hyperparameters()
        self.make_optimizer, self.make_lr_scheduler = optimizer or torch.optim.Adam, lr_scheduler
        self.net = MLP(tuple(hidden_sizes), dropout)
        self.example_input_array = torch.zeros(1, 1, 28, 28)  # gives the model summary its sizes and FLOPs
        self.train_acc, self.val_acc, self.test_acc = accuracy(), accuracy(), accuracy()
        # nan_strategy="disable": no check that reads every value back from the device; a NaN loss shows as NaN.
        self.val_loss, self.test_loss = MeanMetric(nan_strategy="disable"), MeanMetric(nan_strategy="disable")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, 28, 28) normalized -> (B, 10) logits

    # The *_step methods hold the arithmetic alone, so that torch.compile(model) compiles them once; the
    # bookkeeping (metrics, logging: Python counters that change every step) lives in the *_batch_end hooks.
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits.detach()}

    def on_train_batch_end(self, outputs: dict[str, torch.Tensor], batch, batch_idx: int) -> None:
        self.train_acc.update(outputs["logits"], batch[1])
        # Logged only on the steps the logger writes: a self.log call costs about a tenth of this model's step.
        every = self.trainer.log_every_n_steps
        if every and self.global_step % every == 0:
            self.log("train/loss", outputs["loss"])

    def on_train_epoch_end(self) -> None:
        self.log("train/acc", self.train_acc)  # computed over every process, then reset, by Lightning

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch[0])

    def on_validation_batch_end(self, logits: torch.Tensor, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.val_loss.update(F.cross_entropy(logits, batch[1]), weight=len(logits))
        self.val_acc.update(logits, batch[1])

    def on_validation_epoch_end(self) -> None:
        self.log_dict({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch[0])

    def on_test_batch_end(self, logits: torch.Tensor, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.test_loss.update(F.cross_entropy(logits, batch[1]), weight=len(logits))
        self.test_acc.update(logits, batch[1])

    def on_test_epoch_end(self) -> None:
        accuracy = self.test_acc.compute()  # over every process
        self.log_dict({"test/loss": self.test_loss, "test/acc": self.test_acc})
        for logger in self.loggers:  # TensorBoard's HParams tab compares runs by hp_metric: the test accuracy
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(self.hparams, {"hp_metric": accuracy})

    def predict_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        return self(batch[0]).softmax(dim=1)  # every batch holds its (B, 1, 28, 28) images first -> (B, 10)

    def configure_optimizers(self):
        optimizer = fused_if_available(self.make_optimizer, self.parameters())
        if self.make_lr_scheduler is not None:
            scheduler = self.make_lr_scheduler(optimizer)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
        if not self.hparams.cosine_decay:
            return optimizer
        decay = functools.partial(half_cosine, total=self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
