"""What the fault and DDP tests use to watch a `python -m digitnet` subprocess (run by
`helpers.run_digitnet`): the callback `Probe`, added with `--trainer.callbacks+=probes.Probe`, records what
each of its processes sees or sends its own process a signal at a given training step."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import lightning as L
import torch

class Probe(L.Callback):
    """Records what its process sees, or sends it a signal at a given training step.

    Args:
        record: Folder where each process writes rank<N>.json: the training images it saw per epoch
            (SHA-1 of their bytes, in order), its sampler, its synced metrics and a checksum of its weights.
        signal_at_step: Send `signal_name` to this process at the end of this training step (0: never).
        signal_name: SIGKILL, SIGINT or SIGTERM.
        signals: How many times to send it (2: a second Ctrl-C at once).
        signal_at_test_batch: Send `signal_name` at the end of this test batch (0: never).
    """

    def __init__(self, record: str | None = None, signal_at_step: int = 0, signal_name: str = "SIGKILL",
                 signals: int = 1, signal_at_test_batch: int = 0) -> None:  # fmt: skip
        self.record, self.signal_at_step, self.signal_name = record, signal_at_step, signal_name
        self.signals, self.signal_at_test_batch = signals, signal_at_test_batch
        self.seen: dict[int, list[str]] = {}
        self.report: dict = {"start_step": None, "val": [], "test": None}

    def on_train_start(self, trainer, pl_module):
        self.report["start_step"] = trainer.global_step
        self.report["train_sampler"] = type(trainer.train_dataloader.sampler).__name__
        self.report["checkpoint_io"] = type(trainer.strategy.checkpoint_io).__name__

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images = batch[0].cpu()
        hashes = [hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in images]
        self.seen.setdefault(trainer.current_epoch, []).extend(hashes)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.signal_at_step and trainer.global_step == self.signal_at_step:
            for _ in range(self.signals):
                os.kill(os.getpid(), getattr(signal, self.signal_name))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.signal_at_test_batch and batch_idx == self.signal_at_test_batch:
            os.kill(os.getpid(), getattr(signal, self.signal_name))

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            metrics = trainer.callback_metrics
            self.report["val"].append({k: float(v) for k, v in metrics.items() if k.startswith("val/")})

    def on_train_end(self, trainer, pl_module):
        weights = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        self.report["weights_sum"] = float(weights.double().sum())
        self._write(trainer)

    def on_test_end(self, trainer, pl_module):
        self.report["test"] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        self._write(trainer)

    def _write(self, trainer):
        if self.record:
            report = {**self.report, "seen": {str(epoch): hashes for epoch, hashes in self.seen.items()}}
            Path(self.record, f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
