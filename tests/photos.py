"""Fake "photos" of handwritten digits for the tests, made from MNIST-style 28x28 images: inverted to dark
ink, scaled up, placed off-centre on a larger sheet with a paper tone and a little noise, and saved as
a grey PNG, an RGB PNG, an RGBA PNG (transparent sheet) or a JPEG. Digit-like drawings at any size and pen
width (`draw_digit`), and the pieces of harder pictures: ink on paper (`on_paper`), cropped to the ink
(`cropped_to_ink`), a sheet on a dark desk (`on_desk`)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitnet.images import mnist_pixels

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


# The strokes of `drawn_digits`, in pixels of a 112 x 112 canvas: a PIL drawing method and its coordinates.
SHAPES = {
    "zero": ("ellipse", (30, 10, 82, 102)),
    "one": ("line", (60, 8, 52, 104)),
    "seven": ("line", (24, 14, 86, 14, 46, 104)),
    "four": ("line", (66, 104, 66, 8, 20, 72, 92, 72)),
}


def draw_digit(name: str, size: int = 112, width: int = 12) -> np.ndarray:
    """One of the `SHAPES`, white on black on a size x size canvas, drawn with a pen `width` pixels wide."""
    canvas = Image.new("L", (size, size), 0)
    kind, xy = SHAPES[name]
    xy = [v * size / 112 for v in xy]
    draw = ImageDraw.Draw(canvas)
    if kind == "ellipse":
        draw.ellipse(xy, outline=255, width=width)
    else:
        draw.line(xy, fill=255, width=width, joint="curve")
    return np.asarray(canvas)


def drawn_digits() -> dict[str, np.ndarray]:
    """A few digit-like (28, 28) uint8 drawings, white on black, for tests that run without MNIST."""
    small = {name: Image.fromarray(draw_digit(name)).resize((28, 28), Image.Resampling.BOX) for name in SHAPES}
    return {name: np.asarray(image) for name, image in small.items()}


def on_paper(coverage: np.ndarray, rng: np.random.Generator, paper: float = 190, pen: float = 40) -> np.ndarray:
    """Ink `coverage` (0-1, or 0-255) as a grey photo: pen on a paper tone, with a little noise. uint8."""
    coverage = coverage / 255 if coverage.dtype == np.uint8 else coverage
    gray = paper - (paper - pen) * coverage + rng.normal(0, 3, coverage.shape)
    return np.clip(gray, 0, 255).astype(np.uint8)


def cropped_to_ink(image: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """`image` cut down to the bounding box of the pixels where `ink` is true: no margin left."""
    rows, cols = np.nonzero(ink)
    return image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def on_desk(sheet: np.ndarray, frame: tuple[int, int], angle: float = 0.0, desk: float = 15) -> np.ndarray:
    """A grey `sheet` photographed on a dark desk: centred in a frame of (height, width), turned by `angle`
    degrees with the desk showing around it (where the frame is larger than the sheet, or at its corners)."""
    height, width = frame
    canvas = Image.new("L", (width, height), int(desk))
    canvas.paste(Image.fromarray(sheet), ((width - sheet.shape[1]) // 2, (height - sheet.shape[0]) // 2))
    return np.asarray(canvas.rotate(angle, Image.Resampling.BICUBIC, fillcolor=int(desk)))


def huge_png(side: int = 9000) -> bytes:
    """A small PNG file whose header says side x side pixels: its pixel data is cut short, so only a size
    check made from the header, before decoding, refuses it as too large (decoding would say truncated)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = chunk(b"IDAT", zlib.compress(bytes(1000)))  # far fewer than side x side
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def write_bad_files(folder) -> dict[str, str]:
    """One file of each kind of trouble, and the words its reason must contain."""
    folder.mkdir(exist_ok=True)
    good = photo(mnist_pixels(drawn_digits()["zero"]), np.random.default_rng(2), "png")
    good.save(folder / "whole.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "cut.png").write_bytes((folder / "whole.png").read_bytes()[:3000])
    good.save(folder / "whole.jpg", quality=90)
    (folder / "cut.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:1500])
    Image.new("RGB", (120, 80), (200, 190, 170)).save(folder / "blank.jpg")
    (folder / "huge.png").write_bytes(huge_png())
    (folder / "whole.png").unlink(), (folder / "whole.jpg").unlink()
    return {
        "empty.png": "empty file (0 bytes)",
        "notes.txt": "not an image",
        "cut.png": "truncated",
        "cut.jpg": "truncated",
        "blank.jpg": "blank: no ink",
        "huge.png": "too large: 9000x9000 pixels",
    }
