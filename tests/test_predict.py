"""predict on image files (CLI and Python API), the README's snippet, ONNX export, and the test figures."""

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import custom_scalar_charts, tiny_run, write_mnist
from helpers import digitnet_env, run_digitnet, unwritable_folder
from number_stand_in import with_number_stand_in
from photos import KINDS, drawn_digits, save_photo, write_bad_files
from PIL import Image

from digitnet import DigitRecognizer, mnist_pixels, preprocess
from digitnet.checkpoints import announce_default_checkpoint, default_checkpoint
from digitnet.cli import main
from digitnet.predict import COLUMNS

README = Path(__file__).parents[1] / "README.md"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, data folder): one short fit on the synthetic MNIST, shared by this module's tests."""
    return tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def trained_convnet(tmp_path_factory) -> tuple[Path, Path]:
    """The same as `trained` with a small ConvNet: the commands work on it without being told which net it is."""
    return tiny_run(tmp_path_factory.mktemp("run_convnet"), "--model.net=ConvNet", "--model.net.width=4")


def save_seventy_one(path: Path) -> None:
    """A drawn 7 and 1 side by side, dark on white, as a picture of the number 71."""
    seven, one = drawn_digits()["seven"], drawn_digits()["one"]
    Image.fromarray(255 - np.pad(np.concatenate([seven, np.zeros((28, 10), np.uint8), one], 1), 20)).save(path)


BOTH_NETS = pytest.mark.parametrize("run", ["trained", "trained_convnet"])


def photo_folder(folder: Path) -> list[Path]:
    """One photo of each kind (grey PNG, RGB PNG, RGBA PNG, JPEG)."""
    folder.mkdir(exist_ok=True)
    digits = list(drawn_digits().values())
    rng = np.random.default_rng(0)
    return [save_photo(mnist_pixels(digits[i]), folder / f"photo_{kind}", rng, kind) for i, kind in enumerate(KINDS)]


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    return {Path(row["file"]).name: row for row in rows}


@pytest.mark.slow  # a subprocess
def test_predict_reads_the_good_files_and_gives_each_bad_one_its_reason(trained, tmp_path):
    ckpt, _ = trained
    photos = photo_folder(tmp_path / "in")
    reasons = write_bad_files(tmp_path / "in")
    page = np.full((600, 800), 235, np.uint8)  # a page of writing: far more marks than a number holds
    for y in range(40, 560, 40):
        for x in range(30, 770, 24):
            page[y : y + 18, x : x + 6] = 30
    Image.fromarray(page).save(tmp_path / "in" / "page.png")
    reasons["page.png"] = "crop the picture to the number"
    result = run_digitnet("predict", f"--ckpt_path={ckpt}", f"--data.predict_path={tmp_path / 'in'}", "--output=out.csv")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    rows = read_csv(tmp_path / "out.csv")
    assert sorted(rows) == sorted([p.name for p in photos] + list(reasons))
    for photo in photos:
        row = rows[photo.name]
        assert row["error"] == "" and row["digit"] == row["top1"] and row["probability"] == row["top1_probability"]
        probabilities = [float(row[f"top{k}_probability"]) for k in (1, 2, 3)]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
        # The number: one digit or "?" per digit found, each with its probability.
        assert re.fullmatch(r"[0-9?]+", row["number"]) and len(row["number_probabilities"].split()) == len(row["number"])
        assert re.search(rf"{re.escape(photo.name)}\s+{re.escape(row['number'])}\s+\S", result.stdout)
    for name, reason in reasons.items():
        assert reason in rows[name]["error"] and rows[name]["digit"] == rows[name]["number"] == ""
        assert re.search(rf"{re.escape(name)}\s+error: {re.escape(rows[name]['error'])}", result.stdout)
    assert "Predicted 4 of 11 images; 7 could not be read" in result.stdout
    assert not (tmp_path / "lightning_logs").exists() and not (tmp_path / "config.yaml").exists()  # no run written


@pytest.mark.slow  # a subprocess
def test_predict_fails_only_when_no_image_is_readable(trained, tmp_path):
    ckpt, _ = trained
    write_bad_files(tmp_path / "bad")
    result = run_digitnet("predict", f"--ckpt_path={ckpt}", f"--data.predict_path={tmp_path / 'bad'}/*.png")
    assert result.returncode == 2
    assert "error: empty file" in result.stdout and "no image could be read" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data.predict_path=nowhere/*.png"], "nowhere/*.png: no files found"),
        (["--data.predict_path=missing.jpg"], "missing.jpg: no such file or folder"),
        (["--data.predict_path=.", "--ckpt_path=missing.ckpt"], "missing.ckpt: no such checkpoint"),
        (["--data.predict_path=.", "--ckpt_path=."], "--ckpt_path .: a folder, not a checkpoint: give a .ckpt file"),
        (["--data.predict_path=.", "--output=no/such/dir/out.csv"], "its folder does not exist"),
        (["--data.predict_path=.", "--output=."], "--output .: is a folder; name a file in it"),
        (["--data.predict_path=.", "--ckpt_path=best"], "--ckpt_path best: give the checkpoint file"),
        (["--data.predict_path=.", "--output=sub/"], "--output sub/: is a folder"),
    ],
)
def test_predict_bad_arguments_exit_2(trained, args, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["predict", f"--ckpt_path={trained[0]}", *args])
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_latest_run_gives_the_default_checkpoint_and_says_which(tmp_path):
    old = tmp_path / "lightning_logs/SGD/version_0/checkpoints"
    new = tmp_path / "lightning_logs/Adam/version_3/checkpoints"
    for folder, names in ((old, ["best-a.ckpt", "last.ckpt"]), (new, ["best-b.ckpt", "last.ckpt"])):
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_bytes(b"")
    past = time.time() - 100
    for f in old.iterdir():
        os.utime(f, (past, past))
    assert default_checkpoint(tmp_path / "lightning_logs") == (
        new / "best-b.ckpt", f"the best checkpoint of the latest run, {new.parent}")
    (new / "best-b.ckpt").unlink()
    assert default_checkpoint(tmp_path / "lightning_logs") == (
        new / "last.ckpt", f"the last checkpoint of the latest run, {new.parent}")


def test_a_run_stopped_with_only_its_last_ckpt_is_passed_over_and_named(tmp_path):
    # Ctrl-C in the first epoch of a new run: its last.ckpt is a few steps in, not the model to read with.
    trained = tmp_path / "lightning_logs/MLP-finetune/version_0/checkpoints"
    stopped = tmp_path / "lightning_logs/SGD/version_0/checkpoints"
    for folder in (trained, stopped):
        folder.mkdir(parents=True)
    (trained / "finetuned.ckpt").write_bytes(b"")
    past = time.time() - 100
    os.utime(trained / "finetuned.ckpt", (past, past))
    checkpoint = {"state_dict": {}, "pytorch-lightning_version": "2.6.6",
                  "callbacks": {"StopOnInterrupt": {"interrupted_at_step": 33}, "ModelCheckpoint": {"best_k": 1}}}
    torch.save(checkpoint, stopped / "last.ckpt")
    assert default_checkpoint(tmp_path / "lightning_logs") == (
        trained / "finetuned.ckpt", f"the fine-tuned checkpoint of {trained.parent}; the latest run, "
        f"{stopped.parent}, was stopped at step 33 with only its last.ckpt")  # fmt: skip
    (trained / "finetuned.ckpt").unlink()  # no other run: the stopped one, said to be
    assert default_checkpoint(tmp_path / "lightning_logs") == (
        stopped / "last.ckpt", f"the last checkpoint of the latest run, {stopped.parent}, saved when it was stopped "
        "at step 33")  # fmt: skip
    del checkpoint["callbacks"]["StopOnInterrupt"]  # a last.ckpt saved at an epoch's end, or every N steps
    torch.save(checkpoint, stopped / "last.ckpt")
    (trained / "finetuned.ckpt").write_bytes(b"")
    os.utime(trained / "finetuned.ckpt", (past, past))
    assert default_checkpoint(tmp_path / "lightning_logs")[0] == stopped / "last.ckpt"


def test_the_checkpoint_used_is_announced_once_not_by_every_ddp_process(tmp_path, capsys, monkeypatch):
    from lightning.pytorch.utilities import rank_zero_only

    (tmp_path / "lightning_logs/Adam/version_0/checkpoints").mkdir(parents=True)
    (tmp_path / "lightning_logs/Adam/version_0/checkpoints/last.ckpt").write_bytes(b"")
    for rank, said in ((0, True), (1, False)):
        monkeypatch.setattr(rank_zero_only, "rank", rank)
        assert announce_default_checkpoint(root=tmp_path / "lightning_logs").name == "last.ckpt"
        assert ("Using " in capsys.readouterr().out) == said


def test_predict_without_ckpt_path_says_which_it_uses(trained, tmp_path, capsys):
    ckpt, _ = trained
    photo_folder(tmp_path / "in")
    main(["predict", f"--trainer.default_root_dir={ckpt.parents[4]}", "--data.predict_path=in",
          "--trainer.enable_progress_bar=false"])  # fmt: skip
    out = capsys.readouterr().out
    assert f"Using {ckpt} (the best checkpoint of the latest run" in out and "Predicted 4 of 4 images" in out


def test_predict_into_a_file_or_a_pipe_writes_the_readings_without_a_progress_bar(trained, tmp_path, capsys):
    ckpt, _ = trained
    photo_folder(tmp_path / "in")
    main(["predict", f"--ckpt_path={ckpt}", f"--data.predict_path={tmp_path / 'in'}"])  # stdout: pytest's, no terminal
    out = capsys.readouterr().out
    assert "Predicted 4 of 4 images" in out and "Predicting DataLoader" not in out and "it/s" not in out
    # A bar the user names is kept.
    main(["predict", f"--ckpt_path={ckpt}", f"--data.predict_path={tmp_path / 'in'}",
          "--trainer.callbacks+=TQDMProgressBar"])  # fmt: skip
    assert "Predicting DataLoader" in capsys.readouterr().out


def test_a_file_name_in_bytes_that_are_no_utf_8_is_written_as_those_bytes_over_the_csv_whole(trained, tmp_path):
    # Such a name (Latin-1's é) stopped the CSV half-written, over the CSV an earlier run had written there.
    ckpt, _ = trained
    name = os.fsdecode(b"caf\xe9.png")  # as Python names the file: a lone surrogate for the byte
    (tmp_path / "in").mkdir()
    save_seventy_one(tmp_path / "in" / name)
    save_seventy_one(tmp_path / "in" / "71.png")
    (tmp_path / "out.csv").write_text("an earlier run's readings\n")
    main(["predict", f"--ckpt_path={ckpt}", f"--data.predict_path={tmp_path / 'in'}",
          f"--output={tmp_path / 'out.csv'}"])  # fmt: skip
    with open(tmp_path / "out.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        assert sorted(Path(row["file"]).name for row in csv.DictReader(f)) == ["71.png", name]
    assert b"/caf\xe9.png," in (tmp_path / "out.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out.csv"]  # no temporary file left beside it
    # A terminal whose encoding takes no such byte (strict UTF-8, as under en_US.UTF-8) is shown it escaped.
    command = [sys.executable, "-m", "digitnet", "predict", f"--ckpt_path={ckpt}",
               f"--data.predict_path={tmp_path / 'in'}"]  # fmt: skip
    shown = subprocess.run(command, capture_output=True, env={**digitnet_env(), "PYTHONIOENCODING": "utf-8:strict"},
                           timeout=300, check=False)  # fmt: skip
    assert shown.returncode == 0 and b"caf\\xe9.png  " in shown.stdout, shown.stderr.decode()[-2000:]


def test_predict_output_through_a_link_or_into_a_pipe_is_written_where_it_leads(trained, tmp_path):
    # Written whole beside it and renamed over it, a link became a file of its own, and so did a pipe (/dev/stdout,
    # >(gzip > x)): its reader got nothing.
    ckpt, _ = trained
    (tmp_path / "in").mkdir()
    save_seventy_one(tmp_path / "in" / "71.png")
    (tmp_path / "real").mkdir()
    (tmp_path / "link.csv").symlink_to(tmp_path / "real" / "out.csv")
    os.mkfifo(tmp_path / "pipe")
    reader = subprocess.Popen(["cat", str(tmp_path / "pipe")], stdout=subprocess.PIPE, text=True)
    try:
        for output in ("link.csv", "pipe"):
            main(["predict", f"--ckpt_path={ckpt}", f"--data.predict_path={tmp_path / 'in'}",
                  f"--output={tmp_path / output}"])  # fmt: skip
        texts = [(tmp_path / "real" / "out.csv").read_text(), reader.communicate(timeout=60)[0]]
    finally:
        reader.kill()
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "pipe").is_fifo()
    for text in texts:
        assert text.startswith("file,number,") and "71.png," in text


def test_an_output_that_cannot_be_written_is_one_line_before_the_work_or_after_it(trained, tmp_path, capsys):
    # A read-only folder, or a disk that fills (/dev/full): an OSError traceback after every picture was read.
    ckpt, _ = trained
    (tmp_path / "in").mkdir()
    save_seventy_one(tmp_path / "in" / "71.png")
    folder = unwritable_folder()
    (tmp_path / "link.csv").symlink_to(folder / "out.csv")  # written where it leads: refused too
    for output, message, readings in ((folder / "out.csv", f"cannot write in {folder} (", False),
                                      (tmp_path / "link.csv", f"cannot write in {folder} (", False),
                                      (Path("/dev/full"), "cannot write it (No space left on device)", True)):
        with pytest.raises(SystemExit) as exit_:
            main(["predict", f"--ckpt_path={ckpt}", f"--data.predict_path={tmp_path / 'in'}", f"--output={output}"])
        out, err = capsys.readouterr()
        assert exit_.value.code == 2 and err.startswith(f"python -m digitnet predict: error: --output {output}: {message}")
        assert len(err.strip().splitlines()) == 1
        assert ("71.png" in out) == readings  # refused before reading, or read and shown before the write failed
    for flag in ("--trainer.default_root_dir", "--checkpoint.dirpath"):
        with pytest.raises(SystemExit) as exit_:
            main(["fit", f"{flag}={folder / 'runs'}", "--trainer.max_epochs=1"])
        assert exit_.value.code == 2
        assert f"{flag} {folder / 'runs'}: cannot write in {folder} (" in capsys.readouterr().err
    # predict writes nothing in the runs' folder: a read-only archive of runs is read as before.
    main(["predict", f"--ckpt_path={ckpt}", f"--data.predict_path={tmp_path / 'in'}", f"--trainer.default_root_dir={folder}"])
    assert "71.png" in capsys.readouterr().out


@BOTH_NETS
def test_python_api_matches_the_cli(run, request, tmp_path, capsys):
    ckpt, _ = request.getfixturevalue(run)
    photos = photo_folder(tmp_path / "in")
    main(["predict", f"--ckpt_path={ckpt}", "--data.predict_path=in", "--output=out.csv",
          "--trainer.enable_progress_bar=false"])  # fmt: skip
    rows = read_csv(tmp_path / "out.csv")
    recognizer = DigitRecognizer.from_checkpoint(ckpt)
    for photo, prediction in zip(photos, recognizer.predict_many(photos)):
        assert prediction.digit == int(rows[photo.name]["digit"])
        assert prediction.probability == pytest.approx(float(rows[photo.name]["probability"]), abs=1e-4)
        alone = recognizer.predict(mnist_pixels(photo))  # a 28x28 array: the same result
        assert alone.digit == prediction.digit and alone.probability == pytest.approx(prediction.probability)


def readme_python_api_snippet() -> str:
    section = README.read_text().split("## Use the model from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_snippet_runs_as_written(trained, tmp_path, capsys):
    # The files the snippet names: a run's checkpoint where `fit` writes it, and a photo of a digit.
    ckpt = tmp_path / "lightning_logs/Adam/version_0/checkpoints/last.ckpt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(trained[0], ckpt)
    save_photo(mnist_pixels(drawn_digits()["seven"]), tmp_path / "my_digit", np.random.default_rng(0), "jpeg")
    save_seventy_one(tmp_path / "my_number.jpg")
    exec(compile(readme_python_api_snippet(), str(README), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Prediction(digit=") and re.fullmatch(r"[0-9?]{2}", lines[1])  # two digits found
    assert lines[2].startswith("[(") and lines[3].isdigit() and lines[4].startswith("tensor([")


@BOTH_NETS
def test_onnx_export_matches_pytorch(run, request, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    ckpt, data = request.getfixturevalue(run)
    main(["export", f"--ckpt_path={ckpt}", "--output=model.onnx", f"--data.data_dir={data}"])
    assert "on 40 MNIST test images: max |logit difference|" in capsys.readouterr().out
    session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    net = DigitRecognizer.from_checkpoint(ckpt).net
    for n in (1, 7):  # any batch size
        x = torch.randn(n, 1, 28, 28)
        (logits,) = session.run(["logits"], {"image": x.numpy()})
        assert np.abs(logits - net(x).detach().numpy()).max() <= 1e-4


def test_readme_onnx_snippet_reads_the_photo_s_digit_as_written(trained, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    main(["export", f"--ckpt_path={trained[0]}", "--output=model.onnx", f"--data.data_dir={trained[1]}"])
    save_photo(mnist_pixels(drawn_digits()["seven"]), tmp_path / "my_digit", np.random.default_rng(0), "jpeg")
    recognizer = DigitRecognizer.from_checkpoint(trained[0])
    expected = recognizer.net(preprocess("my_digit.jpg")[None]).detach().numpy()  # the photo as predict reads it
    snippet = re.search(r"```python\n(import onnxruntime.*?)```", README.read_text(), re.DOTALL).group(1)
    capsys.readouterr()
    names = {}
    exec(compile(snippet, str(README), "exec"), names)
    np.testing.assert_allclose(names["logits"], expected, atol=1e-4)
    assert capsys.readouterr().out.strip() == f"[{expected.argmax()}]"


def test_export_to_a_folder_or_a_missing_one_stops_before_any_work(trained, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    for output, message in (("no/such/dir/model.onnx", "its folder does not exist"), (".", "is a folder"),
                            ("a_file/model.onnx", "a_file is a file, not a folder")):  # fmt: skip
        with pytest.raises(SystemExit) as exit:
            main(["export", f"--ckpt_path={trained[0]}", f"--output={output}"])
        assert exit.value.code == 2 and f"--output {output}: " in (err := capsys.readouterr().err) and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    # A check on no image, or one that fails, leaves no model behind, and an earlier model as it was.
    for flag, message in (("--check_images=0", "--check_images must be at least 1, got 0"),
                          ("--tolerance=-1", "more than -1; m.onnx was not written")):  # fmt: skip
        with pytest.raises(SystemExit) as exit:
            main(["export", f"--ckpt_path={trained[0]}", "--output=m.onnx", "--data.data_dir=nowhere", flag])
        assert exit.value.code == 2 and message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    main(["export", f"--ckpt_path={trained[0]}", "--output=m.onnx", "--data.data_dir=nowhere"])
    good = (tmp_path / "m.onnx").read_bytes()
    with pytest.raises(SystemExit):
        main(["export", f"--ckpt_path={trained[0]}", "--output=m.onnx", "--data.data_dir=nowhere", "--tolerance=-1"])
    assert (tmp_path / "m.onnx").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "m.onnx"]


def test_fit_logs_confusion_matrix_and_mistakes_to_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import (
        IMAGES,
        EventAccumulator,
    )

    run = trained[0].parents[1]
    tags = set()
    for events in run.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={IMAGES: 0})
        accumulator.Reload()
        tags |= set(accumulator.Tags()[IMAGES])
    assert {"test/confusion_matrix", "test/mistakes"} <= tags


@pytest.mark.parametrize("n", [1, 5, 9])
def test_the_mistakes_grid_shows_each_digit_scaled_with_its_caption_above_it(n):
    from digitnet.figures import mistakes_figure

    images = torch.randn(n, 28, 28) * torch.arange(1, n + 1)[:, None, None]  # each on its own scale
    labels, predictions, confidence = torch.arange(n) % 10, (torch.arange(n) + 3) % 10, torch.linspace(0.9, 0.5, n)
    (ax,) = mistakes_figure(confidence, images, labels, predictions, columns=8).axes
    grid = ax.images[0].get_array()
    assert grid.shape[0] == 38 * -(-n // 8) + 10  # rows of a 10-pixel padding and a 28-pixel digit
    assert [text.get_text() for text in ax.texts] == [
        f"{label} -> {prediction} ({p:.0%})" for label, prediction, p in zip(labels.tolist(), predictions.tolist(),
                                                                               confidence.tolist())]  # fmt: skip
    for i, (image, text) in enumerate(zip(images, ax.texts)):
        top, left = 38 * (i // 8) + 10, 38 * (i % 8) + 10
        scaled = (image - image.min()) / (image.max() - image.min())
        np.testing.assert_allclose(grid[top : top + 28, left : left + 28], scaled, atol=1e-5)
        x, y = text.get_position()
        assert left <= x <= left + 28 and top - 10 <= y < top  # centred on its digit, in the padding above it


def test_fit_writes_the_custom_scalars_layout_of_the_curves(trained):
    charts = custom_scalar_charts(trained[0].parents[1])
    assert sorted(tag for tags in charts.values() for tag in tags) == ["train/acc", "train/loss", "val/acc", "val/loss"]


def test_test_subcommand_logs_the_figures_and_the_hparams_metric(trained, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import (
        IMAGES,
        SCALARS,
        EventAccumulator,
    )
    from tensorboard.plugins.hparams import plugin_data_pb2

    from digitnet.cli import build_cli
    from digitnet.figures import TestFigures

    ckpt, data = trained
    cli = build_cli([f"--data.data_dir={data}", "--test_figures.mistakes=5"], run=False)
    assert [c.mistakes for c in cli.trainer.callbacks if isinstance(c, TestFigures)] == [5]  # a callback like any

    main(["test", f"--ckpt_path={ckpt}", f"--data.data_dir={data}", "--data.val_size=20",
          "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    (events,) = tmp_path.glob("lightning_logs/*/version_0/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={IMAGES: 0, SCALARS: 0})
    accumulator.Reload()
    assert {"test/confusion_matrix", "test/mistakes"} <= set(accumulator.Tags()[IMAGES])
    # hp_metric (TensorBoard's HParams tab) is the test accuracy alone: no -1 placeholder before it.
    hp_metric = [event.value for event in accumulator.Scalars("hp_metric")]
    assert hp_metric == [pytest.approx(accumulator.Scalars("test/acc")[0].value)]
    # The tab compares runs by the data's settings too: runs that differed only in those looked the same.
    contents = accumulator.PluginTagToContent("hparams").values()
    settings = {key for content in contents
                for key in plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams}
    assert {"batch_size", "val_size", "normalize", "label_smoothing"} <= settings


def test_train_loss_is_logged_at_the_step_it_is_of(tmp_path):
    # Logged when global_step % N == 0, written by Lightning when (step + 1) % N == 0: each point was N - 1 steps old.
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        EventAccumulator,
    )

    data = write_mnist(tmp_path / "mnist", n_train=420)
    losses = {}
    for every in (1, 5):
        root = tmp_path / f"every{every}"
        main(["fit", f"--data.data_dir={data}", "--data.val_size=20", "--data.batch_size=20", "--trainer.max_epochs=1",
              f"--trainer.log_every_n_steps={every}", "--trainer.enable_progress_bar=false",
              f"--trainer.default_root_dir={root}"])  # fmt: skip
        losses[every] = {}
        for events in root.glob("lightning_logs/Adam/version_0/events.out.tfevents.*"):  # fit's and the test's
            accumulator = EventAccumulator(str(events), size_guidance={SCALARS: 0})
            accumulator.Reload()
            if "train/loss" in accumulator.Tags()[SCALARS]:
                losses[every] |= {event.step: event.value for event in accumulator.Scalars("train/loss")}
    assert sorted(losses[5]) == [4, 9, 14, 19]
    assert all(losses[5][step] == pytest.approx(losses[1][step]) for step in losses[5])


@pytest.mark.parametrize("preset", ["fast.yaml", "convnet.yaml", "numbers.yaml"])
def test_each_preset_s_checkpoint_reads_a_number_in_predict_python_and_onnx(preset, tmp_path):
    # A tiny run of the preset as it is (its network, precision, augmentation, non-digits), cut to one epoch of
    # the synthetic digits; serve reads the ConvNet preset's checkpoint in tests/test_serve.py.
    data = write_mnist(tmp_path / "mnist")
    config = Path(__file__).parents[1] / "configs" / preset
    fit = run_digitnet("fit", f"--config={config}", f"--data.data_dir={data}", "--data.val_size=20",
                       "--data.batch_size=32", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
                       cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    monitored = yaml.safe_load(config.read_text()).get("checkpoint", {}).get("monitor", "val/acc")
    assert ("Best checkpoint: " if monitored else "Final checkpoint: ") in fit.stdout
    checkpoint = default_checkpoint(tmp_path / "lightning_logs")[0]
    save_seventy_one(tmp_path / "number.png")
    predict = run_digitnet("predict", "--data.predict_path=number.png", "--output=numbers.csv", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr[-3000:]
    # The run's callbacks (its checkpoint's monitor is the preset's) are not the predict command's: no warning.
    assert "callbacks used to create the checkpoint" not in predict.stderr, predict.stderr
    with open(tmp_path / "numbers.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert re.fullmatch(r"[0-9?]{2}", row["number"]) and row["error"] == ""
    reading = DigitRecognizer.from_checkpoint(checkpoint).read_number(tmp_path / "number.png")
    assert reading.number == row["number"] and len(reading.digits) == 2
    export = run_digitnet("export", "--output=model.onnx", cwd=tmp_path)
    assert export.returncode == 0 and (tmp_path / "model.onnx").stat().st_size > 0, export.stderr[-3000:]


def test_predict_reads_a_number_as_the_checkpoint_s_number_net_reads_it_where_the_reader_takes_its_reading(tmp_path):
    # A stand-in number net that reads 123, sure of each digit, in any picture: another number, of more digits than
    # the cuts find in the picture of 71, so the reader takes its reading (digitnet.number_reader.choose), in
    # predict as in Python.
    checkpoint = with_number_stand_in(tiny_run(tmp_path)[0], tmp_path, "123")
    save_seventy_one(tmp_path / "number.png")
    predict = run_digitnet("predict", f"--ckpt_path={checkpoint}", "--data.predict_path=number.png",
                           "--output=numbers.csv", cwd=tmp_path)  # fmt: skip
    assert predict.returncode == 0, predict.stderr[-3000:]
    with open(tmp_path / "numbers.csv") as f:
        (row,) = list(csv.DictReader(f))
    reading = DigitRecognizer.from_checkpoint(checkpoint).read_number(tmp_path / "number.png")
    assert row["number"] == reading.number == "123"
    assert row["number_probabilities"].split() == [f"{d.probability:.4f}" for d in reading.digits]
