"""`python -m digitnet`: Lightning's CLI over DigitClassifier and MNISTDataModule.

    python -m digitnet fit --model.optimizer=Adam
    python -m digitnet fit --model.optimizer=SGD --model.optimizer.lr=0.05 --model.optimizer.momentum=0.9
    python -m digitnet test --ckpt_path lightning_logs/Adam/version_0/checkpoints/last.ckpt
    python -m digitnet fit ... --ckpt_path last    # resume the latest run of that optimizer
    python -m digitnet predict --data.predict_path 'photos/*.jpg' --output digits.csv
    python -m digitnet export --ckpt_path CKPT --output model.onnx
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from digitnet.data import MNISTDataModule
from digitnet.divergence import StopOnNonFiniteLoss, TrainingDiverged
from digitnet.errors import DigitnetError
from digitnet.faults import AtomicCheckpointIO, LastCheckpoint, TrainingInterrupted, continue_last_run, resume_command
from digitnet.figures import TestFigures
from digitnet.model import DigitClassifier
from digitnet.predict import PredictionWriter, latest_checkpoint


OPTIMIZERS = sorted(
    name
    for name, obj in vars(torch.optim).items()
    if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer
)


class DigitnetParser(LightningArgumentParser):
    """Lightning's parser, whose error for an unknown optimizer lists the valid names."""

    def error(self, message: str, ex: Exception | None = None):
        if 'key "model.optimizer"' in message and "NestedArg" in message:
            message = (
                "name the optimizer before its arguments, e.g. --model.optimizer=Adam --model.optimizer.lr=0.01"
                f" (the default, Adam, is not spelled out).\n{message}"
            )
        elif 'key "model.optimizer"' in message:
            message = (
                f"unknown --model.optimizer; use one of {', '.join(OPTIMIZERS)}"
                f" (torch.optim), or a full import path such as my_package.MyOptimizer.\n{message}"
            )
        super().error(message, ex)


class NoProfiler(PassThroughProfiler):
    """Lightning's default when no profiler is chosen, minus its cost. The Trainer wraps each of the
    ~60 hook calls of a training step in `profiler.profile(name)`, which PassThroughProfiler inherits
    as a generator-based context manager (0.8 us a call); a nullcontext takes 0.15 us. That is 40 us
    of a 4 ms step on 2 CPU cores. `--trainer.profiler=simple` (or any other) still works as usual."""

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return contextlib.nullcontext(action_name)


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


class DigitnetCLI(LightningCLI):
    """LightningCLI with the report's defaults (5 epochs), a checkpoint callback keeping the best model,
    last.ckpt kept current for `--ckpt_path last` (see digitnet.faults), one TensorBoard folder per
    optimizer, and a test of the best model after `fit`."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")  # after "checkpoint": it runs after it
        # Not a trainer callback from the start: it is added when a test runs (see add_test_figures).
        parser.add_class_arguments(TestFigures, "test_figures", fail_untyped=False, sub_configs=True)
        parser.set_defaults(
            {
                "trainer.max_epochs": 5,
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                # last.ckpt is LastCheckpoint's: save_last=True refreshes it only when val/acc improves.
                "checkpoint.save_last": False,
                "checkpoint.filename": "best-epoch{epoch}-val_acc{val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":  # an argument of `predict` alone, not passed on to Trainer.predict
            parser.add_argument(
                "--output",
                type=Optional[str],
                default=None,
                help="CSV file to write: file, digit, probability, top-3 digits and probabilities, error",
            )
        return parser

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        if self.config.get("subcommand") == "predict":
            config = self.config.predict
            if not config.ckpt_path:
                root = Path(config.trainer.default_root_dir or ".")
                config.ckpt_path = str(latest_checkpoint(root / "lightning_logs"))
                print(f"Using {config.ckpt_path} (the best checkpoint of the latest run; --ckpt_path chooses another)")
            elif config.ckpt_path not in ("best", "last", "hpc", "registry") and not Path(config.ckpt_path).is_file():
                raise DigitnetError(f"--ckpt_path {config.ckpt_path}: no such checkpoint")
            if config.output and not Path(config.output).resolve().parent.is_dir():
                raise DigitnetError(f"--output {config.output}: its folder does not exist")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand == "predict" and config.trainer.logger in (None, True):
            # Predicting writes a CSV, not a run: no log folder or config.yaml to mistake for a training run.
            config.trainer.logger = False
            self.save_config_callback = None
        # Log each run under lightning_logs/<optimizer>/version_N unless the user chose a logger.
        if config.trainer.logger in (None, True):
            optimizer = config.model.optimizer or "torch.optim.Adam"  # None: the model's default
            class_path = optimizer if isinstance(optimizer, str) else optimizer.class_path
            root = config.trainer.default_root_dir or "."
            config.trainer.logger = {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": os.path.join(root, "lightning_logs"), "name": class_path.rsplit(".", 1)[-1]},
            }
        if self.subcommand == "fit" and config.ckpt_path == "last":
            continue_last_run(config.trainer.logger, config.checkpoint.dirpath)

    def instantiate_trainer(self, **kwargs) -> Trainer:
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            # Lightning's default bar refreshes, and formats its metrics, on every step: about 10% of
            # an epoch of this small model on 2 CPU cores. Every 20 steps looks the same to a person.
            kwargs["callbacks"] = [*callbacks, TQDMProgressBar(refresh_rate=20)]
        if config.get("profiler") is None and not config.get("barebones"):  # barebones takes no profiler
            kwargs["profiler"] = NoProfiler()
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except MisconfigurationException as err:  # a bad --trainer.* value, before anything is written
            raise DigitnetError(f"bad --trainer settings: {err}") from None
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # unless the user chose another one
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _check_data(self) -> None:
        # Find (or download) and read the data before the Trainer creates any log folder, so that a
        # missing or corrupt file stops the run with nothing half-written left behind.
        if int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0:
            self.datamodule.prepare_data()
            self.datamodule.setup(self.subcommand)  # stage names are the subcommand names

    before_fit = before_validate = _check_data

    def before_test(self) -> None:
        self._check_data()
        self.add_test_figures()

    def add_test_figures(self) -> None:
        """Add the configured TestFigures to the trainer's callbacks, as the CLI does before any test (also
        the one at the end of `fit`); call it before `trainer.test` when driving a `run=False` CLI."""
        # TestFigures acts after a test only. Kept out of the trainer's callbacks until then, it is not
        # called on the ~6 hooks of every training step that every callback receives.
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        figures = config.get("test_figures")
        if figures is not None and figures not in self.trainer.callbacks:
            self.trainer.callbacks.append(figures)

    def before_predict(self) -> None:
        if self.datamodule.hparams.predict_path is None:
            self._check_data()
        else:
            self.datamodule.setup("predict")  # a path that names no file stops here
        self.prediction_writer = PredictionWriter(self.config.predict.output)
        self.trainer.callbacks.append(self.prediction_writer)

    def after_predict(self) -> None:
        if self.trainer.is_global_zero and self.prediction_writer.predicted == 0:
            raise DigitnetError("no image could be read: the error of each file is above")

    def after_fit(self) -> None:
        if self.trainer.fast_dev_run:
            return
        best = self.trainer.checkpoint_callback.best_model_path or None
        self.add_test_figures()
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)
        if results and self.trainer.is_global_zero:
            print(f"Best checkpoint: {best}")
            print(f"Test loss: {results[0]['test/loss']:.4f}  Test accuracy: {results[0]['test/acc']:.4f}")
            if isinstance(self.trainer.logger, TensorBoardLogger):
                print(f"TensorBoard logs: {self.trainer.logger.log_dir}  (tensorboard --logdir lightning_logs)")


def build_cli(args: ArgsType = None, run: bool = True) -> DigitnetCLI:
    """The CLI over DigitClassifier and MNISTDataModule; `run=False` only builds the model and data."""
    return DigitnetCLI(
        DigitClassifier,
        MNISTDataModule,
        seed_everything_default=0,
        parser_class=DigitnetParser,
        trainer_defaults={"callbacks": [StopOnNonFiniteLoss()]},
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"epilog": "Also: export, the trained network as ONNX (python -m digitnet export --help)."},
        args=args,
        run=run,
    )


def main(args: ArgsType = None) -> None:
    """Run the CLI; bad input or a diverging run ends with a short message and exit status 2, an
    interrupted `fit` with the command that resumes it and status 130 (Ctrl-C) or 143 (SIGTERM)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())
    argv = sys.argv[1:] if args is None else args
    try:
        if isinstance(argv, (list, tuple)) and argv[:1] == ["export"]:  # not a Trainer method: its own parser
            from digitnet.export import main as export

            export(list(argv[1:]))
        elif isinstance(argv, (list, tuple)) and argv[:1] == ["serve"]:  # a server, not a Trainer method
            from digitnet.serve import main as serve

            serve(list(argv[1:]))
        else:
            build_cli(args)
    except DigitnetError as err:
        _say(f"digitnet: error: {err}", during_training=isinstance(err, TrainingDiverged))
        sys.exit(2)
    except (TrainingInterrupted, SIGTERMException) as err:
        what = err if isinstance(err, TrainingInterrupted) else "stopped by SIGTERM; see last.ckpt for the latest state"
        command = resume_command(sys.argv[1:] if args is None else args)
        _say(f"digitnet: {what}" + (f"\nResume with:\n  {command}" if command else ""), during_training=True)
        sys.exit(130 if isinstance(err, TrainingInterrupted) else 143)


def _say(message: str, during_training: bool = False) -> None:
    if rank_zero_only.rank != 0:  # under DDP every process stops with the same error; one says it
        return
    if during_training:
        print(flush=True)  # end the progress bar's line
    print(message, file=sys.stderr)
