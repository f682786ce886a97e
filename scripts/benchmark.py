"""How much does Lightning cost? digitnet's `fit` against a bare PyTorch loop, in one process.

    python scripts/benchmark.py --data_dir "$DIGITNET_DATA_DIR" --epochs 7 --json bench.json

Contenders, run in turn (one epoch of each, then again), on the same in-memory tensors and batch sizes:
- digitnet: `fit` through the Trainer built by the CLI, with its default callbacks (progress bar,
  TensorBoard logging, checkpointing) and its validation pass;
- bare: a plain loop with the same model and optimizer (digitnet's MLP, Adam as digitnet builds it,
  with the same cosine decay): shuffle, index a batch, forward, loss, backward, step; then a
  validation pass at the data module's eval_batch_size, as `fit` does. The ratio digitnet / bare
  is the framework's cost;
- floor: forward, backward and optimizer step alone, on one fixed batch, as many steps as an epoch;
- naive: the bare loop as most people write it, with stock nn.Dropout and torch.optim.Adam defaults
  (for information: what digitnet's faster dropout mask and fused Adam are worth).
Each contender's first epoch is warm-up and dropped; the table gives medians. Then inference
throughput at batch 1000 through the LightningModule and through the plain nn.Module.

    python scripts/benchmark.py --tweaks --rounds 20 --threads 1

instead times what each of digitnet's speed tweaks is worth: `fit` as digitnet has it, then with one tweak
undone (stock nn.Dropout; self.log("train/loss") at every step; Adam not fused; Lightning's progress bar redrawn
every step instead of every 20), in short fits that alternate, as the median ratio of their time per training
step; CPU time with --threads 1, so that other work on a shared machine counts less. Two more rows bound what is
left: Lightning alone (the same fit with no callbacks, logger or progress bar) and the bare loop's steps.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import tempfile
import time
import warnings

import lightning as L
import torch
import torch.nn.functional as F

from torch import nn

from digitnet.cli import build_cli
from digitnet.data import reuse_data
from digitnet.errors import DigitnetError
from digitnet.files import atomic_write, check_output
from digitnet.model import DigitClassifier
from digitnet.nets import Dropout
from digitnet.optim import fused_if_available, half_cosine


def bare_model(seed: int, total_steps: int, device: torch.device | str = "cpu"):
    """digitnet's MLP, Adam as digitnet builds it and its cosine decay over `total_steps`, without Lightning."""
    torch.manual_seed(seed)
    model = DigitClassifier().to(device)
    optimizer = fused_if_available(model.make_optimizer, model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: half_cosine(step, total_steps))
    return model.net, optimizer, scheduler


def bare_steps(net, optimizer, scheduler, train, batch_size: int, steps: int | None = None, clock=time.perf_counter,
               warmup: int = 0) -> float:
    """The bare loop over shuffled batches of `train` (the first `steps`, or all): seconds from step `warmup` on."""
    images, labels = train.tensors
    net.train()
    start = clock()
    for step, index in enumerate(torch.randperm(len(labels), device=labels.device).split(batch_size)[:steps]):
        if step == warmup:
            start = clock()
        loss = F.cross_entropy(net(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return clock() - start


def bare_epoch(net, optimizer, scheduler, train, val, batch_size: int, eval_batch_size: int) -> float:
    start = time.perf_counter()
    bare_steps(net, optimizer, scheduler, train, batch_size)
    net.eval()
    with torch.inference_mode():
        batches = zip(*(t.split(eval_batch_size) for t in val.tensors))
        correct = sum((net(x).argmax(1) == y).sum() for x, y in batches)
    float(correct)  # wait for the device
    return time.perf_counter() - start


def floor_epoch(net, optimizer, x, y, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    float(loss.detach())  # wait for the device
    return time.perf_counter() - start


class Interleave(L.Callback):
    """Times each digitnet epoch whole, from one epoch's start to the next one's (training, validation,
    checkpoints, logging), and, between two of them, runs one epoch of each other contender, so
    that all see the same machine state."""

    def __init__(self, others: dict) -> None:
        self.others, self.times = others, {"digitnet": [], **{name: [] for name in others}}
        self.start = None

    def _stop_clock(self) -> None:
        if self.start is not None:
            self.times["digitnet"].append(time.perf_counter() - self.start)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._stop_clock()
        for name, run in self.others.items():
            self.times[name].append(run())
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop_clock()  # after the last epoch's checkpoints


def images_per_second(fn, x: torch.Tensor, repeats: int = 30) -> float:
    with torch.inference_mode():
        fn(x)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            float(fn(x).sum())
            times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


class LogEveryStep(DigitClassifier):
    """digitnet's model logging train/loss at every step, as most LightningModules do."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        every = self.trainer.log_every_n_steps
        if not every or self.global_step % every:  # the steps DigitClassifier does not log
            self.log("train/loss", loss)
        return loss


def stock_dropout(model: DigitClassifier) -> DigitClassifier:
    for name, layer in model.net.named_children():
        if isinstance(layer, Dropout):
            setattr(model.net, name, nn.Dropout(layer.p))
    return model


class StepTimer(L.Callback):
    """Seconds per training step from the 10th on (setup and warm-up left out)."""

    def __init__(self, clock) -> None:
        self.clock = clock

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 10:
            self.start = self.clock()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = (self.clock() - self.start) / (trainer.global_step - 10)


def tweaks(args, cli_args: list[str]) -> dict:
    """Each speed tweak undone in turn, in short fits that alternate: median ratios of time per step."""
    unfused = functools.partial(torch.optim.Adam, fused=False)
    variants = {"digitnet": lambda model: model, "nn.Dropout": stock_dropout,
                "self.log every step": lambda model: LogEveryStep(),
                "Adam, not fused": lambda model: DigitClassifier(optimizer=unfused),
                "bar every step": lambda model: model}  # fmt: skip
    # Lightning's progress bar as it comes, redrawn every step (a bar the user names is kept as it is).
    variant_args = {"bar every step": ["--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar"]}
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    cli_args = [*cli_args, "--trainer.max_epochs=1", f"--trainer.limit_train_batches={args.steps}",
                "--trainer.limit_val_batches=0", "--trainer.enable_model_summary=false"]
    # Bounds rather than tweaks: the Trainer with nothing of digitnet's or Lightning's around the step, and no Trainer.
    variants["Lightning alone"] = lambda model: model
    variant_args["Lightning alone"] = ["--trainer.enable_progress_bar=false", "--trainer.logger=false"]
    cache, times = {}, {name: [] for name in [*variants, "bare loop"]}
    for round_ in range(args.rounds + 1):  # round 0: warm-up
        for name in list(variants)[:: 1 if round_ % 2 else -1]:
            cli = build_cli([*cli_args, *variant_args.get(name, [])], run=False)
            reuse_data(cli.datamodule, cache, stages=("fit",))
            timer = StepTimer(clock)
            if name == "Lightning alone":
                cli.trainer.callbacks.clear()
            cli.trainer.callbacks.append(timer)
            cli.trainer.fit(variants[name](cli.model), datamodule=cli.datamodule)
            if round_:
                times[name].append(timer.seconds)
        train = cli.datamodule.train_set
        plain = bare_model(1, args.steps, train.tensors[0].device)
        seconds = bare_steps(*plain, train, cli.datamodule.hparams.batch_size, args.steps, clock, warmup=10)
        if round_:
            times["bare loop"].append(seconds / (args.steps - 10))  # from the 10th step on, as StepTimer counts
    print(f"\n{args.rounds} rounds of {args.steps} steps, {torch.get_num_threads()} torch threads, "
          f"{'CPU' if clock is time.process_time else 'wall'} time")
    print(f"{'variant':<20} {'ms/step':>8} {'x digitnet':>10} {'quartiles':>12}")
    results = {}
    for name, seconds in times.items():
        ratios = [t / d for t, d in zip(seconds, times["digitnet"])]
        q = statistics.quantiles(ratios, n=4)
        results[name] = {"ms_per_step": 1000 * statistics.median(seconds), "ratio": statistics.median(ratios)}
        print(f"{name:<20} {results[name]['ms_per_step']:>8.2f} {results[name]['ratio']:>10.3f} "
              f"{q[0]:>6.3f}-{q[2]:.3f}")
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=None, help="folder with the MNIST files (default: DIGITNET_DATA_DIR or ./data)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per contender, after one warm-up epoch")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    parser.add_argument("--compile", action="store_true",
                        help="fit with --model.compile=true: the network compiled by torch.compile")
    parser.add_argument("--tweaks", action="store_true", help="time each speed tweak undone instead (see above)")
    parser.add_argument("--rounds", type=int, default=20, help="--tweaks: fits of each variant, after a warm-up")
    parser.add_argument("--steps", type=int, default=100, help="--tweaks: training steps per fit")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.epochs < 3:
        parser.error("--epochs must be at least 3: the figures are medians")
    if args.tweaks and (args.rounds < 2 or args.steps < 11):
        parser.error("--tweaks needs --rounds of at least 2 (quartiles) and --steps of at least 11 (10 are warm-up)")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.json:
        try:
            check_output(args.json, "--json")
        except DigitnetError as err:
            parser.error(str(err))
    if args.threads:
        torch.set_num_threads(args.threads)

    # The Trainer's arguments go to build_cli while this script's own are in sys.argv, as intended here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)
    with tempfile.TemporaryDirectory(prefix="digitnet-bench-") as out:  # the runs' logs and checkpoints: not kept
        try:
            results = measure(args, out)
        except DigitnetError as err:  # the data, the accelerator
            sys.exit(f"{parser.prog}: error: {err}")
    if args.json:  # --tweaks' figures too
        atomic_write(args.json, json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return results


def measure(args: argparse.Namespace, out: str) -> dict:
    """The contenders' table (or --tweaks'), with the runs' logs and checkpoints written under `out`."""
    cli_args = [f"--trainer.max_epochs={args.epochs + 1}", f"--trainer.default_root_dir={out}",
                f"--trainer.accelerator={args.accelerator}", "--trainer.num_sanity_val_steps=0"]
    if args.data_dir:
        cli_args.append(f"--data.data_dir={args.data_dir}")
    if args.compile:
        cli_args.append("--model.compile=true")
    if args.tweaks:
        return tweaks(args, cli_args)
    cli = build_cli(cli_args, run=False)
    dm, trainer = cli.datamodule, cli.trainer
    device = trainer.strategy.root_device
    dm.trainer = trainer  # so that setup() puts the tensors on the trainer's device
    dm.prepare_data()
    dm.setup("fit")
    batch_size, eval_batch_size = dm.hparams.batch_size, dm.hparams.eval_batch_size
    steps = math.ceil(len(dm.train_set) / batch_size)

    total = (args.epochs + 1) * steps

    def naive_model(seed: int):  # the Keras model written with stock layers and optimizer
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
                            nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10)).to(device)
        optimizer = torch.optim.Adam(net.parameters())
        return net, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: half_cosine(step, total))

    bare = bare_model(1, total, device)
    naive = naive_model(1)
    floor_net, floor_opt, _ = bare_model(2, total, device)
    x, y = (t[:batch_size] for t in dm.train_set.tensors)
    timer = Interleave({
        "bare": lambda: bare_epoch(*bare, dm.train_set, dm.val_set, batch_size, eval_batch_size),
        "floor": lambda: floor_epoch(floor_net, floor_opt, x, y, steps),
        "naive": lambda: bare_epoch(*naive, dm.train_set, dm.val_set, batch_size, eval_batch_size),
    })
    trainer.callbacks.append(timer)
    trainer.fit(cli.model, datamodule=dm)

    sec = {name: statistics.median(times[1:]) for name, times in timer.times.items()}  # drop warm-up
    model = cli.model.to(device).eval()
    batch = dm.val_set.tensors[0][:1000]
    results = {
        "bare_sec_per_epoch": sec["bare"],
        "digitnet_sec_per_epoch": sec["digitnet"],
        "floor_sec_per_epoch": sec["floor"],
        "ratio_digitnet_to_bare": sec["digitnet"] / sec["bare"],
        "ratio_digitnet_to_floor": sec["digitnet"] / sec["floor"],
        "naive_sec_per_epoch": sec["naive"],
        "ratio_digitnet_to_naive": sec["digitnet"] / sec["naive"],
        "infer_images_per_sec": images_per_second(model, batch),
        "infer_plain_images_per_sec": images_per_second(model.net, batch),
        "epoch_times": timer.times,
        "steps_per_epoch": steps,
        "batch_size": batch_size,
        "torch_version": torch.__version__,
        "lightning_version": L.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "compiled": args.compile,
    }
    results["infer_ratio_module_to_plain"] = results["infer_images_per_sec"] / results["infer_plain_images_per_sec"]
    print(f"\ndevice: {results['device']}, torch {torch.__version__}, {results['threads']} threads, "
          f"{'digitnet compiled, ' if args.compile else ''}"
          f"batch {batch_size}, {steps} steps/epoch, median of {args.epochs} epochs after 1 warm-up")
    print(f"{'contender':<10} {'sec/epoch':>9} {'x bare':>7} {'x floor':>8}")
    for name in ("floor", "bare", "digitnet", "naive"):
        print(f"{name:<10} {sec[name]:>9.3f} {sec[name] / sec['bare']:>7.3f} {sec[name] / sec['floor']:>8.3f}")
    print(f"inference, batch 1000: LightningModule {results['infer_images_per_sec']:,.0f} images/s, "
          f"plain nn.Module {results['infer_plain_images_per_sec']:,.0f} images/s "
          f"(ratio {results['infer_ratio_module_to_plain']:.3f})")
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
