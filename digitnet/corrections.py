"""Corrections from the drawing page, kept as training data: `serve --corrections DIR` saves each digit a person
says the model read wrong (or right) into DIR in the layout `--data.extra_dir` reads, `DIR/7/<id>.png`.

Each correction is the 28x28 image the model read, in DIR/<digit>/, and the piece of the picture it was cut from,
in DIR/.originals/<digit>/ (a hidden folder: kept for you, not trained on). Files are written whole under new
names, never over another.
"""

from __future__ import annotations

import io
import os
import secrets
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digitnet.errors import DigitnetError, ImageError
from digitnet.files import replacing
from digitnet.images import SIZE, open_image

ORIGINALS = ".originals"


class Corrections:
    """The folder corrections are saved in. Raises DigitnetError when it cannot be made or written to."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with replacing(self.folder / ".write-test") as probe:
                probe.write_bytes(b"")
            (self.folder / ".write-test").unlink()
        except OSError as err:
            raise DigitnetError(f"--corrections {folder}: cannot write there ({err.strerror or err})") from None

    def count(self) -> int:
        """The pictures the folder holds for training: files in its digit folders."""
        return sum(1 for d in range(10) if (self.folder / str(d)).is_dir() for f in (self.folder / str(d)).iterdir()
                   if f.is_file() and not f.name.startswith("."))  # fmt: skip

    def save(self, digit: int, pixels: bytes, original: bytes | None = None) -> Path:
        """Save a correction: `pixels`, a 28x28 greyscale PNG, the image the model read (white on black); and
        `original`, an image file of the piece of the picture it came from. Returns the 28x28 file's path.
        Raises ImageError for anything that is not such an image."""
        if not (isinstance(digit, int) and 0 <= digit <= 9):
            raise ImageError(f"the digit must be 0 to 9, got {digit!r}")
        image = open_image(io.BytesIO(pixels))
        if image.size != (SIZE, SIZE):
            raise ImageError(f"the model's image must be {SIZE}x{SIZE} pixels, got {image.width}x{image.height}")
        grey = Image.fromarray(np.asarray(image.convert("L")))
        crop = open_image(io.BytesIO(original)) if original else None
        if crop is not None and crop.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):  # PNG holds no CMYK
            crop = crop.convert("RGBA" if "A" in crop.getbands() else "RGB")
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.png"
        path = self.folder / str(digit) / name
        if crop is not None:  # first: should it fail, no 28x28 file is left to train on and to be sent again
            write_new(self.folder / ORIGINALS / str(digit) / name, crop)
        write_new(path, grey)
        return path


def write_new(path: Path, image: Image.Image) -> None:
    """Write a PNG whole, under a name no file has: never over another. It is written to a hidden name first
    (which `--data.extra_dir` does not read, should the writer be killed), then linked to its own."""
    whole = path.with_name(f".{path.name}.whole")
    with replacing(whole) as tmp:
        image.save(tmp, format="PNG")
    try:
        os.link(whole, path)  # fails if `path` exists: nothing is overwritten
    finally:
        whole.unlink()
