"""Which checkpoint: the best one of a run (Lightning's ModelCheckpoint, documented for digitnet's
`--checkpoint.*` flags), the one `predict`, `export` and `serve` use when none is named (`default_checkpoint`),
the run `fit --ckpt_path last` continues (`continue_last_run`, `resume_command`), and reading a file a user
names with a one-line error for anything torch or Lightning would answer with a traceback (`read_checkpoint`).
Writing checkpoints that survive a crash is `digitnet.faults`'."""

from __future__ import annotations

import pickle
import re
import shlex
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from digitnet.arguments import program_name
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
        if not zipfile.is_zipfile(path) and not starts_as_pickle(path):
            # torch.save writes a zip archive (or, before torch 1.6, a pickle): this file is neither.
            raise DigitnetError(f"{path}: not a checkpoint (not a file that torch.save writes)") from None
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


def starts_as_pickle(path: str | Path) -> bool:
    """Whether the file begins as a pickle of protocol 2 or later does (torch.save's format before torch 1.6)."""
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def legacy_net(hparams: dict) -> dict | None:
    """The network settings of a checkpoint written by digitnet 0.1, before `--model.net`: its model's own
    `hidden_sizes` and `dropout` were the MLP's. None for any other checkpoint."""
    if "net" in hparams or not {"hidden_sizes", "dropout"} & set(hparams):
        return None
    init_args = {k: list(hparams[k]) if k == "hidden_sizes" else hparams[k] for k in ("hidden_sizes", "dropout")
                 if k in hparams}  # fmt: skip
    return {"class_path": "digitnet.nets.MLP", "init_args": init_args}


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


def continue_last_run(logger: Any, ckpt_dirpath: str | None) -> Path | None:
    """For `fit --ckpt_path last`: point a TensorBoard or CSV logger config (a dict or jsonargparse
    Namespace with save_dir, name and version init_args) at the newest run folder that holds a
    last*.ckpt, so that Lightning finds it and the run continues there. Returns that folder.

    Lightning looks for last.ckpt in this run's own checkpoints/ folder; without a fixed version the
    logger would open a new, empty version_N folder and the run would start from scratch.
    """
    if ckpt_dirpath is not None or not hasattr(logger, "get"):
        return None  # a fixed checkpoint folder: Lightning finds last.ckpt there itself
    init = logger.get("init_args")
    if not str(logger.get("class_path", "")).endswith(("TensorBoardLogger", "CSVLogger")) or init is None:
        return None
    if init.get("version") is not None:
        return None
    root, name = Path(init.get("save_dir") or "."), init.get("name", "lightning_logs")
    runs = root / name if name else root
    found = runs.glob("version_*/checkpoints/last*.ckpt")
    lasts = [p for p in found if re.fullmatch(r"version_\d+", p.parents[1].name)]
    if not lasts:
        return None  # Lightning warns that there is no last checkpoint and trains from scratch
    run = max(lasts, key=lambda p: p.stat().st_mtime).parents[1]
    if isinstance(init, dict):
        init["version"] = int(run.name.removeprefix("version_"))
    else:
        init.version = int(run.name.removeprefix("version_"))
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # it is ours
    return run


def resume_command(args: Any) -> str | None:
    """The command that resumes an interrupted `fit`: the same arguments with `--ckpt_path last`
    (None when `args` are not those of `fit`)."""
    if not isinstance(args, (list, tuple)):
        return "the same command with --ckpt_path last"
    if "fit" not in args:
        return None
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join([*program_name().split(), *kept, "--ckpt_path", "last"])
