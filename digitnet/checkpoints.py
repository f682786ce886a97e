"""Checkpoints: the best one of a run (Lightning's ModelCheckpoint, documented for digitnet's `--checkpoint.*`
flags), and reading one that a user names, with a one-line error for anything torch or Lightning would answer
with a traceback."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from digitnet.errors import DigitnetError


class BestCheckpoint(ModelCheckpoint):
    """The best checkpoints of a run, by a logged metric (the CLI keeps the one of highest val/acc).

    Args:
        dirpath: Folder of the checkpoints; None: checkpoints/ in the run's log folder
            (lightning_logs/<optimizer>/version_N/checkpoints).
        filename: Name of a checkpoint file, with metrics filled in, e.g. best-epoch{epoch}-val_acc{val/acc:.4f}.
        monitor: The logged metric that ranks the checkpoints (val/acc, val/loss, ...).
        mode: max when a higher `monitor` is better, min when lower is.
        save_top_k: How many of the best checkpoints to keep; -1 keeps every one.
        kwargs: Any other argument of Lightning's ModelCheckpoint.
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None, monitor: str | None = None,
                 mode: str = "min", save_top_k: int = 1, **kwargs) -> None:  # fmt: skip
        super().__init__(dirpath=dirpath, filename=filename, monitor=monitor, mode=mode, save_top_k=save_top_k,
                         **kwargs)


def read_checkpoint(path: str | Path, map_location: Any = "cpu", weights_only: bool | None = None) -> dict:
    """The checkpoint file as torch.load gives it, after checking that it is one of Lightning's.

    Raises DigitnetError with a one-line reason for a missing file, a file that is not a checkpoint, one that
    holds Python objects torch does not unpickle by default (a model built in Python with a functools.partial
    optimizer by digitnet 0.1), and a torch file that Lightning did not write.
    """
    if not Path(path).is_file():
        raise DigitnetError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise DigitnetError(
            f"{path}: holds Python objects that torch does not load by default ({first_line}); if you trust the "
            "file, read it in Python with DigitClassifier.load_from_checkpoint(path, weights_only=False)"
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, AttributeError) as err:
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise DigitnetError(f"{path}: not a checkpoint torch can read ({type(err).__name__}: {first_line})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "pytorch-lightning_version" not in checkpoint:
        raise DigitnetError(f"{path}: not a checkpoint of digitnet's DigitClassifier (no Lightning state_dict in it)")
    return checkpoint


def legacy_net(hparams: dict) -> dict | None:
    """The network settings of a checkpoint written by digitnet 0.1, before `--model.net`: its model's own
    `hidden_sizes` and `dropout` were the MLP's. None for any other checkpoint."""
    if "net" in hparams or not {"hidden_sizes", "dropout"} & set(hparams):
        return None
    init_args = {k: list(hparams[k]) if k == "hidden_sizes" else hparams[k] for k in ("hidden_sizes", "dropout")
                 if k in hparams}  # fmt: skip
    return {"class_path": "digitnet.nets.MLP", "init_args": init_args}
