"""`python -m digitnet finetune`: a trained model taught your own handwriting, without forgetting MNIST.

    python -m digitnet finetune --ckpt_path CKPT --data.extra_dir my_digits/

It starts from the checkpoint's weights (its network and settings: a ConvNet stays a ConvNet), trains
`--trainer.max_steps` steps on batches a share of which are your digits (`--data.extra_share`) and the rest
MNIST's, and says how many of your held-out digits and of MNIST's test digits are read right before and after.
The result is a new run under lightning_logs/<net>-finetune/, which `predict`, `serve` and `export` then use.
"""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.seed import max_seed_value
from lightning.pytorch.loggers import TensorBoardLogger

from digitnet.arguments import command_parser, trainer_settings
from digitnet.checkpoints import FINETUNED, announce_default_checkpoint, read_checkpoint
from digitnet.data import MNISTDataModule
from digitnet.errors import DigitnetError, first_line
from digitnet.faults import AtomicCheckpointIO
from digitnet.files import check_folder
from digitnet.model import DigitClassifier, share_read_right

# The data settings a fine-tune keeps from the checkpoint's run: how its pictures were scaled and augmented.
KEPT = ("normalize", "val_size", "seed", "batch_size", "rotate", "scale", "shift", "shear", "strokes", "non_digits",
        "strings")


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def finetune(
    ckpt_path: str | None = None,
    extra_dir: str | None = None,
    data_dir: str | None = None,
    extra_share: float = 0.5,
    extra_hold_out: float = 0.2,
    max_steps: int = 300,
    lr: float = 3e-4,
    accelerator: str = "auto",
    root: str = ".",
    seed_everything: int = 0,
) -> dict:
    """Fine-tune a checkpoint on your own digits, keeping MNIST in each batch.

    Args:
        ckpt_path: The DigitClassifier checkpoint to start from; default: the best (else the newest) checkpoint of
            the latest run under lightning_logs/.
        extra_dir: Your digits: a folder with a folder per digit, DIR/7/a.png (pictures of any size).
        data_dir: MNIST's folder; default: $DIGITNET_DATA_DIR, else ./data.
        extra_share: The share of each batch taken from your digits; the rest is MNIST's.
        extra_hold_out: The share of your digits held out of training, to tell how well they are read.
        max_steps: Training steps (batches).
        lr: Adam's learning rate, decayed to zero along a half cosine.
        accelerator: auto (the GPU when there is one), cpu, cuda or mps.
        root: Where lightning_logs/ is.
        seed_everything: The seed of the batches drawn, their augmentation and dropout, as `fit`'s: the same command
            gives the same model.

    Returns:
        checkpoint (the new one), seconds (of training), and the share read right of your held-out digits and of
        MNIST's test digits: extra_before, extra_after, mnist_before, mnist_after.
    """
    if extra_dir is None:
        raise DigitnetError("--data.extra_dir is needed: a folder with a folder per digit, DIR/7/a.png")
    if max_steps < 1 or not lr > 0:
        raise DigitnetError(f"--trainer.max_steps must be at least 1 and --lr positive, got {max_steps} and {lr}")
    if not 0 <= seed_everything <= max_seed_value:  # else Lightning's ValueError, once MNIST is read
        raise DigitnetError(f"--seed_everything={seed_everything}: give a seed from 0 to {max_seed_value}")
    check_folder("--root", root, "lightning_logs/")
    if ckpt_path is None:
        ckpt_path = str(announce_default_checkpoint(root=Path(root) / "lightning_logs"))
    settings = read_checkpoint(ckpt_path).get("datamodule_hyper_parameters", {})
    start = DigitClassifier.load_from_checkpoint(ckpt_path, map_location="cpu")
    data = MNISTDataModule(data_dir=data_dir, extra_dir=extra_dir, extra_share=extra_share,
                           extra_hold_out=extra_hold_out, **{k: v for k, v in settings.items() if k in KEPT})  # fmt: skip
    data.prepare_data()
    data.setup("fit")  # a bad folder stops here, before anything is written
    data.setup("test")
    L.seed_everything(seed_everything, verbose=False)
    model = DigitClassifier(net=start.net, optimizer=functools.partial(torch.optim.Adam, lr=lr),
                            label_smoothing=start.hparams.label_smoothing,
                            non_digit_weight=start.hparams.non_digit_weight, number_net=start.number_net,
                            number_weight=start.hparams.get("number_weight", 1.0))  # fmt: skip
    net_name = type(start.net).__name__
    scored = {"extra": data.extra_held_out, "mnist": data.test_set}  # your held-out digits, MNIST's test digits
    before = {name: share_read_right(model.net, digits) for name, digits in scored.items()}
    print(f"Fine-tuning the {net_name} of {ckpt_path} on {len(data.extra_set)} of your digits "
          f"({len(data.extra_held_out)} held out), {max_steps} steps, {extra_share:.0%} of each batch yours")  # fmt: skip

    logger = TensorBoardLogger(str(Path(root) / "lightning_logs"), name=f"{net_name}-finetune", default_hp_metric=False)
    with trainer_settings():  # --trainer.accelerator gpu without one, or foo
        trainer = L.Trainer(max_steps=max_steps, accelerator=accelerator, logger=logger, enable_checkpointing=False,
                            limit_val_batches=0, num_sanity_val_steps=0, enable_model_summary=False,
                            plugins=[AtomicCheckpointIO()])  # a kill while it saves leaves no half-written checkpoint
    started = time.perf_counter()
    checkpoint = Path(logger.log_dir) / "checkpoints" / FINETUNED
    try:
        trainer.fit(model, datamodule=data)
        seconds = time.perf_counter() - started
        try:
            trainer.save_checkpoint(checkpoint, weights_only=False)
        except (OSError, RuntimeError) as err:  # a full disk: torch's writer raises RuntimeError
            raise DigitnetError(f"cannot write {checkpoint} ({type(err).__name__}: {first_line(err)})") from err
    except BaseException:  # Ctrl-C, SIGTERM or a crash: no fine-tuned checkpoint, so no run folder left without one
        shutil.rmtree(logger.log_dir, ignore_errors=True)
        raise

    after = {name: share_read_right(model.net, digits) for name, digits in scored.items()}
    if trainer.is_global_zero:
        if len(data.extra_held_out):
            print(f"Your held-out digits read right: {percent(before['extra'])} -> {percent(after['extra'])}")
        else:
            print("Your held-out digits: none, so not measured (one is held out of each digit with two pictures or "
                  "more, unless --data.extra_hold_out=0)")
        print(f"MNIST test digits read right:    {percent(before['mnist'], 2)} -> {percent(after['mnist'], 2)}")
        here = Path(root).resolve() == Path.cwd().resolve()  # where predict, serve and export look for the latest run
        use = "predict, serve and export use it from now on" if here else "--ckpt_path it to predict, serve and export"
        print(f"Fine-tuned in {seconds:.0f} s: {checkpoint} ({use})")
    return {"checkpoint": str(checkpoint), "seconds": seconds, "extra_before": before["extra"],
            "extra_after": after["extra"], "mnist_before": before["mnist"], "mnist_after": after["mnist"]}  # fmt: skip


def main(args: list[str] | None = None) -> None:
    """`python -m digitnet finetune ARGS`; bad input raises DigitnetError."""
    parser = command_parser("finetune", finetune, args)
    flags = {  # the data's and the trainer's, spelled as in `fit`: --data.extra_dir, --trainer.max_steps, ...
        "data.extra_dir": (str | None, None, "your digits: a folder with a folder per digit, DIR/7/a.png"),
        "data.data_dir": (str | None, None, "MNIST's folder; default: $DIGITNET_DATA_DIR, else ./data"),
        "data.extra_share": (float, 0.5, "the share of each batch taken from your digits; the rest is MNIST's"),
        "data.extra_hold_out": (float, 0.2, "the share of your digits held out of training, to tell how well they "
                                            "are read"),
        "trainer.max_steps": (int, 300, "training steps (batches)"),
        "trainer.accelerator": (str, "auto", "auto (the GPU when there is one), cpu, cuda or mps"),
    }
    parser.add_function_arguments(finetune, as_group=False, skip={flag.split(".")[1] for flag in flags})
    for flag, (kind, default, text) in flags.items():
        parser.add_argument(f"--{flag}", type=kind, default=default, help=text)
    config = parser.parse_args(args).as_dict()
    for group in ("data", "trainer"):
        config.update(config.pop(group, {}) or {})
    finetune(**config)
