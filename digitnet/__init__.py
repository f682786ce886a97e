"""digitnet: the Keras report's dense MNIST classifier and a convolutional one, in PyTorch Lightning."""

import importlib as _importlib

# Imported on first use (PEP 562), so that `python -m digitnet` can answer Ctrl-C while torch and Lightning load.
_HOMES = {"MNISTDataModule": "data", "DigitnetError": "errors", "mnist_pixels": "images", "preprocess": "images",
          "DigitClassifier": "model", "MLP": "nets", "ConvNet": "nets", "DigitRecognizer": "recognizer",
          "Prediction": "recognizer"}  # fmt: skip
__all__ = list(_HOMES)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'digitnet' has no attribute {name!r}")
    return getattr(_importlib.import_module(f"digitnet.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
