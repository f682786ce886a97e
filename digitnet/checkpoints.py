"""The best-model checkpoint of a run: Lightning's ModelCheckpoint, documented for digitnet's `--checkpoint.*` flags."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint


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
