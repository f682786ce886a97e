"""`python -m digitnet`: Lightning's CLI over DigitClassifier and MNISTDataModule, and export, serve, finetune."""

from __future__ import annotations

import importlib
import logging
import math
import os
import shlex
import sys
import typing
import warnings
from pathlib import Path

from jsonargparse.typing import NonNegativeInt
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

import digitnet
from digitnet.arguments import DigitnetParser, program_name, suggest, trainer_settings, with_net_paths
from digitnet.checkpoints import announce_default_checkpoint, check_network, check_resumable, missing, read_checkpoint
from digitnet.data import MNISTDataModule
from digitnet.divergence import StopOnNonFiniteLoss, TrainingDiverged
from digitnet.errors import DigitnetError
from digitnet.faults import (AtomicCheckpointIO, NothingToResume, StopOnInterrupt, TrainingInterrupted,
                             checkpoint_folder, continue_last_run, last_checkpoints, resume_command)
from digitnet.figures import CurvesLayout, TestFigures
from digitnet.files import check_folder, check_output
from digitnet.model import DigitClassifier
from digitnet.predict import PredictionWriter

# One line each for `python -m digitnet --help`; the Trainer's docstrings describe Lightning, not digitnet.
COMMANDS = {
    "fit": "train a model, then test it on the 10,000 test images (its best checkpoint, or a preset's final one)",
    "validate": "evaluate a checkpoint (default: the latest run's) on the validation split",
    "test": "evaluate a checkpoint (default: the latest run's) on MNIST's 10,000 test images",
    "predict": "read the digits in image files (or MNIST's test set) with a checkpoint, optionally into a CSV",
    "export": "write a checkpoint's network as an ONNX model, checked with onnxruntime",
    "finetune": "teach a checkpoint your own handwriting: a folder of your labelled digits, beside MNIST",
    "serve": "serve a checkpoint over HTTP, with a page to write numbers on",
}
MAX_SEED = 2**32 - 1  # numpy's largest seed, which Lightning's seed_everything seeds too
# The commands that are not Trainer methods, and the modules that parse and run them.
OWN_PARSERS = {"export": "digitnet.export", "finetune": "digitnet.finetune", "serve": "digitnet.serve"}


class BestCheckpoint(ModelCheckpoint):
    """The best checkpoints of a run, by a logged metric (the CLI keeps the one of highest val/acc).

    Its own docstring for `--help`: Lightning's says that a dirpath of None saves nothing
    (tests/test_cli.py::test_help_lists_every_command_and_fit_help_starts_with_digitnet_s_options).

    Args:
        dirpath: Folder of the checkpoints; None: checkpoints/ in the run's log folder
            (lightning_logs/<optimizer>/version_N/checkpoints).
    """


class TrainingLoopRan(Callback):
    """Whether `fit` ran its training loop: Lightning skips it when the run resumed (--ckpt_path) had trained it all.
    A class, not a lambda: ddp_spawn pickles the Trainer's callbacks."""

    fit_started = trained = False

    def on_fit_start(self, trainer: Trainer, pl_module) -> None:  # in this process, not only in spawned ones
        self.fit_started = True

    def on_train_start(self, trainer: Trainer, pl_module) -> None:  # also on resuming mid-epoch
        self.trained = True


class DigitnetCLI(LightningCLI):
    """LightningCLI with the report's defaults, the best checkpoint and last.ckpt kept (digitnet.faults), one
    TensorBoard folder per optimizer, and a test of the best model after `fit`."""

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # digitnet's own options first, where `--help` readers look; then the Trainer's.
        parser.add_lightning_class_args(self.model_class, "model")
        parser.add_lightning_class_args(self.datamodule_class, "data")
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        last = parser.add_argument_group("last.ckpt, the latest state, for `--ckpt_path last`")
        last.add_argument("--last_checkpoint.every_n_train_steps", type=NonNegativeInt, default=500,
                          help="Save it every this many training steps too, besides each epoch end (0: at epoch "
                               "ends only): the most a crash loses.")  # fmt: skip
        parser.add_lightning_class_args(TestFigures, "test_figures")
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults(
            {
                "trainer.max_epochs": 5,
                # The report's dense net, named so that `--model.net.dropout=0.3` needs no `--model.net=MLP`.
                "model.net": {"class_path": "digitnet.nets.MLP"},
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": False,  # last.ckpt is faults.last_checkpoints'
                "checkpoint.filename": "best-epoch{epoch}-val_acc{val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        if getattr(parser, "command", None) == "predict":  # an argument of `predict` alone, not Trainer.predict's
            parser.add_argument("--output", type=str | None, default=None,
                                help="CSV file to write: a row per picture, with its number (4096, or 40?6), "
                                     "each digit's probability, the whole picture read as one digit (digit, "
                                     "probability, top-3), and why a file could not be read (error)")  # fmt: skip

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        if args is None:  # rewritten in place: given both args and sys.argv, Lightning warns of a mistake
            sys.argv[1:] = with_net_paths(sys.argv[1:])
        elif isinstance(args, list):  # a command line, not a dict of settings
            args = with_net_paths(args)
        super().parse_arguments(parser, args)
        command = self.config.get("subcommand")  # None when built with run=False (the study, the benchmark)
        config = self.config[command] if command else self.config
        if type(config.seed_everything) is int and not 0 <= config.seed_everything <= MAX_SEED:
            # else Lightning's seed_everything: a traceback
            raise DigitnetError(f"--seed_everything={config.seed_everything}: give a seed from 0 to {MAX_SEED}")
        for flag, folder, what in (("--trainer.default_root_dir", config.trainer.default_root_dir, "the runs"),
                                   ("--checkpoint.dirpath", config.checkpoint.dirpath, "the checkpoints")):
            if folder:  # else a traceback when the first file is written into it; predict writes none there
                check_folder(flag, folder, what, writable=command != "predict")
        # Here, before Lightning reads the model's settings from the checkpoint to build it.
        if command in ("validate", "test", "predict"):
            self._check_paths(config)
        # fit resumes from a file only once a run folder exists: a missing or foreign one is a traceback there.
        ckpt_path = config.ckpt_path if command == "fit" else None
        if ckpt_path and not named_by_lightning(ckpt_path) and "://" not in ckpt_path:  # s3://... is fsspec's
            if not Path(ckpt_path).is_file():
                raise DigitnetError(f"--ckpt_path {ckpt_path}: {missing(ckpt_path)}")
            read_checkpoint(ckpt_path)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand == "predict" and config.trainer.logger in (None, True):
            # Predicting writes a CSV, not a run: no log folder or config.yaml to mistake for a training run.
            config.trainer.logger = False
            self.save_config_callback = None
        # lightning_logs/<optimizer>/version_N: the Trainer's logger (instantiate_trainer), not written into the run's
        # config.yaml, whose rerun with another optimizer or network would else go into this run's folder.
        self.own_logger = None
        if config.trainer.logger in (None, True):
            name = config.model.optimizer.class_path.rsplit(".", 1)[-1] if config.model.optimizer else "Adam"
            net = config.model.net.class_path.rsplit(".", 1)[-1] if config.model.net else "MLP"
            if net != "MLP":  # the report's net keeps lightning_logs/<optimizer>; others are named first
                name = f"{net}-{name}"
            root = config.trainer.default_root_dir or "."
            self.own_logger = {"save_dir": os.path.join(root, "lightning_logs"), "name": name,
                               "default_hp_metric": False}  # hp_metric is the test accuracy (DigitClassifier)
        if self.subcommand == "fit" and config.ckpt_path == "last":
            own = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": self.own_logger}
            try:  # sets the logger's version to the run resumed
                if run := continue_last_run(own if self.own_logger else config.trainer.logger,
                                            config.checkpoint.dirpath, config.trainer.default_root_dir):
                    rank_zero_only(print)(f"Resuming {run} from its last checkpoint")  # once, not by every DDP process
            except NothingToResume as nothing:
                rank_zero_only(print)(nothing)
                config.ckpt_path = None

    def _check_paths(self, config) -> None:
        if config.get("output") is not None:
            check_output(config.output)
        # Without a checkpoint, validate, test and predict would run the untrained network.
        if not config.ckpt_path:
            root = Path(config.trainer.default_root_dir or ".") / "lightning_logs"
            config.ckpt_path = str(announce_default_checkpoint(root=root))
        elif not Path(config.ckpt_path).is_file():
            # The CLI rebuilds the network from a checkpoint's settings only when given its file.
            raise DigitnetError(f"--ckpt_path {config.ckpt_path}: " + (
                "give the checkpoint file (lightning_logs/.../checkpoints/*.ckpt), or leave --ckpt_path out to use "
                "the latest run's" if named_by_lightning(config.ckpt_path) else missing(config.ckpt_path)))  # fmt: skip
        # The data as the network was trained on (Lightning restores the model's settings, not the data's).
        checkpoint = read_checkpoint(config.ckpt_path)
        check_network(config.ckpt_path, checkpoint)
        trained = checkpoint.get("datamodule_hyper_parameters") or {}
        for key in ("normalize", "val_size", "seed", "strings"):  # strings: `validate` reads the number net's too
            config.data[key] = trained.get(key, config.data[key])

    def instantiate_trainer(self, **kwargs) -> Trainer:
        if self.own_logger is not None:
            kwargs["logger"] = TensorBoardLogger(**self.own_logger)
        with trainer_settings():
            trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # unless the user chose another one
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        every = config.last_checkpoint.every_n_train_steps
        trainer.callbacks += last_checkpoints(trainer.checkpoint_callback.dirpath, every)
        bar = trainer.progress_bar_callback
        if type(bar) is TQDMProgressBar and bar not in (config.trainer.callbacks or []):  # Lightning's default bar
            if self.subcommand == "predict" and not sys.stdout.isatty():  # Lightning draws it on stdout
                trainer.callbacks.remove(bar)  # `predict > digits.txt`: the file gets the readings, not a bar
            else:  # redrawn every 20 steps as Lightning does on Colab: each is a noticeable share of a CPU step
                trainer.callbacks[trainer.callbacks.index(bar)] = TQDMProgressBar(refresh_rate=20)  # (docs/speed.md)
        return trainer

    def load_data(self) -> None:
        """Read (or download) the data before any log folder exists: a bad file stops with nothing half-written."""
        if int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0:
            self.datamodule.prepare_data()
            self.datamodule.setup(self.subcommand)  # stage names are the subcommand names
            if self.subcommand == "fit":  # which tests at its end: a bad test file stops it before training
                self.datamodule.setup("test")

    def before_fit(self) -> None:
        for name in ("max_epochs", "max_steps", "limit_train_batches"):
            if getattr(self.trainer, name) == 0:
                raise DigitnetError(f"--trainer.{name}=0 trains nothing: give more; to test a trained network, "
                                    "python -m digitnet test --ckpt_path PATH")  # fmt: skip
        if bool(self.datamodule.hparams.strings) != (self.model.number_net is not None):
            raise DigitnetError("--model.number_net and --data.strings go together: the number net trains on the "
                                "strings of digits the data makes, e.g. --model.number_net=NumberNet "
                                "--data.strings=0.5 (configs/numbers.yaml)")  # fmt: skip
        self.load_data()
        self.check_val_check_interval()
        self.check_shares_of_batches()
        ckpt_path = self.config[self.subcommand].ckpt_path
        if ckpt_path == "last":  # the file Lightning will resume: the newest last*.ckpt where the run's checkpoints go
            lasts = Path(checkpoint_folder(self.trainer)).glob("last*.ckpt")
            ckpt_path = max(lasts, key=lambda p: p.stat().st_mtime, default=None)
        if ckpt_path and not named_by_lightning(str(ckpt_path)) and "://" not in str(ckpt_path):
            check_resumable(ckpt_path, self.model, self.trainer.max_epochs)
        # Build the optimizer now: bad arguments (lr <= 0, ...) stop with torch's message before any folder is written.
        try:
            lr = self.model.make_optimizer(self.model.parameters()).defaults.get("lr")
        except (ValueError, TypeError) as err:
            raise DigitnetError(f"bad --model.optimizer settings: {err}") from None
        if isinstance(lr, (int, float)) and lr <= 0:
            raise DigitnetError(f"the learning rate must be positive, got --model.optimizer.lr={lr}")
        self.training_loop = TrainingLoopRan()
        self.trainer.callbacks.append(self.training_loop)

    def check_val_check_interval(self) -> None:
        """Lightning's check of an integer --trainer.val_check_interval, made before the run folder is written
        (tests/test_faults.py::test_a_val_check_interval_over_an_epoch_is_refused_before_a_run_folder_is_written)."""
        trainer, given = self.trainer, self.config[self.subcommand].trainer  # a time is no Trainer attribute
        interval = given.val_check_interval
        if type(interval) is not int or self.datamodule.train_set is None or trainer.check_val_every_n_epoch is None:
            return  # a share of an epoch, a time, no data in this process (another DDP rank's), or across epochs
        batches = self.batches_per_process(self.datamodule.train_dataloader())
        limit = trainer.limit_train_batches
        batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
        if 0 < batches < interval and trainer.limit_val_batches:  # 0: Lightning's own message says what to give
            raise DigitnetError(f"--trainer.val_check_interval={interval}: an epoch has {batches} training batches; "
                                "give at most that, a share of an epoch (0.5), or "
                                "--trainer.check_val_every_n_epoch=null to count batches across epochs")  # fmt: skip

    def batches_per_process(self, loader) -> int:
        """A loader's batches in each process, as Lightning counts them: DDP gives each a share of the data."""
        distributed = self.config[self.subcommand].trainer.use_distributed_sampler
        return math.ceil(len(loader) / (self.trainer.world_size if distributed else 1))

    def check_shares_of_batches(self) -> None:
        """Lightning's check that a share of the batches (--trainer.limit_val_batches=0.1) leaves at least one, made
        before the run folder is written (tests/test_faults.py::test_a_share_of_batches_that_leaves_none_is_refused_
        before_a_run_folder_is_written)."""
        data = self.datamodule
        for kind, limit, loader in (("train", self.trainer.limit_train_batches, data.train_dataloader),
                                    ("val", self.trainer.limit_val_batches, data.val_dataloader)):
            if isinstance(limit, float) and 0 < limit < 1 and data.train_set is not None:  # else none in this process
                batches = self.batches_per_process(loader())
                if int(batches * limit) == 0:
                    digits = 1 - math.floor(math.log10(1 / batches))  # two significant ones, rounded up: enough
                    least = math.ceil(10**digits / batches) / 10**digits
                    raise DigitnetError(f"--trainer.limit_{kind}_batches={limit} of {batches} {kind} batches is none: "
                                        f"give at least {least:g}, or a number of batches (2)")  # fmt: skip

    before_validate = before_test = load_data

    def before_predict(self) -> None:
        if self.datamodule.hparams.predict_path is None:
            self.load_data()
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
        if self.training_loop.fit_started and not self.training_loop.trained:
            limit = "max_steps" if 0 < self.trainer.max_steps <= self.trainer.global_step else "max_epochs"
            raise DigitnetError(f"nothing to train: the checkpoint resumed had already reached --trainer.{limit}="
                                f"{getattr(self.trainer, limit)}; give a larger --trainer.{limit} to train on, or "
                                "test it with python -m digitnet test")  # fmt: skip
        best = self.trainer.checkpoint_callback.best_model_path or None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=False)
        if results and self.trainer.is_global_zero:
            # A checkpoint that monitors nothing (the fast preset's) is the final weights, not the best by validation.
            print(f"{'Best' if self.trainer.checkpoint_callback.monitor else 'Final'} checkpoint: {best}")
            print(f"Test loss: {results[0]['test/loss']:.4f}  Test accuracy: {results[0]['test/acc']:.4f}")
            if isinstance(self.trainer.logger, TensorBoardLogger):
                logdir = shlex.quote(os.path.normpath(self.trainer.logger.save_dir))  # with --trainer.default_root_dir
                print(f"TensorBoard logs: {self.trainer.logger.log_dir}  (tensorboard --logdir {logdir}, "
                      "then http://localhost:6006/#custom_scalars)")


def build_cli(args: ArgsType = None, run: bool = True) -> DigitnetCLI:
    """The CLI over DigitClassifier and MNISTDataModule; `run=False` only builds the model, data and trainer."""
    DigitnetParser.argv = list(sys.argv[1:] if args is None else args if isinstance(args, list) else [])
    DigitnetParser.classes = {"model": DigitClassifier, "data": MNISTDataModule, "checkpoint": BestCheckpoint,
                              "test_figures": TestFigures, "trainer": Trainer}  # fmt: skip
    # A short usage line: argparse's lists every option, a screen of text before the help.
    subcommands = {name: {"command": name, "description": COMMANDS[name][0].upper() + COMMANDS[name][1:] + ".",
                          "usage": f"{program_name()} {name} [--config FILE] [--model.* VALUE] [--data.* VALUE] "
                                   "[--trainer.* VALUE] [--ckpt_path CKPT] ..."}
                   for name in LightningCLI.subcommands()}  # fmt: skip
    return DigitnetCLI(
        DigitClassifier,
        MNISTDataModule,
        seed_everything_default=0,
        parser_class=DigitnetParser,
        trainer_defaults={"callbacks": [StopOnNonFiniteLoss(), StopOnInterrupt(), CurvesLayout()]},
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": program_name(), **subcommands},
        args=args,
        run=run,
    )


def named_by_lightning(ckpt_path: str) -> bool:
    """Whether --ckpt_path is a name Lightning resolves itself (best, last, hpc, registry:...), not a file."""
    return ckpt_path in ("best", "last", "hpc") or ckpt_path.lower().partition(":")[0] == "registry"


def quiet_lightning() -> None:
    # Lightning's info lines (GPU availability, the seed, tips) say nothing a user acts on; its warnings stay.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning calls a torch pytree function that torch has deprecated; nothing a user can change.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    # Batches are indexed from tensors already on the device (digitnet.data): workers would only add IPC.
    warnings.filterwarnings("ignore", message=r"The '\w+' does not have many workers", module="lightning")


def main(args: ArgsType = None) -> None:
    """Run a command: bad input or a diverging run ends with a short message and status 2, an interrupted `fit` with the
    command that resumes it and status 130 (Ctrl-C) or 143 (SIGTERM), any other command cut short by Ctrl-C with 130."""
    argv = list(sys.argv[1:] if args is None else args)
    program = program_name()
    quiet_lightning()
    try:
        command = argv[0] if argv else "--help"
        if command in ("-h", "--help"):
            print(top_level_help(program))
        elif command == "--version":
            print(f"digitnet {digitnet.__version__}")
        elif command in OWN_PARSERS:
            importlib.import_module(OWN_PARSERS[command]).main(argv[1:])
        elif command in COMMANDS or command.startswith("-"):  # --print_config, ...
            build_cli(args)  # None: LightningCLI reads sys.argv itself
        else:
            raise DigitnetError(f"unknown command {command!r}{suggest(command, COMMANDS)}; the commands are "
                                f"{', '.join(COMMANDS)} (see {program} --help)")  # fmt: skip
    except TrainingInterrupted as err:
        stopped(err, argv, 130)
    except SIGTERMException:  # fit's last.ckpt; finetune, cut short, leaves nothing
        latest = "; see last.ckpt for the latest state" if resume_command(argv) else ""
        stopped(f"stopped by SIGTERM{latest}", argv, 143)
    except SystemExit as err:
        # Lightning answers Ctrl-C outside fit's steps (test, predict, a second Ctrl-C in fit) with a silent exit(1)
        # from inside its `except KeyboardInterrupt`, which makes the interrupt this exit's context.
        if err.code != 1 or not isinstance(err.__context__, KeyboardInterrupt):
            raise
        stopped("interrupted", argv, 130)
    except Exception as err:
        # A DigitnetError raised in a class jsonargparse builds (`--model.net.width=0`) is its ValueError's cause.
        reason = next((e for e in causes(err) if isinstance(e, DigitnetError)), None)
        if reason is None:
            raise
        where = f"{program} {argv[0]}" if argv and argv[0] in COMMANDS else program  # as the parser's errors begin
        _say(f"{where}: error: {reason}", during_training=isinstance(reason, TrainingDiverged))
        sys.exit(2)


def stopped(what: object, argv: list[str], status: int) -> typing.NoReturn:
    """Say why the command stopped, with the command that resumes an interrupted `fit`, and exit with `status`."""
    command = resume_command(argv)
    _say(f"digitnet: {what}" + (f"\nResume with:\n  {command}" if command else ""), during_training=True)
    sys.exit(status)


def causes(err: BaseException):
    """`err`, then what raised it (`raise ... from`, or an exception being handled), and so on."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def top_level_help(program: str) -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {program} COMMAND [options]", "",
             "Train, compare and use handwritten-digit classifiers (MNIST) with PyTorch Lightning.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", f"Each command's options: {program} COMMAND --help   (e.g. {program} fit --help)",
              f"digitnet's version: {program} --version"]
    return "\n".join(lines)


@rank_zero_only  # under DDP every process stops with the same error; one says it
def _say(message: str, during_training: bool = False) -> None:
    if during_training:
        print(flush=True)  # end the progress bar's line
    print(message, file=sys.stderr)
