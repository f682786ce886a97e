"""A network that takes `delay` seconds per forward pass, and `load_delay` seconds to build: a checkpoint of it makes
`serve` slow enough for a test to make a request wait past --timeout, to catch an inference worker in the middle of
a request, or to signal the server while its worker still loads (each process that builds it with a `load_delay`
first writes an empty file `loading-<its pid>` in its working folder, for the test to wait on)."""

import os
import time
from pathlib import Path

import torch

from digitnet.nets import MLP


class SlowMLP(MLP):
    def __init__(self, delay: float = 1.0, load_delay: float = 0.0) -> None:
        super().__init__()
        self.delay, self.load_delay = delay, load_delay
        if load_delay:
            Path(f"loading-{os.getpid()}").touch()
            time.sleep(load_delay)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return super().forward(x)
