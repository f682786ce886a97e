"""Reading digits with a trained model: the Python API (`DigitRecognizer`) and the CSV writer behind
`python -m digitnet predict --data.predict_path PATH --output OUT.csv`."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch import nn

from digitnet.checkpoints import legacy_net, read_checkpoint
from digitnet.errors import DigitnetError
from digitnet.image_files import ImageBatch
from digitnet.images import ImageError, mnist_pixels
from digitnet.pixels import to_input
from digitnet.model import DigitClassifier

COLUMNS = ["file", "digit", "probability", "top1", "top1_probability", "top2", "top2_probability",
           "top3", "top3_probability", "error"]  # fmt: skip


@dataclass(frozen=True)
class Prediction:
    """The most likely digit, its probability, and the three most likely digits with theirs."""

    digit: int
    probability: float
    top3: tuple[tuple[int, float], ...]


def top3(probabilities: torch.Tensor) -> list[Prediction]:
    """(N, 10) class probabilities -> N predictions."""
    values, digits = probabilities.float().topk(3, dim=1)
    return [
        Prediction(d[0], p[0], tuple(zip(d, p)))
        for d, p in zip(digits.tolist(), values.tolist())
    ]


class DigitRecognizer:
    """A trained classifier and MNIST's preprocessing: digits from image files, PIL images or arrays.

    Args:
        net: Any module mapping normalized (N, 1, 28, 28) images to (N, 10) logits, such as `MLP`.
        standardize: Whether the net was trained on standardized pixels (the default, `--data.normalize=true`)
            or on plain pixels / 255.
    """

    def __init__(self, net: nn.Module, standardize: bool = True) -> None:
        self.net = net.eval()
        self.standardize = standardize

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu",
                        weights_only: bool | None = None) -> DigitRecognizer:  # fmt: skip
        """The network of a `DigitClassifier` checkpoint, with the data settings it was trained with.
        `weights_only=False` reads one of a model built in Python with a functools.partial optimizer."""
        checkpoint = read_checkpoint(path, map_location, weights_only)
        hparams = checkpoint.get("hyper_parameters", {})
        try:
            if legacy_net(hparams) is not None:  # digitnet 0.1: the MLP's settings were the model's own
                model = DigitClassifier(net=legacy_net(hparams))
                model.load_state_dict(checkpoint["state_dict"])
            else:
                model = DigitClassifier.load_from_checkpoint(path, map_location=map_location,
                                                             weights_only=weights_only)  # fmt: skip
        except (RuntimeError, KeyError, TypeError, ValueError, ImportError, AttributeError) as err:
            first_line = (str(err).strip().splitlines() or [""])[0]
            raise DigitnetError(f"{path}: not a checkpoint of digitnet's DigitClassifier "
                                f"({type(err).__name__}: {first_line})") from None
        data = checkpoint.get("datamodule_hyper_parameters", {})
        return cls(model.net.to(map_location), standardize=data.get("normalize", True))

    def inputs(self, images: list) -> torch.Tensor:
        """The (N, 1, 28, 28) float32 model input for a list of images (see `predict`)."""
        pixels = [
            np.asarray(image) if _is_mnist_array(image) else mnist_pixels(image)
            for image in images
        ]
        return to_input(np.stack(pixels), self.standardize)

    @torch.no_grad()
    def predict_many(self, images: list) -> list[Prediction]:
        """Predictions for a list of images (see `predict`); raises ImageError on the first unusable one."""
        parameter = next(self.net.parameters(), None)
        x = self.inputs(images)
        if parameter is not None:
            x = x.to(parameter.device)
        return top3(self.net(x).softmax(dim=1))

    def predict(self, image: str | Path | Image.Image | np.ndarray | torch.Tensor) -> Prediction:
        """The digit in one image.

        `image` is a file path or a PIL image (a photo, scan or drawing, preprocessed as MNIST was made:
        see `digitnet.images.mnist_pixels`), or a 28x28 array of MNIST pixels (0-255, white digit on
        black, centred as in MNIST), used as it is. Any other 2-D array is taken as a greyscale picture
        and preprocessed.
        """
        return self.predict_many([image])[0]


def _is_mnist_array(image) -> bool:
    return isinstance(image, (np.ndarray, torch.Tensor)) and tuple(image.shape) == (28, 28)


def default_checkpoint(root: str | Path = "lightning_logs") -> tuple[Path, str]:
    """The checkpoint `predict`, `export` and `serve` use without --ckpt_path, and what it is: of the run under
    `root` whose checkpoints were written last, its best (`best-*.ckpt`), else its newest checkpoint."""
    runs: dict[Path, float] = {}
    for ckpt in Path(root).glob("**/checkpoints/*.ckpt"):
        runs[ckpt.parent] = max(runs.get(ckpt.parent, 0.0), ckpt.stat().st_mtime)
    if not runs:
        raise DigitnetError(
            f"no --ckpt_path given and no checkpoint under {Path(root).resolve()}; "
            "train a model first (python -m digitnet fit) or pass --ckpt_path PATH"
        )
    folder = max(runs, key=runs.get)
    run = folder.parent  # .../version_N/checkpoints -> .../version_N
    best = sorted(folder.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1], f"the best checkpoint of the latest run, {run}"
    newest = max(folder.glob("*.ckpt"), key=lambda p: (p.name == "last.ckpt", p.stat().st_mtime))
    return newest, f"the {'last' if newest.name == 'last.ckpt' else 'newest'} checkpoint of the latest run, {run}"


def announce_default_checkpoint(verb: str = "Using", root: str | Path = "lightning_logs") -> Path:
    """`default_checkpoint(root)`, after telling the user which one it is and how to choose another."""
    path, what = default_checkpoint(root)
    print(f"{verb} {path} ({what}; --ckpt_path chooses another)")
    return path


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


__all__ = ["COLUMNS", "DigitRecognizer", "ImageError", "Prediction", "PredictionWriter", "announce_default_checkpoint",
           "default_checkpoint"]
