"""digitnet: the Keras report's dense MNIST classifier and a convolutional one, in PyTorch Lightning."""

from digitnet.data import MNISTDataModule
from digitnet.errors import DigitnetError
from digitnet.images import mnist_pixels, preprocess
from digitnet.model import DigitClassifier
from digitnet.nets import MLP, ConvNet
from digitnet.recognizer import DigitRecognizer, Prediction

__all__ = ["ConvNet", "MLP", "DigitClassifier", "DigitRecognizer", "DigitnetError", "MNISTDataModule", "Prediction",
           "mnist_pixels", "preprocess"]  # fmt: skip
__version__ = "0.1.0"
