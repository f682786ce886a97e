"""MNIST pixels -> model input: the one scaling used by training, evaluation, `predict`, `serve` and `export`."""

from __future__ import annotations

import numpy as np
import torch

from digitnet.errors import DigitnetError

# Pixel mean and std of the MNIST training set, after dividing by 255.
MEAN, STD = 0.1307, 0.3081
SIZE = 28  # MNIST images are SIZE x SIZE


def to_input(pixels: np.ndarray | torch.Tensor, standardize: bool = True) -> torch.Tensor:
    """(28, 28) or (N, 28, 28) MNIST pixels 0-255 (white digit on black) -> (N, 1, 28, 28) float32 model input.

    Pixels are divided by 255, then standardized with MNIST's mean and std unless `standardize` is False
    (the report's plain pixels / 255: `--data.normalize=false`).
    """
    x = torch.as_tensor(pixels)
    if x.shape[-2:] != (SIZE, SIZE):
        raise DigitnetError(f"expected 28x28 MNIST pixels, got shape {tuple(x.shape)}")
    x = x.reshape(-1, 1, SIZE, SIZE).float() / 255  # a new tensor: the caller's pixels stay as they are
    return (x - MEAN) / STD if standardize else x


def describe(standardize: bool) -> str:
    """The scaling as a formula, for people and for the ONNX file's metadata."""
    return f"(pixels / 255 - {MEAN}) / {STD}" if standardize else "pixels / 255"
