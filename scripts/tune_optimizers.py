"""Tune each optimizer with the same Optuna budget, then write its best trial as a config.

    python scripts/tune_optimizers.py --data_dir ../shared/mnist --out study

One study per optimizer (SEARCH_SPACES below: SGD with momentum/Nesterov, Adam, NAdam, Adadelta), each
with the same seeded sampler and the same number of trials (--trials). The model and training are fixed
at the report's (784-512-512-10, dropout 0.2, batch 128, 5 epochs) with digitnet's default learning-rate
decay; every trial trains through the package's CLI (build_cli), as `python -m digitnet fit` trains, and
is scored by the validation accuracy of its final weights. The test set is never loaded. No pruning:
every trial costs the same 5 epochs, so the budget is the same for every optimizer.

The studies live in one Optuna storage (--storage; by default the SQLite file OUT/study.db). Several
processes or machines running this same command against one storage split the budget: together they run
exactly --trials trials per optimizer. A killed worker's trial is run again, with the same
hyperparameters, by whichever worker notices that its heartbeat stopped (after 3 x --heartbeat seconds).
The worker that completes the last trial writes

    OUT/configs/<name>.yaml   each optimizer's best trial as a config for `python -m digitnet fit --config`
    OUT/tuning.md             the record: search spaces, budget, best trial per optimizer, the plots
    OUT/history.png           best validation accuracy so far against the trial number
    OUT/sensitivity.png       validation error against the learning rate, every trial
    OUT/slice_<name>.png      Optuna's slice plot: the score against each hyperparameter

--configs_dir and --report_dir copy them elsewhere (configs/optimizers, docs/optimizers). With the studies
complete, rerunning the command trains nothing and rewrites these files.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

try:
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState
except ImportError:
    sys.exit("tune_optimizers: error: Optuna is not installed; pip install -e '.[study]'")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # this checkout's digitnet, and the scripts beside this one
from compare_optimizers import quiet_lightning, reuse_data  # noqa: E402
from digitnet.cli import build_cli  # noqa: E402
from digitnet.divergence import TrainingDiverged  # noqa: E402
from digitnet.errors import DigitnetError  # noqa: E402

try:  # Ctrl-C during training: digitnet saves last.ckpt, then raises this
    from digitnet.faults import TrainingInterrupted  # noqa: E402
except ImportError:
    TrainingInterrupted = KeyboardInterrupt


def log_uniform(low: float, high: float) -> FloatDistribution:
    return FloatDistribution(low, high, log=True)


@dataclass(frozen=True)
class SearchSpace:
    """A torch.optim class and the distribution of each of its hyperparameters. A name '1-x' samples
    1 - x (log-uniform near 1: momentum, betas, rho); 'beta1' and 'beta2' become Adam's `betas`."""

    class_path: str
    params: dict[str, BaseDistribution]
    keras_defaults: dict[str, object] = field(default_factory=dict)  # the report's one-shot baseline


# The search spaces, after Choi et al. 2019 (every hyperparameter, eps included). weight_decay stays 0
# for all (the report's network has none; it is a model choice) and NAdam keeps torch's momentum_decay.
SEARCH_SPACES: dict[str, SearchSpace] = {
    "SGD": SearchSpace(
        "torch.optim.SGD",
        {"lr": log_uniform(1e-4, 1.0), "1-momentum": log_uniform(1e-3, 0.9), "nesterov": CategoricalDistribution([True, False])},
        {"lr": 0.01, "momentum": 0.0},
    ),
    "Adam": SearchSpace(
        "torch.optim.Adam",
        {"lr": log_uniform(1e-5, 1e-1), "1-beta1": log_uniform(1e-3, 1.0), "1-beta2": log_uniform(1e-4, 1e-1),
         "eps": log_uniform(1e-10, 1.0)},
        {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-7},
    ),
    "NAdam": SearchSpace(
        "torch.optim.NAdam",
        {"lr": log_uniform(1e-5, 1e-1), "1-beta1": log_uniform(1e-3, 1.0), "1-beta2": log_uniform(1e-4, 1e-1),
         "eps": log_uniform(1e-10, 1.0)},
        {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-7},
    ),
    "Adadelta": SearchSpace(
        "torch.optim.Adadelta",
        {"lr": log_uniform(1e-3, 10.0), "1-rho": log_uniform(1e-3, 0.5), "eps": log_uniform(1e-10, 1e-1)},
        {"lr": 0.001, "rho": 0.95, "eps": 1e-7},
    ),
}
# The report's model and training, the same for every trial (and written into every config).
FIXED = {"model.net.dropout": 0.2, "model.cosine_decay": True, "data.batch_size": 128}
TRAIN_SEED = 100  # every trial's seed_everything; the 10-seed comparison uses seeds 0-9
OVER_BUDGET = "over_budget"  # user attribute of a trial asked for after the budget was spent: not trained


def init_args(params: dict[str, object], digits: int | None = None) -> dict[str, object]:
    """A trial's params as the optimizer's arguments: {'1-beta1': 0.1, ...} -> {'betas': [0.9, ...], ...}.
    `digits` rounds each float to that many significant digits (of 1 - x for the '1-x' ones)."""
    args = {}
    for name, value in params.items():
        if isinstance(value, float) and digits:
            value = float(f"{value:.{digits}g}")
        if name.startswith("1-"):
            name, value = name[2:], float(f"{1 - value:.12g}")
        args[name] = value
    if "beta1" in args:
        args["betas"] = [args.pop("beta1"), args.pop("beta2")]
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other arguments go to every trial's CLI: e.g. --data.val_size=1000 --trainer.accelerator=cpu",
    )
    parser.add_argument("--data_dir", default=None, help="folder with the four MNIST files (default: $DIGITNET_DATA_DIR, else ./data)")
    parser.add_argument("--out", default="study", help="output folder: the default storage, TensorBoard logs, configs and the record")
    parser.add_argument("--optimizers", default=",".join(SEARCH_SPACES), help=f"comma-separated, from {', '.join(SEARCH_SPACES)}")
    parser.add_argument("--trials", type=int, default=36, help="the budget: trials per optimizer, over all workers (default 36: about 30 min on 2 CPU cores)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per trial (the report's 5)")
    parser.add_argument("--storage", default=None,
                        help="an Optuna storage shared by all workers: a database URL (postgresql://..., mysql://..., "
                             "sqlite:///file.db) or a JournalStorage file (*.log); default: sqlite:///OUT/study.db")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed (TPE; the same for every optimizer)")
    parser.add_argument("--heartbeat", type=int, default=20,
                        help="seconds between a running trial's heartbeats; after 3 missed ones the trial is run again")
    parser.add_argument("--requeue_running", action="store_true",
                        help="journal storages have no heartbeat: run every RUNNING trial again (only when no other worker is alive)")
    parser.add_argument("--configs_dir", default=None, help="also write the configs here (e.g. configs/optimizers)")
    parser.add_argument("--report_dir", default=None, help="also copy tuning.md and the plots here (e.g. docs/optimizers)")
    args, args.cli_args = parser.parse_known_args(argv)
    if any(not a.startswith("--") for a in args.cli_args[:1]):
        parser.error(f"unrecognized arguments: {' '.join(args.cli_args)}")
    if min(args.trials, args.epochs, args.heartbeat) < 1:
        parser.error("--trials, --epochs and --heartbeat must be at least 1")
    args.names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in args.names if n not in SEARCH_SPACES]
    if unknown or not args.names:
        parser.error(f"unknown optimizer {', '.join(unknown) or '(none)'}; use some of {', '.join(SEARCH_SPACES)} "
                     "(another torch.optim class needs its entry in SEARCH_SPACES)")
    args.storage = args.storage or f"sqlite:///{Path(args.out) / 'study.db'}"
    return args


def open_storage(url: str, heartbeat: int) -> optuna.storages.BaseStorage:
    """A JournalStorage for a *.log file, else an RDBStorage with heartbeats: a trial whose worker died
    is failed after 3 missed heartbeats and queued again with the same hyperparameters."""
    if url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    import sqlalchemy.exc

    for attempt in range(5):  # workers starting together on a new database race to create its tables
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
            )
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == 4:
                raise
            time.sleep(1 + attempt)


class SeededPerTrial(optuna.samplers.BaseSampler):
    """TPE (independent, 10 random startup trials) whose random numbers depend on the seed, the trial
    number and the parameter only: one worker always proposes the same trials, and several workers
    sharing a study propose different ones (one seeded sampler per worker would repeat each other's)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        seed = zlib.crc32(f"{self.seed}/{trial.number}/{param_name}".encode())
        return optuna.samplers.TPESampler(seed=seed).sample_independent(study, trial, param_name, param_distribution)


LIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)


def within_budget(study: optuna.Study, number: int, budget: int) -> bool:
    """Whether trial `number` holds one of the budget's places: fewer than `budget` live trials (complete,
    running or queued) precede it. Trial numbers come from the storage, so concurrent workers agree."""
    earlier = [t for t in study.get_trials(deepcopy=False, states=LIVE) if t.number < number]
    return len(earlier) < budget


class Tuner:
    """Runs one optimizer's trials in this process until the study's budget is spent."""

    def __init__(self, args: argparse.Namespace, name: str, study: optuna.Study, data_cache: dict) -> None:
        self.args, self.name, self.study, self.cache = args, name, study, data_cache
        self.space = SEARCH_SPACES[name]

    def has_work(self) -> bool:
        trials = self.study.get_trials(deepcopy=False)
        live = [t for t in trials if t.state in LIVE]
        return any(t.state == TrialState.WAITING for t in trials) or len(live) < self.args.trials

    def run(self) -> None:
        # Stop once the budget has no place left, rather than asking for a trial only to find that out.
        stop_when_spent = lambda study, trial: None if self.has_work() else study.stop()  # noqa: E731
        self.study.optimize(self.objective, callbacks=[stop_when_spent], gc_after_trial=False)

    def objective(self, trial: optuna.Trial) -> float:
        if not within_budget(self.study, trial.number, self.args.trials):
            trial.set_user_attr(OVER_BUDGET, True)
            self.study.stop()
            raise optuna.TrialPruned("the budget is spent")
        params = {name: suggest(trial, name, dist) for name, dist in self.space.params.items()}
        start = time.perf_counter()
        cli = build_cli(self.cli_args(trial, init_args(params)), run=False)
        reuse_data(cli.datamodule, self.cache, stages=("fit",))  # never the test images
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            score = float(cli.trainer.callback_metrics["val/acc"])  # the final weights, on the validation split
        except TrainingDiverged as err:  # the loss turned NaN or infinite: the worst score, and the budget spent
            trial.set_user_attr("diverged", str(err).split("\n")[0])
            score = 0.0
        finally:
            remove_checkpoints(cli.trainer)
        seconds = time.perf_counter() - start
        trial.set_user_attr("seconds", round(seconds, 1))
        self.report(trial, params, score, seconds)
        return score

    def cli_args(self, trial: optuna.Trial, optimizer_args: dict) -> list[str]:
        args = [
            f"--model.optimizer={self.space.class_path}",
            *(f"--model.optimizer.{k}={flag_value(v)}" for k, v in optimizer_args.items()),
            *(f"--{k}={flag_value(v)}" for k, v in FIXED.items()),
            f"--trainer.max_epochs={self.args.epochs}",
            f"--seed_everything={TRAIN_SEED}",
            "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
            f"--trainer.logger.save_dir={Path(self.args.out) / 'logs'}",
            f"--trainer.logger.name={self.name}",
            f"--trainer.logger.version=trial_{trial.number if trial else 'check'}",
            "--trainer.logger.default_hp_metric=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
        if self.args.data_dir:
            args.append(f"--data.data_dir={self.args.data_dir}")
        return args + self.args.cli_args

    def report(self, trial: optuna.Trial, params: dict, score: float, seconds: float) -> None:
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = max(done, key=lambda t: t.value, default=None)
        if best is None or score > best.value:
            best_text = "new best"
        else:
            best_text = f"best {100 * best.value:.2f}% (trial {best.number})"
        shown = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        note = "  DIVERGED" if "diverged" in trial.user_attrs else ""
        print(f"{self.name:>9} trial {trial.number:3d} ({len(done) + 1}/{self.args.trials}): val acc {100 * score:6.2f}%"
              f"{note}  {shown}  | {best_text}  {seconds:.1f} s", flush=True)


def flag_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution):
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


def remove_checkpoints(trainer) -> None:
    """Trials need no checkpoints (the config is the result): delete what the CLI's callbacks wrote."""
    for callback in trainer.checkpoint_callbacks:
        folder = getattr(callback, "dirpath", None)
        if folder and Path(folder).is_dir():
            for path in Path(folder).glob("*.ckpt"):
                path.unlink(missing_ok=True)
            if not any(Path(folder).iterdir()):
                Path(folder).rmdir()


def load_studies(args: argparse.Namespace, storage) -> dict[str, optuna.Study]:
    """One study per optimizer, created by the first worker, loaded by the others. A study records the
    settings it was started with; continuing it with others would mix two experiments."""
    settings = {"epochs": args.epochs, "seed": args.seed, "extra_args": " ".join(args.cli_args), "space": None}
    studies = {}
    for name in args.names:
        study = optuna.create_study(study_name=f"digitnet-{name}", storage=storage, direction="maximize",
                                    sampler=SeededPerTrial(args.seed), load_if_exists=True)
        settings["space"] = repr(SEARCH_SPACES[name])
        for key, value in settings.items():
            if key not in study.user_attrs:
                study.set_user_attr(key, value)
            elif study.user_attrs[key] != value:
                sys.exit(f"tune_optimizers: error: study digitnet-{name} in {args.storage} was started with {key}="
                         f"{study.user_attrs[key]!r}, not {value!r}; use another --out or --storage for a new study")
        studies[name] = study
    return studies


def requeue_running(study: optuna.Study) -> None:
    """Fail every RUNNING trial and queue its hyperparameters again (storages without a heartbeat)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[trial.number])


def is_complete(study: optuna.Study, budget: int) -> bool:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= budget


def check_inputs(args: argparse.Namespace, cache: dict) -> None:
    """Bad arguments or missing data stop here, before any study or trial exists; the data stays in `cache`."""
    name = args.names[0]
    cli_args = Tuner(args, name, None, cache).cli_args(None, init_args(SEARCH_SPACES[name].keras_defaults))
    reuse_data(build_cli(cli_args, run=False).datamodule, cache, stages=("fit",))


def run_until_complete(args: argparse.Namespace, tuners: list[Tuner], heartbeat: bool) -> bool:
    """Run trials while the budget has places; then wait for other workers' trials (rerunning any whose
    heartbeat stops). False when others are still running and, without heartbeats, cannot be watched."""
    while not all(is_complete(t.study, args.trials) for t in tuners):
        busy = [t for t in tuners if t.has_work()]
        for tuner in busy:
            tuner.run()
        if busy:
            continue
        if not heartbeat:
            running = sum(len(t.study.get_trials(states=(TrialState.RUNNING,))) for t in tuners)
            print(f"{running} trials are running in other workers; the last one writes the configs and record. "
                  "(A journal storage has no heartbeat: if their worker died, rerun with --requeue_running.)")
            return False
        time.sleep(min(args.heartbeat, 2))
        for tuner in tuners:
            optuna.storages.fail_stale_trials(tuner.study)  # stale: failed, and queued again by the callback
    return True


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="The number of training batches")  # tiny data sets
    cache, start = {}, time.perf_counter()
    try:
        check_inputs(args, cache)
        storage = open_storage(args.storage, args.heartbeat)
        studies = load_studies(args, storage)
        if args.requeue_running:
            for study in studies.values():
                requeue_running(study)
        tuners = [Tuner(args, name, study, cache) for name, study in studies.items()]
        if not run_until_complete(args, tuners, heartbeat=isinstance(storage, optuna.storages.RDBStorage)):
            return
    except DigitnetError as err:
        sys.exit(f"tune_optimizers: error: {err}")
    except (KeyboardInterrupt, TrainingInterrupted):
        sys.exit("tune_optimizers: interrupted; rerun the same command to go on (a new trial takes the interrupted one's place)")
    print(f"{len(tuners)} studies of {args.trials} trials complete ({time.perf_counter() - start:.0f} s in this worker)")
    from study_report import write_record

    write_record(args, studies, val_images=len(next(iter(cache.values()))[1]))


if __name__ == "__main__":
    main()
