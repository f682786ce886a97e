"""Resuming `fit`: last.ckpt kept current, written whole, saved on Ctrl-C or SIGTERM, and the run it resumes."""

from __future__ import annotations

import os
import re
import shlex
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from digitnet.arguments import program_name
from digitnet.files import part_path, replacing


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside it, then renames it over it: a kill leaves the old or the new.

    Lightning's writer moves its file from $TMPDIR, a copy onto another filesystem that a kill leaves truncated
    (tests/test_faults.py::test_a_kill_while_writing_a_checkpoint_...).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path).resolve()  # as `replacing` writes: beside the file a link points at
        for stale in path.parent.glob(part_path(path, "*").name):  # a killed writer's; only rank 0 writes `path`
            stale.unlink(missing_ok=True)
        with replacing(path) as tmp:
            torch.save(checkpoint, tmp)


def last_checkpoints(dirpath: str | None, every_n_train_steps: int) -> list[ModelCheckpoint]:
    """ModelCheckpoints keeping last.ckpt current each epoch and N steps (save_last=True waits for an improvement)."""
    last = {"dirpath": dirpath, "filename": ModelCheckpoint.CHECKPOINT_NAME_LAST, "enable_version_counter": False}
    steps = [ModelCheckpoint(**last, every_n_train_steps=every_n_train_steps)] if every_n_train_steps else []
    return [ModelCheckpoint(**last, every_n_epochs=1), *steps]


class TrainingInterrupted(Exception):
    """Ctrl-C stopped `fit` between two steps, after saving `checkpoint` (None with fast_dev_run)."""

    def __init__(self, step: int, epoch: int, checkpoint: str | None) -> None:
        saved = f"; saved {checkpoint}" if checkpoint else ""
        super().__init__(f"interrupted at step {step} (epoch {epoch}){saved}")
        self.step, self.epoch, self.checkpoint = step, epoch, checkpoint  # for callers in Python


class StopOnInterrupt(Checkpoint):
    """The first Ctrl-C in `fit` lets the step finish, saves last.ckpt and raises TrainingInterrupted; a second one
    interrupts at once. SIGTERM (Lightning's SIGTERMException, after the step) saves last.ckpt too, without DDP
    only (a DDP save waits for every process). A Checkpoint, run after the best ModelCheckpoint, which names its folder.

    Lightning's Ctrl-C exits mid-step (tests/test_faults.py::test_ctrl_c_saves_last_and_prints_the_resume_command);
    save_on_exception=True also saves a diverged run (test_diverging_run_stops_in_the_first_epoch_naming_the_step);
    OnExceptionCheckpoint deletes its file on success (test_ckpt_path_last_without_a_previous_run_trains_from_scratch).
    """

    def __init__(self) -> None:
        self.stop_requested, self.previous_handler = False, None
        self.interrupted_at_step: int | None = None

    def state_dict(self) -> dict[str, Any]:
        # Marks the last.ckpt saved on a stop, which commands then pass over for a trained run's (interrupted_at).
        return {} if self.interrupted_at_step is None else {"interrupted_at_step": self.interrupted_at_step}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop_requested, self.interrupted_at_step = False, None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self.on_sigint)
            # None: the previous handler was not set from Python; Python's own is the best guess.
            self.previous_handler = signal.default_int_handler if previous is None else previous

    def on_sigint(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        self.restore()  # a second Ctrl-C raises KeyboardInterrupt at once

    def restore(self) -> None:
        if self.previous_handler is not None:
            signal.signal(signal.SIGINT, self.previous_handler)
            self.previous_handler = None

    def save(self, trainer: L.Trainer) -> str | None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return None
        name = ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION
        path = os.path.join(checkpoint_folder(trainer), name)
        self.interrupted_at_step = trainer.global_step
        trainer.save_checkpoint(path, weights_only=False)  # all of it, to resume from (and no Lightning notice)
        return path

    def stop_if_requested(self, trainer: L.Trainer, epoch_end: bool = False) -> None:
        stop = self.stop_requested
        if trainer.world_size > 1:  # every process must decide alike at the same step, or the others wait forever
            if not epoch_end and trainer.global_step % max(trainer.log_every_n_steps, 1):
                return
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            raise TrainingInterrupted(trainer.global_step, trainer.current_epoch, self.save(trainer))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int):
        self.stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop_if_requested(trainer, epoch_end=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.restore()
        if isinstance(exception, SIGTERMException) and trainer.world_size == 1:
            self.save(trainer)


def checkpoint_folder(trainer: L.Trainer) -> str:
    """Where a run's checkpoints go: the ModelCheckpoint's dirpath, else checkpoints/ in the run's log folder."""
    folder = getattr(trainer.checkpoint_callback, "dirpath", None)
    return folder or os.path.join(trainer.log_dir or trainer.default_root_dir, "checkpoints")


def interrupted_at(checkpoint: dict) -> int | None:
    """The step at which StopOnInterrupt saved `checkpoint` on Ctrl-C or SIGTERM; None for any other save."""
    return checkpoint.get("callbacks", {}).get(StopOnInterrupt.__qualname__, {}).get("interrupted_at_step")


class NothingToResume(Exception):
    """`fit --ckpt_path last` found no earlier run with a last checkpoint: it trains from scratch."""


def continue_last_run(logger: Any, ckpt_dirpath: str | None, root_dir: str | None = None) -> Path | None:
    """For `fit --ckpt_path last`: point a TensorBoard or CSV logger config at the newest run folder holding a
    last*.ckpt, and return it; without a version the logger would open a new, empty folder. Raises NothingToResume
    when no run has one (Lightning's own warning would say to set save_last); None: Lightning looks for it itself."""
    init = logger.get("init_args") if hasattr(logger, "get") else None
    versioned = init is not None and str(logger.get("class_path", "")).endswith(("TensorBoardLogger", "CSVLogger"))
    if versioned:
        root, name = Path(init.get("save_dir") or ".").expanduser(), init.get("name", "lightning_logs")
        runs, version = (root / name if name else root), init.get("version")
    if any("://" in str(folder) for folder in (root_dir, ckpt_dirpath, init and init.get("save_dir"))):
        return None  # a remote folder (s3://...), which Path would mangle: Lightning looks there itself
    if ckpt_dirpath is None and logger is False:  # no logger: Lightning's checkpoints/ in the root folder
        ckpt_dirpath = str(Path(root_dir or ".") / "checkpoints")
    elif ckpt_dirpath is None and versioned and version is not None:  # the run named by --trainer.logger's version
        ckpt_dirpath = str(runs / (version if isinstance(version, str) else f"version_{version}") / "checkpoints")
    if ckpt_dirpath is not None:  # one checkpoint folder: Lightning finds last.ckpt there itself
        if not any(Path(ckpt_dirpath).expanduser().glob("last*.ckpt")):
            raise NothingToResume(f"No last.ckpt in {ckpt_dirpath}: training from scratch")
        return None
    if not versioned:
        return None
    found = runs.glob("version_*/checkpoints/last*.ckpt")
    lasts = [p for p in found if re.fullmatch(r"version_\d+", p.parents[1].name)]
    if not lasts:
        raise NothingToResume(f"No last.ckpt under {runs} (the runs of this optimizer and network): training from "
                              "scratch")  # fmt: skip
    run = max(lasts, key=lambda p: p.stat().st_mtime).parents[1]
    init["version"] = int(run.name.removeprefix("version_"))  # a dict, or a jsonargparse Namespace from a config
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # it is ours
    return run


def resume_command(args: list[str]) -> str | None:
    """The command that resumes an interrupted `fit`: the same arguments with `--ckpt_path last`; None if not `fit`."""
    if "fit" not in args:
        return None
    kept, rest = [], iter(args)
    for arg in rest:
        if arg == "--ckpt_path":
            next(rest, None)  # its value
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join([*program_name().split(), *kept, "--ckpt_path", "last"])
