"""Data augmentation on batches already on the device: a random translation per image.

torchvision's RandomAffine(translate=...) on a batched tensor draws one translation for the whole batch;
MNIST augmentation wants one per image, so this is written out as one pad and one gather.
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
