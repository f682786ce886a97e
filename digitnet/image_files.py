"""Image files as a prediction data path: `predict --data.predict_path PATH` reads them one by one.

Each file becomes the model's input through `digitnet.images.mnist_pixels`, as `DigitRecognizer` and `serve`
read images; a file that cannot be used is reported with its reason and does not stop the others.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import NamedTuple

import torch

from digitnet.errors import DigitnetError
from digitnet.images import MAX_PIXELS, ImageError, mnist_pixels
from digitnet.pixels import SIZE, to_input


class ImageBatch(NamedTuple):
    """A batch of image files: the readable ones stacked, and every file with its error ("" when read)."""

    images: torch.Tensor  # (G, 1, 28, 28) float32: the files without an error, in order
    files: list[str]
    errors: list[str]


def list_files(path: str | Path) -> list[Path]:
    """The files PATH names: the file itself, a folder's files (not its hidden ones, not its
    subfolders'), or a glob's matches (`**` recurses), in sorted order."""
    text = os.path.expanduser(str(path))
    p = Path(text)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    elif glob.has_magic(text):
        files = sorted(Path(f) for f in glob.glob(text, recursive=True) if os.path.isfile(f))
    else:
        raise DigitnetError(
            f"{path}: no such file or folder; --data.predict_path takes an image file, a folder or a quoted glob "
            "such as 'scans/*.png'"
        )
    if not files:
        raise DigitnetError(f"{path}: no files found")
    return files


class ImageFiles(torch.utils.data.Dataset):
    """Image files, each read and preprocessed when indexed: (input (1, 28, 28) or None, file, error).

    A file that cannot be used yields None and its reason instead of raising, so that one bad file
    does not stop a folder.
    """

    def __init__(self, files: list[Path], standardize: bool = True, max_pixels: int = MAX_PIXELS) -> None:
        self.files, self.standardize, self.max_pixels = files, standardize, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str, str]:
        path = self.files[index]
        try:
            pixels = mnist_pixels(path, self.max_pixels)
        except ImageError as err:
            return None, str(path), err.reason
        return to_input(pixels, self.standardize)[0], str(path), ""


def collate_images(items: list[tuple[torch.Tensor | None, str, str]]) -> ImageBatch:
    """ImageFiles items -> one ImageBatch."""
    good = [x for x, _, error in items if not error]
    x = torch.stack(good) if good else torch.empty(0, 1, SIZE, SIZE)
    return ImageBatch(x, [file for _, file, _ in items], [error for _, _, error in items])
