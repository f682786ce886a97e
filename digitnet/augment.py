"""Data augmentation on batches already on the device: a random translation, or affine transform, per image.

One per image in one gather or grid_sample per batch; torchvision's v2.RandomAffine draws one per batch (per image
only in a loop): tests/test_data.py::test_random_affine_rotates_each_image_by_its_own_angle_within_bounds"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from digitnet.negatives import ink_boxes, mnist_geometry, side_by_side


def random_shift(images: torch.Tensor, max_shift: int, fill: float = 0.0) -> torch.Tensor:
    """Translate each (B, C, H, W) image by its own random (dx, dy) in [-max_shift, max_shift], `fill` shifted in.
    Offsets come from torch's default generator, so seed_everything makes them reproducible."""
    b, c, h, w = images.shape
    s = max_shift
    pw = w + 2 * s  # padded width
    # (B, C, (H + 2s) * (W + 2s)): image pixel (i, j) at flat index (i + s) * pw + (j + s), `fill` around it.
    padded = F.pad(images, (s, s, s, s), value=fill).view(b, c, -1)
    source = (torch.arange(h, device=images.device)[:, None] + s) * pw + torch.arange(w, device=images.device) + s
    d = torch.randint(-s, s + 1, (b, 2), device=images.device)  # (B, 2): dy, dx per image
    # The image moved by (dx, dy): output pixel (i, j) is input pixel (i - dy, j - dx), which lies
    # dy * pw + dx before `source` in the padded image (never outside it, since |dx|, |dy| <= s).
    index = source.view(1, h * w) - (d[:, :1] * pw + d[:, 1:])  # (B, H * W)
    return padded.gather(2, index[:, None, :].expand(b, c, h * w)).view(b, c, h, w)


def random_affine(images: torch.Tensor, degrees: float = 0.0, scale: float = 0.0, shift: float = 0.0,
                  shear: float = 0.0, fill: float = 0.0) -> torch.Tensor:  # fmt: skip
    """Rotate, scale, shear and translate each image by its own random amounts, in one batched resampling.

    Each image of the (B, C, H, W) batch gets an angle in [-degrees, degrees], a zoom in [1 - scale, 1 + scale], an
    x-shear in [-shear, shear] degrees and a translation in [-shift, shift] pixels, about the image centre; pixels
    from outside take `fill`. Random from torch's default generator (seed_everything makes it reproducible)."""
    b, _, h, w = images.shape

    def uniform(bound: float) -> torch.Tensor:  # (B,) in [-bound, bound]
        return (torch.rand(b, device=images.device) * 2 - 1) * bound

    angle, shear_angle = torch.deg2rad(uniform(degrees)), torch.deg2rad(uniform(shear))
    zoom = 1 + uniform(scale)
    cos, sin, tan = angle.cos(), angle.sin(), shear_angle.tan()
    # affine_grid wants the inverse map, output -> input pixel in [-1, 1] coordinates. Forward: rotate(angle) @
    # shear_x(tan) * zoom, then translate; its inverse, (shear_x^-1 @ rotate(-angle)) / zoom, as (B, 2, 2):
    inverse = torch.stack([torch.stack([cos + tan * sin, sin - tan * cos], 1), torch.stack([-sin, cos], 1)], 1)
    inverse = inverse / zoom[:, None, None]
    # A translation by t pixels is 2t/W in grid units; the inverse maps output x to input x - t.
    t = torch.stack([uniform(shift) * 2 / w, uniform(shift) * 2 / h], 1)  # (B, 2): x, y
    theta = torch.cat([inverse, -(inverse @ t[:, :, None])], 2)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # grid_sample fills with 0 outside the image: shift the background to 0 and back.
    return F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def random_strokes(ink: torch.Tensor, share: float = 1.0) -> torch.Tensor:
    """Redraw the strokes of a `share` of the (B, C, H, W) images, ink in [0, 1], each by its own random amounts:
    thinner or thicker (blended with its 3x3 erosion or dilation), faint edges cut and the rest stretched to full.
    The number reader's ink map does as much to a photo's strokes (`digitnet.ink`): a network that has seen only
    MNIST's soft edges is far less sure of digits drawn so."""
    b = ink.shape[0]
    chosen = (torch.rand(b, 1, 1, 1, device=ink.device) < share).to(ink.dtype)
    weight = torch.rand(b, 1, 1, 1, device=ink.device) - 0.5  # < 0: thinner, > 0: thicker
    thicker, thinner = largest_around(ink), -largest_around(-ink)
    redrawn = ink + weight.clamp(min=0) * (thicker - ink) + (-weight).clamp(min=0) * (thinner - ink)
    low = 0.3 * torch.rand(b, 1, 1, 1, device=ink.device)
    span = 0.4 + torch.rand(b, 1, 1, 1, device=ink.device) * (0.6 - low)  # low + span <= 1: the core stays full
    redrawn = ((redrawn - low) / span).clamp(0, 1)
    return chosen * redrawn + (1 - chosen) * ink


def cut_from_neighbours(ink: torch.Tensor, share: float = 1.0) -> torch.Tensor:
    """A `share` of the (B, H, W) digits, ink in [0, 1], as the number reader cuts a digit out of touching ones: each
    drawn with the digit before it in the batch on its left or right, 3 pixels into it (at most half the narrower
    one's width) to 1 pixel apart, up to 3 pixels higher or lower, then cut apart by a vertical line where they
    meet, its own side kept and scaled as MNIST's digits are. What is kept may lose the tip of its own strokes and
    carry a bit of its neighbour's."""
    n, w = len(ink), ink.shape[2]
    chosen = torch.rand(n, device=ink.device) < share
    k = int(chosen.sum())
    if k == 0:
        return ink
    own, neighbour = ink[chosen], ink.roll(1, 0)[chosen]  # (K, H, W) each
    on_left = (torch.rand(k, device=ink.device) < 0.5)[:, None, None]  # this digit is the left one of the pair
    left, right = torch.where(on_left, own, neighbour), torch.where(on_left, neighbour, own)
    (_, _, left_start, left_end), (_, _, right_start, right_end) = ink_boxes(left), ink_boxes(right)  # (K,) each
    # < 0: overlapping by that many pixels, at most half the narrower digit, so that the cut leaves it half its ink.
    narrower = torch.minimum(left_end - left_start, right_end - right_start) + 1
    gap = torch.maximum(torch.randint(-3, 2, (k,), device=ink.device), -(narrower // 2))
    # The left digit at columns w..2w-1 of a canvas 3w wide; the right one moved by dx from there, either way.
    dx = (left_end + 1 + gap - right_start).clamp(-w, w)  # (K,)
    dy = torch.randint(0, 7, (k, 1), device=ink.device)
    canvas = side_by_side(left, right, dx[:, None], dy, x0=w, width=3 * w)  # (K, H + 6, 3W)
    # The cut: a column from where the right digit begins to where the left one ends (either order), K of them.
    ends = torch.stack([w + left_end + 1, w + dx + right_start])  # (2, K)
    low, high = ends.amin(0), ends.amax(0)
    cut = low + (torch.rand(k, device=ink.device) * (high - low + 1).float()).long()
    columns = torch.arange(3 * w, device=ink.device)[None, None, :]
    keep = torch.where(on_left, columns < cut[:, None, None], columns >= cut[:, None, None])
    out = ink.clone()
    out[chosen] = mnist_geometry(canvas * keep)
    return out


def largest_around(x: torch.Tensor) -> torch.Tensor:
    """3x3 dilation of (B, C, H, W), outside counting as -inf: F.max_pool2d(x, 3, stride=1, padding=1) as a maximum of
    nine shifted copies, far faster than max_pool2d on a CPU for one-channel 28x28 images."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    out = padded[..., 0:h, 0:w]
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                out = torch.maximum(out, padded[..., dy : dy + h, dx : dx + w])
    return out
