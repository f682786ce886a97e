"""Reading digits in Python with a trained model: `DigitRecognizer` and its `Prediction`s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from digitnet.checkpoints import check_network, read_checkpoint
from digitnet.errors import DigitnetError, first_line
from digitnet.images import picture_ink, preprocess, to_input
from digitnet.model import DigitClassifier
from digitnet.number_reader import NumberReading, read_number
from digitnet.strings import Symbol, read_ink


@dataclass(frozen=True)
class Prediction:
    """The most likely digit, its probability, and the three most likely digits with theirs."""

    digit: int
    probability: float
    top3: tuple[tuple[int, float], ...]


def predictions(probabilities: torch.Tensor) -> list[Prediction]:
    """(N, 10) class probabilities -> N predictions."""
    values, digits = probabilities.float().topk(3, dim=1)
    return [Prediction(d[0], p[0], tuple(zip(d, p))) for d, p in zip(digits.tolist(), values.tolist())]


class DigitRecognizer:
    """A trained classifier and MNIST's preprocessing: digits from image files, PIL images or arrays.

    Args:
        net: Any module mapping normalized (N, 1, 28, 28) images to (N, 10) logits, such as `MLP`.
        normalize: Whether the net was trained on standardized pixels (`--data.normalize=true`) or on pixels / 255.
        number_net: A reader of whole numbers trained beside `net` (`NumberNet`), which `read_number` reads with too;
            None: `net` alone.
    """

    def __init__(self, net: nn.Module, normalize: bool = True, number_net: nn.Module | None = None) -> None:
        self.net, self.normalize = net.eval(), normalize
        self.number_net = None if number_net is None else number_net.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu",
                        weights_only: bool | None = None) -> DigitRecognizer:  # fmt: skip
        """The network of a `DigitClassifier` checkpoint, with the data settings it was trained with.
        `weights_only=False` reads a checkpoint that holds Python objects: only for files you trust."""
        checkpoint = read_checkpoint(path, map_location, weights_only)
        check_network(path, checkpoint)
        try:
            model = DigitClassifier.load_from_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except (RuntimeError, KeyError, TypeError, ValueError, ImportError, AttributeError) as err:
            raise DigitnetError(f"{path}: not a checkpoint of digitnet's DigitClassifier "
                                f"({type(err).__name__}: {first_line(err)})") from None
        data = checkpoint.get("datamodule_hyper_parameters", {})
        number_net = None if model.number_net is None else model.number_net.to(map_location)
        return cls(model.net.to(map_location), normalize=data.get("normalize", True), number_net=number_net)

    @torch.no_grad()
    def _softmax(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) model input -> (N, 10) float32 probabilities, on the network's device."""
        parameter = next(self.net.parameters(), None)
        return self.net(x if parameter is None else x.to(parameter.device)).softmax(dim=1).float()

    def predict_many(self, images: list) -> list[Prediction]:
        """Predictions for a list of images (see `predict`), or an (N, 28, 28) array or tensor of them; raises
        ImageError on the first unusable one."""
        images = images if isinstance(images, (np.ndarray, torch.Tensor)) else list(images)  # a generator too
        if len(images) == 0:  # `not images` is ambiguous for an array of several
            return []
        return predictions(self._softmax(torch.stack([preprocess(image, self.normalize) for image in images])))

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(K, 28, 28) uint8 MNIST pixels -> (K, 10) float32 probabilities of the ten digits."""
        return self._softmax(to_input(pixels, self.normalize)).cpu().numpy()

    def symbols(self, ink: np.ndarray) -> list[Symbol]:
        """What the number net reads in a picture's ink (H, W) in [0, 1], left to right."""
        return read_ink(self.number_net, ink, self.normalize)

    def read_number(self, image: str | Path | Image.Image | np.ndarray) -> NumberReading:
        """The number in a picture (a file path, a PIL image or an (H, W) array of grey levels, any size), read left
        to right, `?` for each piece the network does not believe is a digit. Raises ImageError when unusable."""
        ink, scale = picture_ink(image)
        return read_number(ink, self.probabilities, scale, self.symbols if self.number_net is not None else None)

    def predict(self, image: str | Path | Image.Image | np.ndarray | torch.Tensor) -> Prediction:
        """The digit in one image (a file path, a PIL image or an array), as `digitnet.images.preprocess` takes it."""
        return self.predict_many([image])[0]
