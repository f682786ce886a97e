"""Photos and scans of handwritten digits -> MNIST-style 28x28 inputs, as MNIST itself was made.

MNIST digits are white on black, their ink's bounding box scaled to fit 20x20 (keeping the aspect
ratio) and pasted into 28x28 so that the centre of mass lies at the centre. A photo of a digit on paper
is dark on light, any size, off-centre, on a grey paper tone, with noise: a plain resize to 28x28 scores
near chance. `mnist_pixels` redoes MNIST's steps on such an image; `preprocess` adds the normalization
used in training. Neither needs a model or Lightning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from digitnet.errors import DigitnetError
from digitnet.pixels import SIZE, to_input

# Larger images are refused before they are decoded: a 50-megapixel phone photo passes, a
# decompression bomb (a small file that decodes to gigabytes) does not.
MAX_PIXELS = 64_000_000
# Work on at most this many pixels along the longer side: enough for pen strokes, fast on big photos.
WORK_SIZE = 1024
# Ink must differ from the paper by at least this much (out of 255) and by 6 noise sigmas.
MIN_CONTRAST = 16.0
# MNIST's geometry: ink fits in 20x20 and its centre of mass lies at pixel (14, 14) of 28x28
# (mean over the training set, rows and columns indexed from 0), strokes about 2 pixels wide.
BOX, CENTRE, STROKE = 20, 14.0, 2.0


class ImageError(DigitnetError):
    """An image that cannot be used: `reason` in one line (the `error` column of `predict`), and the file
    it came from, when there is one, in the message."""

    def __init__(self, reason: str, source: str | Path | None = None) -> None:
        super().__init__(f"{source}: {reason}" if source is not None else reason)
        self.reason, self.source = reason, source


def open_image(source: str | Path | BinaryIO, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file (a path, or a binary file object such as an upload), upright as its EXIF says.

    Raises ImageError with the reason: unreadable, empty, not an image, larger than `max_pixels` (checked
    from the header, before decoding), truncated or corrupt.
    """
    name = source if isinstance(source, (str, Path)) else None  # errors name a file, not a buffer
    if name is not None:
        try:
            size = os.path.getsize(source)
        except OSError as err:
            raise ImageError(f"cannot read the file ({err.strerror})", name) from None
    else:  # a file object: its length from where it is now
        start = source.tell()
        size = source.seek(0, os.SEEK_END) - start
        source.seek(start)
    if size == 0:
        raise ImageError("empty file (0 bytes)", name)
    try:
        with warnings.catch_warnings():
            # Pillow warns, then refuses, on huge images; the check below gives the reason instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height <= max_pixels:
                    image.load()
                    return ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise ImageError("not an image (Pillow cannot identify the format)", name) from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"too large: {err}", name) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"truncated or corrupt image ({err})", name) from None
    raise ImageError(f"too large: {width}x{height} pixels, more than the limit of {max_pixels:,}", name)


def grayscale(image: Image.Image) -> np.ndarray:
    """(H, W) float32 luminance in [0, 255]. Transparent pixels become background: they are laid on
    white when the opaque strokes are dark, on black when they are light."""
    if image.mode in ("I", "F"):  # 16- or 32-bit greyscale
        gray = np.asarray(image, dtype=np.float32)
        top = float(gray.max())
        return gray * (255.0 / top) if top > 255 else gray
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"
        alpha = rgba[..., 3] / 255
        opaque = alpha > 0.5
        background = 255.0 if not opaque.any() or np.median(gray[opaque]) < 128 else 0.0
        return gray * alpha + background * (1 - alpha)
    return np.asarray(image.convert("L"), dtype=np.float32)


def paper_level(gray: np.ndarray, blocks: int = 8) -> np.ndarray:
    """(H, W) estimate of the paper's grey level under uneven light: a quadratic surface fitted to the
    median of each of blocks x blocks tiles. Tiles that the ink dominates lie off the surface; they are
    dropped and the surface refitted. Images under 64 pixels a side get one flat level, the median."""
    h, w = gray.shape
    if min(h, w) < 64:
        return np.full_like(gray, np.median(gray))
    rows, cols = np.array_split(np.arange(h), blocks), np.array_split(np.arange(w), blocks)
    medians = np.array([[np.median(gray[r[0] : r[-1] + 1, c[0] : c[-1] + 1]) for c in cols] for r in rows])
    ys, xs = np.meshgrid([r.mean() / h for r in rows], [c.mean() / w for c in cols], indexing="ij")

    def basis(y: np.ndarray, x: np.ndarray) -> np.ndarray:  # (..., 6): 1, y, x, y^2, xy, x^2
        return np.stack([np.ones_like(y), y, x, y * y, x * y, x * x], axis=-1)

    A, b = basis(ys, xs).reshape(-1, 6), medians.reshape(-1)
    fit = np.full_like(b, np.median(b))  # start flat, at the median tile
    for _ in range(4):
        residual = np.abs(b - fit)
        keep = residual <= 3 * (1.4826 * np.median(residual) + 2.0)  # + 2 grey levels: noise alone is paper
        if keep.sum() < 12:  # too few tiles of paper left for 6 coefficients: one flat level
            return np.full_like(gray, np.median(gray))
        coef = np.linalg.lstsq(A[keep], b[keep], rcond=None)[0]
        fit = A @ coef
    y, x = np.meshgrid(np.arange(h, dtype=np.float32) / h, np.arange(w, dtype=np.float32) / w, indexing="ij")
    return (basis(y, x) @ coef.astype(np.float32)).astype(np.float32)


def ink_map(gray: np.ndarray) -> np.ndarray:
    """(H, W) ink in [0, 1] (1 = stroke core, 0 = paper) from a greyscale image of any polarity.

    The paper level comes from `paper_level`, the noise sigma from the median absolute deviation around
    it. Ink lies on the side of the paper with more strongly deviating mass: dark ink on light paper
    is inverted. The paper tone is subtracted and the contrast stretched, so that a grey sheet under
    dim, uneven light and a white scan give the same strokes.
    """
    deviation = gray - paper_level(gray)
    sigma = 1.4826 * float(np.median(np.abs(deviation)))
    threshold = max(6 * sigma, MIN_CONTRAST)
    bright, dark = deviation[deviation > threshold].sum(), -deviation[deviation < -threshold].sum()
    if bright == 0 and dark == 0:
        raise ImageError("blank: no ink found (the image is one flat tone)")
    ink = deviation if bright >= dark else -deviation  # ink is now brighter than the paper
    full = float(np.percentile(ink[ink > threshold], 90))  # the strokes' core: MNIST's saturated pixels
    level = np.clip(ink / full, 0, 1)
    # Soft threshold: paper texture and noise below 30% of the stroke contrast vanish, the core saturates.
    return np.clip((level - 0.3) / 0.4, 0, 1).astype(np.float32)


def ink_box(ink: np.ndarray, trim: float = 0.002) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the ink, bottom/right exclusive. Rows and columns are trimmed from
    each side while they hold under `trim` of the ink, so that a stray speck does not stretch the box."""
    bounds = []
    for profile in (ink.sum(1), ink.sum(0)):  # mass per row, per column
        cumulative = np.cumsum(profile) / profile.sum()
        first = int(np.searchsorted(cumulative, trim, side="right"))
        last = int(np.searchsorted(cumulative, 1 - trim, side="left"))
        bounds += [first, min(last, len(profile) - 1) + 1]
    return bounds[0], bounds[1], bounds[2], bounds[3]


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the area of the strokes over the length of their outline."""
    mask = ink > 0.5
    edges = (mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum()
    return 2 * float(mask.sum()) / max(int(edges), 1)


def fit_box(ink: np.ndarray) -> torch.Tensor:
    """The cropped ink scaled so that its longer side is 20 pixels: (h, w) float32, max(h, w) == 20.

    Thin pen strokes are thickened first, so that they come out about as wide as MNIST's (2 pixels);
    scaled down as they are, they would be faint hairlines the model has never seen.
    """
    x = torch.from_numpy(ink)[None, None]  # (1, 1, H, W)
    scale = BOX / max(ink.shape)
    width = stroke_width(ink) * scale  # in output pixels
    if width < 0.75 * STROKE:
        r = int(round((STROKE - width) / scale / 2))  # pixels to add on each side of a stroke, at input scale
        if r >= 1:
            x = F.pad(x, (r, r, r, r))  # room for the strokes to grow past the box
            x = F.max_pool2d(x, (1, 2 * r + 1), stride=1, padding=(0, r))  # dilation, as two 1-D passes
            x = F.max_pool2d(x, (2 * r + 1, 1), stride=1, padding=(r, 0))
    h, w = x.shape[-2:]
    size = (max(1, round(h * BOX / max(h, w))), max(1, round(w * BOX / max(h, w))))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0].clamp(0, 1)


def centre_by_mass(patch: torch.Tensor) -> torch.Tensor:
    """Paste an (h, w) patch into 28x28 so that its centre of mass lands on MNIST's (14, 14)."""
    h, w = patch.shape
    mass = patch.sum()
    cy = float((patch.sum(1) * torch.arange(h)).sum() / mass)
    cx = float((patch.sum(0) * torch.arange(w)).sum() / mass)
    top, left = int(round(CENTRE - cy)), int(round(CENTRE - cx))
    canvas = torch.zeros(SIZE + 2 * BOX, SIZE + 2 * BOX)  # margins: a shift never falls off the canvas
    canvas[BOX + top : BOX + top + h, BOX + left : BOX + left + w] = patch
    return canvas[BOX : BOX + SIZE, BOX : BOX + SIZE]


def mnist_pixels(image: str | Path | Image.Image | np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A photo, scan or drawing of one digit as MNIST would have it: (28, 28) uint8, white on black.

    `image` is a file path, a PIL image (grey, RGB, RGBA, ...) or an (H, W) array of grey levels 0-255,
    dark on light or light on dark. Raises ImageError (a DigitnetError) with the reason when the file
    cannot be read or holds no ink.
    """
    source = image if isinstance(image, (str, Path)) else None
    if source is not None:
        image = open_image(source, max_pixels)
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):  # palette, CMYK, 16-bit, ...
            alpha = "A" in image.getbands() or "transparency" in image.info
            image = image.convert("RGBA" if alpha else "I" if image.mode.startswith("I;16") else "RGB")
        if max(image.size) > WORK_SIZE:
            image = image.copy()
            image.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)  # averages: thin strokes stay
        gray = grayscale(image)
    else:
        gray = np.asarray(image, dtype=np.float32)
        if gray.ndim != 2:
            raise ImageError(f"expected an (H, W) array of grey levels, got shape {gray.shape}")
    try:
        ink = ink_map(gray)
    except ImageError as err:  # a blank image: name its file
        raise ImageError(err.reason, source) from None
    top, bottom, left, right = ink_box(ink)
    patch = fit_box(ink[top:bottom, left:right])
    return (centre_by_mass(patch) * 255).round().to(torch.uint8).numpy()


def preprocess(image: str | Path | Image.Image | np.ndarray, standardize: bool = True) -> torch.Tensor:
    """An image of one digit -> the model's (1, 28, 28) float32 input: `mnist_pixels`, then
    `digitnet.pixels.to_input`."""
    return to_input(mnist_pixels(image), standardize)[0]
