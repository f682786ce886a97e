"""A network that takes `delay` seconds per forward pass: a checkpoint of it makes `serve` slow enough for a test
to make a request wait past --timeout, or to catch an inference worker in the middle of a request."""

import time

import torch

from digitnet.nets import MLP


class SlowMLP(MLP):
    def __init__(self, delay: float = 1.0) -> None:
        super().__init__()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return super().forward(x)
