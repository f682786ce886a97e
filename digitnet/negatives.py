"""Pictures that are not digits, made on the fly from a training batch, so that a network learns to say so.

A number reader hands the network every piece it finds: the halves of a bad split, two touching digits read
as one, a dash, a smudge, a letter. Trained on digits alone, a network gives such a piece a digit at 90% or
more as often as not. Outlier exposure (Hendrycks, Mazeika & Dietterich, ICLR 2019) adds cheap synthetic
non-digits to each training batch with the uniform distribution as their target, so that no digit gets a
high probability on them (`DigitClassifier`'s `non_digit_weight`). Here they are made from the batch's own
digits, on its device, in six kinds:

- a piece: a digit cut by a vertical or horizontal line, one side kept (half of a bad split);
- a pair: two digits side by side, touching or overlapping, as one picture (a missed split);
- strokes: one to three random pen strokes (a scribble, a letter-like mark, a dash);
- a blot: a filled ellipse (a smudge);
- a mirror image of a digit whose mirror image is none (2, 3, 5, 6, 7, 9): a digit's strokes in a glyph of
  another shape, as a letter is;
- two different digits drawn over one another: crossing strokes, as many letters have.

Each is then scaled and centred as MNIST's digits are (`mnist_geometry`): the number reader does the same to
every piece it reads, so the network meets non-digits in the same geometry as digits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KINDS = ("piece", "pair", "strokes", "blot", "mirror", "crossed")
MIRRORED = (2, 3, 5, 6, 7, 9)  # no digit in a mirror: 0, 1 and 8 stay themselves, and a 4 may
SIZE, BOX, CENTRE = 28, 20.0, 14.0  # as digitnet.images: ink scaled into 20x20, centre of mass at (14, 14)


def ink_boxes(ink: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top, bottom, left, right) of each image's ink, (N,) each, bottom and right inclusive."""
    n, h, w = ink.shape
    mask = ink > 0.1
    rows, cols = mask.any(2), mask.any(1)  # (N, H), (N, W)
    ys, xs = torch.arange(h, device=ink.device), torch.arange(w, device=ink.device)
    return (torch.where(rows, ys, h).amin(1), torch.where(rows, ys, -1).amax(1),
            torch.where(cols, xs, w).amin(1), torch.where(cols, xs, -1).amax(1))  # fmt: skip


def mnist_geometry(ink: torch.Tensor) -> torch.Tensor:
    """(N, H, W) ink in [0, 1] -> (N, 28, 28): each image's ink box scaled so that its longer side is 20 pixels
    and its centre of mass moved to (14, 14), as MNIST's digits were made. Images without ink stay empty.

    A mark less than 0.6 as wide as high is turned on its side first: scaled to 20 pixels high, any narrow
    mark would be a stroke much like a 1, and the network must not learn that a 1 is no digit."""
    n, h, w = ink.shape
    if h == w:
        top, bottom, left, right = ink_boxes(ink)
        narrow = (right - left + 1) < 0.6 * (bottom - top + 1)
        ink = torch.where(narrow[:, None, None], ink.transpose(1, 2), ink)
    top, bottom, left, right = ink_boxes(ink)
    height, width = bottom - top + 1, right - left + 1
    ys, xs = torch.arange(h, device=ink.device), torch.arange(w, device=ink.device)
    scale = BOX / torch.maximum(height, width).clamp(min=1).float()  # (N,) output pixels per input pixel
    mass = ink.sum((1, 2)).clamp(min=1e-6)
    cy = (ink.sum(2) * ys).sum(1) / mass  # (N,) centre of mass, in input pixels
    cx = (ink.sum(1) * xs).sum(1) / mass
    # Output pixel (i, j) reads input pixel ((i - 14) / scale + cy, (j - 14) / scale + cx); grid_sample takes
    # it in [-1, 1] coordinates of the input's pixel centres (align_corners=True).
    out = torch.arange(SIZE, device=ink.device, dtype=torch.float32) - CENTRE
    gy = ((out[None, :] / scale[:, None] + cy[:, None]) * 2 / max(h - 1, 1) - 1)[:, :, None].expand(n, SIZE, SIZE)
    gx = ((out[None, :] / scale[:, None] + cx[:, None]) * 2 / max(w - 1, 1) - 1)[:, None, :].expand(n, SIZE, SIZE)
    grid = torch.stack([gx, gy], dim=-1).to(ink.dtype)  # (N, 28, 28, 2): x first, as grid_sample reads it
    # Shrinking by more than 2x (a wide pair) would skip pixels: average them first.
    factor = max(1, int(1 / float(scale.min())))
    source = F.avg_pool2d(ink[:, None], factor, stride=1, padding=factor // 2)[:, :, :h, :w] if factor > 1 else ink[:, None]
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0].clamp(0, 1)


def pieces(ink: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) digits -> (N, 28, 28): each cut at 35-65% of its ink's width (or height, one time in three),
    one side kept. A narrow digit (a 1) is cut across: cut along, it would leave a sliver."""
    n, h, w = ink.shape
    device = ink.device
    ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
    top, bottom, left, right = ink_boxes(ink)
    across = torch.rand(n, device=device) < 1 / 3
    keep_first = torch.rand(n, device=device) < 0.5
    at = 0.35 + 0.3 * torch.rand(n, device=device)
    cut_x = left + at * (right - left)
    cut_y = top + at * (bottom - top)
    # A vertical cut of a narrow digit (a 1) leaves a sliver: cut such digits across.
    across |= (right - left + 1) < 0.9 * (bottom - top + 1)
    side_x = torch.where(keep_first[:, None], xs[None] < cut_x[:, None], xs[None] >= cut_x[:, None])  # (N, W)
    side_y = torch.where(keep_first[:, None], ys[None] < cut_y[:, None], ys[None] >= cut_y[:, None])  # (N, H)
    keep = torch.where(across[:, None, None], side_y[:, :, None].expand(n, h, w), side_x[:, None, :].expand(n, h, w))
    return mnist_geometry(ink * keep)


def pairs(ink: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) digits -> (N, 28, 28): each with the next digit of the batch 10-20 pixels to its right
    (touching or overlapping: MNIST's ink is about 20 pixels wide), up to 3 pixels higher or lower."""
    n, w = len(ink), ink.shape[2]
    dx = torch.randint(10, 21, (n, 1), device=ink.device)
    dy = torch.randint(0, 7, (n, 1), device=ink.device)
    return mnist_geometry(side_by_side(ink, ink.roll(1, 0), dx, dy, width=w + 20))


def side_by_side(left: torch.Tensor, right: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, width: int,
                 x0: int = 0) -> torch.Tensor:  # fmt: skip
    """Two (N, H, W) batches on one (N, H + 6, width) canvas: `left` at rows 3 to H + 2 and columns from `x0`, `right`
    moved from row 0 and column `x0` by its own (dx, dy), (N, 1) each (dy in 0..6), the brighter pixel where they
    overlap."""
    n, h, w = left.shape
    canvas = torch.zeros(n, h + 6, width, device=left.device, dtype=left.dtype)
    canvas[:, 3 : 3 + h, x0 : x0 + w] = left
    r, c = torch.arange(h, device=left.device).repeat_interleave(w), torch.arange(w, device=left.device).repeat(h)
    index = (r[None] + dy) * width + x0 + c[None] + dx  # (N, H * W): where each pixel of `right` goes
    return canvas.view(n, -1).scatter_reduce(1, index, right.reshape(n, -1), reduce="amax").view(n, h + 6, width)


def strokes(n: int, device: torch.device | str, size: int = SIZE) -> torch.Tensor:
    """(N, 28, 28) random pen strokes, about 2-3.5 pixels wide: a dash (one in four), else 2-3 strokes of 1-3
    straight or bent segments each. No single stroke but the dash: one line or bend alone is too often a 1 or
    a 7."""
    most, samples = 4, 36  # control points per stroke, points drawn along it
    control = torch.rand(n, 3, most, 2, device=device) * (size - 8) + 4  # (N, 3, P, 2): y, x anywhere in the box
    # 2-4 points per stroke: the unused ones repeat the last point used (segments of length 0).
    used_points = torch.randint(2, most + 1, (n, 3, 1), device=device)
    count = torch.randint(2, 4, (n, 1), device=device)  # strokes per picture
    dash = torch.rand(n, device=device) < 0.25
    angle = (torch.rand(n, device=device) * 2 - 1) * math.radians(20)
    length = 10 + 10 * torch.rand(n, device=device)
    end = control[:, 0, 0] + length[:, None] * torch.stack([angle.sin(), angle.cos()], 1)  # (N, 2): y, x
    control[:, 0, 1] = torch.where(dash[:, None], end, control[:, 0, 1])
    used_points[:, 0] = torch.where(dash[:, None], 2, used_points[:, 0])
    count = torch.where(dash[:, None], 1, count)
    control = control.gather(2, torch.minimum(torch.arange(most, device=device).expand(n, 3, most),
                                              used_points - 1)[..., None].expand(n, 3, most, 2))
    # Bent: each inner point pulled towards its neighbours' midpoint by a random amount (0: straight corners).
    bend = torch.rand(n, 3, 1, 1, device=device)
    inner = (control[:, :, :-2] + control[:, :, 2:]) / 2
    control = torch.cat([control[:, :, :1], bend * inner + (1 - bend) * control[:, :, 1:-1], control[:, :, -1:]], 2)
    position = torch.linspace(0, most - 1 - 1e-4, samples, device=device)
    index, frac = position.long(), (position - position.floor())[None, None, :, None]
    along = control[:, :, index] * (1 - frac) + control[:, :, index + 1] * frac  # (N, 3, S, 2)
    used = torch.arange(3, device=device)[None, :] < count  # (N, 3)
    along = torch.where(used[:, :, None, None], along, torch.full_like(along, -1e3)).reshape(n, -1, 2)
    pixels = torch.stack(torch.meshgrid(torch.arange(size, device=device), torch.arange(size, device=device),
                                        indexing="ij"), -1).reshape(1, -1, 2).float()  # (1, 784, 2)
    distance = torch.cdist(pixels.expand(n, -1, -1).contiguous(), along).amin(-1)  # (N, 784): to the nearest stroke
    half_width = 0.75 + 0.75 * torch.rand(n, 1, device=device)
    return mnist_geometry((half_width + 0.5 - distance).clamp(0, 1).reshape(n, size, size))


def blots(n: int, device: torch.device | str, size: int = SIZE) -> torch.Tensor:
    """(N, 28, 28) filled ellipses of random size and angle, their edges soft."""
    y, x = torch.meshgrid(torch.arange(size, device=device), torch.arange(size, device=device), indexing="ij")
    cy, cx = (torch.rand(2, n, 1, 1, device=device) * 8 + 10).unbind(0)
    a = torch.rand(n, 1, 1, device=device) * 7 + 4
    b = a * (0.5 + 0.5 * torch.rand(n, 1, 1, device=device))  # no thinner than half as wide as long: a blot, not a bar
    angle = torch.rand(n, 1, 1, device=device) * math.pi
    u = (x - cx) * angle.cos() + (y - cy) * angle.sin()
    v = (y - cy) * angle.cos() - (x - cx) * angle.sin()
    radius = ((u / a) ** 2 + (v / b) ** 2).sqrt()
    return mnist_geometry(((1 - radius) * torch.minimum(a, b) + 0.5).clamp(0, 1))  # soft over about a pixel


def cycle(index: torch.Tensor, k: int) -> torch.Tensor:
    """k entries of `index`, repeating it as often as needed."""
    return index[torch.arange(k, device=index.device) % len(index)]


def mirrored(ink: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) digits -> (N, 28, 28): each flipped left to right."""
    return mnist_geometry(ink.flip(2))


def crossed(ink: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Two (N, 28, 28) batches of digits -> (N, 28, 28): each digit with the other's drawn over it, the brighter
    pixel where they cross."""
    return mnist_geometry(torch.maximum(ink, other))


def non_digits(ink: torch.Tensor, labels: torch.Tensor, n: int, kinds: tuple[str, ...] = KINDS) -> torch.Tensor:
    """n non-digit pictures (n, 28, 28) in [0, 1], in equal shares of `kinds` (strokes for a kind the batch has no
    digit for), made from `ink`, a batch of (B, 28, 28) digits (white on black, 0-1) on the device the pictures are
    made on, and their (B,) labels."""
    if n == 0:
        return ink.new_zeros(0, SIZE, SIZE)
    labels = labels.to(ink.device)
    shares = [n // len(kinds) + (k < n % len(kinds)) for k in range(len(kinds))]
    order = torch.randperm(len(ink), device=ink.device)
    top, bottom, left, right = ink_boxes(ink)
    wide = order[(right - left + 1)[order] >= 0.5 * (bottom - top + 1)[order]]  # a piece of a 1 is still a 1
    mirror = order[torch.isin(labels[order], torch.tensor(MIRRORED, device=ink.device))]
    # Crossed: a digit over another digit, never the same one and never a 1 (a 1 over a 7 is a crossed 7).
    first = order[labels[order] != 1]
    second = first.roll(1)
    differ = labels[first] != labels[second]
    first, second = first[differ], second[differ]
    makers = {
        "piece": lambda k: pieces(ink[cycle(wide if len(wide) else order, k)]),
        "pair": lambda k: pairs(ink[cycle(order, k)]),
        "strokes": lambda k: strokes(k, ink.device),
        "blot": lambda k: blots(k, ink.device),
        # A batch with no digit to mirror or to cross (a small last batch) makes strokes instead.
        "mirror": lambda k: mirrored(ink[cycle(mirror, k)]) if len(mirror) else strokes(k, ink.device),
        "crossed": lambda k: (crossed(ink[cycle(first, k)], ink[cycle(second, k)]) if len(first)
                              else strokes(k, ink.device)),
    }
    made = [makers[kind](k) for kind, k in zip(kinds, shares) if k]  # a small last batch has no picture of some kinds
    return torch.cat(made).to(ink.dtype)[torch.randperm(n, device=ink.device)]  # strokes and blots are float32
