"""scripts/tune_optimizers.py on the tiny synthetic MNIST: the record it writes, the exact budget shared
by several workers, and a killed worker's trial run again."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

optuna = pytest.importorskip("optuna")
import sqlalchemy.exc  # noqa: E402  (optuna's RDB storage runs on SQLAlchemy)
from optuna.trial import TrialState  # noqa: E402

from digitnet.cli import main  # noqa: E402

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "tune_optimizers.py"
TINY = ["--data.val_size=20"]


@pytest.fixture(scope="module")
def tune():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("tune_optimizers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tune_optimizers"] = module  # study_report imports it by name
    spec.loader.exec_module(module)
    return module


def trials(storage: str, name: str) -> list:
    return optuna.load_study(study_name=f"digitnet-{name}", storage=storage).trials


@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam", "Adadelta"])
def test_each_search_space_covers_its_optimizer_s_hyperparameters(tune, name):
    space = tune.SEARCH_SPACES[name]
    lr = space.params["lr"]
    assert lr.log and lr.high / lr.low >= 1e3  # log-uniform over several decades
    middle = {k: d.choices[0] if hasattr(d, "choices") else (d.low * d.high) ** 0.5 for k, d in space.params.items()}
    optimizer_class = getattr(torch.optim, space.class_path.rsplit(".", 1)[-1])
    optimizer = optimizer_class([torch.nn.Parameter(torch.zeros(1))], **tune.init_args(middle))
    tuned = set(tune.init_args(middle)) | set(space.keras_defaults)
    untuned = {"weight_decay", "momentum_decay", "dampening", "foreach", "maximize", "capturable", "differentiable",
               "fused", "amsgrad", "decoupled_weight_decay"}
    assert set(optimizer.defaults) - untuned <= tuned, "a hyperparameter is neither searched nor documented as fixed"


def test_two_optimizers_two_trials_one_epoch_write_configs_and_record(tune, mnist_dir, tmp_path, capsys):
    out, configs, docs = tmp_path / "study", tmp_path / "configs", tmp_path / "docs"
    tune.main([f"--data_dir={mnist_dir}", f"--out={out}", "--optimizers=SGD,Adam", "--trials=2", "--epochs=1",
               f"--configs_dir={configs}", f"--report_dir={docs}", *TINY])

    lines = capsys.readouterr().out.splitlines()
    assert sum(" trial " in line for line in lines) == 4  # one line per trial
    storage = f"sqlite:///{out / 'study.db'}"
    for name in ("SGD", "Adam"):
        done = [t for t in trials(storage, name) if t.state == TrialState.COMPLETE]
        assert [t.number for t in done] == [0, 1]
        config = yaml.safe_load((configs / f"{name.lower()}.yaml").read_text())
        assert config["model"]["net"]["dropout"] == 0.2 and config["trainer"]["max_epochs"] == 1
        assert config["model"]["optimizer"]["class_path"] == f"torch.optim.{name}"
        for path in (configs / f"{name.lower()}.yaml", configs / "keras" / f"{name.lower()}.yaml"):
            main(["fit", f"--config={path}", f"--data.data_dir={mnist_dir}", *TINY, "--trainer.fast_dev_run=true"])
    record = (docs / "tuning.md").read_text()
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


def worker(mnist_dir: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, str(SCRIPT), f"--data_dir={mnist_dir}", f"--out={out}", *TINY, *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trained(output: str) -> list[int]:
    return [int(line.split(" trial ")[1].split()[0]) for line in output.splitlines() if " trial " in line]


def test_two_workers_sharing_one_storage_run_exactly_the_budget(mnist_dir, tmp_path):
    out, budget = tmp_path / "study", 6
    workers = [worker(mnist_dir, out, "--optimizers=SGD", f"--trials={budget}", "--epochs=2") for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    done = [t for t in trials(f"sqlite:///{out / 'study.db'}", "SGD") if t.state == TrialState.COMPLETE]
    assert len(done) == budget
    first, second = (trained(o) for o in outputs)
    assert sorted(first + second) == sorted(t.number for t in done)  # each trial number trained once, by one worker
    assert first and second, outputs  # both took part
    # Anything beyond the budget that a worker asked for at the end was not trained.
    assert all(t.user_attrs.get("over_budget") for t in trials(f"sqlite:///{out / 'study.db'}", "SGD") if t not in done)


def test_a_killed_worker_s_trial_runs_again_with_its_hyperparameters(tune, mnist_dir, tmp_path, capsys):
    out, storage = tmp_path / "study", f"sqlite:///{tmp_path / 'study' / 'study.db'}"
    args = ["--optimizers=Adam", "--trials=3", "--epochs=10", "--heartbeat=1"]
    first = worker(mnist_dir, out, *args)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill -9 it in the middle of its second trial
        time.sleep(0.2)
        if (out / "study.db").exists():
            try:
                states = [t.state for t in trials(storage, "Adam")]
            except (KeyError, sqlalchemy.exc.OperationalError):  # the study or its tables do not exist yet
                continue
            if states[1:2] == [TrialState.RUNNING]:
                break
    else:
        first.kill()
        pytest.fail(f"the worker never started its second trial:\n{first.communicate()[0]}")
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


def test_a_study_refuses_other_settings(tune, mnist_dir, tmp_path):
    common = [f"--data_dir={mnist_dir}", f"--out={tmp_path / 'study'}", "--optimizers=SGD", "--trials=1", *TINY]
    tune.main([*common, "--epochs=1"])
    with pytest.raises(SystemExit, match="was started with epochs=1, not 2; use another --out or --storage"):
        tune.main([*common, "--epochs=2"])


def test_unknown_optimizer_lists_the_search_spaces(tune, capsys):
    with pytest.raises(SystemExit):
        tune.main(["--optimizers=RMSprop"])
    assert "use some of SGD, Adam, NAdam, Adadelta" in capsys.readouterr().err


def test_missing_data_is_a_one_line_error_before_any_study(tune, tmp_path):
    with pytest.raises(SystemExit, match="tune_optimizers: error: .*"):
        tune.main([f"--data_dir={tmp_path / 'nowhere'}", f"--out={tmp_path / 'study'}", "--data.download=false"])
    assert not (tmp_path / "study" / "study.db").exists()
