"""The record of a finished tuning (docs/study.md): each optimizer's best trial as a config, tuning.md, its plots."""

from __future__ import annotations

import os
import shlex
import statistics
import warnings
from pathlib import Path

import optuna
import yaml
from jsonargparse import Namespace
from matplotlib.figure import Figure
from optuna.trial import TrialState

from digitnet.files import atomic_write, save_figure
from digitnet.study.spaces import FIXED, SEARCH_SPACES, TRAIN_SEED, SearchSpace, distribution_text, init_args

PLOTS = ("history.png", "sensitivity.png")


def write_record(args, studies: dict[str, optuna.Study], val_images: int) -> None:
    """By the worker that completes the last trial, or study_report.py; atomic_write: workers may finish at once."""
    out = Path(args.out)
    configs = Path(args.configs_dir) if args.configs_dir else out / "configs"  # the folder the configs' headers name
    written = []
    for name, study in studies.items():
        file = f"{name.lower()}.yaml"
        written.append(atomic_write(out / "configs" / file, tuned_config(name, study, args, val_images, configs)))
        keras = keras_config(name, args.epochs, configs, args.cli_args)
        written.append(atomic_write(out / "configs" / "keras" / file, keras))
    plot_history(studies, out / "history.png")
    plot_sensitivity(studies, out / "sensitivity.png")
    slices = [plot_slice(name, study, out / f"slice_{name.lower()}.png") for name, study in studies.items()]
    body = record(args, studies, val_images, slices)  # each study's trials read once, for both copies
    atomic_write(out / "tuning.md", heading(out, configs, summary_beside=False) + body)
    print(f"wrote {out}/configs/*.yaml, configs/keras/*.yaml, tuning.md, {', '.join(PLOTS)}, slice_*.png")
    if args.configs_dir:
        for path in written:
            atomic_write(Path(args.configs_dir) / path.relative_to(out / "configs"), path.read_bytes())
        print(f"copied the configs to {args.configs_dir}/")
    if args.report_dir:
        report = Path(args.report_dir)
        atomic_write(report / "tuning.md", heading(report, configs, summary_beside=True) + body)  # its own links
        for name in (*PLOTS, *(p.name for p in slices)):
            atomic_write(report / name, (out / name).read_bytes())
        print(f"copied tuning.md and the plots to {args.report_dir}/")


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))  # ordered by trial number (Optuna's)


def config(header: list[str], epochs: int, space: SearchSpace, optimizer_args: dict) -> str:
    settings = Namespace({"trainer.max_epochs": epochs, **FIXED})  # dotted keys nest: model.net.dropout
    settings["model.optimizer"] = {"class_path": space.class_path, "init_args": optimizer_args}
    return "".join(f"# {line}\n" for line in header) + yaml.safe_dump(settings.as_dict(), sort_keys=False)


def command(path: str, cli_args: list[str]) -> list[str]:
    """The config's command, with the settings every trial was given after it (a YAML config holds none of them)."""
    lines = [f"  python -m digitnet fit --config {shlex.join([path, *cli_args])}"]
    return lines + (["The trials' own settings come after it, as above: this config does not hold them, and where",
                     "they change the network or the training, what it says of those below is not what ran."]
                    if cli_args else [])  # fmt: skip


def tuned_config(name: str, study: optuna.Study, args, val_images: int, folder: Path) -> str:
    space, best, trials = SEARCH_SPACES[name], study.best_trial, len(completed(study))
    ranges = "; ".join(f"{param} {distribution_text(dist)}" for param, dist in space.params.items())
    return config([
        f"{name} for the report's network, tuned by scripts/tune_optimizers.py; regenerate, do not edit:",
        *command(f"{folder.as_posix()}/{name.lower()}.yaml", args.cli_args),
        f"Best of {trials} trials (the budget of every optimizer) of Optuna study digitnet-{name} "
        f"(TPE, seed {args.seed}):",
        f"trial {best.number}, validation accuracy {100 * best.value:.2f}% (final weights, {val_images:,} validation "
        "images; the test set was not used).",
        f"Search space: {ranges}.",
        "Values rounded to 4 significant digits. Model and training are the report's (784-512-512-10, dropout 0.2,",
        f"batch 128, {args.epochs} epochs), the lr decayed to zero along a half cosine (digitnet's default).",
    ], args.epochs, space, init_args(best.params, digits=4))  # fmt: skip


def keras_config(name: str, epochs: int, folder: Path, cli_args: list[str]) -> str:
    space = SEARCH_SPACES[name]
    return config([
        f"{name} with Keras's default settings: the report's one-shot baseline, written by scripts/tune_optimizers.py.",
        *command(f"{folder.as_posix()}/keras/{name.lower()}.yaml", cli_args),
        "Same model and training as the tuned configs (the lr decays along a half cosine in both), so the two rows",
        "of an optimizer differ in its hyperparameters only.",
    ], epochs, space, dict(space.keras_defaults))  # fmt: skip


def keras_default(space: SearchSpace, param: str) -> str:
    """Keras's default of a searched hyperparameter, as the search space names it ('1-beta1': '0.1')."""
    keras, key = dict(space.keras_defaults), param.removeprefix("1-")
    if "betas" in keras:
        keras["beta1"], keras["beta2"] = keras["betas"]
    value = keras.get(key, False if key == "nesterov" else "")  # SGD's nesterov: Keras's and torch's False
    if isinstance(value, bool | str):  # "": no default
        return str(value)
    return f"{1 - value:g}" if param.startswith("1-") else f"{value:g}"


def heading(where: Path, configs: Path, summary_beside: bool) -> str:
    """tuning.md's title and first paragraph, its links relative to `where`, the folder it is written in."""
    try:
        chosen = Path(os.path.relpath(configs, where)).as_posix()
    except ValueError:  # on another drive (Windows): no relative link
        chosen = configs.resolve().as_uri()
    rerun = "[summary.md](summary.md)" if summary_beside else "the summary.md of `scripts/compare_optimizers.py`"
    return f"""# The optimizer study

Written by `scripts/tune_optimizers.py` from its Optuna storage; rerunning its command rewrites it (a complete
study trains nothing more). The configs it chose are in [{configs.as_posix()}/]({chosen}), and
their rerun over 10 seeds is {rerun}.

"""


def record(args, studies: dict[str, optuna.Study], val_images: int, slices: list[Path]) -> str:
    """tuning.md after its heading; tables row by row, as summary.md's (digitnet.study.summary says why)."""
    spaces = "\n".join(f"| {name} ({SEARCH_SPACES[name].class_path}) | {param} | {distribution_text(dist)} | "
                       f"{keras_default(SEARCH_SPACES[name], param)} |"
                       for name in studies for param, dist in SEARCH_SPACES[name].params.items())  # fmt: skip
    best = []
    for name, study in studies.items():
        trials = completed(study)
        median = statistics.median_high(t.value for t in trials)
        settings = ", ".join(f"{k}={v}" for k, v in init_args(study.best_trial.params, digits=4).items())
        seconds = [t.user_attrs["seconds"] for t in trials if "seconds" in t.user_attrs]
        best.append(f"| {name} | {study.best_trial.number} of {len(trials)} | {100 * study.best_value:.2f} | "
                    f"{settings} | {100 * median:.2f} | {sum('diverged' in t.user_attrs for t in trials)} | "
                    f"{sum(seconds) / max(len(seconds), 1):.1f} |")
    links = ", ".join(f"[{p.stem.removeprefix('slice_')}]({p.name})" for p in slices)
    return f"""Every optimizer had the same budget: **{args.trials} trials**, proposed by Optuna's TPE sampler (seed {args.seed}; \
the first 10 trials at random, then TPE), no pruning. Every trial trains the report's network (784-512-512-10, \
ReLU, dropout 0.2) at batch 128 for {args.epochs} epochs, the learning rate decayed to zero along a half cosine, \
seed {TRAIN_SEED}, through the code path of `python -m digitnet fit`, and is scored by the validation accuracy of \
its final weights on the {val_images:,} validation images. The test images are never loaded while tuning.

## Search spaces

A name `1-x` means 1 - x is sampled (log-uniform: momentum, betas and rho close to 1 get as many trials as
those far from it). weight_decay is 0 throughout (the report's network has none); NAdam keeps torch's
momentum_decay of 0.004 (Keras's schedule_decay).

| optimizer | hyperparameter | distribution | Keras default |
| --- | --- | --- | --- |
{spaces}

## Best trial per optimizer

| optimizer | best trial | val accuracy (%) | settings (rounded, as in the config) | median trial (%) | \
diverged | s / trial |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(best)}

## The search

![Best validation accuracy so far against the number of trials](history.png)

![Validation error against the learning rate, every trial](sensitivity.png)

Optuna's slice plots, the score against each hyperparameter: {links}.
"""


# Not Optuna's plot_optimization_history, whose axis spans every trial, diverged ones at 0 too:
# tests/test_tune.py::test_the_history_plot_zooms_on_the_best_so_far
def plot_history(studies: dict[str, optuna.Study], path: Path) -> Figure:
    ax = Figure(figsize=(7, 4.5), layout="constrained").subplots()
    lows, highs = [], []
    for name, study in studies.items():
        values = [100 * t.value for t in completed(study)]
        best = [max(values[: i + 1]) for i in range(len(values))]
        ax.step(range(1, len(best) + 1), best, where="post", marker="o", markersize=3, label=name)
        lows.append(best[min(2, len(best) - 1)])
        highs.append(best[-1])
    ax.set_ylim(bottom=max(min(lows), max(highs) - 3) - 0.05, top=max(highs) + 0.1)
    ax.set(xlabel="trials", ylabel="best validation accuracy so far (%)",
           title="The search, optimizer by optimizer (the same budget each)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(ax.figure, path)
    return ax.figure


def plot_sensitivity(studies: dict[str, optuna.Study], path: Path) -> None:
    ax = Figure(figsize=(7, 4.5), layout="constrained").subplots()
    for name, study in studies.items():
        trials = completed(study)
        errors = [max(100 * (1 - t.value), 0.01) for t in trials]  # 100%: diverged; 0.01 keeps a log axis
        ax.scatter([t.params["lr"] for t in trials], errors, s=18, alpha=0.7, label=name)
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="validation error (%), log scale",
           title="Sensitivity to the learning rate (100%: diverged)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save_figure(ax.figure, path)


def plot_slice(name: str, study: optuna.Study, path: Path) -> Path:
    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")  # Optuna draws with pyplot: files only, no window
    with warnings.catch_warnings():  # a hyperparameter with one value so far: matplotlib widens its axis
        warnings.simplefilter("ignore", UserWarning)
        optuna.visualization.matplotlib.plot_slice(study)
    fig = plt.gcf()  # plot_slice's figure: one Axes, or a row of them
    fig.suptitle(f"{name}: validation accuracy against each hyperparameter")
    save_figure(fig, path)
    plt.close("all")
    return path
