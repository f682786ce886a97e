"""digitnet: the Keras report's dense MNIST classifier, in PyTorch Lightning."""

from digitnet.data import MNISTDataModule
from digitnet.errors import DigitnetError
from digitnet.model import MLP, DigitClassifier

__all__ = ["MLP", "DigitClassifier", "DigitnetError", "MNISTDataModule"]
__version__ = "0.1.0"
