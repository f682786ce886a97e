"""Stop a diverging run at its first NaN or infinite loss, instead of training on NaN to the last epoch."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping

import lightning as L
import torch

from digitnet.errors import DigitnetError


class TrainingDiverged(DigitnetError):
    """The training loss or the weights became NaN or infinite; the message says at which step and what to try."""


class StopOnNonFiniteLoss(L.Callback):
    """Raises TrainingDiverged at the first NaN or infinite training loss, naming the step.

    Except in one CPU process, losses are buffered (on a GPU a read waits for it) and read every `check_every_n_steps`
    steps, at each epoch end and before any checkpoint is written (the weights too): no checkpoint holds a diverged
    model. DDP processes stop together. Lightning's EarlyStopping(check_finite=True) looks once per validation or
    epoch, stops with no error and lets the checkpoints be written
    (tests/test_faults.py::test_diverging_run_stops_in_the_first_epoch_naming_the_step).

    Args:
        check_every_n_steps: Steps between two reads of the buffer. Default: 1 for one CPU process, else
            the trainer's `log_every_n_steps`, the steps where Lightning reads the logged metrics anyway.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._losses: torch.Tensor | None = None  # (every,) the losses since the last check, on the device
        self._where: list[tuple[int, int, int]] = []  # (step, epoch, batch index) of each buffered loss

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = self.check_every_n_steps
        if every is None:
            one_cpu = trainer.world_size == 1 and pl_module.device.type == "cpu"
            every = 1 if one_cpu else max(trainer.log_every_n_steps, 1)
        self._losses = torch.empty(every, device=pl_module.device) if every > 1 else None
        self._where = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int):
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is None:  # training_step skipped the batch
            return
        where = (trainer.global_step, trainer.current_epoch, batch_idx)
        if self._losses is None:
            value = loss.item()
            if not math.isfinite(value):
                self._diverged(trainer, f"the training loss is {value}", where)
            return
        self._losses[len(self._where)] = loss.detach()  # a device-side copy: no wait
        self._where.append(where)
        if len(self._where) == len(self._losses):
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not trainer.training and not trainer.validating:
            return
        self._check(trainer)
        # The last step of an epoch can turn finite weights into NaN; its loss would show it only next step.
        finite = torch.stack([p.isfinite().all() for p in pl_module.parameters()]).all()
        if not trainer.strategy.reduce_boolean_decision(bool(finite), all=True):
            where = (trainer.global_step, trainer.current_epoch, None)
            self._diverged(trainer, "the weights are NaN or infinite", where)

    def _check(self, trainer: L.Trainer) -> None:
        """Reads the buffered losses (one wait for the device) and stops at the first non-finite one."""
        if self._losses is None:
            return
        n = len(self._where)
        # Index of the first non-finite loss, or n when all are finite; under DDP the smallest over processes.
        bad = torch.cat([~self._losses[:n].isfinite(), torch.ones(1, dtype=torch.bool, device=self._losses.device)])
        first = int(trainer.strategy.reduce(bad.int().argmax(), reduce_op="min"))  # argmax: the first True
        where, self._where = self._where, []
        if first < n:
            value = self._losses[first].item()  # NaN or inf, unless only another process saw it
            what = "the training loss is " + (str(value) if not math.isfinite(value) else "NaN or infinite")
            self._diverged(trainer, what, where[first])

    def _diverged(self, trainer: L.Trainer, what: str, where: tuple[int, int, int | None]) -> None:
        step, epoch, batch_idx = where
        batch = f", batch {batch_idx + 1}/{trainer.num_training_batches}" if batch_idx is not None else ""
        at = f"step {step} (epoch {epoch}{batch})"  # as the progress bar counts: Epoch 0: 4/430
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        adaptive = ", or an adaptive optimizer (--model.optimizer=Adam)"
        adaptive = "" if isinstance(optimizer, torch.optim.Adam) else adaptive
        raise TrainingDiverged(f"training diverged: {what} at {at}; stopped, no checkpoint was written from it.\n"
                               f"Try a lower learning rate{_lr_hint(optimizer)}, gradient clipping "
                               f"(--trainer.gradient_clip_val=1.0){adaptive}.")  # fmt: skip


def _lr_hint(optimizer: torch.optim.Optimizer | None) -> str:
    """' (this run: --model.optimizer.lr=10000; SGD's default is 0.001)', or '' when unknown."""
    if optimizer is None:
        return ""
    group = optimizer.param_groups[0]
    lr = group.get("initial_lr", group.get("lr"))  # initial_lr: before the LR schedule decayed it
    default = getattr(inspect.signature(type(optimizer)).parameters.get("lr"), "default", None)
    parts = [f"this run: --model.optimizer.lr={lr:g}"] if isinstance(lr, (int, float)) else []
    if isinstance(default, (int, float)):
        parts.append(f"{type(optimizer).__name__}'s default is {default:g}")
    return f" ({'; '.join(parts)})" if parts else ""
