"""Your own labelled digits as training data: a folder in torchvision's ImageFolder layout, `DIR/7/any_name.png`.

Each picture, of any size, is read as `predict` reads one digit (`digitnet.images.mnist_pixels`), so a photo
of a digit and a 28x28 MNIST-style image both work. A file that cannot be used is skipped with its reason;
a folder named other than 0-9 is an error before anything trains. Folders whose names begin with a dot are
not read (`serve --corrections` keeps the original crops there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import ImageFolder

from digitnet.errors import DigitnetError, ImageError
from digitnet.images import mnist_pixels, to_input


class DigitFolder(ImageFolder):
    """ImageFolder whose classes are the digits their folders are named by (a folder `7` holds 7s, whichever
    others there are), read with MNIST's preprocessing."""

    def __init__(self, root: str | Path) -> None:
        # Every file but hidden ones: one that is not a picture is skipped with its reason, as by `predict`.
        super().__init__(str(root), loader=mnist_pixels, allow_empty=True,
                         is_valid_file=lambda path: not Path(path).name.startswith("."))

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        folders = sorted(p.name for p in Path(directory).iterdir() if p.is_dir() and not p.name.startswith("."))
        wrong = [name for name in folders if name not in {str(d) for d in range(10)}]
        if wrong or not folders:
            problem = f"folder {wrong[0]!r} is not a digit" if wrong else "no digit folders"
            raise DigitnetError(f"{directory}: {problem}; put each digit's pictures in a folder named by it, 0 to 9 "
                                "(e.g. DIR/7/my_seven.png)")  # fmt: skip
        return folders, {name: int(name) for name in folders}


def read_digit_folder(root: str | Path, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(N, 1, 28, 28) float32 model inputs and (N,) int64 labels of the pictures under `root`, and the files
    skipped with their reasons, [(file, reason)]. Raises DigitnetError when the folder is missing, is laid out
    wrong, or holds no usable picture."""
    if not Path(root).is_dir():
        raise DigitnetError(f"{root}: no such folder; --data.extra_dir takes a folder of digit folders, 0 to 9")
    pixels, labels, skipped = [], [], []
    for path, label in DigitFolder(root).samples:
        try:
            pixels.append(mnist_pixels(path))
            labels.append(label)
        except ImageError as err:
            skipped.append((path, err.reason))
    if not pixels:
        found = f"none of its {len(skipped)} files could be read" if skipped else "its digit folders are empty"
        raise DigitnetError(f"{root}: no picture of a digit: {found}")
    return to_input(np.stack(pixels), normalize), torch.tensor(labels), skipped


def hold_out(labels: torch.Tensor, share: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, held out) of a labelled set: `share` of each digit's pictures held out (at least one of
    each digit with two or more), chosen at random with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    train, held = [], []
    for digit in labels.unique().tolist():
        index = torch.nonzero(labels == digit)[:, 0]
        index = index[torch.randperm(len(index), generator=generator)]
        k = min(len(index) - 1, max(1, round(share * len(index)))) if share > 0 else 0
        held.append(index[:k])
        train.append(index[k:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values
