"""Where a run's time goes, and when it reaches each test accuracy: a callback for scripts/time_to_accuracy.py.

    python -m digitnet fit --config configs/fast.yaml --trainer.callbacks+=digitnet.timeline.Timeline \
        --trainer.callbacks.path=timeline.jsonl

It writes a JSON line per event with the wall clock (`time.time()`): the start and end of training, of each
validation and of the test, and after each training epoch the test accuracy of the weights as they are. That
test is the measurement's, never the run's: nothing in the run sees it, and the seconds it takes are written
(`paused`) so that the script can leave them out.
"""

from __future__ import annotations

import json
import time

import lightning as L

from digitnet.model import share_read_right


class Timeline(L.Callback):
    """Writes the run's events to `path` as JSON lines: {"event": ..., "time": ..., ...}.

    Args:
        path: The file to write (appended to).
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, event: str, **values) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"event": event, "time": time.time(), **values}) + "\n")

    def on_fit_start(self, trainer, pl_module) -> None:
        self.write("fit_start")

    def on_train_start(self, trainer, pl_module) -> None:
        self.write("train_start")

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.write("validation_start")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.write("validation_end")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        started = time.time()
        trainer.datamodule.setup("test")
        test_acc = share_read_right(pl_module.net, trainer.datamodule.test_set)
        self.write("epoch", epoch=trainer.current_epoch, test_acc=test_acc, paused=time.time() - started)

    def on_train_end(self, trainer, pl_module) -> None:
        self.write("train_end")

    def on_test_start(self, trainer, pl_module) -> None:
        self.write("test_start")

    def on_test_end(self, trainer, pl_module) -> None:
        self.write("test_end")
