"""The comparison's report: summary.md (mean test accuracies, the pairs that differ) and curves.png (validation)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import yaml
from matplotlib.figure import Figure  # no pyplot: no window, nothing to close

from digitnet.files import save_figure
from digitnet.study.stats import mean_ci, mean_std, pairwise_tests, seeds_needed


def read_curves(log_dirs: dict[tuple[str, int], str]) -> pd.DataFrame:
    """Each run's val/acc and val/loss from its event files; validation runs once per epoch: the k-th is epoch k's."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    rows = []
    for (label, seed), log_dir in log_dirs.items():
        events = EventAccumulator(log_dir, size_guidance={SCALARS: 0}).Reload()  # 0: keep every value
        acc, loss = ([e.value for e in sorted(events.Scalars(tag), key=lambda e: e.step)]
                     for tag in ("val/acc", "val/loss"))  # fmt: skip
        rows += [(label, seed, epoch, *values) for epoch, values in enumerate(zip(acc, loss, strict=True), 1)]
    return pd.DataFrame(rows, columns=["optimizer", "seed", "epoch", "val_acc", "val_loss"])


def plot_curves(curves: pd.DataFrame, path: Path) -> None:
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
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
    save_figure(fig, path)


def settings(config: Path) -> str:
    """The model and data settings a config file sets, as 'SGD lr=0.1, momentum=0.9; dropout=0.2; shift=2'."""
    content = yaml.safe_load(config.read_text()) or {}
    model, data = content.get("model") or {}, content.get("data") or {}
    optimizer = model.pop("optimizer", {}) or {}
    net = model.pop("net", None) or {}  # the network's settings, e.g. {"dropout": 0.2}, listed as the model's
    if isinstance(net, dict):
        model = {**(net.get("init_args") or {k: v for k, v in net.items() if k != "class_path"}), **model}
    if isinstance(optimizer, str):
        optimizer = {"class_path": optimizer}
    name = optimizer.get("class_path", "Adam").rsplit(".", 1)[-1]
    init_args = ", ".join(f"{k}={v}" for k, v in (optimizer.get("init_args") or {}).items())
    return "; ".join([f"{name} {init_args}".strip(), *(f"{k}={v}" for k, v in (model | data).items())])


def settings_parts(configs: dict[str, Path]) -> tuple[dict[str, str], str]:
    """Each config's settings, less those every config shares, which are returned apart."""
    parts = {label: settings(path).split("; ") for label, path in configs.items()}
    first = next(iter(parts.values()))
    common = [p for p in first[1:] if all(p in q[1:] for q in parts.values())] if len(parts) > 1 else []
    return {label: "; ".join(p for p in q if p not in common) for label, q in parts.items()}, "; ".join(common)


def summarize(results: pd.DataFrame, configs: dict[str, Path], test_images: int, alpha: float = 0.05) -> str:
    groups = dict(tuple(results.groupby("optimizer", sort=False)))
    seeds = sorted({len(g) for g in groups.values()})
    own, common = settings_parts({label: configs[label] for label in groups})
    lines = [
        f"Test accuracy of the final weights on the {test_images:,} MNIST test images, "
        f"{_count(seeds, 'seed')} per row, {_count(sorted(set(results['epochs'])), 'epoch')} each: the mean and its "
        "95% confidence interval (Student's t)." + (f" Every row: {common}." if common else ""),
        "",
        # Rows by hand: pandas' to_markdown pads every column (and needs tabulate, not a dependency), which
        # tests/test_compare_optimizers.py::test_summary_md_is_rewritten_from_its_results_csv would catch.
        "| optimizer | settings | test accuracy (%) | 95% interval | test loss | best val accuracy (%) | s / epoch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, runs in groups.items():
        mean, low, high = (100 * v for v in mean_ci(runs["test_acc"]))
        interval = "- (one seed)" if math.isnan(low) else f"{low:.2f}-{high:.2f}"
        lines.append(
            f"| {label} | {own[label]} | {mean:.2f} | {interval} | {mean_std(runs['test_loss'], 1, 4)} | "
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
    found = [f"- {t['a']} > {t['b']}: +{100 * t['diff']:.2f} points (p = {t['p']:.2g}, corrected {t['p_holm']:.2g}; "
             f"different from {needed[(t['a'], t['b'])]} seeds on)" for t in tests if t["different"]]
    lines += found or ["- none: no optimizer is shown to beat another here"]
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
