"""The report's dense network as a plain nn.Module, and the LightningModule that trains it."""

from __future__ import annotations

import functools
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from digitnet.errors import DigitnetError


class Dropout(nn.Dropout):
    """nn.Dropout, with a faster mask on the CPU.

    On the CPU, F.dropout draws its mask with bernoulli_, a slow per-element path: for this model's
    (128, 512) activations it costs more than the 512x512 matmul beside it, about 0.65 ms forward and
    backward against 0.22 ms for a mask made as uniform noise >= p. Same distribution: each unit is
    kept with probability 1 - p and scaled by 1 / (1 - p). Elsewhere (CUDA's fused kernel) F.dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        mask = torch.rand_like(x).ge_(self.p).mul_(1 / (1 - self.p))  # (B, H): 0 or 1/(1-p)
        return x * mask


class MLP(nn.Sequential):
    """Flatten -> [Linear -> ReLU -> Dropout] per hidden layer -> Linear to class logits.

    With the defaults this is the Keras report's model: 784-512-512-10, ReLU, dropout 0.2.
    Weights start Glorot-uniform and biases at zero, Keras's defaults for Dense layers.
    """

    def __init__(
        self,
        hidden_sizes: tuple[int, ...] = (512, 512),
        dropout: float = 0.2,
        in_features: int = 28 * 28,
        num_classes: int = 10,
    ) -> None:
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


class DigitClassifier(L.LightningModule):
    """Trains `MLP` with cross-entropy on its logits; accuracy per split.

    Args:
        hidden_sizes: Width of each hidden layer.
        dropout: Dropout probability after each hidden layer.
        optimizer: Any torch.optim optimizer and its arguments, e.g. from the command line
            `--model.optimizer=SGD --model.optimizer.lr=0.05 --model.optimizer.momentum=0.9`.
            None means Adam with torch's defaults. (Not `= torch.optim.Adam`: the CLI would then carry
            Adam's lr and eps over to any other optimizer named on the command line, jsonargparse#460.)
        lr_scheduler: Optional torch.optim.lr_scheduler class and arguments, stepped once per epoch
            (ReduceLROnPlateau watches val/loss).
        cosine_decay: Without an lr_scheduler, decay the learning rate to zero along a half cosine over
            all training steps. It lifts every optimizer's 5-epoch test accuracy by about 0.3 points;
            False keeps the constant learning rate the report used.
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
            raise DigitnetError(f"dropout must be in [0, 1), got {dropout}")
        self.save_hyperparameters()
        if "_instantiator" not in self.hparams:
            self._save_plain_hyperparameters()
        self.net = MLP(tuple(hidden_sizes), dropout)
        optimizer = optimizer or torch.optim.Adam
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        # Build the optimizer once on a throwaway parameter so that bad arguments (lr <= 0, ...)
        # fail now, with torch's own message, rather than after the data is loaded.
        try:
            lr = optimizer([nn.Parameter(torch.zeros(1))]).defaults.get("lr")
        except (ValueError, TypeError) as err:
            raise DigitnetError(f"bad optimizer settings: {err}") from None
        if isinstance(lr, (int, float)) and lr <= 0:
            raise DigitnetError(f"the learning rate must be positive, got --model.optimizer.lr={lr}")
        # One metric object per split, updated per batch and logged once per epoch; their compute()
        # gathers the counts from every process under DDP.
        self.acc = nn.ModuleDict({split: MulticlassAccuracy(num_classes=10, average="micro") for split in ("val", "test")})
        self.loss = nn.ModuleDict({split: MeanMetric() for split in ("val", "test")})

    def _save_plain_hyperparameters(self) -> None:
        """Built in Python rather than by the CLI: store the optimizer and scheduler as the CLI does,
        as class_path + init_args, so the checkpoint holds no Python objects and reloads with
        `load_from_checkpoint(path)` (weights_only) through the same instantiator as a CLI checkpoint."""
        optimizer, scheduler = (_callable_config(self.hparams[key]) for key in ("optimizer", "lr_scheduler"))
        if (self.hparams.optimizer is not None and optimizer is None) or (
            self.hparams.lr_scheduler is not None and scheduler is None
        ):
            return  # a lambda or other callable: checkpoints then need load_from_checkpoint(..., weights_only=False)
        self.save_hyperparameters(
            {
                "hidden_sizes": tuple(self.hparams.hidden_sizes),
                "dropout": self.hparams.dropout,
                "optimizer": optimizer,
                "lr_scheduler": scheduler,
                "cosine_decay": self.hparams.cosine_decay,
                "_instantiator": "lightning.pytorch.cli.instantiate_module",
            }
        )

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` (a string) before and after every hook it calls: ~44 times a
        # training step. nn.Module.__setattr__ first checks each value against Parameter, Buffer and
        # Module, 1 us a time; a string needs none of it (nn.Module.__init__ skips it the same way).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, 28, 28) normalized -> (B, 10) logits

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        # A step of this model takes ~4 ms on 2 CPU cores, and each self.log() call costs Lightning
        # ~0.3 ms, a torchmetrics update ~0.1 ms. So: training accuracy is a running count of correct
        # answers, and the loss is logged only on the steps the logger writes (every log_every_n_steps),
        # which is what Lightning's own LearningRateMonitor checks too.
        self._train_correct.add_((logits.argmax(1) == y).sum())
        self._train_seen += len(y)
        if self.trainer._logger_connector.should_update_logs:
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_correct = torch.zeros((), dtype=torch.long, device=self.device)
        self._train_seen = 0

    def on_train_start(self) -> None:
        self.on_train_epoch_start()  # a run resumed mid-epoch starts without on_train_epoch_start

    def on_train_epoch_end(self) -> None:
        self.log("train/acc", self._train_correct / max(self._train_seen, 1), sync_dist=True)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        x, y = batch
        logits = self(x)
        self.loss[split].update(F.cross_entropy(logits, y), weight=len(y))
        self.acc[split].update(logits, y)

    def _log_epoch(self, split: str) -> torch.Tensor:
        accuracy, loss = self.acc[split].compute(), self.loss[split].compute()
        self.acc[split].reset(), self.loss[split].reset()
        self.log_dict({f"{split}/loss": loss, f"{split}/acc": accuracy}, prog_bar=True)
        return accuracy

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        # TensorBoard's HParams tab compares runs by hp_metric: make it the test accuracy.
        self.log("hp_metric", self._log_epoch("test"))

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=1)  # (B, 10) class probabilities

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The configured optimizer over this model's parameters, in its fused implementation when
        it has one and the configuration leaves `fused` unset: for Adam on the CPU that is about
        0.4 ms of a 4 ms step, with the same arithmetic."""
        optimizer = self.optimizer(self.parameters())
        if "fused" in optimizer.defaults and optimizer.defaults["fused"] is None:
            try:
                optimizer = self.optimizer(self.parameters(), fused=True)
            except (RuntimeError, ValueError):
                pass  # no fused kernel for this device or dtype: keep the default implementation
        return optimizer

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's default checks and converts the clipping settings on every step, clipping or not:
        # about 15 us of a 4 ms step. --trainer.gradient_clip_val and _algorithm still clip as usual.
        if gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        optimizer = self.build_optimizer()
        if self.lr_scheduler is not None:
            scheduler = self.lr_scheduler(optimizer)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
        if not self.hparams.cosine_decay:
            return optimizer
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        decay = functools.partial(half_cosine, total=total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def half_cosine(step: int, total: int) -> float:
    """Learning-rate factor at `step` of `total`: 1 at the start, 0 at the end."""
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def _callable_config(fn: Any) -> dict | None:
    """`torch.optim.SGD` or `functools.partial(torch.optim.SGD, lr=0.1)` as {class_path, init_args}."""
    kwargs = {}
    if isinstance(fn, functools.partial) and not fn.args:
        fn, kwargs = fn.func, dict(fn.keywords)
    if not isinstance(fn, type):
        return None
    return {"class_path": f"{fn.__module__}.{fn.__qualname__}", "init_args": kwargs}
