"""Building the optimizer: its fused implementation when there is one, and the half-cosine learning-rate decay."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch


def fused_if_available(make: Callable[..., torch.optim.Optimizer], params: Iterable) -> torch.optim.Optimizer:
    """`make(params)`, fused when the optimizer has a fused implementation and `fused` is left unset (docs/speed.md)."""
    params = list(params)
    optimizer = make(params)
    if optimizer.defaults.get("fused", False) is None:
        # No fused kernel for this device or dtype (RuntimeError, ValueError), or a callable that takes no `fused`.
        with contextlib.suppress(RuntimeError, ValueError, TypeError):
            return make(params, fused=True)
    return optimizer


def half_cosine(step: int, total: int, warmup: int = 0) -> float:
    """Learning-rate factor at `step` of `total`: rising linearly from 0 over the first `warmup` steps, then from 1
    down to 0 at the end along a half cosine."""
    if step < warmup:
        return step / warmup
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / max(total - warmup, 1)))
