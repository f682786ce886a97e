"""How long a preset takes to reach each test accuracy, over seeds: the time from the command's start.

    python scripts/time_to_accuracy.py --config configs/fast.yaml --seeds 0 1 2 3 4 --out tta/fast
    python scripts/time_to_accuracy.py --seeds 0 1 2 --out tta/mlp     # no --config: the default `fit`, the MLP

Each seed runs `python -m digitnet fit --config CONFIG --seed_everything=SEED` as a user would, one after the
other, with `digitnet.timeline.Timeline` added: after every training epoch it tests the weights as they are on
MNIST's 10,000 test images (for this measurement only: the run never sees it, and its seconds are left out of
every time below). Per seed: the seconds from the command's start until each of 99.0/99.5/99.6/99.7% was first
reached at an epoch's end, the test accuracy the command printed and when it printed it, and where the time went
(start-up: imports and data; training; validation; the final test). Then the mean with its 95% interval
(Student's t) and the network's FLOPs per image (forward). Any other argument goes to `fit`. Writes
OUT/time_to_accuracy.md and OUT/time_to_accuracy.csv and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities.model_summary import ModelSummary
from scipy import stats

from digitnet import DigitClassifier
from digitnet.checkpoints import default_checkpoint
from digitnet.errors import DigitnetError
from digitnet.files import check_folder

THRESHOLDS = (0.990, 0.995, 0.996, 0.997)


def run(seed: int, config: str | None, out: Path, extra: list[str]) -> dict:
    """One seed's run: its times, accuracy and checkpoint."""
    folder = out / f"seed{seed}"
    timeline = folder / "timeline.jsonl"
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    timeline.unlink(missing_ok=True)
    command = [sys.executable, "-m", "digitnet", "fit", *(["--config", config] if config else []),
               f"--seed_everything={seed}", "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={folder}",
               "--trainer.callbacks+=digitnet.timeline.Timeline", f"--trainer.callbacks.path={timeline}", *extra]  # fmt: skip
    start = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed = accuracy = None
    log = []
    for line in process.stdout:
        log.append(line)
        if line.startswith("Test loss:") and printed is None:
            printed, accuracy = time.time(), float(line.rsplit(" ", 1)[-1])
    if process.wait() != 0 or printed is None:
        if made:  # nothing of a failed run is kept
            shutil.rmtree(folder)
        sys.exit(f"seed {seed}: `fit` failed:\n{''.join(log[-30:])}")
    events = [json.loads(line) for line in timeline.read_text().splitlines()]
    paused = 0.0
    reached: dict[float, float] = {}
    spans = {"validation": 0.0, "test": 0.0}
    opened: dict[str, float] = {}
    for event in events:
        name, at = event["event"], event["time"] - start - paused
        if name == "epoch":
            paused += event["paused"]
            for threshold in THRESHOLDS:
                if event["test_acc"] >= threshold and threshold not in reached:
                    reached[threshold] = at - event["paused"]  # when the epoch ended, before the measurement
        elif name.endswith("_start"):
            opened[name[: -len("_start")]] = at
        elif name.endswith("_end") and name[: -len("_end")] in spans:
            spans[name[: -len("_end")]] += at - opened.pop(name[: -len("_end")])
        if name in ("train_start", "train_end"):
            opened[name] = at
    total = printed - start - paused
    startup = opened["train_start"]
    training = opened["train_end"] - startup - spans["validation"]
    return {"seed": seed, "accuracy": accuracy, "seconds": total, "reached": reached, "startup": startup,
            "training": training, "validation": spans["validation"], "test": spans["test"],
            "checkpoint": default_checkpoint(folder / "lightning_logs")[0]}  # fmt: skip


def mean_interval(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "-"
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return f"{np.mean(values):.2f} ({np.mean(values) - half:.2f}-{np.mean(values) + half:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None, help="the preset; default: none, `fit`'s defaults")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="tta", help="folder for the runs and the table")
    args, extra = parser.parse_known_args()
    if args.config and not Path(args.config).is_file():
        parser.error(f"--config {args.config}: no such file")  # before any run folder is made
    try:
        check_folder("--out", args.out)
    except DigitnetError as err:
        parser.error(str(err))
    out = Path(args.out)
    missing = [folder for folder in (out, *out.parents) if not folder.exists()]  # the folders --out will make
    try:
        runs = [run(seed, args.config, out, extra) for seed in args.seeds]
    except SystemExit:  # a run failed: the folders made for it are not left empty
        for folder in missing:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    model = DigitClassifier.load_from_checkpoint(runs[0]["checkpoint"], map_location="cpu")
    flops = ModelSummary(model).total_flops  # of one image: the model's example input is (1, 1, 28, 28)
    header = ["seed", "test accuracy (%)", "seconds to print it", *(f"s to {t:.1%}" for t in THRESHOLDS),
              "start-up s", "training s", "validation s", "test s"]  # fmt: skip
    rows = [[r["seed"], f"{100 * r['accuracy']:.2f}", f"{r['seconds']:.1f}",
             *(f"{r['reached'][t]:.1f}" if t in r["reached"] else "-" for t in THRESHOLDS),
             *(f"{r[k]:.1f}" for k in ("startup", "training", "validation", "test"))] for r in runs]  # fmt: skip
    summary = ["mean (95% interval)", mean_interval([100 * r["accuracy"] for r in runs]),
               mean_interval([r["seconds"] for r in runs]),
               *(mean_interval([r["reached"][t] for r in runs]) if all(t in r["reached"] for r in runs)
                 else f"{sum(t in r['reached'] for r in runs)} of {len(runs)} seeds" for t in THRESHOLDS),
               *(mean_interval([r[k] for r in runs]) for k in ("startup", "training", "validation", "test"))]  # fmt: skip
    lines = [f"`{args.config or 'fit defaults'}` {' '.join(extra)}: {flops / 1e6:.1f} MFLOPs per image (forward)", "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]  # fmt: skip
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows + [summary]]
    table = "\n".join(lines)
    print(table)
    (out / "time_to_accuracy.md").write_text(table + "\n")
    with open(out / "time_to_accuracy.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


if __name__ == "__main__":
    main()
