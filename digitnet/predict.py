"""`python -m digitnet predict --data.predict_path PATH --output OUT.csv`: image files as the data of `predict`
(`list_files`, `collate_images`) and the writer of its lines and CSV (`PredictionWriter`)."""

from __future__ import annotations

import csv
import functools
import glob
import os
import shlex
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from digitnet.errors import DigitnetError
from digitnet.files import replacing
from digitnet.images import SIZE, ImageError, picture_ink, to_input
from digitnet.number_reader import (
    Candidates,
    NumberReading,
    best_reading,
    candidates,
    with_number_net,
)
from digitnet.recognizer import predictions
from digitnet.strings import read_ink

COLUMNS = ["file", "number", "number_probabilities", "digit", "probability", "top1", "top1_probability", "top2",
           "top2_probability", "top3", "top3_probability", "error"]  # fmt: skip


class Picture(NamedTuple):
    """A picture's candidate digits, scale (its pixels per ink-map pixel) and ink map, or None and why it cannot be
    read."""

    candidates: Candidates | None
    scale: float
    file: str
    error: str
    ink: np.ndarray | None = None


class ImageBatch(NamedTuple):
    """A batch of image files: the candidate digits of the readable ones stacked, and every file's Picture."""

    images: torch.Tensor  # (K, 1, 28, 28) float32: the candidates of the files without an error, in order
    pictures: list[Picture]


def list_files(path: str | Path) -> list[Path]:
    """The files PATH names: the file itself, a folder's files (not its hidden ones, not its
    subfolders'), or a glob's matches (`**` recurses), in sorted order."""
    text = os.path.expanduser(str(path))
    p = Path(text)
    if p.is_file():
        return [p]
    if not p.is_dir() and not glob.has_magic(text):
        raise DigitnetError(f"{path}: no such file or folder; --data.predict_path takes an image file, a folder or a "
                            "quoted glob such as 'scans/*.png'")  # fmt: skip
    pattern = os.path.join(glob.escape(text), "*") if p.is_dir() else text  # a folder's `*` leaves hidden files out
    files = sorted(Path(f) for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))
    if not files:
        folders = p.is_dir() and any(f.is_dir() and not f.name.startswith(".") for f in p.iterdir())
        pattern = shlex.quote(str(p / "**" / "*.png"))
        hint = f"; it holds folders: to read the images in them, pass a quoted glob such as {pattern}"
        raise DigitnetError(f"{path}: no files found" + (hint if folders else ""))
    return files


def collate_images(files: list[Path], normalize: bool = True, keep_ink: bool = False) -> ImageBatch:
    """A batch of `predict`'s data (image file paths: any list is a Dataset) read into one ImageBatch, the candidates
    scaled as in training. A file that cannot be used does not stop a folder: its Picture says why. `keep_ink`: each
    Picture holds its ink map, for a number net to read (a photo's is megabytes: only then)."""
    pictures = []
    for path in files:
        try:
            ink, scale = picture_ink(path)
            pictures.append(Picture(candidates(ink), scale, str(path), "", ink if keep_ink else None))
        except ImageError as err:
            pictures.append(Picture(None, 1.0, str(path), err.reason))
    found = [p.candidates.pixels for p in pictures if p.candidates is not None]
    x = to_input(np.concatenate(found), normalize) if found else torch.empty(0, 1, SIZE, SIZE)
    return ImageBatch(x, pictures)


def digit_list(reading: NumberReading) -> str:
    """The digits of a number for the terminal: `4 0.99, ? (7 0.41 or 1 0.30), 6 0.98`."""
    return ", ".join(f"{d.digit} {d.probability:.2f}" if d.sure else
                     f"? ({d.top3[0][0]} {d.top3[0][1]:.2f} or {d.top3[1][0]} {d.top3[1][1]:.2f})" for d in reading.digits)


class PredictionWriter(BasePredictionWriter):
    """Prints a line per image (file, the number read and its digits' probabilities, or the error) and writes them all
    to the CSV file `output` (None: none) with the columns `COLUMNS` (README.md, "Read the numbers in your photos")."""

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
        prediction = prediction.float().cpu()
        if not isinstance(batch, ImageBatch):  # MNIST's test set: (images, labels, indices), one digit each
            for i, p in zip(batch[2].tolist(), predictions(prediction)):
                self.rows.append(self.row(f"MNIST test image {i}", p, str(p.digit), f"{p.probability:.4f}"))
            return
        normalize = trainer.datamodule.hparams.normalize if trainer.datamodule is not None else True
        symbols = functools.partial(read_ink, pl_module.number_net, normalize=normalize)  # the number net's reading
        start = 0  # each picture's candidates, in order; the first is the whole picture
        for picture in batch.pictures:
            if picture.candidates is None:
                self.rows.append({**dict.fromkeys(COLUMNS, ""), "file": picture.file, "error": picture.error})
                continue
            probabilities = prediction[start : start + len(picture.candidates.spans)]
            start += len(probabilities)
            reading = best_reading(picture.candidates, probabilities.numpy(), picture.scale)
            if pl_module.number_net is not None:
                reading = with_number_net(reading, picture.ink, picture.scale, symbols)
            shown = (f"{reading.digits[0].probability:.4f}" if len(reading.digits) == 1 and reading.digits[0].sure
                     else digit_list(reading))  # fmt: skip
            row = self.row(picture.file, predictions(probabilities[:1])[0], reading.number, shown)
            row["number_probabilities"] = " ".join(f"{d.probability:.4f}" for d in reading.digits)
            self.rows.append(row)

    @staticmethod
    def row(file: str, whole, number: str, shown: str) -> dict:
        """A CSV row: the number, `whole` (the picture read as one digit) and `shown`, printed after the number."""
        row = dict.fromkeys(COLUMNS, "")
        row.update(file=file, number=number, number_probabilities=f"{whole.probability:.4f}", digit=whole.digit,
                   probability=f"{whole.probability:.4f}", shown=shown)  # fmt: skip
        for k, (digit, probability) in enumerate(whole.top3, start=1):
            row.update({f"top{k}": digit, f"top{k}_probability": f"{probability:.4f}"})
        return row

    def on_predict_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        width = max((len(row["file"]) for row in self.rows), default=0)
        for row in self.rows:
            result = f"error: {row['error']}" if row["error"] else f"{row['number']}  {row['shown']}"
            line = f"{row['file']:<{width}}  {result}"  # a name's bytes that are no UTF-8 shown as \xe9
            print(line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
        if self.output is not None:
            # Whole or not at all, in UTF-8 everywhere; a name in bytes that are no UTF-8 is written as those bytes.
            utf8 = {"encoding": "utf-8", "errors": "surrogateescape"}
            try:
                with replacing(self.output) as tmp, open(tmp, "w", newline="", **utf8) as f:
                    writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(self.rows)
            except OSError as err:  # a full disk: the readings above are all there is
                raise DigitnetError(f"--output {self.output}: cannot write it ({err.strerror})") from None
        failed = len(self.rows) - self.predicted
        summary = f"Predicted {self.predicted} of {len(self.rows)} images"
        if failed:
            summary += f"; {failed} could not be read (see the error {'column' if self.output else 'lines'})"
        print(summary + (f". Wrote {self.output}" if self.output is not None else ""))
