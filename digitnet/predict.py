"""`python -m digitnet predict --data.predict_path PATH --output OUT.csv`: image files as the data of `predict`
(`list_files`, `ImageFiles`, read one by one with `digitnet.images.preprocess`, a file that cannot be used
reported with its reason without stopping the others) and the writer of its lines and CSV (`PredictionWriter`)."""

from __future__ import annotations

import csv
import glob
import os
from pathlib import Path
from typing import NamedTuple

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from digitnet.errors import DigitnetError
from digitnet.images import MAX_PIXELS, SIZE, ImageError, preprocess
from digitnet.recognizer import top3

COLUMNS = ["file", "digit", "probability", "top1", "top1_probability", "top2", "top2_probability",
           "top3", "top3_probability", "error"]  # fmt: skip


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
            return preprocess(path, self.standardize, self.max_pixels), str(path), ""
        except ImageError as err:
            return None, str(path), err.reason


def collate_images(items: list[tuple[torch.Tensor | None, str, str]]) -> ImageBatch:
    """ImageFiles items -> one ImageBatch."""
    good = [x for x, _, error in items if not error]
    x = torch.stack(good) if good else torch.empty(0, 1, SIZE, SIZE)
    return ImageBatch(x, [file for _, file, _ in items], [error for _, _, error in items])


class PredictionWriter(BasePredictionWriter):
    """Prints a line per image (file, digit, probability, or the error) and writes them all to a CSV
    file with the columns `COLUMNS`: `error` is empty for the images read, and says why for the others.

    Batches of image files are `ImageBatch`es (the images read, every file name and error); MNIST's test
    images, in (images, labels, indices) batches, are named by their index.

    Args:
        output: The CSV file to write; None prints only.
    """

    def __init__(self, output: str | Path | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self.rows: list[dict] = []

    @property
    def predicted(self) -> int:
        return sum(1 for row in self.rows if not row["error"])

    def on_predict_start(self, trainer, pl_module) -> None:
        self.rows = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if isinstance(batch, ImageBatch):
            files, errors = batch.files, batch.errors
        else:  # MNIST's test set: (images, labels, indices)
            files = [f"MNIST test image {i}" for i in batch[2].tolist()]
            errors = [""] * len(files)
        predictions = iter(top3(prediction))  # one per file without an error, in order
        for file, error in zip(files, errors):
            row = dict.fromkeys(COLUMNS, "")
            row.update(file=file, error=error)
            if not error:
                p = next(predictions)
                row.update(digit=p.digit, probability=f"{p.probability:.4f}")
                for k, (digit, probability) in enumerate(p.top3, start=1):
                    row.update({f"top{k}": digit, f"top{k}_probability": f"{probability:.4f}"})
            self.rows.append(row)

    def on_predict_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        width = max((len(row["file"]) for row in self.rows), default=0)
        for row in self.rows:
            result = f"error: {row['error']}" if row["error"] else f"{row['digit']}  {row['probability']}"
            print(f"{row['file']:<{width}}  {result}")
        if self.output is not None:
            with open(self.output, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(self.rows)
        failed = len(self.rows) - self.predicted
        summary = f"Predicted {self.predicted} of {len(self.rows)} images"
        if failed:
            summary += f"; {failed} could not be read (see the error {'column' if self.output else 'lines'})"
        print(summary + (f". Wrote {self.output}" if self.output is not None else ""))
