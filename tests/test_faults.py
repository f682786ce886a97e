"""A fit killed, interrupted or diverging: it resumes and finishes, or stops with a message, never a traceback."""

import json
import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch

from conftest import write_mnist
from digitnet import MLP, DigitClassifier, MNISTDataModule
from digitnet.cli import main
from digitnet.divergence import StopOnNonFiniteLoss, TrainingDiverged
from digitnet.faults import (AtomicCheckpointIO, NothingToResume, TrainingInterrupted, continue_last_run,
                             interrupted_at, last_checkpoints, resume_command)
from helpers import run_digitnet, run_python

STEPS_PER_EPOCH = 20  # 420 training images, 20 held out, batches of 20


@pytest.fixture
def fit_args(tmp_path: Path) -> list[str]:
    """3 epochs of 20 steps, last.ckpt every 8 steps, on a small model."""
    mnist = write_mnist(tmp_path / "mnist", n_train=420)
    return ["fit", f"--data.data_dir={mnist}", "--data.val_size=20", "--data.batch_size=20",
            "--model.net.hidden_sizes=[64]", "--trainer.max_epochs=3", "--trainer.enable_progress_bar=false", "--last_checkpoint.every_n_train_steps=8"]


def load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def probe(signal_at_step: int = 0, signal_name: str = "SIGKILL", record: Path | None = None) -> list[str]:
    args = ["--trainer.callbacks+=probes.Probe", f"--trainer.callbacks.signal_at_step={signal_at_step}",
            f"--trainer.callbacks.signal_name={signal_name}"]
    return args + ([f"--trainer.callbacks.record={record}"] if record else [])


def assert_resumes_and_finishes(args: list[str], run: Path, from_step: int, tmp_path: Path, capsys) -> None:
    """`args` (ending in --ckpt_path last) continue `run` from `from_step` to the end of its 3 epochs."""
    record = tmp_path / "resumed"
    record.mkdir()
    main(args + probe(record=record))
    report = json.loads((record / "rank0.json").read_text())
    assert report["start_step"] == from_step
    # The rest of the interrupted epoch, then whole epochs: the planned 3 epochs, no more.
    epoch = from_step // STEPS_PER_EPOCH
    assert len(report["seen"][str(epoch)]) == 20 * (STEPS_PER_EPOCH - from_step % STEPS_PER_EPOCH)
    assert [int(e) for e in report["seen"]] == list(range(epoch, 3))
    final = load(run / "checkpoints" / "last.ckpt")
    assert final["global_step"] == 3 * STEPS_PER_EPOCH and final["epoch"] == 2
    assert interrupted_at(final) is None  # a finished run's
    # The per-step cosine schedule carried on from the saved step and ended at zero.
    assert final["lr_schedulers"][0]["last_epoch"] == 3 * STEPS_PER_EPOCH
    assert final["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0, abs=1e-9)
    assert [p.name for p in run.parent.iterdir()] == ["version_0"]  # it went on in the same folder
    assert "Test accuracy:" in capsys.readouterr().out


@pytest.mark.slow  # a subprocess
def test_sigkill_mid_epoch_then_ckpt_path_last_finishes_the_planned_epochs(fit_args, tmp_path, capsys):
    killed = run_digitnet(*fit_args, *probe(signal_at_step=29))  # epoch 1, batch 9 of 20
    assert killed.returncode == -9, killed.stderr
    run = tmp_path / "lightning_logs" / "Adam" / "version_0"
    last = load(run / "checkpoints" / "last.ckpt")
    # Saves at steps 8, 16, 20 (epoch end), 24. The last before the kill, mid-epoch:
    assert last["global_step"] == 24 and last["epoch"] == 1

    assert_resumes_and_finishes(fit_args + ["--ckpt_path", "last"], run, 24, tmp_path, capsys)


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize("signal_name, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_saves_last_and_prints_the_resume_command(fit_args, tmp_path, capsys, signal_name, status):
    stopped = run_digitnet(*fit_args, *probe(signal_at_step=13, signal_name=signal_name))
    assert stopped.returncode == status, stopped.stderr
    assert "Traceback" not in stopped.stderr + stopped.stdout
    assert "weights_only" not in stopped.stderr + stopped.stdout  # Lightning's notice of its default, not the user's
    run = tmp_path / "lightning_logs" / "Adam" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    assert load(last)["global_step"] == 13  # saved at the step it stopped, not at the last periodic save (8)
    assert interrupted_at(load(last)) == 13  # marked, for commands to pass it over
    DigitClassifier.load_from_checkpoint(last)
    if signal_name == "SIGINT":
        assert "interrupted at step 13 (epoch 0); saved" in stopped.stderr
    # The command it prints resumes the run.
    command = stopped.stderr.split("Resume with:\n", 1)[1].strip()
    assert command.startswith("python -m digitnet fit ") and command.endswith(" --ckpt_path last")
    if signal_name == "SIGINT":
        assert_resumes_and_finishes(shlex.split(command)[3:], run, 13, tmp_path, capsys)


@pytest.mark.slow  # subprocesses
def test_ctrl_c_that_lightning_answers_itself_is_one_line_and_status_130(fit_args, tmp_path):
    # A second Ctrl-C in fit, or one in test: Lightning stops and exits with status 1, silently.
    twice = run_digitnet(*fit_args, *probe(signal_at_step=13, signal_name="SIGINT"), "--trainer.callbacks.signals=2")
    assert twice.returncode == 130, twice.stderr
    assert "Traceback" not in twice.stderr + twice.stdout
    command = twice.stderr.split("digitnet: interrupted\nResume with:\n", 1)[1].strip()
    assert command.startswith("python -m digitnet fit ") and command.endswith(" --ckpt_path last")
    last = tmp_path / "lightning_logs" / "Adam" / "version_0" / "checkpoints" / "last.ckpt"
    assert load(last)["global_step"] == 8  # the last periodic save: the second Ctrl-C does not wait for a save
    tested = run_digitnet("test", f"--ckpt_path={last}", fit_args[1], "--data.eval_batch_size=5",
                          "--trainer.enable_progress_bar=false", "--trainer.callbacks+=probes.Probe",
                          "--trainer.callbacks.signal_name=SIGINT", "--trainer.callbacks.signal_at_test_batch=1")
    assert tested.returncode == 130, tested.stderr
    assert tested.stderr.strip().endswith("digitnet: interrupted") and "Traceback" not in tested.stderr
    assert "Test accuracy" not in tested.stdout


def test_fit_from_a_missing_or_foreign_checkpoint_file_is_one_line_and_writes_no_run(fit_args, tmp_path, capsys):
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    junk = "{}: not a checkpoint (not a file that torch.save writes)"
    missing = "--ckpt_path {}: no such checkpoint"
    folder = "--ckpt_path {}: a folder, not a checkpoint: give a .ckpt file"
    for path, reason in ((tmp_path / "missing.ckpt", missing), (tmp_path / "junk.ckpt", junk), (tmp_path, folder)):
        with pytest.raises(SystemExit) as exit_:
            main(fit_args + ["--ckpt_path", str(path)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and reason.format(path) in err and "Traceback" not in err
    assert not (tmp_path / "lightning_logs").exists()
    # A checkpoint file that is one still resumes its run.
    main(fit_args + ["--trainer.max_epochs=1"])
    last = tmp_path / "lightning_logs" / "Adam" / "version_0" / "checkpoints" / "last.ckpt"
    main(fit_args + ["--trainer.max_epochs=2", "--ckpt_path", str(last)])
    assert load(tmp_path / "lightning_logs" / "Adam" / "version_1" / "checkpoints" / "last.ckpt")["global_step"] == 40


def test_a_file_as_the_checkpoint_folder_is_one_line_and_writes_no_run(fit_args, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(SystemExit) as exit_:
        main(fit_args + ["--checkpoint.dirpath", str(tmp_path / "notes.txt")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert f"--checkpoint.dirpath {tmp_path / 'notes.txt'}: a file, not a folder" in err
    assert not (tmp_path / "lightning_logs").exists()


def test_ckpt_path_last_without_a_previous_run_trains_from_scratch(fit_args, tmp_path, capsys, recwarn):
    main(fit_args + ["--trainer.max_epochs=1", "--ckpt_path", "last"])
    assert load(tmp_path / "lightning_logs" / "Adam" / "version_0" / "checkpoints" / "last.ckpt")["global_step"] == 20
    assert capsys.readouterr().out.startswith("No last.ckpt under lightning_logs/Adam (the runs of this optimizer and "
                                              "network): training from scratch\n")  # fmt: skip
    assert not [w for w in recwarn if "save_last" in str(w.message)]  # Lightning's hint, moot with digitnet's last.ckpt


@pytest.mark.parametrize("logger", [["--trainer.logger=false"],
                                    ["--trainer.logger=CSVLogger", "--trainer.logger.save_dir=logs",
                                     "--trainer.logger.version=run3"],
                                    ["--trainer.logger=TensorBoardLogger", "--trainer.logger.save_dir=logs",
                                     "--trainer.logger.version=3"]])  # fmt: skip
def test_ckpt_path_last_with_no_logger_or_a_named_version_says_what_it_found(fit_args, tmp_path, capsys, recwarn,
                                                                             logger):  # fmt: skip
    folder = {1: "checkpoints", 3: f"logs/lightning_logs/{'run3' if 'CSV' in logger[0] else 'version_3'}/checkpoints"}[
        len(logger)]
    main(fit_args + logger + ["--trainer.max_epochs=1", "--ckpt_path", "last"])
    assert capsys.readouterr().out.startswith(f"No last.ckpt in {folder}: training from scratch\n")
    assert not [w for w in recwarn if "save_last" in str(w.message)]  # Lightning's hint, moot with digitnet's last.ckpt
    main(fit_args + logger + ["--trainer.max_epochs=2", "--ckpt_path", "last"])  # then it resumes that run
    assert "No last.ckpt" not in capsys.readouterr().out
    assert load(tmp_path / folder / "last.ckpt")["global_step"] == 40


def test_ckpt_path_last_of_a_finished_run_says_nothing_was_trained(fit_args, tmp_path, capsys):
    main(fit_args + ["--trainer.max_epochs=1"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(fit_args + ["--trainer.max_epochs=1", "--ckpt_path", "last"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "nothing to train" in err and "give a larger --trainer.max_epochs" in err and "Traceback" not in err
    main(fit_args + ["--trainer.max_epochs=2", "--ckpt_path", "last"])  # a larger one trains on
    assert load(tmp_path / "lightning_logs" / "Adam" / "version_0" / "checkpoints" / "last.ckpt")["global_step"] == 40


@pytest.mark.parametrize("other, message", [
    (["--model.net.hidden_sizes=[32]"], ("holds a MLP(hidden_sizes=[64], dropout=0.2) whose weights do not fit "
                                         "this command's MLP(hidden_sizes=[32], dropout=0.2): resume it with")),
    (["--trainer.max_epochs=1"], "had reached epoch 2 (counted from 0), past --trainer.max_epochs=1; give a larger"),
])  # fmt: skip
def test_ckpt_path_last_of_another_network_or_past_max_epochs_is_one_line_before_anything_is_written(
        fit_args, tmp_path, capsys, other, message):  # fmt: skip
    # Both presets log to ConvNet-Adam: resuming one's run with the other was a size-mismatch traceback, and a smaller
    # --trainer.max_epochs Lightning's MisconfigurationException; each after the run's config.yaml was overwritten.
    main(fit_args)
    run = tmp_path / "lightning_logs" / "Adam" / "version_0"
    config, files = (run / "config.yaml").read_text(), sorted(p.name for p in run.rglob("*"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(fit_args + other + ["--ckpt_path", "last"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err
    assert (run / "config.yaml").read_text() == config and sorted(p.name for p in run.rglob("*")) == files


def test_ckpt_path_last_with_other_settings_of_the_same_weights_trains_on(fit_args, tmp_path):
    main(fit_args + ["--trainer.max_epochs=1"])
    main(fit_args + ["--trainer.max_epochs=2", "--model.net.dropout=0.1", "--ckpt_path", "last"])  # dropout: no weight
    assert load(tmp_path / "lightning_logs" / "Adam" / "version_0" / "checkpoints" / "last.ckpt")["global_step"] == 40


def test_ckpt_path_last_stopped_in_the_final_epoch_trains_its_rest(fit_args, tmp_path, capsys):
    # Resumed mid-epoch, Lightning calls no on_train_epoch_start: the run still trains, and is not "nothing to train".
    with pytest.raises(SystemExit) as exit_:
        main(fit_args + ["--trainer.max_epochs=1", *probe(signal_at_step=13, signal_name="SIGINT")])
    assert exit_.value.code == 130
    capsys.readouterr()
    main(fit_args + ["--trainer.max_epochs=1", "--ckpt_path", "last"])
    assert "Test accuracy:" in capsys.readouterr().out
    assert load(tmp_path / "lightning_logs" / "Adam" / "version_0" / "checkpoints" / "last.ckpt")["global_step"] == 20


@pytest.mark.parametrize("flag", ["--trainer.max_epochs=0", "--trainer.max_steps=0", "--trainer.limit_train_batches=0"])
def test_zero_epochs_or_steps_is_refused_before_a_run_folder_is_written(fit_args, tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_:
        main(fit_args + [flag])
    assert exit_.value.code == 2 and f"{flag} trains nothing" in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize("flags", [["--trainer.val_check_interval=21"],
                                   ["--trainer.limit_train_batches=10", "--trainer.val_check_interval=11"]])
def test_a_val_check_interval_over_an_epoch_is_refused_before_a_run_folder_is_written(fit_args, tmp_path, capsys, flags):
    # 400 training images in batches of 20: 20 batches an epoch (or the limit's 10). Lightning's own check comes
    # with a traceback, after config.yaml and an event file are written.
    with pytest.raises(SystemExit) as exit_:
        main(fit_args + flags)
    batches = 10 if len(flags) == 2 else 20
    assert exit_.value.code == 2
    assert f"{flags[-1]}: an epoch has {batches} training batches" in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize("flag, batches", [("--trainer.limit_val_batches=0.5", 1), ("--trainer.limit_train_batches=0.01", 20)])
def test_a_share_of_batches_that_leaves_none_is_refused_before_a_run_folder_is_written(fit_args, tmp_path, capsys,
                                                                                        flag, batches):  # fmt: skip
    # 20 validation images in one batch: half of it is none. Lightning's MisconfigurationException came with a
    # traceback, after the run folder was written.
    with pytest.raises(SystemExit) as exit_:
        main(fit_args + [flag])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} of {batches} " in err
    assert not (tmp_path / "lightning_logs").exists()
    least = re.search(r"give at least ([0-9.]+),", err).group(1)  # what it says to give is enough
    main(fit_args + [f"{flag.split('=')[0]}={least}", "--trainer.max_epochs=1"])
    assert "Test accuracy:" in capsys.readouterr().out


def test_a_val_check_interval_within_an_epoch_across_epochs_or_in_time_trains(fit_args, capsys):
    main(fit_args + ["--trainer.max_epochs=2", "--trainer.val_check_interval=20"])
    main(fit_args + ["--trainer.max_epochs=2", "--trainer.val_check_interval=30", "--trainer.check_val_every_n_epoch=null"])
    main(fit_args + ["--trainer.max_epochs=1", "--trainer.val_check_interval=00:00:00:30"])  # a time: no such attribute
    assert capsys.readouterr().out.count("Test accuracy:") == 3


def test_ckpt_path_last_continues_the_newest_run_that_has_a_last_checkpoint(tmp_path):
    from jsonargparse import Namespace

    runs = tmp_path / "lightning_logs" / "SGD"
    for version, age in (("version_0", 30), ("version_1", 10), ("version_2", 20)):
        (runs / version / "checkpoints").mkdir(parents=True)
        last = runs / version / "checkpoints" / "last.ckpt"
        last.write_bytes(b"")
        os.utime(last, (last.stat().st_mtime - age,) * 2)
    (runs / "version_3").mkdir()  # a run that died before its first checkpoint
    logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
              "init_args": {"save_dir": str(tmp_path / "lightning_logs"), "name": "SGD"}}
    assert continue_last_run(logger, ckpt_dirpath=None) == runs / "version_1"
    assert logger["init_args"]["version"] == 1
    init_args = Namespace(save_dir=str(tmp_path / "lightning_logs"), name="SGD", version=None)
    from_config_file = Namespace(class_path=logger["class_path"], init_args=init_args)
    assert continue_last_run(from_config_file, ckpt_dirpath=None) == runs / "version_1"
    assert from_config_file.init_args.version == 1
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(NothingToResume, match=f"No last.ckpt in {elsewhere}: training from scratch"):
        continue_last_run(logger, ckpt_dirpath=str(elsewhere))
    elsewhere.mkdir()
    (elsewhere / "last.ckpt").write_bytes(b"")
    assert continue_last_run(logger, ckpt_dirpath=str(elsewhere)) is None  # Lightning reads it there itself


def test_training_interrupted_tells_a_python_caller_where_it_stopped_and_what_it_saved():
    err = TrainingInterrupted(step=120, epoch=2, checkpoint="run/checkpoints/last.ckpt")
    assert (err.step, err.epoch, err.checkpoint) == (120, 2, "run/checkpoints/last.ckpt")
    assert str(err) == "interrupted at step 120 (epoch 2); saved run/checkpoints/last.ckpt"


def test_resume_command_replaces_any_ckpt_path():
    args = ["fit", "--model.optimizer=SGD", "--ckpt_path", "x.ckpt", "--data.data_dir", "my data"]
    expected = "python -m digitnet fit --model.optimizer=SGD --data.data_dir 'my data' --ckpt_path last"
    assert resume_command(args) == expected


KILL_WHILE_SAVING = """
import os, signal, sys, tempfile, torch
from digitnet.faults import AtomicCheckpointIO
path, when, tempfile.tempdir = sys.argv[1:]
old = open(path, "rb").read()
kill = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
class KillWhenPickled:
    def __reduce__(self):
        kill()
def kill_once_changed(frame, event, arg):  # before each call into C: the first moment the file is not the old one
    if event == "c_call" and (not os.path.exists(path) or open(path, "rb").read() != old):
        kill()
checkpoint = {"w": torch.full((100_000,), 2.0)}
if when == "pickling":
    checkpoint["x"] = KillWhenPickled()
else:
    sys.setprofile(kill_once_changed)
AtomicCheckpointIO().save_checkpoint(checkpoint, path)
"""


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize("when", ["pickling", "once_changed"])
def test_a_kill_while_writing_a_checkpoint_leaves_the_old_or_the_new_one(tmp_path, when):
    # Lightning's TorchCheckpointIO writes in $TMPDIR, then moves the file: a copy when that is another filesystem
    # (a tmpfs /tmp, a container volume), which a kill leaves truncated.
    if not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no other filesystem for $TMPDIR")
    tmpdir = tempfile.mkdtemp(dir="/dev/shm")
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(100_000)}, path)
    try:
        killed = run_python(KILL_WHILE_SAVING, str(path), when, tmpdir)
    finally:
        shutil.rmtree(tmpdir)
    assert killed.returncode == -9
    assert torch.load(path)["w"][0] in (1.0, 2.0)  # a whole checkpoint, old or new
    AtomicCheckpointIO().save_checkpoint({"w": torch.full((3,), 3.0)}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # a killed write's leftover removed


def test_a_checkpoint_path_that_is_a_link_is_written_where_it_leads_and_a_leftover_there_removed(tmp_path):
    # The leftovers were looked for beside the link, while `replacing` writes beside what it points at.
    (tmp_path / "kept").mkdir()
    (tmp_path / "checkpoints").mkdir()
    link = tmp_path / "checkpoints" / "last.ckpt"
    link.symlink_to(tmp_path / "kept" / "last.ckpt")
    (tmp_path / "kept" / ".last.123-abcd.part.ckpt").write_bytes(b"PK")  # a killed writer's
    AtomicCheckpointIO().save_checkpoint({"w": torch.full((3,), 3.0)}, link)
    assert link.is_symlink() and torch.load(link)["w"][0] == 3.0
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["last.ckpt"]


def test_diverging_run_stops_in_the_first_epoch_naming_the_step(fit_args, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(fit_args + ["--model.optimizer=SGD", "--model.optimizer.lr=1e4"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "training diverged: the training loss is nan at step " in err
    step = int(err.split(" at step ", 1)[1].split(" ", 1)[0])
    assert 1 <= step <= STEPS_PER_EPOCH, err
    assert "Try a lower learning rate (this run: --model.optimizer.lr=10000; SGD's default is 0.001)" in err
    assert not list(tmp_path.glob("lightning_logs/SGD/version_0/checkpoints/*.ckpt"))


class NaNFromStep(DigitClassifier):
    """Its loss is NaN from the 6th training step on (global_step 5 before it, 6 after it)."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.trainer.global_step >= 5 else loss


def fit_until_diverged(tmp_path: Path, callbacks: list[L.Callback]) -> tuple[L.Trainer, str]:
    trainer = L.Trainer(max_epochs=1, logger=False, callbacks=callbacks, enable_progress_bar=False,
                        default_root_dir=tmp_path, limit_val_batches=0)
    datamodule = MNISTDataModule(data_dir=str(write_mnist(tmp_path / "mnist", n_train=420)), batch_size=20, val_size=20)
    with pytest.raises(TrainingDiverged) as error:
        trainer.fit(NaNFromStep(net=MLP(hidden_sizes=(16,))), datamodule)
    return trainer, str(error.value)


def test_buffered_check_reads_the_device_every_n_steps_and_names_the_first_bad_step(tmp_path):
    # The GPU path, on the CPU: losses are read every 4 steps, so the NaN of step 6 is found at step 8.
    trainer, message = fit_until_diverged(tmp_path, [StopOnNonFiniteLoss(check_every_n_steps=4)])
    assert trainer.global_step == 8
    assert "the training loss is nan at step 6 (epoch 0, batch 6/20)" in message


def test_buffered_check_runs_before_any_checkpoint_is_written(tmp_path):
    last = last_checkpoints(str(tmp_path / "checkpoints"), every_n_train_steps=1)
    trainer, message = fit_until_diverged(tmp_path, [StopOnNonFiniteLoss(check_every_n_steps=4), *last])
    assert trainer.global_step == 6 and "at step 6" in message
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 5  # the last good step


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    class PoisonLastStep(L.Callback):  # finite losses, but the epoch ends with NaN weights
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx + 1 == trainer.num_training_batches:
                next(pl_module.parameters()).data.fill_(float("nan"))

    trainer = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                        callbacks=[StopOnNonFiniteLoss(), PoisonLastStep(), *last_checkpoints(None, 0)])
    datamodule = MNISTDataModule(data_dir=str(write_mnist(tmp_path / "mnist", n_train=420)), batch_size=20, val_size=20)
    with pytest.raises(TrainingDiverged, match="the weights are NaN or infinite at step 20"):
        trainer.fit(DigitClassifier(net=MLP(hidden_sizes=(16,))), datamodule)
    assert not list(tmp_path.glob("**/*.ckpt"))
