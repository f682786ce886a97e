"""The LightningModule that trains a network of `digitnet.nets` (the report's dense `MLP` by default)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import warnings

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable, instantiate_class
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.utils.data import TensorDataset
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from digitnet.errors import DigitnetError
from digitnet.nets import MLP
from digitnet.optim import fused_if_available, half_cosine
from digitnet.strings import Strings, ctc_loss, read_right


def callable_config(value):
    """An optimizer or scheduler as plain settings where it is a class or a functools.partial of one with
    keyword arguments (as built in Python); the CLI's settings and anything else are kept as they are."""
    if isinstance(value, type):
        value = functools.partial(value)
    if isinstance(value, functools.partial) and value.args and isinstance(value.args[-1], type):
        # jsonargparse's callable, partial(call, ..., cls, **init_args), as a checkpoint reloaded through Lightning's
        # instantiator holds it: saved as such, the next checkpoint needed weights_only=False
        # (tests/test_model.py::test_a_reloaded_cli_checkpoint_trained_on_saves_one_that_reloads). Taken as the class
        # and its arguments only where those build the same optimizer or scheduler.
        plain = functools.partial(value.args[-1], **value.keywords)
        value = plain if builds_the_same(value, plain) else value
    if isinstance(value, functools.partial) and isinstance(value.func, type) and not value.args:
        cls, kwargs = value.func, {k: list(v) if isinstance(v, tuple) else v for k, v in value.keywords.items()}
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": kwargs}
    return value


def builds_the_same(make, other) -> bool:
    """Whether two callables of the parameters (optimizers) or of an optimizer (schedulers) build the same thing."""
    def build(maker):  # on one parameter of its own, or an optimizer of its own
        parameter = nn.Parameter(torch.zeros(1))
        try:
            return maker([parameter])
        except TypeError:  # a scheduler, which takes an optimizer
            return maker(torch.optim.SGD([parameter], lr=1.0))

    try:
        made, made_other = build(make), build(other)
        return type(made) is type(made_other) and made.state_dict() == made_other.state_dict()
    except Exception:  # noqa: BLE001  whatever a user's callable raises on these: not known to be the same
        return False


def net_config(net: nn.Module) -> dict:
    """A network as the settings of the `__init__` arguments it keeps as same-named attributes; any other argument
    reloads at its default. Warns where they would not rebuild it: its checkpoints would not reload alone."""
    kept = {name: getattr(net, name) for name in inspect.signature(type(net)).parameters if hasattr(net, name)}
    config = callable_config(functools.partial(type(net), **kept))
    plain = all(isinstance(value, (bool, int, float, str, list, tuple, dict, type(None))) for value in kept.values())
    try:  # on the meta device: no memory taken, no random number drawn (a seeded run stays the same)
        with torch.device("meta"):
            same = plain and shapes(instantiate_class((), config).state_dict()) == shapes(net.state_dict())
    except Exception:  # noqa: BLE001  a class defined in a function, a lazy layer, ...: not known to rebuild
        same = False
    if not same:  # nn.Sequential(*layers) keeps no argument: its settings rebuild an empty one
        warnings.warn(f"{type(net).__qualname__} is not rebuilt by the __init__ arguments it keeps as attributes "
                      f"({', '.join(kept) or 'none'}): its checkpoints reload only with the network given, "
                      "DigitClassifier.load_from_checkpoint(path, net=...). Keep each __init__ argument as an "
                      "attribute of the same name, and nothing else under such a name", stacklevel=3)  # fmt: skip
    return config


def shapes(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor of a state_dict (a network's, a checkpoint's), by name."""
    return {name: tuple(tensor.shape) for name, tensor in state_dict.items()}


def from_config(value):
    """What `{"class_path": ..., "init_args": ...}` settings describe, as a callable of the params (or optimizer)."""
    return functools.partial(instantiate_class, init=value) if isinstance(value, dict) else value


@torch.no_grad()
def share_read_right(net: nn.Module, data: TensorDataset | None, batch_size: int = 1000) -> float | None:
    """The share of a TensorDataset of (inputs, labels) that `net` reads right, in eval mode; None for no data."""
    if data is None or len(data) == 0:
        return None
    (x, y), training = data.tensors[:2], net.training
    device = next(net.parameters()).device
    net.eval()
    right = sum(int((net(x[i : i + batch_size].to(device)).argmax(1) == y[i : i + batch_size].to(device)).sum())
                for i in range(0, len(y), batch_size))  # fmt: skip
    net.train(training)
    return right / len(y)


class DigitClassifier(L.LightningModule):
    """Trains a network with cross-entropy on its logits; loss and accuracy per split.

    Args:
        net: The network, any nn.Module from normalized (B, 1, 28, 28) images to (B, 10) logits; None means
            the report's `MLP()`. From the command line: `--model.net=ConvNet --model.net.width=32`,
            `--model.net.dropout=0.3` (the MLP's), or a class of your own by import path.
        optimizer: Any torch.optim optimizer and its arguments, e.g. `--model.optimizer=SGD --model.optimizer.lr=0.05
            --model.optimizer.momentum=0.9`. None means Adam with torch's defaults (None, not Adam, so that an
            optimizer named on the command line starts from its own defaults, not Adam's lr and eps).
        lr_scheduler: Optional torch.optim.lr_scheduler class and arguments, stepped once per epoch
            (ReduceLROnPlateau watches val/loss).
        cosine_decay: Without an lr_scheduler, decay the learning rate to zero along a half cosine over
            all training steps (see docs/optimizers.md); False keeps the report's constant learning rate.
        warmup: With cosine_decay, the share of the training steps over which the learning rate first rises
            linearly from zero (0: none).
        label_smoothing: Training targets put this much probability on the other nine digits, spread evenly
            (0 is the report's plain cross-entropy); validation and test losses are always plain.
        compile: Compile the network with torch.compile before training (`--model.compile=true`).
        non_digit_weight: The weight of the loss on the non-digits a training batch brings (`--data.non_digits`):
            the cross-entropy of their predictions with the uniform distribution, less its minimum, log 10 (outlier
            exposure, docs/numbers.md).
        number_net: A reader of whole numbers trained beside `net`, such as `NumberNet`
            (`--model.number_net=NumberNet`), on the strings of digits each training batch brings (`--data.strings`),
            with CTC; the number reader then reads with both (docs/numbers.md). None: `net` alone.
        number_weight: The weight of number_net's CTC loss.

    `net`, `optimizer` and `lr_scheduler` may also be the `{"class_path": ..., "init_args": {...}}` settings checkpoints
    store; a model built in Python is saved that way, so any checkpoint reloads with `load_from_checkpoint(path)` alone.
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        cosine_decay: bool = True,
        warmup: float = 0.0,
        label_smoothing: float = 0.0,
        compile: bool = False,
        non_digit_weight: float = 0.5,
        number_net: nn.Module | None = None,
        number_weight: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (("label_smoothing", label_smoothing), ("warmup", warmup)):
            if not 0 <= value < 1:
                raise DigitnetError(f"--model.{name} must be in [0, 1), got {value}")
        for name, value in (("non_digit_weight", non_digit_weight), ("number_weight", number_weight)):
            if value < 0:
                raise DigitnetError(f"--model.{name} must be 0 or more, got {value}")
        for name, value, taking, example in (
            ("optimizer", optimizer, "the model's parameters", "torch.optim.SGD, lr=0.1"),
            ("lr_scheduler", lr_scheduler, "the optimizer", "torch.optim.lr_scheduler.StepLR, step_size=2"),
        ):
            # Else the first step fails deep in Lightning ("'str' object is not callable").
            settings = isinstance(value, dict) and "." in str(value.get("class_path"))  # as a checkpoint holds it
            if not (value is None or callable(value) or settings):
                raise DigitnetError(f"{name}={value!r}: give a class, or a callable taking {taking}, such as "
                                    f"functools.partial({example})")  # fmt: skip
        self.save_hyperparameters(ignore=["net", "number_net"])
        if isinstance(net, dict):
            net = instantiate_class((), net)
        if isinstance(number_net, dict):
            number_net = instantiate_class((), number_net)
        self.net = MLP() if net is None else net
        self.number_net = number_net
        # Plain settings instead of the objects, which torch.load(weights_only=True) refuses to unpickle.
        self.hparams["net"] = net_config(self.net)
        self.hparams["number_net"] = None if number_net is None else net_config(number_net)
        for name in ("optimizer", "lr_scheduler"):
            self.hparams[name] = callable_config(self.hparams[name])
        self.make_optimizer = from_config(optimizer) or torch.optim.Adam
        self.make_lr_scheduler = from_config(lr_scheduler)
        self.example_input_array = torch.zeros(1, 1, 28, 28)  # gives the model summary its sizes and FLOPs
        accuracy = functools.partial(MulticlassAccuracy, num_classes=10, average="micro")
        self.train_acc, self.val_acc, self.test_acc = accuracy(), accuracy(), accuracy()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        if number_net is not None:  # else no rows of them in the model summary
            self.val_number_loss, self.val_number_acc = MeanMetric(), MeanMetric()

    def configure_model(self) -> None:
        if self.hparams.compile:
            # The network alone, in place (parameter names kept): the bookkeeping around it would retrace every step.
            self.net.compile()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Callback states only resume a `fit`; in test or predict Lightning would warn that the CLI's callbacks differ.
        with contextlib.suppress(RuntimeError):  # load_from_checkpoint: no Trainer, nothing restores callbacks
            if self.trainer.state.fn != TrainerFn.FITTING:
                checkpoint.pop("callbacks", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, 28, 28) normalized -> (B, 10) logits

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, *extra = batch  # non-digits (M, 1, 28, 28) and Strings when the data brings them (--data.*)
        non_digits = [e for e in extra if torch.is_tensor(e)]
        numbers = next((e for e in extra if isinstance(e, Strings)), None)
        logits = self(torch.cat([x, *non_digits]) if non_digits else x)  # (B + M, 10)
        loss = F.cross_entropy(logits[: len(y)], y, label_smoothing=self.hparams.label_smoothing)
        if non_digits:  # their target is the uniform distribution: cross-entropy with it, less its minimum log 10
            uniform = -logits[len(y) :].log_softmax(dim=1).mean(dim=1) - math.log(10)
            loss = loss + self.hparams.non_digit_weight * uniform.mean()
        ctc = None
        if numbers is not None and self.number_net is not None:
            ctc = ctc_loss(self.number_net(numbers.images), numbers)
            loss = loss + self.hparams.number_weight * ctc
        self.train_acc.update(logits[: len(y)].detach(), y)
        # Logged only on the steps the logger writes: each self.log call costs time (docs/speed.md).
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:  # as Lightning counts them: else the value of a step 49 back
            self.log("train/loss", loss)
            if ctc is not None:
                self.log("train/number_loss", ctc)  # also in train/loss, times --model.number_weight
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/acc", self.train_acc)  # computed over every process, then reset, by Lightning

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, *extra = batch  # and Strings of the batch's digits when the number net trains (--data.strings)
        numbers = next((e for e in extra if isinstance(e, Strings)), None)
        if numbers is not None and self.number_net is not None:
            logits = self.number_net(numbers.images)  # (S, T, 12)
            self.val_number_loss.update(ctc_loss(logits, numbers), weight=len(numbers.lengths))
            self.val_number_acc.update(read_right(logits, numbers))  # the whole string read exactly
            self.log_dict({"val/number_loss": self.val_number_loss, "val/number_acc": self.val_number_acc})
        return self.evaluate((x, y), "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.evaluate(batch, "test")  # the logits go on to TestFigures

    def evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        """Loss and accuracy of a validation or test batch, logged once per epoch over every process."""
        x, y = batch
        logits = self(x)
        loss, acc = getattr(self, f"{split}_loss"), getattr(self, f"{split}_acc")
        loss.update(F.cross_entropy(logits, y), weight=len(y))
        acc.update(logits, y)
        self.log_dict({f"{split}/loss": loss, f"{split}/acc": acc}, prog_bar=split == "val")
        return logits

    def on_test_epoch_end(self) -> None:
        accuracy = self.test_acc.compute()  # over every process
        data = self.trainer.datamodule.hparams if self.trainer.datamodule is not None else {}
        for logger in self.loggers:  # TensorBoard's HParams tab compares runs by hp_metric: the test accuracy
            if isinstance(logger, TensorBoardLogger):  # and by the data's settings too, as hparams.yaml holds them
                logger.log_hyperparams({**data, **self.hparams}, {"hp_metric": accuracy})

    def predict_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        return self(batch[0]).softmax(dim=1)  # every batch holds its (B, 1, 28, 28) images first -> (B, 10)

    def configure_optimizers(self):
        optimizer = fused_if_available(self.make_optimizer, self.parameters())
        if self.make_lr_scheduler is not None:
            scheduler = self.make_lr_scheduler(optimizer)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
        if not self.hparams.cosine_decay:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        decay = functools.partial(half_cosine, total=total, warmup=round(self.hparams.warmup * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
