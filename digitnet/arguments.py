"""The command line's parser: two-line errors naming the nearest valid spelling and a help command that runs."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import pydoc
import sys
import types
import typing
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.optim.lr_scheduler import LRScheduler

from digitnet.errors import DigitnetError
from digitnet.nets import NETS

OPTIMIZERS = [name for name, cls in inspect.getmembers(torch.optim, inspect.isclass)  # sorted by name
              if issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer]  # fmt: skip
SCHEDULERS = [name for name, cls in inspect.getmembers(torch.optim.lr_scheduler, inspect.isclass)
              if issubclass(cls, LRScheduler) and cls is not LRScheduler and not name.startswith("_")]  # fmt: skip
ACTIONS = {"help", "config", "print_config"}  # flags of the parser itself, not configuration keys
NULLS = ("null", "none", "~")  # YAML's spellings of None, in lower case
NOT_OPTIONS = {"init_args", "class_path"} | ACTIONS  # the last part of a key that names no option of a class


def program_name() -> str:
    """How the user ran digitnet: `digitnet` (the console script) or `python -m digitnet`."""
    return "digitnet" if os.path.basename(sys.argv[0]) == "digitnet" else "python -m digitnet"


def suggest(word: str, choices, prefix: str = "") -> str:
    """' (did you mean X?)' for the choice closest to `word`, ignoring case; '' when none is close."""
    by_lower = {choice.lower(): choice for choice in choices}
    match = difflib.get_close_matches(word.lower(), by_lower, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{by_lower[match[0]]}?)" if match else ""


class DigitnetParser(LightningArgumentParser):
    """Lightning's parser, saying in one line what is wrong instead of jsonargparse's usage block and type internals.

    `argv` and `classes` are set on the class (build_cli, command_parser): jsonargparse builds parsers of this class
    itself, for nested classes such as the optimizer, and their errors need them too. `command`: the subcommand read.
    """

    argv: list[str] = []
    classes: dict[str, type] = {}

    def __init__(self, *args, command: str | None = None, **kwargs) -> None:
        # No abbreviated options: --trainer.max_epoch would pass for --trainer.max_epochs without a word.
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.command = command

    def add_method_arguments(self, class_type, method_name, nested_key=None, *args, skip=None, **kwargs) -> list[str]:
        # validate, test and predict read the latest run's checkpoint when given none (DigitnetCLI._check_paths),
        # not what Lightning's docstring of ckpt_path says a Trainer method does.
        if nested_key is not None or method_name not in ("validate", "test", "predict"):
            return super().add_method_arguments(class_type, method_name, nested_key, *args, skip=skip, **kwargs)
        added = super().add_method_arguments(class_type, method_name, None, *args, skip={*(skip or ()), "ckpt_path"},
                                             **kwargs)  # fmt: skip
        self.add_argument("--ckpt_path", type=str | Path | None, default=None,
                          help="The checkpoint file (lightning_logs/.../checkpoints/*.ckpt); default: the best (else "
                               "the newest) checkpoint of the latest run under lightning_logs/")  # fmt: skip
        return [*added, "ckpt_path"]

    def error(self, message: str, ex: Exception | None = None):
        command = self.argv[0] if self.argv and not self.argv[0].startswith("-") else self.command
        where = f"{program_name()} {command}" if command else program_name()
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        reason = self.diagnose() or " ".join(lines[:2])
        sys.stderr.write(f"{where}: error: {reason}\nSee: {where} --help\n")
        sys.exit(2)

    def diagnose(self) -> str | None:
        """What is wrong with `argv` (an unknown option or optimizer), or None if that is not it."""
        # The command's option names (trainer.max_epochs, ...); none in a parser jsonargparse made for a nested class.
        keys = set(self.get_defaults().keys()) if self.command is not None else set()
        config_given = any(arg in ("-c", "--config") or arg.startswith("--config=") for arg in self.argv)
        optimizer_named = scheduler_named = config_given
        optimizer = scheduler = None  # the classes named by --model.optimizer and --model.lr_scheduler
        nets = {"model.net": ..., "model.number_net": ...}  # and by --model.net, --model.number_net (...: none)
        given = set()  # the scheduler's arguments on the command line (T_max of --model.lr_scheduler.T_max=20)
        for i, arg in enumerate(self.argv):
            if not arg.startswith("--"):
                continue
            key, has_value, value = arg[2:].partition("=")
            key = key.rstrip("+")  # --trainer.callbacks+=...
            group, _, name = key.rpartition(".")
            if not has_value and i + 1 < len(self.argv):
                value = self.argv[i + 1]
            if key == "model.optimizer":
                optimizer_named = True
                optimizer = getattr(torch.optim, value, None) or locate(value)
                if value not in OPTIMIZERS and "." not in value:
                    return (f"unknown optimizer {value!r}{suggest(value, OPTIMIZERS)}; use one of "
                            f"{', '.join(OPTIMIZERS)} (torch.optim), or an import path such as "
                            "my_package.MyOptimizer")  # fmt: skip
            elif key == "model.lr_scheduler":
                scheduler_named = True
                scheduler = getattr(torch.optim.lr_scheduler, value, None) or locate(value)
                if value not in SCHEDULERS and "." not in value and value.lower() not in ("null", "none"):
                    return (f"unknown learning-rate scheduler {value!r}{suggest(value, SCHEDULERS)}; use one of "
                            f"{', '.join(SCHEDULERS)} (torch.optim.lr_scheduler), or an import path")  # fmt: skip
            elif key == "config" and value.endswith((".yaml", ".yml", ".json")) and not Path(value).is_file():
                return f"--config {value}: no such file"
            elif key == "model.number_net" and value != "NumberNet" and value.lower() not in NULLS and "." not in value:
                return (f"unknown number net {value!r}{suggest(value, ['NumberNet'])}; use NumberNet (digitnet.nets), "
                        "or the import path of an nn.Module such as my_package.MyReader")  # fmt: skip
            elif key == "model.net" and value not in NETS and "." not in value:
                return (f"unknown network {value!r}{suggest(value, NETS)}; use one of {', '.join(NETS)} "
                        "(digitnet.nets), or the import path of an nn.Module such as my_package.MyNet")  # fmt: skip
            # A class's path (not null, nor a JSON dict of class_path and init_args)
            if key in nets and value.lower() not in NULLS and all(p.isidentifier() for p in value.split(".")):
                nets[key] = locate(value if "." in value else f"digitnet.nets.{value}")
                if nets[key] is None:  # else jsonargparse's "Expected a path but ... either not accessible or invalid"
                    example = "my_package.MyNet" if key == "model.net" else "my_package.MyReader"
                    return (f"--{key}={value}: cannot import it; give the import path of an nn.Module, such as "
                            f"{example}, with its folder on PYTHONPATH")  # fmt: skip
            elif (net := group.removesuffix(".init_args")) in nets and name not in NOT_OPTIONS:
                # --model.net.width: of the net named before it; else of the default MLP, or with a config, of
                # whichever of digitnet's nets has the option.
                if net == "model.number_net" and nets[net] is ... and not config_given:  # the default is none
                    return f"--{key}: name the number net before its options, e.g. --model.number_net=NumberNet"
                default = None if config_given or net != "model.net" else locate("digitnet.nets.MLP")
                named = default if nets[net] is ... else nets[net]  # None: a class that cannot be imported
                if unknown := not_an_option(named, key, first=0):
                    return unknown + ("; name the network before it, e.g. --model.net=ConvNet"
                                      if nets[net] is ... and default else "")  # fmt: skip
                classes = [named] if named else [locate(f"digitnet.nets.{n}") for n in (*NETS, "NumberNet")]
                if expected := agreed_value(classes, name, value):
                    return f"--{key}: expected {expected}, got {value!r}"
            elif key.startswith("model.optimizer.") and not optimizer_named:
                return ("name the optimizer before its arguments, e.g. --model.optimizer=Adam --model.optimizer.lr=0.01"
                        " (the default, Adam, is not spelled out)")  # fmt: skip
            elif key.startswith("model.lr_scheduler.") and not scheduler_named:
                return ("name the scheduler before its arguments, e.g. --model.lr_scheduler=StepLR "
                        "--model.lr_scheduler.step_size=2")  # fmt: skip
            # An optimizer's or scheduler's arguments are no keys of the parser until jsonargparse has read its class.
            if key.startswith(("model.optimizer.", "model.lr_scheduler.")):
                of_optimizer = key.startswith("model.optimizer.")
                if not of_optimizer:
                    given.add(name)
                if unknown := not_an_option(optimizer if of_optimizer else scheduler, key):
                    return unknown
                expected = (agreed_value(optimizer_classes(optimizer), name, value) if of_optimizer
                            else expected_value(parameter_type(scheduler, name), value))
                if expected:
                    return f"--{key}: expected {expected}, got {value!r}"
            # The type in its class's signature, or in its function's for a command's own flag (serve's --port)
            owner = self.classes.get(group) or self.classes.get("")
            if key in keys and (expected := expected_value(parameter_type(owner, name), value)):
                return f"--{key}: expected {expected}, got {value!r}"
            if not keys or key in keys or key in ACTIONS:
                continue
            # Known too: a group (--trainer), an argument of a class chosen on the command line (--model.optimizer.lr)
            if not any(other.startswith(key + ".") or key.startswith(other + ".") for other in keys):
                return f"unknown option --{key}{suggest(key, keys, prefix='--')}"
        if isinstance(scheduler, type) and not config_given:
            needed = [p.name for p in own_arguments(scheduler) if p.default is p.empty and p.name not in given
                      and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]  # fmt: skip
            if needed:
                return f"{scheduler.__name__} needs --model.lr_scheduler.{needed[0]}"
        return None


def parameter_type(owner: object, name: str) -> object:
    """The annotation of parameter `name` of a class's `__init__` (or a base class's) or of a function, or None."""
    functions = [cls.__init__ for cls in owner.__mro__] if isinstance(owner, type) else [owner] if owner else []
    for function in functions:
        with contextlib.suppress(NameError, TypeError, KeyError):
            return typing.get_type_hints(function)[name]
    return None


def expected_value(annotation: object, value: str) -> str | None:
    """What a bool, int, float or Literal value looks like ('an integer', 'one of 64, 32, ...') if `value` does not."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    # A tensor (torch.optim's lr: float | Tensor) is no value a command line can give: a number is what is expected.
    kinds = [kind for kind in (typing.get_args(annotation) if union else [annotation])
             if kind is not type(None) and kind is not torch.Tensor]  # fmt: skip
    if value.lower() in ("null", "none"):
        return None
    if kinds and all(typing.get_origin(kind) is typing.Literal for kind in kinds):  # --trainer.precision
        choices = list(dict.fromkeys(str(choice) for kind in kinds for choice in typing.get_args(kind)))
        return None if value in choices else f"one of {', '.join(choices)}"
    if not kinds or not set(kinds) <= {bool, int, float}:
        return None
    fits = {bool: lambda: value.lower() in ("true", "false"), int: lambda: int(value), float: lambda: float(value)}
    for kind in kinds:
        with contextlib.suppress(ValueError):
            if fits[kind]() is not False:
                return None
    return "a number" if float in kinds else "an integer" if int in kinds else "true or false"


def optimizer_classes(optimizer: object) -> list[type]:
    """The class named by --model.optimizer, or, when a config file may name it, every torch.optim optimizer."""
    return [optimizer] if isinstance(optimizer, type) else [getattr(torch.optim, o) for o in OPTIMIZERS]


def agreed_value(classes: list, name: str, value: str) -> str | None:
    """expected_value for argument `name` of these classes, where those that have it agree (lr is a number in every
    optimizer of torch.optim, width an integer in every net of digitnet.nets)."""
    answers = {expected_value(hint, value) for cls in classes if (hint := parameter_type(cls, name)) is not None}
    return answers.pop() if len(answers) == 1 else None


def locate(path: str) -> object:
    """The object an import path names, or None when it names none or its module fails to import."""
    with contextlib.suppress(pydoc.ErrorDuringImport):
        return pydoc.locate(path)
    return None


def own_arguments(cls: type, first: int = 1) -> list[inspect.Parameter]:
    """A class's parameters from the `first`: an optimizer's or scheduler's but the first, which Lightning passes
    (params, the optimizer); a network's all."""
    return list(inspect.signature(cls).parameters.values())[first:]


def not_an_option(cls: object, key: str, first: int = 1) -> str | None:
    """'Adam has no option momentum; ...' for `--model.optimizer.momentum` (or a scheduler's, or a net's: `first` as
    in own_arguments) where Adam has none."""
    name = key.rpartition(".")[2]
    if not isinstance(cls, type) or name in ("init_args", "class_path"):
        return None
    parameters = inspect.signature(cls).parameters
    if name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return None
    options = [p.name for p in own_arguments(cls, first)]
    return f"--{key}: {cls.__name__} has no option {name}{suggest(name, options)}; its options are {', '.join(options)}"


@contextlib.contextmanager
def trainer_settings() -> typing.Iterator[None]:
    """Lightning's error for a bad --trainer value (an unknown accelerator, ...) as a one-line DigitnetError."""
    try:
        yield
    except (MisconfigurationException, ValueError) as err:
        raise DigitnetError(f"bad --trainer settings: {err}") from None


def with_net_paths(argv: list[str]) -> list[str]:
    """`argv` with `--model.net=MLP` (or `ConvNet`, and `--model.number_net=NumberNet`) spelled
    `--model.net=digitnet.nets.MLP`: jsonargparse finds a bare class name among every imported subclass of
    nn.Module, and torchvision.ops has an MLP too."""
    argv = list(argv)
    for flag, names in (("--model.net", NETS), ("--model.number_net", ("NumberNet",))):
        for i, arg in enumerate(argv):
            if arg.startswith(flag + "=") and arg.partition("=")[2] in names:
                argv[i] = f"{flag}=digitnet.nets.{arg.partition('=')[2]}"
            elif arg == flag and i + 1 < len(argv) and argv[i + 1] in names:
                argv[i + 1] = f"digitnet.nets.{argv[i + 1]}"
    return argv


def command_parser(command: str, function: typing.Callable, args: list[str] | None) -> DigitnetParser:
    """The parser of a command that is not a Trainer method (`export`, `serve`), with the same short errors."""
    DigitnetParser.argv = [command, *(sys.argv[2:] if args is None else args)]
    DigitnetParser.classes = {"": function}
    description = function.__doc__.split("\n")[0]
    return DigitnetParser(prog=f"{program_name()} {command}", description=description, command=command)
