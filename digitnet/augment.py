"""Data augmentation on batches already on the device: a random translation, or affine transform, per image.

torchvision's v2.RandomAffine on a batched tensor draws one transform for the whole batch, and per image only in
a Python loop; MNIST augmentation wants one per image, so these are one gather or one grid_sample per batch
(tests/test_data.py::test_random_affine_rotates_each_image_by_its_own_angle_within_bounds).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(images: torch.Tensor, max_shift: int, fill: float = 0.0) -> torch.Tensor:
    """Translate each image by its own random (dx, dy), each in [-max_shift, max_shift].

    `images` is (B, C, H, W); pixels shifted in from outside the image take the value `fill`.
    The offsets come from torch's default generator on the images' device, so seed_everything
    (or torch.manual_seed) makes them reproducible. One pad and one gather for the whole batch,
    on the batch's device: no per-image Python loop, no PIL.
    """
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

    Each image of the (B, C, H, W) batch gets an angle in [-degrees, degrees], a zoom factor in
    [1 - scale, 1 + scale], a shear angle in [-shear, shear] degrees (along x) and a translation in
    [-shift, shift] pixels along x and y, about the image centre; pixels brought in from outside take
    `fill`. torchvision's RandomAffine on a batch draws one transform for all of it, and per-image calls
    would be a Python loop over the batch: here one affine_grid and one grid_sample do the whole batch
    on its device, with torch's default generator (seed_everything makes it reproducible).
    """
    b, _, h, w = images.shape
    device = images.device

    def uniform(bound: float) -> torch.Tensor:  # (B,) in [-bound, bound]
        return (torch.rand(b, device=device) * 2 - 1) * bound

    angle, shear_angle = torch.deg2rad(uniform(degrees)), torch.deg2rad(uniform(shear))
    zoom = 1 + uniform(scale)
    cos, sin, tan = angle.cos(), angle.sin(), shear_angle.tan()
    # affine_grid maps each output pixel to where it samples the input, in [-1, 1] coordinates: the inverse
    # of the transform applied to the image. Forward: rotate(angle) @ shear_x(tan) * zoom, then translate.
    # Its inverse, (shear_x^-1 @ rotate(-angle)) / zoom, as a (B, 2, 2) matrix:
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
    thinner or thicker (blended with its 3x3 erosion or dilation by up to half), and its faint edges cut
    (ink below 0-30% of full strength dropped, the rest stretched to full by 40-100%). The number reader's ink
    map does as much to the strokes of a photo (`digitnet.ink`: the paper tone cut off, the contrast stretched):
    a network that has seen MNIST's soft edges alone is far less sure of the same digits drawn so."""
    b = ink.shape[0]
    chosen = (torch.rand(b, 1, 1, 1, device=ink.device) < share).to(ink.dtype)
    weight = torch.rand(b, 1, 1, 1, device=ink.device) - 0.5  # < 0: thinner, > 0: thicker
    thicker, thinner = largest_around(ink), -largest_around(-ink)
    redrawn = ink + weight.clamp(min=0) * (thicker - ink) + (-weight).clamp(min=0) * (thinner - ink)
    low = 0.3 * torch.rand(b, 1, 1, 1, device=ink.device)
    span = 0.4 + torch.rand(b, 1, 1, 1, device=ink.device) * (0.6 - low)  # low + span <= 1: the core stays full
    redrawn = ((redrawn - low) / span).clamp(0, 1)
    return chosen * redrawn + (1 - chosen) * ink


def largest_around(x: torch.Tensor) -> torch.Tensor:
    """Each pixel of (B, C, H, W) replaced by the largest in its 3x3 neighbourhood (a dilation; outside counts as
    -inf). The same as F.max_pool2d(x, 3, stride=1, padding=1), an element-wise maximum of nine shifted copies:
    on a CPU a tenth of the time of max_pool2d's kernel on one-channel 28x28 images."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    out = padded[..., 0:h, 0:w]
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                out = torch.maximum(out, padded[..., dy : dy + h, dx : dx + w])
    return out
