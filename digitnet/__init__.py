"""digitnet: the Keras report's dense MNIST classifier, in PyTorch Lightning."""

from digitnet.data import MNISTDataModule
from digitnet.errors import DigitnetError
from digitnet.images import mnist_pixels, preprocess
from digitnet.model import MLP, DigitClassifier
from digitnet.predict import DigitRecognizer, Prediction

__all__ = [
    "MLP", "DigitClassifier", "DigitRecognizer", "DigitnetError", "MNISTDataModule", "Prediction",
    "mnist_pixels", "preprocess",
]  # fmt: skip
__version__ = "0.1.0"
