"""The synthetic non-digits a network learns to say "no digit" to (digitnet.negatives), on synthetic digits."""

import pytest
import torch

from conftest import synthetic_digits
from digitnet.negatives import blots, crossed, mirrored, mnist_geometry, non_digits, pairs, pieces, strokes


def digit_ink(n: int) -> torch.Tensor:
    images, _ = synthetic_digits(n, seed=0)
    return images.float().reshape(n, 28, 28) / 255


def labels(n: int) -> torch.Tensor:
    return synthetic_digits(n, seed=0)[1]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 9])
def test_any_number_of_non_digits_from_a_batch_even_one_too_small_for_every_kind(n):
    torch.manual_seed(0)
    made = non_digits(digit_ink(16), labels(16), n)
    assert made.shape == (n, 28, 28) and ((made >= 0) & (made <= 1)).all()
    assert (made.sum((1, 2)) > 0).all()  # every picture has ink


def test_non_digits_take_the_dtype_of_the_digits_they_come_from():
    torch.manual_seed(0)
    for dtype in (torch.float64, torch.bfloat16):
        assert non_digits(digit_ink(16).to(dtype), labels(16), 8).dtype == dtype


def test_each_kind_is_scaled_and_centred_as_mnist_digits_are():
    torch.manual_seed(0)
    ink = digit_ink(8)
    kinds = (pieces(ink), pairs(ink), strokes(8, "cpu"), blots(8, "cpu"), mirrored(ink), crossed(ink, ink.roll(1, 0)))
    for made in kinds:
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


def made_from(made: torch.Tensor, candidates: dict) -> list:
    """For each made picture, the key of the candidate picture it equals (None if none)."""
    return [next((key for key, c in candidates.items() if torch.allclose(picture, c, atol=1e-5)), None)
            for picture in made]  # fmt: skip


def mirrors_and_crossings(ink: torch.Tensor, made: torch.Tensor) -> tuple[list, list]:
    """Which digits of `ink` each made picture is the mirror image of, and which two it crosses (None: neither)."""
    n = len(ink)
    mirrors = made_from(made, {i: mirrored(ink[i : i + 1])[0] for i in range(n)})
    crossings = {(i, j): crossed(ink[i : i + 1], ink[j : j + 1])[0] for i in range(n) for j in range(n)}
    return mirrors, made_from(made, crossings)


@pytest.mark.parametrize("seed", range(3))
def test_mirror_images_and_crossed_digits_are_made_only_of_digits_that_then_read_as_none(seed):
    # A mirrored 0, 1 or 8 is still that digit, and a 1 drawn over a 7 is a crossed 7: trained towards "no digit",
    # they would teach the network to doubt real ones.
    torch.manual_seed(seed)
    ink, y = digit_ink(20), labels(20)
    mirrors, crossings = mirrors_and_crossings(ink, non_digits(ink, y, 60))  # ten of each kind
    assert sum(m is not None for m in mirrors) == 10 and sum(c is not None for c in crossings) == 10
    assert all(int(y[i]) in (2, 3, 5, 6, 7, 9) for i in mirrors if i is not None)
    assert all(y[i] != y[j] and 1 not in (int(y[i]), int(y[j])) for i, j in filter(None, crossings))


def test_two_of_the_same_digit_are_never_crossed():
    torch.manual_seed(0)
    ink = digit_ink(4)[2:4].repeat(4, 1, 1)  # a 2 and a 3, four times each
    y = torch.tensor([2, 3]).repeat(4)
    _, crossings = mirrors_and_crossings(ink, non_digits(ink, y, 60))
    assert any(crossings) and all(y[i] != y[j] for i, j in filter(None, crossings))


def test_a_batch_without_a_digit_to_mirror_or_cross_makes_strokes_instead():
    torch.manual_seed(0)
    ones = digit_ink(2)[1:2].expand(4, 28, 28)  # four 1s: none mirrors or crosses into a non-digit
    made = non_digits(ones, torch.ones(4, dtype=torch.long), 12)
    assert made.shape == (12, 28, 28) and (made.sum((1, 2)) > 0).all()
    mirrors, crossings = mirrors_and_crossings(ones, made)
    assert not any(m is not None for m in mirrors) and not any(crossings)
