"""Train the report's dense network with each optimizer and several seeds; tabulate and plot the results."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from digitnet.cli import build_cli
from digitnet.data import reuse_data
from digitnet.errors import DigitnetError
from digitnet.files import atomic_write, check_folder
from digitnet.study.runs import logged_run_args, quiet_lightning
from digitnet.study.summary import plot_curves, read_curves, summarize

CHECKOUT = Path(__file__).resolve().parents[2]  # the source checkout (pip install -e): its configs/ and docs/
CONFIGS = CHECKOUT / "configs" / "optimizers"
# The configs the tuning writes, then the same optimizers with Keras's defaults (the report's baseline).
DEFAULT_OPTIMIZERS = "SGD,Adam,NAdam,Adadelta,keras/SGD,keras/Adam,keras/NAdam,keras/Adadelta"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Other arguments go to every run's "
                                     "CLI, after the config: e.g. --data.val_size=1000 --trainer.accelerator=cpu")
    add = parser.add_argument
    add("--data_dir", default=None, help="folder with the four MNIST files (default: $DIGITNET_DATA_DIR, else ./data)")
    add("--out", default="cmp", help="output folder: TensorBoard logs, checkpoints and the three reports")
    add("--optimizers", default=DEFAULT_OPTIMIZERS,
        help=f"comma-separated names of configs in {CONFIGS.relative_to(CHECKOUT)}/ (case-insensitive), or YAML paths")
    add("--seeds", type=int, default=10, help="seeds per optimizer: 0, 1, ..., N-1")
    add("--epochs", type=int, default=None,
        help="training epochs per run (default: the config's trainer.max_epochs, else the CLI's 5, the report's)")
    add("--report_dir", default=None, help="also copy results.csv, summary.md and curves.png here (docs/optimizers)")
    args, args.cli_args = parser.parse_known_args(argv)
    if any(not a.startswith("--") for a in args.cli_args[:1]):
        parser.error(f"unrecognized arguments: {' '.join(args.cli_args)}")
    if args.seeds < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--seeds and --epochs must be at least 1")
    return args


def resolve_configs(entries: str) -> dict[str, Path]:
    """{label: config path} from 'SGD,Adam' (configs/optimizers/sgd.yaml, ...) or YAML paths (labelled by file stem)."""
    available = {p.relative_to(CONFIGS).with_suffix("").as_posix(): p for p in sorted(CONFIGS.rglob("*.yaml"))}
    configs = {}
    for entry in filter(None, (e.strip() for e in entries.split(","))):
        if entry.endswith((".yaml", ".yml")):
            path = Path(entry)
            if not path.is_file():
                raise DigitnetError(f"no config file {path}")
            if path.stem in configs:  # its row would be the other's
                raise DigitnetError(f"{configs[path.stem]} and {path} would both be labelled {path.stem!r}: copy one "
                                    "to a file of another name")  # fmt: skip
            configs[path.stem] = path
        elif entry.lower() in available:
            configs[entry] = available[entry.lower()]
        elif not available:  # digitnet installed from a wheel, not `pip install -e` in its clone
            raise DigitnetError(f"no config for {entry!r}: {CONFIGS} does not exist (digitnet is not installed from "
                                "its clone with pip install -e); give YAML paths, such as configs/optimizers/sgd.yaml "
                                "in a clone")  # fmt: skip
        else:
            raise DigitnetError(f"no config for {entry!r} in {CONFIGS}; use one of {', '.join(available)} "
                                "or a YAML path")  # fmt: skip
    return configs


def train_and_test(config: Path, label: str, seed: int, args: argparse.Namespace, cache: dict) -> dict:
    """One run through the package's CLI, as `python -m digitnet fit --config CONFIG --seed_everything SEED`."""
    cli_args = [f"--config={config}", f"--seed_everything={seed}", *logged_run_args(args.out, label, f"seed_{seed}"),
                *([f"--trainer.max_epochs={args.epochs}"] if args.epochs else []),
                *([f"--data.data_dir={args.data_dir}"] if args.data_dir else []), *args.cli_args]  # fmt: skip
    run_dir = Path(args.out) / label / f"seed_{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an earlier run's event files would mix into this run's curves
    cli = build_cli(cli_args, run=False)
    reuse_data(cli.datamodule, cache)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start  # training and per-epoch validation
    [test] = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)  # the final weights
    config = config.resolve()  # relative to the checkout when inside it: the same in every clone
    return {
        "optimizer": label,
        "seed": seed,
        "epochs": cli.trainer.current_epoch,
        "test_acc": test["test/acc"],
        "test_loss": test["test/loss"],
        "best_val_acc": float(cli.trainer.checkpoint_callback.best_model_score),
        "sec_per_epoch": seconds / max(cli.trainer.current_epoch, 1),
        "config": config.relative_to(CHECKOUT).as_posix() if config.is_relative_to(CHECKOUT) else str(config),
        "log_dir": cli.trainer.logger.log_dir,
    }


def main(argv: list[str] | None = None) -> None:
    """scripts/compare_optimizers.py"""
    args = parse_args(argv)
    out = Path(args.out)
    quiet_lightning()
    start, rows, cache = time.perf_counter(), [], {}
    try:
        configs = resolve_configs(args.optimizers)
        if not configs:  # else an empty results.csv over the last one's
            raise DigitnetError(f"--optimizers {args.optimizers!r} names none: give {DEFAULT_OPTIMIZERS} or YAML paths")
        check_folder("--out", out, "the runs and reports")
        if args.report_dir:
            check_folder("--report_dir", args.report_dir, "the reports")
        for label, config in configs.items():
            for seed in range(args.seeds):
                run_start = time.perf_counter()
                row = train_and_test(config, label, seed, args, cache)
                rows.append(row)
                print(f"{label:>10} seed {seed}: test acc {row['test_acc']:.4f}  loss {row['test_loss']:.4f}  "
                      f"{time.perf_counter() - run_start:5.1f} s ({row['sec_per_epoch']:.2f} s/epoch)", flush=True)

        results = pd.DataFrame(rows)  # results.csv's columns: train_and_test's keys
        atomic_write(out / "results.csv", results.to_csv(index=False, float_format="%.6g"))
        test_images = len(next(iter(cache.values()))[2])
        atomic_write(out / "summary.md", summarize(results, configs, test_images))
        plot_curves(read_curves({(r["optimizer"], r["seed"]): r["log_dir"] for r in rows}), out / "curves.png")
        print(f"{len(rows)} runs in {time.perf_counter() - start:.0f} s; wrote {out}/results.csv, summary.md, "
              f"curves.png (tensorboard --logdir {out})")  # fmt: skip
        if args.report_dir:
            report = Path(args.report_dir)
            for name in ("results.csv", "summary.md", "curves.png"):
                atomic_write(report / name, (out / name).read_bytes())
            print(f"copied them to {report}/")
    except DigitnetError as err:
        sys.exit(f"compare_optimizers: error: {err}")
