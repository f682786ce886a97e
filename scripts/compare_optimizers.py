"""Train the report's dense network with each optimizer and several seeds; tabulate and plot the results.

    python scripts/compare_optimizers.py --data_dir ../shared/mnist --out cmp

Each optimizer's settings come from configs/optimizers/<name>.yaml (the best trial of
scripts/tune_optimizers.py) and configs/optimizers/keras/<name>.yaml (Keras's defaults, the report's
one-shot baseline), the same files that `python -m digitnet fit --config configs/optimizers/sgd.yaml`
takes; an entry of --optimizers may also be the path of any such YAML file (configs/long.yaml, for
instance). Every run goes through the
package's CLI (build_cli) in this one process, trained as `python -m digitnet fit` trains, then
tested with its final weights, as the report did. (`fit` tests the checkpoint with the best
validation accuracy instead; with the learning rate decayed to zero the last epoch is usually the
better model, and choosing among near-equal epochs on 5,000 validation images adds noise.) It logs to TensorBoard in
OUT/<optimizer>/seed_<n> (`tensorboard --logdir OUT`; the HParams tab compares hp_metric, the test
accuracy), and the script writes

    OUT/results.csv   one row per run: optimizer, seed, epochs, test_acc, test_loss, best_val_acc, sec_per_epoch, ...
    OUT/summary.md    per optimizer: settings, mean test accuracy and its 95% confidence interval; then the
                      pairs that Welch's t-test, Holm-corrected for the number of pairs, calls different
    OUT/curves.png    validation accuracy and loss per epoch, read back from the TensorBoard event files
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import re
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's digitnet, even where another one is installed
from digitnet.cli import build_cli  # noqa: E402
from digitnet.cli import quiet_lightning as digitnet_quiet  # noqa: E402
from digitnet.errors import DigitnetError  # noqa: E402

CONFIGS = ROOT / "configs" / "optimizers"
# The configs tune_optimizers.py writes, then the same optimizers with Keras's defaults (the report's baseline).
DEFAULT_OPTIMIZERS = "SGD,Adam,NAdam,Adadelta,keras/SGD,keras/Adam,keras/NAdam,keras/Adadelta"
COLUMNS = ["optimizer", "seed", "epochs", "test_acc", "test_loss", "best_val_acc", "sec_per_epoch", "config", "log_dir"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other arguments go to every run's CLI, after the config: e.g. --data.val_size=1000 --trainer.accelerator=cpu",
    )
    parser.add_argument("--data_dir", default=None, help="folder with the four MNIST files (default: $DIGITNET_DATA_DIR, else ./data)")
    parser.add_argument("--out", default="cmp", help="output folder: TensorBoard logs, checkpoints and the three reports")
    parser.add_argument("--optimizers", default=DEFAULT_OPTIMIZERS,
                        help=f"comma-separated names of configs in {CONFIGS.relative_to(ROOT)}/ (case-insensitive), or YAML paths")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per optimizer: 0, 1, ..., N-1")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs per run (default: the config's trainer.max_epochs, else the CLI's 5, the report's)")
    parser.add_argument("--report_dir", default=None, help="also copy results.csv, summary.md and curves.png here (e.g. docs/optimizers)")
    parser.add_argument("--readme", default=None,
                        help="replace the block between '<!-- begin REPORT_DIR/summary.md -->' and its end marker in this file with summary.md")
    args, args.cli_args = parser.parse_known_args(argv)
    if any(not a.startswith("--") for a in args.cli_args[:1]):
        parser.error(f"unrecognized arguments: {' '.join(args.cli_args)}")
    if args.seeds < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--seeds and --epochs must be at least 1")
    if args.readme and not args.report_dir:
        parser.error("--readme needs --report_dir: the README block names the summary file it holds")
    return args


def resolve_configs(entries: str) -> dict[str, Path]:
    """{label: config path} from 'SGD,Adam' (configs/optimizers/sgd.yaml, ...) or YAML paths (labelled by file stem)."""
    available = {p.relative_to(CONFIGS).with_suffix("").as_posix(): p for p in sorted(CONFIGS.rglob("*.yaml"))}
    configs = {}
    for entry in filter(None, (e.strip() for e in entries.split(","))):
        if entry.endswith((".yaml", ".yml")):
            path = Path(entry)
            if not path.is_file():
                sys.exit(f"compare_optimizers: error: no config file {path}")
            configs[path.stem] = path
        elif entry.lower() in available:
            configs[entry] = available[entry.lower()]
        else:
            sys.exit(f"compare_optimizers: error: no config for {entry!r} in {CONFIGS}; "
                     f"use one of {', '.join(available)} or a YAML path")
    return configs


def quiet_lightning() -> None:
    """One line per run: the CLI's quiet settings, and no model summary or per-run notices either."""
    digitnet_quiet()
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Each run's arguments go to build_cli while the script's own are in sys.argv, as intended here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)


def reuse_data(datamodule, cache: dict, stages: tuple[str, ...] = ("fit", "test")) -> None:
    """Read and normalize MNIST once per data setting rather than once per run: setup() keeps splits that
    are already set. Settings that act on batches only (batch sizes, shift) share the stored tensors. Only
    the `stages` named are set up (tuning never reads the test images)."""
    stored = {k: v for k, v in datamodule.hparams.items() if k not in ("batch_size", "eval_batch_size", "shift")}
    key = tuple(sorted((k, repr(v)) for k, v in stored.items())) + (datamodule.data_dir, stages)
    if key not in cache:
        datamodule.prepare_data()
        for stage in stages:
            datamodule.setup(stage)
        cache[key] = (datamodule.train_set, datamodule.val_set, datamodule.test_set)
    datamodule.train_set, datamodule.val_set, datamodule.test_set = cache[key]


def train_and_test(config: Path, label: str, seed: int, args: argparse.Namespace, cache: dict) -> dict:
    """One run through the package's CLI, as `python -m digitnet fit --config CONFIG --seed_everything SEED`."""
    cli_args = [
        f"--config={config}",
        f"--seed_everything={seed}",
        "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
        f"--trainer.logger.save_dir={args.out}",
        f"--trainer.logger.name={label}",
        f"--trainer.logger.version=seed_{seed}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    if args.epochs is not None:
        cli_args.append(f"--trainer.max_epochs={args.epochs}")
    if args.data_dir:
        cli_args.append(f"--data.data_dir={args.data_dir}")
    cli_args += args.cli_args
    run_dir = Path(args.out) / label / f"seed_{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an earlier run's event files would mix into this run's curves
    cli = build_cli(cli_args, run=False)
    reuse_data(cli.datamodule, cache)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start  # training and per-epoch validation
    checkpoint = cli.trainer.checkpoint_callback
    [test] = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)  # the final weights
    return {
        "optimizer": label,
        "seed": seed,
        "epochs": cli.trainer.current_epoch,
        "test_acc": test["test/acc"],
        "test_loss": test["test/loss"],
        "best_val_acc": float(checkpoint.best_model_score),
        "sec_per_epoch": seconds / max(cli.trainer.current_epoch, 1),
        "config": _shown(config),
        "log_dir": cli.trainer.logger.log_dir,
    }


def _shown(path: Path) -> str:
    """A config's path relative to the checkout when it lies inside it: the same in every clone."""
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def read_curves(log_dirs: dict[tuple[str, int], str]) -> pd.DataFrame:
    """val/acc and val/loss per epoch of each run, from its TensorBoard event files.

    Returns columns optimizer, seed, epoch (1-based), val_acc, val_loss. Validation runs once per
    epoch, so the k-th value of a tag (in step order) belongs to epoch k.
    """
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    frames = []
    for (label, seed), log_dir in log_dirs.items():
        events = EventAccumulator(log_dir, size_guidance={SCALARS: 0})  # 0: keep every value
        events.Reload()
        columns = {}
        for tag in ("val/acc", "val/loss"):
            values = sorted(events.Scalars(tag), key=lambda e: e.step)
            columns[tag.replace("/", "_")] = [e.value for e in values]
        frame = pd.DataFrame(columns)
        frame.insert(0, "epoch", range(1, len(frame) + 1))
        frame.insert(0, "seed", seed)
        frame.insert(0, "optimizer", label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def plot_curves(curves: pd.DataFrame, path: Path) -> None:
    """Validation accuracy and loss against epoch: the mean over seeds, with a min-max band."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, column, title in zip(axes, ("val_acc", "val_loss"), ("validation accuracy (%)", "validation loss")):
        scale = 100 if column == "val_acc" else 1
        for label, runs in curves.groupby("optimizer", sort=False):
            stats = runs.groupby("epoch")[column].agg(["mean", "min", "max"]) * scale
            line, = ax.plot(stats.index, stats["mean"], marker="o", label=f"{label} ({runs['seed'].nunique()} seeds)")
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(title="mean, min-max band")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def settings(config: Path) -> str:
    """The model and data settings a config file sets, as 'SGD lr=0.1, momentum=0.9; dropout=0.2; shift=2'."""
    content = yaml.safe_load(config.read_text()) or {}
    model, data = content.get("model") or {}, content.get("data") or {}
    optimizer = model.pop("optimizer", {}) or {}
    net = model.pop("net", None) or {}  # the network's settings, e.g. {"dropout": 0.2}, shown as the model's
    if isinstance(net, dict):
        model = {**(net.get("init_args") or {k: v for k, v in net.items() if k != "class_path"}), **model}
    if isinstance(optimizer, str):
        optimizer = {"class_path": optimizer}
    name = optimizer.get("class_path", "Adam").rsplit(".", 1)[-1]
    parts = [" ".join([name] + [", ".join(f"{k}={v}" for k, v in (optimizer.get("init_args") or {}).items())]).strip()]
    parts += [f"{k}={v}" for k, v in (model | data).items()]
    return "; ".join(parts)


def mean_std(values: pd.Series, scale: float = 1, digits: int = 2) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{values.mean() * scale:.{digits}f} ± {std * scale:.{digits}f}"


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two ends of its confidence interval (Student's t, n - 1 degrees of freedom)."""
    from scipy import stats

    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def pairwise_tests(samples: dict[str, list[float]], alpha: float = 0.05) -> list[dict]:
    """Welch's t-test for every pair of samples, with Holm's correction for the number of pairs.

    Returns one dict per pair, `a` the one with the higher mean: a, b, diff (mean a - mean b), p,
    p_holm (the adjusted p-value) and different (p_holm < alpha), most significant first. Holm's
    step-down keeps the chance of calling any pair of equal optimizers different below alpha.
    """
    from scipy import stats

    tests = []
    for (a, xa), (b, xb) in itertools.combinations(samples.items(), 2):
        if statistics.fmean(xa) < statistics.fmean(xb):
            (a, xa), (b, xb) = (b, xb), (a, xa)
        with warnings.catch_warnings():  # samples without spread: scipy warns, and p is nan
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)
        tests.append({"a": a, "b": b, "diff": statistics.fmean(xa) - statistics.fmean(xb),
                      "p": 1.0 if math.isnan(p) else p})  # nan: no spread in either sample
    tests.sort(key=lambda t: t["p"])
    running = 0.0
    for rank, test in enumerate(tests):  # the k-th smallest p-value is multiplied by (m - k + 1)
        running = max(running, min(1.0, (len(tests) - rank) * test["p"]))
        test["p_holm"], test["different"] = running, running < alpha
    return tests


def seeds_needed(samples: dict[str, list[float]], alpha: float = 0.05) -> dict[tuple[str, str], int]:
    """For each pair found different: the fewest seeds (the first n of every sample) from which on the
    corrected test calls it different at every n up to all of them."""
    n_max = min(len(x) for x in samples.values())
    needed = {}
    for n in range(n_max, 1, -1):
        found = {(t["a"], t["b"]) for t in pairwise_tests({k: list(x)[:n] for k, x in samples.items()}, alpha) if t["different"]}
        for pair in found:
            if n == n_max or needed.get(pair) == n + 1:  # different at every count from n up
                needed[pair] = n
    return needed


def settings_parts(configs: dict[str, Path]) -> tuple[dict[str, str], str]:
    """Each config's settings, less those every config shares, which are returned apart."""
    parts = {label: settings(path).split("; ") for label, path in configs.items()}
    common = [p for p in next(iter(parts.values()))[1:] if all(p in q[1:] for q in parts.values())] if len(parts) > 1 else []
    return {label: "; ".join(p for p in q if p not in common) for label, q in parts.items()}, "; ".join(common)


def summarize(results: pd.DataFrame, configs: dict[str, Path], test_images: int, alpha: float = 0.05) -> str:
    """Markdown: one row per optimizer (mean and 95% interval), then the pairs a corrected test calls different."""
    groups = dict(tuple(results.groupby("optimizer", sort=False)))
    seeds = sorted({len(g) for g in groups.values()})
    shown, common = settings_parts({label: configs[label] for label in groups})
    lines = [
        f"Test accuracy of the final weights on the {test_images:,} MNIST test images, "
        f"{_count(seeds, 'seed')} per row, {_count(sorted(set(results['epochs'])), 'epoch')} each: the mean and its "
        "95% confidence interval (Student's t)." + (f" Every row: {common}." if common else ""),
        "",
        "| optimizer | settings | test accuracy (%) | 95% interval | test loss | best val accuracy (%) | s / epoch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, runs in groups.items():
        mean, low, high = (100 * v for v in mean_ci(runs["test_acc"]))
        lines.append(
            f"| {label} | {shown[label]} | {mean:.2f} | {low:.2f}-{high:.2f} | {mean_std(runs['test_loss'], 1, 4)} | "
            f"{mean_std(runs['best_val_acc'], 100)} | {runs['sec_per_epoch'].mean():.1f} |"
        )
    lines.append("")
    if len(groups) < 2 or seeds[0] < 2:
        lines.append("Differences: not tested; it takes at least two optimizers with two seeds each.")
        return "\n".join(lines) + "\n"
    samples = {label: list(runs["test_acc"]) for label, runs in groups.items()}
    tests = pairwise_tests(samples, alpha)
    needed = seeds_needed(samples, alpha)
    lines += [f"Differences: Welch's t-test for each of the {len(tests)} pairs, Holm's correction for {len(tests)} "
              f"tests; a pair is called different when its corrected p-value is below {alpha}.", ""]
    for t in (t for t in tests if t["different"]):
        lines.append(f"- {t['a']} > {t['b']}: +{100 * t['diff']:.2f} points (p = {t['p']:.2g}, corrected {t['p_holm']:.2g}; "
                     f"different from {needed[(t['a'], t['b'])]} seeds on)")
    if not any(t["different"] for t in tests):
        lines.append("- none: no optimizer is shown to beat another here")
    same = [t for t in tests if not t["different"]]
    if same:
        lines += ["", "Not shown different: " + ", ".join(
            f"{t['a']} vs {t['b']} ({100 * t['diff']:+.2f}, corrected p {t['p_holm']:.2g})" for t in same) + "."]
    p = results.groupby("optimizer")["test_acc"].mean().median()  # a typical row: not pulled down by failed settings
    lines += ["", "As estimates of the accuracy on new digits, the means also carry the test set's own sampling "
              f"error, the same for every row: about ±{100 * math.sqrt(p * (1 - p) / test_images):.2f} points "
              f"(binomial standard error at {100 * p:.1f}%, the median row, on {test_images:,} images)."]
    return "\n".join(lines) + "\n"


def _count(values: list[int], noun: str) -> str:
    return f"{'/'.join(map(str, values))} {noun}{'s' if values[-1] > 1 else ''}"


def update_readme(readme: Path, name: str, text: str) -> None:
    """Replace what lies between '<!-- begin NAME -->' and '<!-- end NAME -->' in README with `text`."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    content = readme.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        sys.exit(f"compare_optimizers: error: {readme} has no block '{begin}' ... '{end}' to replace")
    readme.write_text(pattern.sub(lambda _: f"{begin}\n{text}{end}", content, count=1))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import scipy  # noqa: F401  (the t quantiles and Welch's test of the summary)
    except ImportError:
        sys.exit("compare_optimizers: error: scipy is not installed; pip install -e '.[study]'")
    configs = resolve_configs(args.optimizers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    start, rows, cache = time.perf_counter(), [], {}
    try:
        for label, config in configs.items():
            for seed in range(args.seeds):
                run_start = time.perf_counter()
                row = train_and_test(config, label, seed, args, cache)
                rows.append(row)
                print(f"{label:>10} seed {seed}: test acc {row['test_acc']:.4f}  loss {row['test_loss']:.4f}  "
                      f"{time.perf_counter() - run_start:5.1f} s ({row['sec_per_epoch']:.2f} s/epoch)", flush=True)
    except DigitnetError as err:
        sys.exit(f"compare_optimizers: error: {err}")

    results = pd.DataFrame(rows, columns=COLUMNS)
    results.to_csv(out / "results.csv", index=False, float_format="%.6g")
    test_images = len(next(iter(cache.values()))[2])
    summary = summarize(results, configs, test_images)
    (out / "summary.md").write_text(summary)
    plot_curves(read_curves({(r["optimizer"], r["seed"]): r["log_dir"] for r in rows}), out / "curves.png")
    print(f"{len(rows)} runs in {time.perf_counter() - start:.0f} s; wrote {out}/results.csv, summary.md, curves.png "
          f"(tensorboard --logdir {out})")
    if args.report_dir:
        report = Path(args.report_dir)
        report.mkdir(parents=True, exist_ok=True)
        for name in ("results.csv", "summary.md", "curves.png"):
            shutil.copyfile(out / name, report / name)
        if args.readme:
            update_readme(Path(args.readme), f"{report.as_posix()}/summary.md", summary)
        print(f"copied them to {report}/" + (f" and updated {args.readme}" if args.readme else ""))


if __name__ == "__main__":
    main()
