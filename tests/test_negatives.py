"""The synthetic non-digits a network learns to say "no digit" to (digitnet.negatives), on synthetic digits."""

import pytest
import torch

from conftest import synthetic_digits
from digitnet.negatives import blots, mnist_geometry, non_digits, pairs, pieces, strokes


def digit_ink(n: int) -> torch.Tensor:
    images, _ = synthetic_digits(n, seed=0)
    return images.float().reshape(n, 28, 28) / 255


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 9])
def test_any_number_of_non_digits_from_a_batch_even_one_too_small_for_every_kind(n):
    torch.manual_seed(0)
    made = non_digits(digit_ink(16), n)
    assert made.shape == (n, 28, 28) and ((made >= 0) & (made <= 1)).all()
    assert (made.sum((1, 2)) > 0).all()  # every picture has ink


def test_non_digits_take_the_dtype_of_the_digits_they_come_from():
    torch.manual_seed(0)
    for dtype in (torch.float64, torch.bfloat16):
        assert non_digits(digit_ink(16).to(dtype), 8).dtype == dtype


def test_each_kind_is_scaled_and_centred_as_mnist_digits_are():
    torch.manual_seed(0)
    ink = digit_ink(8)
    for made in (pieces(ink), pairs(ink), strokes(8, "cpu"), blots(8, "cpu")):
        assert made.shape == (8, 28, 28)
        rows, cols = (made > 0.05).any(2), (made > 0.05).any(1)
        height = 28 - rows.int().argmax(1) - rows.flip(1).int().argmax(1)
        width = 28 - cols.int().argmax(1) - cols.flip(1).int().argmax(1)
        assert (torch.maximum(height, width) <= 23).all() and (torch.maximum(height, width) >= 17).all()
        mass = made.sum((1, 2))
        cy = (made.sum(2) * torch.arange(28)).sum(1) / mass
        assert ((cy - 14).abs() < 2.5).all()


def test_a_pair_holds_two_digits_side_by_side():
    torch.manual_seed(0)
    ink = digit_ink(8)
    # Scaled into 20 pixels, two digits side by side are lower than one alone: the pair's width sets the scale.
    alone, pair = mnist_geometry(ink), pairs(ink)
    height = lambda x: (x > 0.05).any(2).sum(1).float()
    assert height(pair).mean() < 0.8 * height(alone).mean()
