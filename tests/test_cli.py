import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

import digitnet
from digitnet import MLP, DigitClassifier
from digitnet.cli import main
from helpers import digitnet_env, run_digitnet, run_python


ROOT = Path(__file__).parents[1]


def test_the_tensorboard_command_fit_prints_points_at_its_run_s_logs(mnist_dir, tmp_path, capsys):
    # With --trainer.default_root_dir it named ./lightning_logs, where nothing was.
    main(["fit", f"--data.data_dir={mnist_dir}", "--data.val_size=20", "--trainer.max_epochs=1",
          "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path / 'my runs'}"])  # fmt: skip
    logdir = re.search(r"\(tensorboard --logdir (.+), then http", capsys.readouterr().out).group(1)
    assert shlex.split(logdir) == [str(tmp_path / "my runs" / "lightning_logs")]


def test_a_run_s_config_rerun_with_another_optimizer_or_root_goes_into_its_own_folder(mnist_dir, tmp_path):
    # config.yaml held the logger digitnet had named (lightning_logs/Adam): rerun with --model.optimizer=SGD or another
    # --trainer.default_root_dir, it wrote into the first run's Adam/ folder.
    main(["fit", f"--data.data_dir={mnist_dir}", "--data.val_size=20", "--trainer.max_epochs=1",
          "--trainer.enable_progress_bar=false"])  # fmt: skip
    config = tmp_path / "lightning_logs" / "Adam" / "version_0" / "config.yaml"
    assert yaml.safe_load(config.read_text())["trainer"]["logger"] is None
    main(["fit", f"--config={config}", "--model.optimizer=SGD", f"--trainer.default_root_dir={tmp_path / 'again'}"])
    assert (tmp_path / "again" / "lightning_logs" / "SGD" / "version_0" / "config.yaml").is_file()
    assert [p.name for p in (tmp_path / "lightning_logs" / "Adam").iterdir()] == ["version_0"]


def test_fit_fast_dev_run(mnist_dir):
    main(["fit", f"--data.data_dir={mnist_dir}", "--data.val_size=20", "--trainer.fast_dev_run=true"])


def test_fit_logs_per_optimizer_tests_best_and_reloads(mnist_dir, tmp_path, capsys):
    args = ["fit", f"--data.data_dir={mnist_dir}", "--data.val_size=20", "--data.batch_size=32",
            "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false",
            "--model.optimizer=SGD", "--model.optimizer.lr=0.05", "--model.optimizer.momentum=0.9"]
    main(args)
    out = capsys.readouterr().out
    assert "Test accuracy:" in out and "(tensorboard --logdir lightning_logs, then http://localhost:6006/" in out
    run = tmp_path / "lightning_logs" / "SGD" / "version_0"
    assert list(run.glob("events.out.tfevents.*"))
    last = run / "checkpoints" / "last.ckpt"
    best = list((run / "checkpoints").glob("best-*.ckpt"))
    assert last.exists() and len(best) == 1
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["optimizer"]["class_path"] == "torch.optim.SGD"

    # The checkpoint reloads with no other argument, with identical logits, and its optimizer config.
    model = DigitClassifier.load_from_checkpoint(last)
    state = torch.load(last, weights_only=True)["state_dict"]
    fresh = DigitClassifier()
    fresh.load_state_dict(state)
    model.eval(), fresh.eval()
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), fresh(x))
    assert type(model.make_optimizer(model.parameters())).__name__ == "SGD"

    # `test` from the checkpoint works without restating the model's settings.
    main(["test", f"--data.data_dir={mnist_dir}", f"--ckpt_path={last}", "--trainer.enable_progress_bar=false"])

    # Without --ckpt_path, validate and test read the latest run's best checkpoint, not the untrained network.
    capsys.readouterr()
    accuracy = {}
    for ckpt in ([f"--ckpt_path={best[0]}"], []):
        main(["test", f"--data.data_dir={mnist_dir}", *ckpt, "--trainer.enable_progress_bar=false"])
        out = capsys.readouterr().out
        accuracy[bool(ckpt)] = float(re.search(r"test/acc\D+([0-9.]+)", out).group(1))
    assert re.search(rf"Using \S*/{re.escape(best[0].name)} \(the best checkpoint of the latest run", out)
    assert accuracy[False] == accuracy[True]
    main(["validate", f"--data.data_dir={mnist_dir}", "--data.val_size=20", "--trainer.enable_progress_bar=false"])
    assert f"/{best[0].name} (the best checkpoint of the latest run" in capsys.readouterr().out
    for command, name in (("test", "last"), ("validate", "best")):  # Lightning's names for a fit in this process
        with pytest.raises(SystemExit) as exit:
            main([command, f"--data.data_dir={mnist_dir}", f"--ckpt_path={name}"])
        assert exit.value.code == 2 and f"--ckpt_path {name}: give the checkpoint file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.optimizer=Nadam"], "use one of ASGD, Adadelta"),
        (["--model.optimizer=SGD", "--model.optimizer.lr=-0.1"], "Invalid learning rate"),
        (["--model.optimizer=Adam", "--model.optimizer.lr=0"], "learning rate must be positive"),
        (["--model.optimizer.lr=0.01"], "name the optimizer before its arguments"),
        (["--data.batch_size=0"], "batch_size must be at least 1"),
        (["--data.val_size=120"], "val_size=120 leaves no training images"),
        (["--test_figures.mistakes=-1"], "--test_figures.mistakes must be 0 (none) or more"),
        (["--trainer.profiler=nonsense"], "bad --trainer settings: When passing string value for the `profiler`"),
        (["--seed_everything=-1"], "--seed_everything=-1: give a seed from 0 to 4294967295"),
        (["--seed_everything=4294967296"], "--seed_everything=4294967296: give a seed from 0 to 4294967295"),
        ([f"--trainer.default_root_dir={__file__}"], "a file, not a folder: give the folder to write the runs into"),
    ],
)
@pytest.mark.slow  # a subprocess
def test_bad_input_exits_nonzero_without_traceback(mnist_dir, tmp_path, args, message):
    result = run_digitnet("fit", f"--data.data_dir={mnist_dir}", "--data.val_size=20", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "lightning_logs").exists()  # nothing half-written


@pytest.mark.slow  # a subprocess
def test_a_file_as_the_root_folder_of_test_is_one_line_before_the_checkpoint_is_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    result = run_digitnet("test", "--trainer.default_root_dir=notes.txt", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "--trainer.default_root_dir notes.txt: a file, not a folder: give the folder to write the runs into")


@pytest.mark.slow  # a subprocess
def test_missing_data_exits_with_a_paragraph(tmp_path):
    result = run_digitnet("fit", f"--data.data_dir={tmp_path / 'nowhere'}", "--data.mirrors=[http://127.0.0.1:9/]")
    assert result.returncode == 2
    assert "MNIST was not found in" in result.stderr and "DIGITNET_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "lightning_logs").exists()


def test_importing_digitnet_loads_nothing_heavy_and_every_public_name_resolves():
    script = "import digitnet, sys; heavy = 'torch' in sys.modules; [getattr(digitnet, n) for n in digitnet.__all__]; "
    assert run_python(script + "sys.exit(heavy or not set(digitnet.__all__) <= set(dir(digitnet)))").returncode == 0


@pytest.mark.parametrize("program", ["python -m digitnet", "digitnet"])
@pytest.mark.slow  # a subprocess
def test_ctrl_c_while_torch_and_lightning_load_is_one_line_and_status_130(program, tmp_path):
    script = Path(sys.executable).with_name("digitnet")  # the console script pip installs beside python
    if program == "digitnet" and not script.exists():
        pytest.skip("the digitnet command is not installed beside this python")
    command = [*([sys.executable, "-m", "digitnet"] if program != "digitnet" else [str(script)]), "fit",
               f"--data.data_dir={tmp_path}", "--data.download=false"]  # fmt: skip
    # Python reports each module as its import ends: Ctrl-C as soon as a module of torch has loaded, torch not yet.
    env = {**digitnet_env(), "PYTHONPROFILEIMPORTTIME": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if line.rpartition("|")[2].strip().startswith("torch."):
                process.send_signal(signal.SIGINT)
                break
        lines += process.stderr.readlines()
        process.wait(timeout=60)
    finally:
        process.kill()
    said = [line.strip() for line in lines if not line.startswith("import time:")]
    assert process.returncode == 130, said
    assert said == ["digitnet: interrupted"], f"{said} (an old digitnet command: pip install -e . again)"
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize("name", ["Adadelta", "SGD", "RMSprop"])
def test_an_optimizer_named_on_the_command_line_gets_its_own_defaults(name, mnist_dir):
    from digitnet.cli import build_cli

    model = build_cli([f"--model.optimizer={name}", f"--data.data_dir={mnist_dir}"], run=False).model
    expected = getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(1))]).defaults
    built = model.make_optimizer(model.parameters()).defaults
    assert {k: built[k] for k in ("lr", "eps", "weight_decay") if k in expected} == {
        k: expected[k] for k in ("lr", "eps", "weight_decay") if k in expected
    }



def test_the_default_progress_bar_is_redrawn_every_20_steps_and_a_chosen_one_is_kept(mnist_dir, tmp_path):
    from lightning.pytorch.callbacks import TQDMProgressBar

    from digitnet.cli import build_cli

    common = [f"--data.data_dir={mnist_dir}", f"--trainer.default_root_dir={tmp_path}"]
    assert build_cli(common, run=False).trainer.progress_bar_callback.refresh_rate == 20
    chosen = ["--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar", "--trainer.callbacks.refresh_rate=1"]
    bar = build_cli([*common, *chosen], run=False).trainer.progress_bar_callback
    assert type(bar) is TQDMProgressBar and bar.refresh_rate == 1
    assert build_cli([*common, "--trainer.enable_progress_bar=false"], run=False).trainer.progress_bar_callback is None


def test_validate_test_and_predict_use_the_data_settings_the_checkpoint_was_trained_with(mnist_dir, tmp_path, capsys):
    # Lightning's CLI restores the model's settings from a checkpoint, not the data's: a network trained on plain
    # pixels / 255 was tested on standardized ones, on another validation split.
    from digitnet import MNISTDataModule

    trained = ["--data.normalize=false", "--data.seed=3", "--data.val_size=20"]
    quiet = "--trainer.enable_progress_bar=false"
    main(["fit", f"--data.data_dir={mnist_dir}", *trained, "--trainer.max_epochs=1", quiet])
    [last] = (tmp_path / "lightning_logs").glob("*/version_0/checkpoints/last.ckpt")
    model = DigitClassifier.load_from_checkpoint(last).eval()
    data = MNISTDataModule(str(mnist_dir), normalize=False, seed=3, val_size=20)
    data.setup()
    with torch.no_grad():
        expected = {split: float(F.cross_entropy(model(dataset.tensors[0]), dataset.tensors[1]))
                    for split, dataset in (("val", data.val_set), ("test", data.test_set))}  # fmt: skip
        probabilities = model(data.test_set.tensors[0]).softmax(dim=1).max(dim=1).values
    capsys.readouterr()
    for command, split in (("validate", "val"), ("test", "test")):
        main([command, f"--data.data_dir={mnist_dir}", "--data.val_size=20", f"--ckpt_path={last}", quiet])
        loss = float(re.search(rf"{split}/loss\D+([0-9.]+)", capsys.readouterr().out).group(1))
        assert loss == pytest.approx(expected[split], rel=1e-4), command
    main(["predict", f"--data.data_dir={mnist_dir}", "--data.val_size=20", f"--ckpt_path={last}",
          f"--output={tmp_path / 'p.csv'}", quiet])  # fmt: skip
    written = pd.read_csv(tmp_path / "p.csv")["probability"].to_numpy()
    assert written == pytest.approx(probabilities.numpy(), abs=1e-4)


def run_quietly(*args: str) -> subprocess.CompletedProcess:
    result = run_digitnet(*args)
    assert "Traceback" not in result.stderr + result.stdout
    return result


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model.optimizr=SGD"], "unknown option --model.optimizr (did you mean --model.optimizer?)"),
        (["--model.optimizer=Nadam"], "unknown optimizer 'Nadam' (did you mean NAdam?)"),
        (["--data.batch_size=abc"], "--data.batch_size: expected an integer, got 'abc'"),
        (["--trainer.max_epochs=abc"], "--trainer.max_epochs: expected an integer, got 'abc'"),
        (["--trainer.precision=abc"], "--trainer.precision: expected one of 64, 32, 16, "),
        (["--model.optimizer=Adam", "--model.optimizer.lr=abc"], "--model.optimizer.lr: expected a number, got 'abc'"),
        (["--model.optimizer=SGD", "--model.optimizer.nesterov=maybe"],
         "--model.optimizer.nesterov: expected true or false, got 'maybe'"),
        ([f"--config={ROOT / 'configs' / 'convnet.yaml'}", "--model.optimizer.lr=abc"],
         "--model.optimizer.lr: expected a number"),
        (["--model.optimizer=torch.optim.SGD", "--model.optimizer.momentum=x"],
         "--model.optimizer.momentum: expected a number, got 'x'"),
        (["--model.optimizer=Adam", "--model.optimizer.momentum=0.9"],
         "--model.optimizer.momentum: Adam has no option momentum; its options are lr, betas, eps, weight_decay"),
        (["--model.optimizer=Adam", "--model.optimizer.lrr=0.1"], "Adam has no option lrr (did you mean lr?)"),
        (["--model.lr_scheduler=StepLr"], "unknown learning-rate scheduler 'StepLr' (did you mean StepLR?); use"),
        (["--model.lr_scheduler=CosineAnnealingLR"], "CosineAnnealingLR needs --model.lr_scheduler.T_max"),
        (["--model.lr_scheduler=StepLR", "--model.lr_scheduler.step_size=abc"],
         "--model.lr_scheduler.step_size: expected an integer, got 'abc'"),
        (["--model.lr_scheduler.gamma=0.5"], "name the scheduler before its arguments"),
        (["--config=no/such.yaml"], "--config no/such.yaml: no such file"),
        (["--trainer.max_epohcs=3"], "did you mean --trainer.max_epochs?"),
        (["--model.net=ConvNett"], "unknown network 'ConvNett' (did you mean ConvNet?)"),
        (["--model.net=nosuch.Net"], "--model.net=nosuch.Net: cannot import it; give the import path of an nn.Module"),
        (["--model.net=ConvNet", "--model.net.widht=8"],
         "--model.net.widht: ConvNet has no option widht (did you mean width?); its options are width, dropout, "),
        (["--model.net.width=8"],
         "MLP has no option width; its options are hidden_sizes, dropout; name the network before it, e.g. --model."),
        (["--model.net=ConvNet", "--model.net.width=abc"], "--model.net.width: expected an integer, got 'abc'"),
        (["--model.number_net=null", "--model.net=ConvNet", "--model.net.width=x"], "--model.net.width: expected an "),
        (["--model.number_net=Null", "--trainer.max_epohcs=1"], "did you mean --trainer.max_epochs?"),
        (['--model.net={"class_path": "digitnet.nets.ConvNet"}', "--trainer.max_epohcs=1"], "did you mean --trainer."),
        (["--model.number_net.hidden=8"], "name the number net before its options, e.g. --model.number_net=NumberNet"),
        ([f"--config={ROOT / 'configs' / 'fast.yaml'}", "--model.net.pool_first=maybe"],
         "--model.net.pool_first: expected true or false, got 'maybe'"),
        (["--model.number_net=NumberNet", "--data.strings=0.5", "--model.number_net.hidden=x"],
         "--model.number_net.hidden: expected an integer, got 'x'"),
    ],
)
@pytest.mark.slow  # a subprocess
def test_a_bad_command_line_is_two_lines_with_the_fix_and_a_runnable_help_command(args, expected, mnist_dir):
    result = run_quietly("fit", f"--data.data_dir={mnist_dir}", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("python -m digitnet fit: error: ") and expected in lines[0]
    assert lines[1] == "See: python -m digitnet fit --help"
    assert "usage:" not in result.stderr and "Subtypes" not in result.stderr and "__main__" not in result.stderr


@pytest.mark.parametrize("args, whole", [(["fit", "--trainer.max_epoch=1"], "--trainer.max_epochs"),
                                         (["serve", "--por=8000"], "--port"), (["export", "--out=m.onnx"], "--output"),
                                         (["finetune", "--data.extra_di=mine"], "--data.extra_dir")])  # fmt: skip
def test_an_abbreviated_option_is_refused_not_taken_for_the_whole_name(args, whole, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(args)
    option = args[1].partition("=")[0]
    assert stopped.value.code == 2 and f"unknown option {option} (did you mean {whole}?)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "args, expected",
    [
        (["serve", "--port=abc"], "--port: expected an integer, got 'abc'"),
        (["serve", "--timeout", "fast"], "--timeout: expected a number, got 'fast'"),
        (["serve", "--accelerator=tpu"], "--accelerator: expected one of auto, cpu, cuda, mps, got 'tpu'"),
        (["export", "--check_images=1.5"], "--check_images: expected an integer, got '1.5'"),
        (["finetune", "--data.extra_share=x"], "--data.extra_share: expected a number, got 'x'"),
    ],
)
def test_a_bad_value_of_a_command_s_own_flag_says_what_was_expected(args, expected, capsys):
    # serve, export and finetune parse their own flags: the same two lines as fit's, not jsonargparse's type names.
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    command = f"python -m digitnet {args[0]}"
    assert capsys.readouterr().err.splitlines() == [f"{command}: error: {expected}", f"See: {command} --help"]


def test_an_unknown_accelerator_is_one_line_before_anything_is_written(mnist_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:  # Lightning raises a ValueError for it, MisconfigurationException for gpu
        main(["fit", f"--data.data_dir={mnist_dir}", "--trainer.accelerator=foo"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("python -m digitnet fit: error: bad --trainer settings: ")
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.slow  # a subprocess
def test_a_bad_network_setting_is_one_line_without_a_traceback(mnist_dir):
    # The net raises DigitnetError while jsonargparse builds it, which wraps it in a ValueError of its own.
    result = run_quietly("fit", f"--data.data_dir={mnist_dir}", "--model.net=ConvNet", "--model.net.width=0")
    assert result.returncode == 2
    assert result.stderr.strip() == "python -m digitnet fit: error: --model.net.width must be at least 1, got 0"
    assert not Path("lightning_logs").exists()


@pytest.mark.slow  # a subprocess
def test_unknown_command_and_export_s_old_data_dir_spelling(mnist_dir):
    result = run_quietly("fitt")
    assert result.returncode == 2 and "unknown command 'fitt' (did you mean fit?)" in result.stderr
    result = run_quietly("export", f"--data_dir={mnist_dir}")
    assert result.returncode == 2 and "unknown option --data_dir (did you mean --data.data_dir?)" in result.stderr


@pytest.mark.slow  # a subprocess
def test_help_lists_every_command_and_fit_help_starts_with_digitnet_s_options():
    result = run_quietly("--help")
    assert result.returncode == 0
    for command in ("fit", "validate", "test", "predict", "export", "serve"):
        assert f"\n  {command} " in result.stdout
    version = run_quietly("--version")
    assert (version.returncode, version.stdout) == (0, f"digitnet {digitnet.__version__}\n")
    fit = run_quietly("fit", "--help").stdout
    assert fit.startswith("usage: python -m digitnet fit [--config FILE]") and fit.index("\n\n") < 200  # one line
    order = ["\n  --model.optimizer ", "\n  --data.data_dir ", "\n  --checkpoint.dirpath ", "\n  --trainer.accelerator "]
    assert [fit.index(option) for option in order] == sorted(fit.index(option) for option in order)
    assert "jsonargparse#" not in fit and "do not save anything" not in fit and "Every logged metrics" not in fit
    # Without --ckpt_path these read the latest run's checkpoint, not what Lightning's Trainer methods would.
    predict = run_quietly("predict", "--help").stdout
    assert "default: the best (else the newest) checkpoint of the latest run" in " ".join(predict.split())
    assert '``"hpc"``' not in predict


@pytest.mark.slow  # a subprocess
def test_fit_is_quiet(mnist_dir):
    result = run_quietly("fit", f"--data.data_dir={mnist_dir}", "--data.val_size=20", "--trainer.fast_dev_run=true")
    assert result.returncode == 0, result.stderr
    for noise in ("LeafSpec", "0 Total Flops", "stepping batches", "litlogger", "does not have many workers",
                  "GPU available", "Seed set", "Warning", "warn"):  # fmt: skip
        assert noise not in result.stderr + result.stdout, noise
    assert re.search(r"\| MLP +\| [\d.]+ K +\| train \| [\d.]+ [KMG] ", result.stderr)  # the network's FLOPs, not 0


@pytest.mark.slow  # a subprocess
def test_predict_names_what_it_picked_and_warns_of_nothing(mnist_dir, tmp_path):
    import lightning as L

    from digitnet import MNISTDataModule

    # The README's own Python snippet: a plain Trainer, logging to lightning_logs/version_0, no best-*.ckpt.
    L.Trainer(max_epochs=1, enable_progress_bar=False).fit(
        DigitClassifier(net=MLP(hidden_sizes=(16,))), MNISTDataModule(data_dir=str(mnist_dir), val_size=20))
    result = run_quietly("predict", f"--data.data_dir={mnist_dir}", "--trainer.enable_progress_bar=false")
    assert result.returncode == 0, result.stderr
    assert "the newest checkpoint of the latest run, lightning_logs/version_0, a plain Trainer's" in result.stdout
    assert "MNIST test image 39  " in result.stdout and "Predicted 40 of 40 images" in result.stdout
    assert "best checkpoint" not in result.stdout and "dirpath has changed" not in result.stderr
    assert "callbacks used to create the checkpoint" not in result.stderr and "batch indices" not in result.stderr
