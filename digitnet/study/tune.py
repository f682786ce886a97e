"""Tune each optimizer with the same Optuna budget, then write its best trial as a config.

How workers share a storage, split the budget and rerun dead workers' trials: docs/study.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
import zlib
from pathlib import Path

import optuna
from optuna.trial import TrialState

from digitnet.cli import build_cli
from digitnet.data import reuse_data
from digitnet.divergence import TrainingDiverged
from digitnet.errors import DigitnetError, first_line
from digitnet.faults import TrainingInterrupted
from digitnet.files import check_folder
from digitnet.study.heartbeat import Heartbeat, rerun_stale_trials
from digitnet.study.record import completed, write_record
from digitnet.study.runs import logged_run_args, quiet_lightning
from digitnet.study.spaces import FIXED, SEARCH_SPACES, TRAIN_SEED, init_args
from digitnet.study.storage import JOURNAL, open_storage, without_password

OVER_BUDGET = "over_budget"  # user attribute of a trial asked for after the budget was spent: not trained
LIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
REPORT_DESCRIPTION = ("Write the record of complete tuning studies again (configs, tuning.md, plots) from their "
                      "storage, without training: the same arguments as scripts/tune_optimizers.py.")  # fmt: skip


def parse_args(argv: list[str] | None, description: str = __doc__.split("\n\n")[0]) -> argparse.Namespace:
    epilog = "Other arguments go to every trial's CLI: e.g. --data.val_size=1000 --trainer.accelerator=cpu"
    parser = argparse.ArgumentParser(description=description, epilog=epilog)
    add = parser.add_argument
    add("--data_dir", default=None, help="folder with the four MNIST files (default: $DIGITNET_DATA_DIR, else ./data)")
    add("--out", default="study", help="output folder: the default storage, TensorBoard logs, configs and the record")
    add("--optimizers", default=",".join(SEARCH_SPACES), help=f"comma-separated, from {', '.join(SEARCH_SPACES)}")
    add("--trials", type=int, default=36, help="the budget: trials per optimizer, over all workers (default 36)")
    add("--epochs", type=int, default=5, help="training epochs per trial (the report's 5)")
    add("--storage", default=None,
        help="an Optuna storage shared by all workers: a JournalStorage file (*.log; processes on one machine) or a "
             "database URL (postgresql+psycopg://user:password@host/db for several machines, sqlite:///file.db); "
             f"default: OUT/{JOURNAL}")  # fmt: skip
    add("--seed", type=int, default=0, help="the sampler's seed (TPE; the same for every optimizer)")
    add("--heartbeat", type=int, default=20,
        help="seconds between a running trial's heartbeats; after 3 missed ones the trial is run again")
    add("--requeue_running", action="store_true",
        help="run every RUNNING trial again now, without waiting for its heartbeat to stop "
             "(only when no other worker is alive)")  # fmt: skip
    add("--configs_dir", default=None, help="also write the configs here (e.g. configs/optimizers)")
    add("--report_dir", default=None, help="also copy tuning.md and the plots here (e.g. docs/optimizers)")
    args, args.cli_args = parser.parse_known_args(argv)
    if any(not a.startswith("--") for a in args.cli_args[:1]):
        parser.error(f"unrecognized arguments: {' '.join(args.cli_args)}")
    if min(args.trials, args.epochs, args.heartbeat) < 1:
        parser.error("--trials, --epochs and --heartbeat must be at least 1")
    args.names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in args.names if n not in SEARCH_SPACES]
    if unknown or not args.names:
        parser.error(f"unknown optimizer {', '.join(unknown) or '(none)'}; use some of {', '.join(SEARCH_SPACES)} "
                     "(another torch.optim class needs its entry in digitnet.study.spaces.SEARCH_SPACES)")
    if args.storage is None:
        args.storage = str(Path(args.out) / JOURNAL)
    return args


# Not TPESampler(seed=...), which repeats its proposals in every worker and after every restart:
# tests/test_tune.py::test_the_sampler_proposes_by_trial_number_whichever_worker_asks
class SeededPerTrial(optuna.samplers.BaseSampler):
    """Optuna's TPE per parameter, seeded by the seed, trial number and parameter name, whichever worker asks."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        seed = zlib.crc32(f"{self.seed}/{trial.number}/{param_name}".encode())
        return optuna.samplers.TPESampler(seed=seed).sample_independent(study, trial, param_name, param_distribution)


# Not MaxTrialsCallback: it counts before the next ask (two workers finishing together both start one) and
# only inside study.optimize: tests/test_tune.py::test_workers_asking_for_the_last_place_at_once_run_one
def within_budget(study: optuna.Study, number: int, budget: int) -> bool:
    """Whether trial `number` holds one of the budget's places: fewer than `budget` live trials (complete,
    running or queued) precede it. Trial numbers come from the storage, so concurrent workers agree."""
    return sum(t.number < number for t in study.get_trials(deepcopy=False, states=LIVE)) < budget


def has_work(study: optuna.Study, budget: int) -> bool:
    trials = study.get_trials(deepcopy=False)
    return any(t.state == TrialState.WAITING for t in trials) or sum(t.state in LIVE for t in trials) < budget


def run_trial(args: argparse.Namespace, name: str, study: optuna.Study, cache: dict) -> bool:
    """Ask, train and tell one trial; False if the budget had no place. Stale trials fail first: ask() reruns them."""
    rerun_stale_trials(study, 3 * args.heartbeat)
    trial = study.ask()
    with Heartbeat(trial, args.heartbeat):  # from the moment the trial exists
        if not within_budget(study, trial.number, args.trials):
            trial.set_user_attr(OVER_BUDGET, True)
            study.tell(trial, state=TrialState.PRUNED)
            return False
        try:
            score = train(args, name, trial, cache)
            print_trial(args, name, study, trial, score)
        except BaseException:  # Ctrl-C or a crash: the trial failed, and a new one takes its place
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
    # skip_if_finished: another worker took this one for dead (its heartbeat late) and reruns it
    study.tell(trial, score, skip_if_finished=True)
    return True


def train(args: argparse.Namespace, name: str, trial: optuna.Trial, cache: dict) -> float:
    """One trial, trained as `python -m digitnet fit` trains; its score is the final weights' validation accuracy."""
    params = SEARCH_SPACES[name].suggest(trial)
    start = time.perf_counter()
    cli = build_cli(cli_args(args, name, f"trial_{trial.number}", init_args(params)), run=False)
    reuse_data(cli.datamodule, cache, stages=("fit",))  # never the test images
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        score = float(cli.trainer.callback_metrics["val/acc"])
    except TrainingDiverged as err:  # the loss turned NaN or infinite: the worst score, and the budget spent
        trial.set_user_attr("diverged", first_line(err))
        score = 0.0
    finally:  # trials need no checkpoints: delete them (enable_checkpointing=false clashes with the CLI's callbacks:
        # tests/test_tune.py::test_two_optimizers_two_trials_one_epoch_write_configs_and_record)
        if folder := cli.trainer.checkpoint_callback.dirpath:
            for path in Path(folder).glob("*.ckpt"):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a folder of the user's, not empty
                Path(folder).rmdir()
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
    return score


def print_trial(args: argparse.Namespace, name: str, study: optuna.Study, trial: optuna.Trial, score: float) -> None:
    done = completed(study)
    best = max(done, key=lambda t: t.value, default=None)
    best_text = f"best {100 * best.value:.2f}% (trial {best.number})" if best and best.value >= score else "new best"
    values = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    note = "  DIVERGED" if "diverged" in trial.user_attrs else ""
    print(f"{name:>9} trial {trial.number:3d} ({len(done) + 1}/{args.trials}): val acc {100 * score:6.2f}%{note}  "
          f"{values}  | {best_text}  {trial.user_attrs['seconds']:.1f} s", flush=True)


def cli_args(args: argparse.Namespace, name: str, version: str, optimizer_args: dict) -> list[str]:
    return [
        f"--model.optimizer={SEARCH_SPACES[name].class_path}",
        *(f"--model.optimizer.{k}={v}" for k, v in optimizer_args.items()),  # the CLI reads True as true
        *(f"--{k}={v}" for k, v in FIXED.items()),
        f"--trainer.max_epochs={args.epochs}",
        f"--seed_everything={TRAIN_SEED}",
        *logged_run_args(Path(args.out) / "logs", name, version),
        *([f"--data.data_dir={args.data_dir}"] if args.data_dir else []),
        *args.cli_args,
    ]


def load_studies(args: argparse.Namespace, create: bool = True) -> dict[str, optuna.Study]:
    """A study records the settings it was started with: continuing it with others would mix two experiments."""
    if not create and "://" not in args.storage and not Path(args.storage).is_file():
        raise DigitnetError(f"no studies in {args.storage}: scripts/tune_optimizers.py with these arguments runs them")
    storage = open_storage(args.storage)
    settings = {"epochs": args.epochs, "seed": args.seed, "extra_args": " ".join(args.cli_args)}
    studies = {}
    for name in args.names:
        study_name, sampler = f"digitnet-{name}", SeededPerTrial(args.seed)
        if create:
            study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", sampler=sampler,
                                        load_if_exists=True)  # fmt: skip
        elif study_name in optuna.get_all_study_names(storage):
            study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
        else:
            raise DigitnetError(f"no study {study_name} in {without_password(args.storage)}: "
                                "scripts/tune_optimizers.py with these arguments runs it")  # fmt: skip
        for key, value in (settings | {"space": repr(SEARCH_SPACES[name])}).items():
            if key not in study.user_attrs and create:
                study.set_user_attr(key, value)
            elif study.user_attrs.get(key) != value:
                raise DigitnetError(f"study {study_name} in {without_password(args.storage)} was started with {key}="
                                    f"{study.user_attrs.get(key)!r}, not {value!r}; use another --out or --storage "
                                    "for a new study")  # fmt: skip
        if (done := len(completed(study))) > args.trials:  # its record would be of a budget it outgrew
            raise DigitnetError(f"study {study_name} in {without_password(args.storage)} has {done} completed trials, "
                                f"more than --trials {args.trials}: give --trials {done} or more")  # fmt: skip
        studies[name] = study
    return studies


def check_inputs(args: argparse.Namespace, cache: dict) -> int:
    """Stop on bad arguments or missing data before any study exists; returns the number of validation images."""
    for flag, folder in (("--out", args.out), ("--configs_dir", args.configs_dir), ("--report_dir", args.report_dir)):
        if folder:  # else a traceback when the record is written, after every trial
            check_folder(flag, folder, "the study's files")
    name = args.names[0]
    cli = build_cli(cli_args(args, name, "trial_check", SEARCH_SPACES[name].keras_defaults), run=False)
    reuse_data(cli.datamodule, cache, stages=("fit",))
    return len(cli.datamodule.val_set)


def run_until_complete(args: argparse.Namespace, studies: dict[str, optuna.Study], cache: dict) -> None:
    waiting = False
    while not all(len(completed(study)) >= args.trials for study in studies.values()):
        busy = False
        for name, study in studies.items():
            while has_work(study, args.trials) and run_trial(args, name, study, cache):
                busy = True
        if not (busy or waiting):
            running = sum(len(s.get_trials(deepcopy=False, states=(TrialState.RUNNING,))) for s in studies.values())
            print(f"{running} trials are running in other workers; waiting for them (one silent for "
                  f"{3 * args.heartbeat} s is run again here); the last one writes the configs and record", flush=True)
        waiting = not busy
        if waiting:
            time.sleep(min(args.heartbeat, 2))
            for study in studies.values():
                rerun_stale_trials(study, 3 * args.heartbeat)


def quiet() -> None:
    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="The number of training batches")  # tiny data sets


def main(argv: list[str] | None = None) -> None:
    """scripts/tune_optimizers.py: one worker of the study."""
    args = parse_args(argv)
    quiet()
    cache, start = {}, time.perf_counter()
    try:
        val_images = check_inputs(args, cache)
        studies = load_studies(args)
        for study in studies.values() if args.requeue_running else ():
            rerun_stale_trials(study, grace=None)  # every RUNNING trial, at once
        run_until_complete(args, studies, cache)
    except DigitnetError as err:
        sys.exit(f"tune_optimizers: error: {err}")
    except (KeyboardInterrupt, TrainingInterrupted):
        sys.exit("tune_optimizers: interrupted; rerun the same command to go on (a new trial takes the interrupted "
                 "one's place)")  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"{len(studies)} studies of {args.trials} trials complete ({seconds:.0f} s in this worker)")
    write_record(args, studies, val_images)


def report(argv: list[str] | None = None) -> None:
    """scripts/study_report.py: the record of complete studies, written again; nothing is trained."""
    args = parse_args(argv, REPORT_DESCRIPTION)
    quiet()
    try:
        val_images = check_inputs(args, {})  # the validation split's size, as the record states it
        studies = load_studies(args, create=False)
        done = {name: len(completed(study)) for name, study in studies.items()}  # one storage read per study
        short = [f"{name} ({n} of {args.trials})" for name, n in done.items() if n < args.trials]
        if short:
            raise DigitnetError(f"not complete: {', '.join(short)} trials; scripts/tune_optimizers.py with these "
                                "arguments completes them")  # fmt: skip
    except DigitnetError as err:
        sys.exit(f"study_report: error: {err}")
    write_record(args, studies, val_images)
