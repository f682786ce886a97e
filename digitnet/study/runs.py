"""What every run of the study shares: CLI flags for its own TensorBoard folder, and a quiet terminal."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from digitnet.cli import quiet_lightning as cli_quiet_lightning


def logged_run_args(save_dir: str | Path, name: str, version: str) -> list[str]:
    """CLI flags of one run, logged to SAVE_DIR/NAME/VERSION; hp_metric is DigitClassifier's test accuracy."""
    logger = "--trainer.logger"
    return [f"{logger}=lightning.pytorch.loggers.TensorBoardLogger", f"{logger}.save_dir={save_dir}",
            f"{logger}.name={name}", f"{logger}.version={version}", f"{logger}.default_hp_metric=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]  # fmt: skip


def quiet_lightning() -> None:
    """One line per run: the CLI's quiet settings, and no model summary or per-run notices either."""
    cli_quiet_lightning()
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Each run's arguments go to build_cli while the program's own are in sys.argv, as intended here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)
