"""The tuning (digitnet.study.tune, scripts/tune_optimizers.py) on the tiny synthetic MNIST: the record it
writes, the exact budget shared by several workers, and a killed worker's trial run again, whenever it died."""

import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow  # the optimizer study: worker processes, a PostgreSQL server

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from digitnet.cli import main  # noqa: E402
from digitnet.study import record, spaces, tune  # noqa: E402
from digitnet.study.heartbeat import HEARTBEAT, WORKER  # noqa: E402
from digitnet.study.storage import open_storage  # noqa: E402
from helpers import unwritable_folder
from postgres import postgres_server, server_binaries, why_not  # noqa: E402

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "tune_optimizers.py"
TINY = ["--data.val_size=20"]
SAFETY = 900  # seconds: only a hung study takes this long, on however busy a machine; no test waits on it otherwise
# A worker that sleeps for an hour between creating a trial and writing its first heartbeat: the window in which
# a kill used to leave a trial that no worker ever reran, made as wide as a test needs.
LATE_HEARTBEAT = """import sys, time
from digitnet.study import heartbeat, tune
enter = heartbeat.Heartbeat.__enter__
heartbeat.Heartbeat.__enter__ = lambda self: (time.sleep(3600), enter(self))[1]
tune.main(sys.argv[1:])
"""


def finish(process: subprocess.Popen) -> str:
    """A worker's whole output, once it has ended (killed after SAFETY seconds: a hung study)."""
    try:
        return process.communicate(timeout=SAFETY)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the worker was still running after {SAFETY} s:\n{process.communicate()[0]}")


def trials(storage, name: str) -> list:
    """The trials of optimizer `name`'s study in `storage` (a --storage value, or a storage opened once)."""
    storage = open_storage(storage) if isinstance(storage, str) else storage
    return optuna.load_study(study_name=f"digitnet-{name}", storage=storage).trials


def wait_for(condition, process: subprocess.Popen, what: str):
    """Poll `condition()` until it returns something true, and return that. Fails if `process` exits first;
    the SAFETY timeout only ends a test that would otherwise hang."""
    start = time.monotonic()
    while True:
        try:
            found = condition()
        except KeyError:  # the study does not exist yet
            found = None
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"the worker exited before {what}:\n{process.communicate()[0]}")
        if time.monotonic() - start > SAFETY:
            process.kill()
            pytest.fail(f"no {what} within {SAFETY} s:\n{process.communicate()[0]}")
        time.sleep(0.1)


@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam", "Adadelta"])
def test_each_search_space_covers_its_optimizer_s_hyperparameters(name):
    space = spaces.SEARCH_SPACES[name]
    lr = space.params["lr"]
    assert lr.log and lr.high / lr.low >= 1e3  # log-uniform over several decades
    middle = {k: d.choices[0] if hasattr(d, "choices") else (d.low * d.high) ** 0.5 for k, d in space.params.items()}
    optimizer_class = getattr(torch.optim, space.class_path.rsplit(".", 1)[-1])
    optimizer = optimizer_class([torch.nn.Parameter(torch.zeros(1))], **spaces.init_args(middle))
    tuned = set(spaces.init_args(middle)) | set(space.keras_defaults)
    untuned = {"weight_decay", "momentum_decay", "dampening", "foreach", "maximize", "capturable", "differentiable",
               "fused", "amsgrad", "decoupled_weight_decay"}
    assert set(optimizer.defaults) - untuned <= tuned, "a hyperparameter is neither searched nor documented as fixed"


def test_the_sampler_proposes_by_trial_number_whichever_worker_asks():
    # TPESampler(seed=0) in every worker would propose its first trial again in each one, and after each restart.
    space, storage = spaces.SEARCH_SPACES["Adam"], optuna.storages.InMemoryStorage()

    def propose(sampler, study_name) -> dict:  # one trial asked for and told through `sampler`
        study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, load_if_exists=True)
        trial = study.ask()
        params = space.suggest(trial)
        study.tell(trial, 0.5)
        return params

    one_worker = [propose(sampler, "one") for sampler in [tune.SeededPerTrial(0)] * 3]
    a_worker_each = [propose(tune.SeededPerTrial(0), "many") for _ in range(3)]  # or a worker restarted each time
    assert a_worker_each == one_worker and one_worker[0] != one_worker[1]


def test_workers_asking_for_the_last_place_at_once_run_one():
    # Both found one place left and asked together (MaxTrialsCallback, which counts before asking, lets both
    # train); the trial numbers the storage hands out let the first one in.
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}))  # one of two places taken
    first, second = study.ask(), study.ask()
    assert tune.within_budget(study, first.number, 2) and not tune.within_budget(study, second.number, 2)
    study.tell(first, state=TrialState.FAIL)  # a failed trial holds no place: its rerun takes it
    assert tune.within_budget(study, second.number, 2)


def test_the_history_plot_zooms_on_the_best_so_far(tmp_path):
    # Optuna's plot_optimization_history scales its axis to every trial's value, a diverged one's 0 included.
    study = optuna.create_study(direction="maximize")
    for value in (0.0, 0.95, 0.97, 0.96):  # the first one diverged
        study.add_trial(optuna.trial.create_trial(value=value, params={}, distributions={}))
    low, high = record.plot_history({"SGD": study}, tmp_path / "history.png").axes[0].get_ylim()
    assert 90 < low < 97 < high < 98 and (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"


def test_two_optimizers_two_trials_one_epoch_write_configs_and_record(mnist_dir, tmp_path, capsys):
    out, configs, docs = tmp_path / "study", tmp_path / "configs", tmp_path / "docs"
    tune.main([f"--data_dir={mnist_dir}", f"--out={out}", "--optimizers=SGD,Adam", "--trials=2", "--epochs=1",
               f"--configs_dir={configs}", f"--report_dir={docs}", *TINY])

    lines = capsys.readouterr().out.splitlines()
    assert sum(" trial " in line for line in lines) == 4  # one line per trial
    storage = str(out / "journal.log")
    for name in ("SGD", "Adam"):
        done = [t for t in trials(storage, name) if t.state == TrialState.COMPLETE]
        assert [t.number for t in done] == [0, 1]
        config = yaml.safe_load((configs / f"{name.lower()}.yaml").read_text())
        assert config["model"]["net"]["dropout"] == 0.2 and config["trainer"]["max_epochs"] == 1
        assert config["model"]["optimizer"]["class_path"] == f"torch.optim.{name}"
        for path in (configs / f"{name.lower()}.yaml", configs / "keras" / f"{name.lower()}.yaml"):
            main(["fit", f"--config={path}", f"--data.data_dir={mnist_dir}", *TINY, "--trainer.fast_dev_run=true"])
    record = (docs / "tuning.md").read_text()
    # Its links and the configs' headers name where the configs are, from where each file is.
    assert f"are in [{configs.as_posix()}/](../configs)" in record and "[summary.md](summary.md)" in record
    assert "are in [" in (out / "tuning.md").read_text() and "(../configs)" in (out / "tuning.md").read_text()
    assert f"--config {configs.as_posix()}/sgd.yaml" in (configs / "sgd.yaml").read_text()
    # And the trials' own settings, which no config holds: a ConvNet's trials were written as the report's MLP.
    for path in (configs / "sgd.yaml", configs / "keras" / "sgd.yaml"):
        assert "sgd.yaml --data.val_size=20\n# The trials' own settings come after it, as above:" in path.read_text()
    assert "**2 trials**" in record and "| SGD (torch.optim.SGD) | 1-momentum | log-uniform [0.001, 0.9] |" in record
    assert "| Adam | " in record and "The test images are never loaded" in record
    for name in ("history.png", "sensitivity.png", "slice_sgd.png", "slice_adam.png"):
        assert (docs / name).read_bytes()[:4] == b"\x89PNG"
    assert not list(out.rglob("*.ckpt"))  # trials keep no checkpoints

    # The studies are complete: the same command trains nothing more and rewrites the record.
    (docs / "tuning.md").unlink()
    tune.main([f"--data_dir={mnist_dir}", f"--out={out}", "--optimizers=SGD,Adam", "--trials=2", "--epochs=1",
               f"--report_dir={docs}", *TINY])
    assert " trial " not in capsys.readouterr().out and (docs / "tuning.md").is_file()
    assert len(trials(storage, "SGD")) == 2
    assert f"are in [{(out / 'configs').as_posix()}/](../study/configs)" in (docs / "tuning.md").read_text()
    assert f"--config {(out / 'configs').as_posix()}/sgd.yaml" in (out / "configs" / "sgd.yaml").read_text()

    # scripts/study_report.py writes the same record from the storage alone, and refuses an unfinished study.
    (docs / "tuning.md").unlink()
    common = [f"--data_dir={mnist_dir}", f"--out={out}", "--optimizers=SGD,Adam", "--epochs=1", f"--configs_dir={configs}",
              *TINY]  # fmt: skip
    tune.report([*common, "--trials=2", f"--report_dir={docs}"])
    assert (docs / "tuning.md").read_text() == record and len(trials(storage, "SGD")) == 2
    with pytest.raises(SystemExit, match=r"study_report: error: not complete: SGD \(2 of 3\), Adam \(2 of 3\)"):
        tune.report([*common, "--trials=3"])
    # A budget under the trials it holds: the record said "Best of 1 trials" and named the best of 2.
    for run, program in ((tune.report, "study_report"), (tune.main, "tune_optimizers")):
        with pytest.raises(SystemExit, match=rf"^{program}: error: study digitnet-SGD in .* has 2 completed trials, "
                                             r"more than --trials 1: give --trials 2 or more$"):  # fmt: skip
            run([*common, "--trials=1"])
    assert (docs / "tuning.md").read_text() == record


def test_study_report_prints_its_help(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["study_report.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "scripts" / "study_report.py"), run_name="__main__")
    assert exit_.value.code == 0
    assert "usage: study_report.py" in capsys.readouterr().out


def worker(mnist_dir: Path, out: Path, *extra: str, code: str | None = None) -> subprocess.Popen:
    """scripts/tune_optimizers.py in a process of its own (or `code`, given the same arguments)."""
    program = ["-c", code] if code else [str(SCRIPT)]
    command = [sys.executable, *program, f"--data_dir={mnist_dir}", f"--out={out}", *TINY, *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trained(output: str) -> list[int]:
    return [int(line.split(" trial ")[1].split()[0]) for line in output.splitlines() if " trial " in line]


def test_two_workers_sharing_one_storage_run_exactly_the_budget(mnist_dir, tmp_path):
    out, budget = tmp_path / "study", 6
    workers = [worker(mnist_dir, out, "--optimizers=SGD", f"--trials={budget}", "--epochs=2") for _ in range(2)]
    outputs = [finish(w) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    done = [t for t in trials(str(out / "journal.log"), "SGD") if t.state == TrialState.COMPLETE]
    assert len(done) == budget
    first, second = (trained(o) for o in outputs)
    assert sorted(first + second) == sorted(t.number for t in done)  # each trial number trained once, by one worker
    assert first and second, outputs  # both took part
    # Anything beyond the budget that a worker asked for at the end was not trained, nor given params for TPE.
    assert all(t.user_attrs.get("over_budget") and not t.params
               for t in trials(str(out / "journal.log"), "SGD") if t not in done)


def test_a_killed_worker_s_trial_runs_again_with_its_hyperparameters(mnist_dir, tmp_path, capsys):
    out, storage = tmp_path / "study", str(tmp_path / "study" / "journal.log")
    args = ["--optimizers=Adam", "--trials=3", "--epochs=10", "--heartbeat=1"]
    first = worker(mnist_dir, out, *args)

    def second_trial_training() -> bool:  # kill -9 it in the middle of its second trial, its hyperparameters chosen
        second = trials(storage, "Adam")[1:2] if (out / "journal.log").exists() else []
        return [(t.state, len(t.params)) for t in second] == [(TrialState.RUNNING, 4)]

    wait_for(second_trial_training, first, "its second trial started training")
    first.send_signal(signal.SIGKILL)
    first.wait()

    tune.main([f"--data_dir={mnist_dir}", f"--out={out}", *args, *TINY])  # the same command again

    all_trials = trials(storage, "Adam")
    done = [t for t in all_trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3
    killed = all_trials[1]
    assert killed.state == TrialState.FAIL
    [retry] = [t for t in done if t.system_attrs.get("failed_trial") == 1]
    assert retry.params == killed.params
    assert (tmp_path / "study" / "tuning.md").is_file()


def test_a_worker_killed_before_its_trial_s_first_heartbeat_does_not_hang_the_study(mnist_dir, tmp_path):
    out, storage, budget = tmp_path / "study", str(tmp_path / "study" / "journal.log"), 2
    args = ["--optimizers=SGD", f"--trials={budget}", "--epochs=1", "--heartbeat=1"]
    first = worker(mnist_dir, out, *args, code=LATE_HEARTBEAT)

    def trial_without_heartbeat() -> list:  # trial 0 RUNNING, its worker asleep before the first heartbeat
        return (out / "journal.log").exists() and [t for t in trials(storage, "SGD") if t.state == TrialState.RUNNING]

    [created] = wait_for(trial_without_heartbeat, first, "its first trial was created")
    assert HEARTBEAT not in created.user_attrs and WORKER not in created.user_attrs
    first.kill()  # SIGKILL in the window
    first.wait()

    second = worker(mnist_dir, out, *args)  # without the fix it waited forever for trial 0
    output = finish(second)
    assert second.returncode == 0, output
    all_trials = trials(storage, "SGD")
    done = [t for t in all_trials if t.state == TrialState.COMPLETE]
    assert len(done) == budget and sorted(trained(output)) == [t.number for t in done]
    assert all_trials[created.number].state == TrialState.FAIL
    [retry] = [t for t in done if t.system_attrs.get("failed_trial") == created.number]
    assert retry.user_attrs[WORKER].endswith(f":{second.pid}")


@pytest.fixture
def postgres_url():
    if reason := why_not():
        pytest.skip(reason)
    with postgres_server(server_binaries()) as url:
        yield url


def test_workers_on_a_postgresql_server_run_the_exact_budget_and_rerun_a_killed_worker_s_trial(
    postgres_url, mnist_dir, tmp_path
):
    out, budget = tmp_path / "study", 4
    args = ["--optimizers=Adam", f"--trials={budget}", "--epochs=10", "--heartbeat=1", f"--storage={postgres_url}"]
    first, second = worker(mnist_dir, out, *args), worker(mnist_dir, out, *args)
    storage = None

    def first_mid_trial_and_second_at_work() -> list:
        nonlocal storage
        storage = storage or open_storage(postgres_url)  # once the workers have begun to make its tables
        by = {t.number: t.user_attrs.get(WORKER, "").rsplit(":", 1)[-1] for t in trials(storage, "Adam")}
        training = [t for t in trials(storage, "Adam") if t.state == TrialState.RUNNING
                    and by[t.number] == str(first.pid) and len(t.params) == 4]  # fmt: skip  (every param chosen)
        return training if str(second.pid) in by.values() else []

    [killed] = wait_for(first_mid_trial_and_second_at_work, first, "it trained while the other worker worked too")
    first.send_signal(signal.SIGKILL)  # mid-trial
    outputs = [finish(first)]
    restarted = worker(mnist_dir, out, *args)  # the same command again
    outputs += [finish(second), finish(restarted)]
    assert [second.returncode, restarted.returncode] == [0, 0], outputs

    all_trials = trials(storage, "Adam")
    done = [t for t in all_trials if t.state == TrialState.COMPLETE]
    assert len(done) == budget
    # Each trial number trained to the end once, by one worker; the killed one failed and ran again as another.
    assert sorted(n for output in outputs for n in trained(output)) == [t.number for t in done]
    assert all_trials[killed.number].state == TrialState.FAIL
    [retry] = [t for t in done if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == all_trials[killed.number].params
    assert all(t.user_attrs.get("over_budget") for t in all_trials if t not in done and t.number != killed.number)


def test_a_study_refuses_other_settings(mnist_dir, tmp_path):
    common = [f"--data_dir={mnist_dir}", f"--out={tmp_path / 'study'}", "--optimizers=SGD", "--trials=1", *TINY]
    tune.main([*common, "--epochs=1"])
    with pytest.raises(SystemExit, match="was started with epochs=1, not 2; use another --out or --storage"):
        tune.main([*common, "--epochs=2"])


def test_a_storage_in_a_folder_that_cannot_be_written_is_one_line(mnist_dir):
    folder = unwritable_folder()  # a traceback from Optuna's journal, or SQLAlchemy's "unable to open database"
    for storage in (f"{folder}/study/journal.log", f"sqlite:///{folder}/study.db"):
        with pytest.raises(SystemExit, match=rf"error: --storage {storage}: cannot write in {folder} \("):
            tune.main([f"--data_dir={mnist_dir}", f"--storage={storage}", "--optimizers=SGD", "--trials=1", *TINY])


@pytest.mark.parametrize("flag", ["--report_dir", "--configs_dir", "--out"])
def test_an_output_folder_that_is_a_file_is_refused_before_any_trial(mnist_dir, tmp_path, flag):
    # --report_dir or --configs_dir: a FileExistsError traceback when the record was written, after every trial.
    (tmp_path / "afile").write_text("a file")
    args = [f"--data_dir={mnist_dir}", f"--out={tmp_path / 'study'}", "--optimizers=SGD", "--trials=1", *TINY]
    with pytest.raises(SystemExit, match=rf"error: {flag} {tmp_path / 'afile'}: a file, not a folder"):
        tune.main([*args, f"{flag}={tmp_path / 'afile'}"])
    assert not (tmp_path / "study").exists()


def test_unknown_optimizer_lists_the_search_spaces(capsys):
    with pytest.raises(SystemExit):
        tune.main(["--optimizers=RMSprop"])
    assert "use some of SGD, Adam, NAdam, Adadelta" in capsys.readouterr().err


def test_missing_data_is_a_one_line_error_before_any_study(tmp_path):
    with pytest.raises(SystemExit, match="tune_optimizers: error: .*"):
        tune.main([f"--data_dir={tmp_path / 'nowhere'}", f"--out={tmp_path / 'study'}", "--data.download=false"])
    assert not (tmp_path / "study" / "journal.log").exists()


def test_without_the_study_extra_digitnet_imports_and_the_scripts_say_what_to_install(monkeypatch):
    code = "import sys; sys.modules['optuna'] = None; import digitnet, digitnet.cli; print('ok')"  # as if not installed
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=SAFETY)  # fmt: skip
    assert result.stdout == "ok\n", result.stderr

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if Optuna were not installed
    for name in [name for name in sys.modules if name.startswith("digitnet.study")]:
        monkeypatch.delitem(sys.modules, name)
    for script in ("tune_optimizers", "study_report", "compare_optimizers"):
        monkeypatch.setattr(sys, "argv", [f"{script}.py"])
        with pytest.raises(SystemExit, match=rf"^{script}: error: digitnet.study needs optuna, which is not "
                                             r"installed; pip install -e '\.\[study\]'$"):  # fmt: skip
            runpy.run_path(str(ROOT / "scripts" / f"{script}.py"), run_name="__main__")
