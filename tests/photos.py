"""Fake "photos" of handwritten digits for the tests, made from MNIST-style 28x28 images: inverted to dark
ink, scaled up, placed off-centre on a larger sheet with a paper tone and a little noise, and saved as
a grey PNG, an RGB PNG, an RGBA PNG (transparent sheet) or a JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("png", "rgb", "rgba", "jpeg")


def photo(digit: np.ndarray, rng: np.random.Generator, kind: str = "png") -> Image.Image:
    """One (28, 28) uint8 white-on-black digit as a photo of dark ink on paper, in the mode `kind` asks for."""
    scale = rng.uniform(3, 8)
    size = int(28 * scale)
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    height, width = (int(size * rng.uniform(1.2, 2.5)) for _ in range(2))
    top, left = rng.integers(0, height - size), rng.integers(0, width - size)  # off-centre
    coverage = np.zeros((height, width), np.float32)
    coverage[top : top + size, left : left + size] = ink
    paper, pen = rng.uniform(170, 240), rng.uniform(10, 70)
    gray = paper - (paper - pen) * coverage + rng.normal(0, 3, coverage.shape)
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    if kind == "rgba":  # strokes in blue ink on a transparent sheet whose hidden colour is black
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[..., :3] = (20, 30, 120)
        rgba[..., 3] = np.clip(coverage * 255, 0, 255).astype(np.uint8)
        rgba[rgba[..., 3] == 0, :3] = 0
        return Image.fromarray(rgba, "RGBA")
    if kind in ("rgb", "jpeg"):  # cream-coloured paper
        return Image.fromarray(np.stack([gray, gray, (gray * 0.9).astype(np.uint8)], axis=-1), "RGB")
    return Image.fromarray(gray, "L")


def save_photo(digit: np.ndarray, path: Path, rng: np.random.Generator, kind: str) -> Path:
    path = path.with_suffix(".jpg" if kind == "jpeg" else ".png")
    image = photo(digit, rng, kind)
    image.save(path, quality=85) if kind == "jpeg" else image.save(path)
    return path


def drawn_digits() -> dict[str, np.ndarray]:
    """A few digit-like (28, 28) uint8 drawings, white on black, for tests that run without MNIST."""
    shapes = {
        "zero": lambda d: d.ellipse((30, 10, 82, 102), outline=255, width=12),
        "one": lambda d: d.line((60, 8, 52, 104), fill=255, width=12),
        "seven": lambda d: d.line((24, 14, 86, 14, 46, 104), fill=255, width=12, joint="curve"),
        "four": lambda d: (d.line((66, 104, 66, 8, 20, 72, 92, 72), fill=255, width=12, joint="curve")),
    }
    digits = {}
    for name, draw in shapes.items():
        canvas = Image.new("L", (112, 112), 0)
        draw(ImageDraw.Draw(canvas))
        digits[name] = np.asarray(canvas.resize((28, 28), Image.Resampling.BOX))
    return digits
