"""The checkpoint a command reads: the file the user names (`read_checkpoint`), else the latest run's."""

from __future__ import annotations

import importlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only

from digitnet.errors import DigitnetError, first_line
from digitnet.faults import interrupted_at
from digitnet.model import shapes

FINETUNED = "finetuned.ckpt"  # what `finetune` writes


def missing(path: str | Path) -> str:
    """Why no checkpoint is read from `path`: it is a folder, or nothing."""
    folder = "a folder, not a checkpoint: give a .ckpt file (a run's are in its checkpoints/ folder)"
    return folder if Path(path).is_dir() else "no such checkpoint"


def read_checkpoint(path: str | Path, map_location: Any = "cpu", weights_only: bool | None = None) -> dict:
    """The checkpoint file as torch.load gives it, or a one-line DigitnetError saying why it cannot be read."""
    if not Path(path).is_file():
        raise DigitnetError(f"{path}: {missing(path)}")
    with open(path, "rb") as f:  # torch.save writes a zip archive, or in its legacy format a pickle (b"\x80")
        if f.read(1) != b"\x80" and not zipfile.is_zipfile(f):  # is_zipfile leaves f at its end: read first
            raise DigitnetError(f"{path}: not a checkpoint (not a file that torch.save writes)")
    if isinstance(map_location, (str, torch.device)):
        try:
            device = torch.device(map_location)
        except RuntimeError:
            message = f"map_location={map_location!r}: not a device torch knows; use 'cpu' or 'cuda'"
            raise DigitnetError(message) from None
        if device.type == "cuda" and not torch.cuda.is_available():  # torch's error would blame the file
            raise DigitnetError(f"map_location={str(map_location)!r}: torch finds no CUDA device here; use 'cpu'")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        raise DigitnetError(f"{path}: holds Python objects that torch does not load by default ({first_line(err)}); "
                            "if you trust the file, read it in Python with "
                            "DigitClassifier.load_from_checkpoint(path, weights_only=False)") from None  # fmt: skip
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, AttributeError) as err:
        reason = f"{type(err).__name__}: {first_line(err)}"
        raise DigitnetError(f"{path}: not a checkpoint torch can read ({reason})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "pytorch-lightning_version" not in checkpoint:
        raise DigitnetError(f"{path}: not a checkpoint of digitnet's DigitClassifier (no Lightning state_dict in it)")
    return checkpoint


def check_network(path: str | Path, checkpoint: dict) -> None:
    """A one-line DigitnetError where the class of the checkpoint's network cannot be imported, as Lightning's
    instantiate_class would import it (else, in `test` or `predict`, jsonargparse's 'Does not validate against any of
    the Union subtypes')."""
    hparams = checkpoint.get("hyper_parameters", {})
    net, number_net = hparams.get("net"), hparams.get("number_net")  # the number net: configs/numbers.yaml
    paths = [net.get("class_path") if isinstance(net, dict) else "digitnet.nets.MLP"]
    paths += [number_net.get("class_path")] if isinstance(number_net, dict) else []
    for class_path in paths:
        module, _, name = str(class_path).rpartition(".")
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as err:  # a class of a script or notebook (__main__), ...
            raise DigitnetError(f"{path}: its network, {module}.{name}, cannot be imported here ({first_line(err)}): "
                                "import the module that defines it first, or put its folder on PYTHONPATH (a "
                                "script's or notebook's class is its own)") from None  # fmt: skip


def check_resumable(path: str | Path, model: torch.nn.Module, max_epochs: int | None) -> None:
    """A one-line DigitnetError, before `fit` writes anything, where the checkpoint it resumes holds weights that do
    not fit the command's model (another network: else a size-mismatch traceback, after the run's config.yaml was
    overwritten) or has passed --trainer.max_epochs (else Lightning's MisconfigurationException)."""
    checkpoint = read_checkpoint(path)
    if shapes(checkpoint["state_dict"]) != shapes(model.state_dict()):
        held = checkpoint.get("hyper_parameters", {}).get("net")
        held = settings_text(held) if isinstance(held, dict) else "network"
        raise DigitnetError(f"--ckpt_path: {path} holds a {held} whose weights do not fit this command's "
                            f"{settings_text(model.hparams['net'])}: resume it with the settings it was trained with "
                            "(--config its run's config.yaml), or train a new run without --ckpt_path")  # fmt: skip
    epoch = checkpoint.get("epoch", 0)
    if max_epochs is not None and max_epochs != -1 and epoch > max_epochs:  # as Lightning refuses it
        raise DigitnetError(f"nothing to train: the checkpoint resumed, {path}, had reached epoch {epoch} (counted "
                            f"from 0), past --trainer.max_epochs={max_epochs}; give a larger --trainer.max_epochs to "
                            "train on, or test it with python -m digitnet test")  # fmt: skip


def settings_text(config: dict) -> str:
    """`ConvNet(width=16, dropout=0.2)` for {"class_path": "digitnet.nets.ConvNet", "init_args": {...}}."""
    args = ", ".join(f"{key}={value}" for key, value in (config.get("init_args") or {}).items())
    return f"{str(config.get('class_path')).rsplit('.', 1)[-1]}({args})"


def default_checkpoint(root: str | Path = "lightning_logs") -> tuple[Path, str]:
    """The checkpoint commands other than `fit` use without --ckpt_path, and what it is: of the run under
    `root` whose checkpoints were written last, its best (`best-*.ckpt`), else its last.ckpt, else its newest.
    A run holding only the last.ckpt that Ctrl-C or SIGTERM saved is passed over for an earlier run's."""
    checkpoints = sorted(Path(root).glob("**/checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not checkpoints:
        raise DigitnetError(f"no --ckpt_path given and no checkpoint under {Path(root).resolve()}; "
                            "train a model first (python -m digitnet fit) or pass --ckpt_path PATH")  # fmt: skip
    picks = (max(folder.glob("*.ckpt"), key=lambda p: (p.match("best-*"), p.name == "last.ckpt", p.stat().st_mtime))
             for folder in dict.fromkeys(p.parent for p in checkpoints))  # each run's, the latest run first, as needed
    latest = next(picks)
    stopped = interrupted_step(latest)
    path = latest if stopped is None else next((p for p in picks if interrupted_step(p) is None), latest)
    run = path.parents[1]  # .../version_N/checkpoints/x.ckpt -> .../version_N
    of = f"the latest run, {run}" if path == latest else str(run)
    kind = "best" if path.match("best-*") else {"last.ckpt": "last", FINETUNED: "fine-tuned"}.get(path.name)
    what = f"the {kind} checkpoint of {of}" if kind else f"the newest checkpoint of {of}, a plain Trainer's, not `fit`'s"
    if path != latest:
        what += f"; the latest run, {latest.parents[1]}, was stopped at step {stopped} with only its last.ckpt"
    elif stopped is not None:
        what += f", saved when it was stopped at step {stopped}"
    return path, what


def interrupted_step(path: Path) -> int | None:
    """The step at which Ctrl-C or SIGTERM stopped `fit` if that save wrote the last.ckpt `path`, else None."""
    if path.name != "last.ckpt":
        return None
    try:
        return interrupted_at(read_checkpoint(path))
    except (DigitnetError, OSError):  # not one to pass over: the command reading it says what is wrong with it
        return None


def announce_default_checkpoint(verb: str = "Using", root: str | Path = "lightning_logs") -> Path:
    path, what = default_checkpoint(root)
    rank_zero_only(print)(f"{verb} {path} ({what}; --ckpt_path chooses another)")  # once, not by every DDP process
    return path
