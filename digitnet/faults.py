"""Surviving a crash: atomic checkpoint files, a last.ckpt kept current, Ctrl-C, and `--ckpt_path last`.

    python -m digitnet fit ...                     # killed, Ctrl-C'd or preempted at any moment
    python -m digitnet fit ... --ckpt_path last    # the same command: continues in the same run folder

What Lightning already does and is used as is: restoring the model, optimizer, LR scheduler, loop
counters and callbacks from a checkpoint, including one written in the middle of an epoch.
What it does not do, and this module adds:
- `AtomicCheckpointIO`: a kill while a checkpoint is being written leaves the previous file intact.
- `LastCheckpoint`: last.ckpt at every epoch end and N training steps after its last save. (ModelCheckpoint's
  save_last=True refreshes it, since Lightning 2.6, only when val/acc improves.)
- Ctrl-C finishes the current step, saves last.ckpt and stops (`TrainingInterrupted`).
- which run `--ckpt_path last` continues, and the command that resumes one, are `digitnet.checkpoints`'.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from digitnet.errors import DigitnetError
from digitnet.files import replacing, temporary_files


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside its target, flushes it to disk, then renames it over
    the target: a kill at any moment leaves the old complete file or the new complete file, never a part.

    Lightning's TorchCheckpointIO writes through an fsspec transaction whose temporary file lies in
    $TMPDIR: where that is another filesystem (a tmpfs /tmp, a container volume) the final move is a
    copy that a kill can cut short, and every killed write leaves an orphan file there. Remote paths
    (s3://, ...) still go through Lightning's implementation.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # s3://, gs://, ...: an fsspec URL
            return super().save_checkpoint(checkpoint, path, storage_options)
        # One process writes a given checkpoint path (rank 0), so a temporary file beside it is a killed
        # writer's, never a live one's.
        for stale in temporary_files(path):
            stale.unlink(missing_ok=True)
        with replacing(path) as tmp:
            torch.save(checkpoint, tmp)


class TrainingInterrupted(Exception):
    """Ctrl-C stopped `fit` between two steps, after saving `checkpoint` (None with fast_dev_run)."""

    def __init__(self, step: int, epoch: int, checkpoint: str | None) -> None:
        saved = f"; saved {checkpoint}" if checkpoint else ""
        super().__init__(f"interrupted at step {step} (epoch {epoch}){saved}")
        self.step, self.epoch, self.checkpoint = step, epoch, checkpoint


class LastCheckpoint(Checkpoint):
    """Keeps last.ckpt current for `--ckpt_path last`.

    It saves at every epoch end, at the end of training, when Ctrl-C (SIGINT) or SIGTERM stops `fit`,
    and within an epoch when `every_n_train_steps` steps have passed since the last save.

    It writes into the folder of the trainer's ModelCheckpoint, where `--ckpt_path last` looks, and after
    it (Lightning runs checkpoint callbacks last, in order), so the file names the best model so far.
    From Python, list it after a ModelCheckpoint as the CLI does: `fit(ckpt_path="last")` looks for
    last*.ckpt only in ModelCheckpoint folders.
    The first Ctrl-C lets the current step finish, saves and raises TrainingInterrupted; a second one
    interrupts at once. Under DDP the processes agree to stop every `log_every_n_steps` steps (one
    all-reduce), so they stop at the same step.

    Args:
        every_n_train_steps: The most training steps between two saves; 0 saves only at epoch ends.
            A save writes the whole training state (8 MB with Adam's), so saving every few hundred steps costs
            little, and a crash loses at most that many steps.
    """

    def __init__(self, every_n_train_steps: int = 500) -> None:
        if every_n_train_steps < 0:
            raise DigitnetError(
                f"--last_checkpoint.every_n_train_steps must be 0 (epoch ends only) or more, got {every_n_train_steps}"
            )
        self.every_n_train_steps = every_n_train_steps
        self.last_path: str | None = None  # where it saved last in this process
        self._saved_step = -1
        self._stop_requested = False
        self._previous_sigint: Any = None
        self._sigint_installed = False

    def path(self, trainer: L.Trainer) -> str:
        folder = next((cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)), None)
        if folder is None:
            folder = os.path.join(trainer.log_dir or trainer.default_root_dir, "checkpoints")
        return os.path.join(folder, ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION)

    def save(self, trainer: L.Trainer) -> None:
        """Save now (on every process: Lightning writes on rank 0), unless this step is saved already."""
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.global_step == self._saved_step:
            return
        path = self.path(trainer)
        trainer.save_checkpoint(path, weights_only=False)
        self._saved_step, self.last_path = trainer.global_step, path

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved_step = trainer.global_step  # a resumed run starts from a saved state
        self._stop_requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
            self._sigint_installed = True

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._stop_requested = True
        self._restore_sigint()  # a second Ctrl-C raises KeyboardInterrupt at once

    def _restore_sigint(self) -> None:
        if self._sigint_installed:
            # None: the previous handler was not set from Python; Python's own is the best guess.
            previous = self._previous_sigint if self._previous_sigint is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self._sigint_installed = False

    def _should_stop(self, trainer: L.Trainer, epoch_end: bool = False) -> bool:
        if trainer.world_size == 1:
            return self._stop_requested
        # Every process must make the same decision at the same step, or the others wait forever.
        if not epoch_end and trainer.global_step % max(trainer.log_every_n_steps, 1):
            return False
        return trainer.strategy.reduce_boolean_decision(self._stop_requested, all=False)

    def _stop(self, trainer: L.Trainer) -> None:
        self.save(trainer)
        checkpoint = None if trainer.fast_dev_run else self.path(trainer)
        raise TrainingInterrupted(trainer.global_step, trainer.current_epoch, checkpoint)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int):
        if self._should_stop(trainer):
            self._stop(trainer)
        n = self.every_n_train_steps
        # n steps after the last save of any kind, so a crash loses at most n steps and epochs shorter
        # than n steps (430 at MNIST's batch 128) need no save of their own. The epoch's last batch is
        # saved at the epoch end instead, after validation and the best model.
        if n and trainer.global_step - self._saved_step >= n and batch_idx + 1 < trainer.num_training_batches:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)
        if self._should_stop(trainer, epoch_end=True):
            self._stop(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_sigint()
        self.save(trainer)  # max_steps may end training mid-epoch

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        # Lightning raises SIGTERMException between two steps. Under DDP the processes may not all be
        # here at once, and a save waits for all of them: leave it to the last periodic save.
        if isinstance(exception, SIGTERMException) and trainer.world_size == 1:
            self.save(trainer)
