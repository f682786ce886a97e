"""Your own digits (digitnet.own_digits, --data.extra_dir), `python -m digitnet finetune` and the corrections
folder of `serve --corrections`, on the tiny synthetic MNIST of conftest."""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import synthetic_digits, tiny_run
from digitnet import DigitClassifier, DigitRecognizer
from digitnet.checkpoints import default_checkpoint
from digitnet.cli import main
from digitnet.corrections import ORIGINALS, Corrections
from digitnet.errors import DigitnetError, ImageError
from digitnet.own_digits import hold_out, read_digit_folder


def own_folder(root: Path, per_digit: int = 6, big: bool = True) -> Path:
    """Synthetic digits (a bright bar whose height is the label) as pictures in DIR/<digit>/, dark on light and
    larger than MNIST's, as a person's photos would be."""
    images, labels = synthetic_digits(10 * per_digit, seed=3)
    for i, (image, label) in enumerate(zip(images.numpy(), labels.tolist())):
        picture = Image.fromarray(255 - image)
        if big:
            picture = picture.resize((84, 84), Image.Resampling.BICUBIC)
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        picture.save(root / str(label) / f"{i}.png")
    return root


def test_a_digit_folder_is_read_as_predict_reads_pictures(tmp_path):
    folder = own_folder(tmp_path / "mine")
    (folder / "3" / "notes.txt").write_text("not a picture")
    (folder / "3" / ".hidden.png").write_bytes(b"")  # hidden files are not read
    x, y, skipped = read_digit_folder(folder)
    assert x.shape == (60, 1, 28, 28) and sorted(y.tolist()) == sorted(list(range(10)) * 6)
    assert [(Path(f).name, reason) for f, reason in skipped] == [("notes.txt", "not an image (Pillow cannot identify the format)")]
    train, held = hold_out(y, 0.2)
    assert len(set(train.tolist()) & set(held.tolist())) == 0 and len(train) + len(held) == 60
    assert all((y[held] == d).sum() == 1 for d in range(10))  # 20% of 6 per digit, at least one each


@pytest.mark.parametrize("layout, message", [
    ("x", "folder 'x' is not a digit"),
    ("empty", "no digit folders"),
    ("empty digits", "its digit folders are empty"),
    ("unreadable", "none of its 1 files could be read"),
    ("missing", "no such folder"),
])  # fmt: skip
def test_a_bad_digit_folder_is_one_line_before_training(tmp_path, mnist_dir, layout, message, capsys):
    folder = tmp_path / "mine"
    if layout != "missing":
        folder.mkdir()
    if layout == "x":
        own_folder(folder)
        (folder / "x").mkdir()
    elif layout == "empty digits":
        (folder / "4").mkdir()
    elif layout == "unreadable":
        (folder / "4").mkdir()
        (folder / "4" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(SystemExit) as exit:
        main(["fit", f"--data.data_dir={mnist_dir}", f"--data.extra_dir={folder}", "--data.val_size=20",
              "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err
    assert exit.value.code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "lightning_logs").exists()  # nothing half-written


def test_fit_takes_a_share_of_each_batch_from_your_digits(tmp_path, mnist_dir):
    from digitnet.data import MNISTDataModule
    import lightning as L

    data = MNISTDataModule(data_dir=str(mnist_dir), val_size=20, batch_size=20, extra_dir=str(own_folder(tmp_path / "m")),
                           extra_share=0.5, extra_hold_out=0.2)  # fmt: skip
    data.setup("fit")
    data.trainer = L.Trainer(logger=False, accelerator="cpu")
    data.trainer.training = True
    x, y = torch.zeros(20, 1, 28, 28), torch.full((20,), -7)
    mixed_x, mixed_y = data.on_after_batch_transfer((x, y), 0)
    assert (mixed_y[:10] >= 0).all() and (mixed_y[10:] == -7).all()  # the first half: your digits
    yours = {tuple(t.flatten().tolist()) for t in data.extra_set.tensors[0]}
    assert all(tuple(t.flatten().tolist()) in yours for t in mixed_x[:10])
    held = {tuple(t.flatten().tolist()) for t in data.extra_held_out.tensors[0]}
    assert not any(tuple(t.flatten().tolist()) in held for t in mixed_x[:10])  # never the held-out ones


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    return tiny_run(tmp_path_factory.mktemp("run"), "--model.net=ConvNet", "--model.net.width=4")


def test_finetune_starts_from_the_checkpoint_and_becomes_the_latest_run(trained, tmp_path, capsys):
    ckpt, data = trained
    mine = own_folder(tmp_path / "mine")
    main(["finetune", f"--ckpt_path={ckpt}", f"--data.extra_dir={mine}", f"--data.data_dir={data}",
          "--trainer.max_steps=5", "--trainer.accelerator=cpu", f"--root={tmp_path}"])  # fmt: skip
    out = capsys.readouterr().out
    assert "on 50 of your digits (10 held out)" in out
    assert "Your held-out digits read right:" in out and "MNIST test digits read right:" in out
    assert "finetuned.ckpt (predict, serve and export use it from now on)" in out  # --root: the folder they look in
    new, what = default_checkpoint(tmp_path / "lightning_logs")
    assert new.parent.parent.parent.name == "ConvNet-finetune" and new.name == "finetuned.ckpt"
    assert what.startswith("the fine-tuned checkpoint of the latest run") and "plain Trainer" not in what
    # The network and its settings come from the checkpoint: a ConvNet stays one, reloaded with no arguments.
    before, after = DigitClassifier.load_from_checkpoint(ckpt), DigitClassifier.load_from_checkpoint(new)
    assert type(after.net) is type(before.net) and after.hparams.net == before.hparams.net
    assert any(not torch.equal(a, b) for a, b in zip(after.net.state_dict().values(), before.net.state_dict().values()))
    DigitRecognizer.from_checkpoint(new).read_number(np.pad(255 - synthetic_digits(1, 0)[0][0].numpy(), 20))


def test_the_same_finetune_command_gives_the_same_model(trained, tmp_path):
    # Unseeded, two runs of one command read MNIST's test digits differently: a measurement (writer_adaptation.py) no
    # one could rerun.
    ckpt, data = trained
    mine = own_folder(tmp_path / "mine")

    def weights(root: Path, *args: str) -> dict:
        main(["finetune", f"--ckpt_path={ckpt}", f"--data.extra_dir={mine}", f"--data.data_dir={data}",
              "--trainer.max_steps=3", "--trainer.accelerator=cpu", f"--root={root}", *args])  # fmt: skip
        run = root / "lightning_logs" / "ConvNet-finetune" / "version_0"
        return torch.load(run / "checkpoints" / "finetuned.ckpt", weights_only=True)["state_dict"]

    first, second = weights(tmp_path / "first"), weights(tmp_path / "second")
    assert all(torch.equal(first[name], second[name]) for name in first)
    other = weights(tmp_path / "other", "--seed_everything=1")
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_finetune_with_none_of_your_digits_held_out_says_so(trained, tmp_path, capsys):
    ckpt, data = trained
    main(["finetune", f"--ckpt_path={ckpt}", f"--data.extra_dir={own_folder(tmp_path / 'mine')}",
          f"--data.data_dir={data}", "--data.extra_hold_out=0", "--trainer.max_steps=2", "--trainer.accelerator=cpu",
          f"--root={tmp_path / 'elsewhere'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert "on 60 of your digits (0 held out)" in out and "Your held-out digits: none, so not measured" in out
    assert "read right: - -> -" not in out
    # Its run is not where predict, serve and export look (./lightning_logs): they did not use it "from now on".
    assert "finetuned.ckpt (--ckpt_path it to predict, serve and export)" in out


def test_finetune_cut_short_leaves_no_run_folder_and_names_no_last_ckpt(trained, tmp_path, capsys, monkeypatch):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    ckpt, data = trained
    step = DigitClassifier.training_step

    def stopped_at_step_2(self, batch, batch_idx):  # as Lightning's SIGTERM handling raises after a step
        if batch_idx == 2:
            raise SIGTERMException
        return step(self, batch, batch_idx)

    monkeypatch.setattr(DigitClassifier, "training_step", stopped_at_step_2)
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", f"--ckpt_path={ckpt}", f"--data.extra_dir={own_folder(tmp_path / 'mine')}",
              f"--data.data_dir={data}", "--trainer.max_steps=5", "--trainer.accelerator=cpu", f"--root={tmp_path}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 143 and "digitnet: stopped by SIGTERM" in err and "last.ckpt" not in err
    assert list((tmp_path / "lightning_logs" / "ConvNet-finetune").iterdir()) == []


def test_a_fine_tuned_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_run_folder(trained, tmp_path,
                                                                                              capsys, monkeypatch):
    # A full disk at the final save left a run folder with no checkpoint, which predict took for the latest run.
    ckpt, data = trained

    def disk_full(self, filepath, weights_only=False, storage_options=None):
        Path(filepath).parent.mkdir(parents=True, exist_ok=True)
        Path(filepath).write_bytes(b"PK")  # what a writer leaves when the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(L.Trainer, "save_checkpoint", disk_full)
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", f"--ckpt_path={ckpt}", f"--data.extra_dir={own_folder(tmp_path / 'mine')}",
              f"--data.data_dir={data}", "--trainer.max_steps=2", "--trainer.accelerator=cpu", f"--root={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.endswith("finetuned.ckpt (OSError: [Errno 28] No space left on device)")
    assert list((tmp_path / "lightning_logs" / "ConvNet-finetune").iterdir()) == []


def test_finetune_bad_arguments_exit_2(trained, tmp_path, capsys):
    ckpt, data = trained
    for args, message in ((["--data.extra_dir=nowhere"], "nowhere: no such folder"),
                          ([], "--data.extra_dir is needed"),
                          ([f"--data.extra_dir={own_folder(tmp_path / 'm')}", "--trainer.max_steps=0"], "max_steps"),
                          ([f"--data.extra_dir={tmp_path / 'm'}", "--trainer.accelerator=foo"], "bad --trainer settings: "),
                          ([f"--data.extra_dir={tmp_path / 'm'}", "--seed_everything=-1"],
                           "--seed_everything=-1: give a seed from 0 to 4294967295"),
                          ([f"--data.extra_dir={tmp_path / 'm'}", f"--root={ckpt}"], f"--root {ckpt}: a file, not a folder")):
        with pytest.raises(SystemExit) as exit:
            main(["finetune", f"--ckpt_path={ckpt}", f"--data.data_dir={data}", f"--root={tmp_path}", *args])
        assert exit.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_corrections_are_saved_whole_where_finetune_reads_them(tmp_path):
    corrections = Corrections(tmp_path / "fixes")
    assert corrections.count() == 0
    seven = np.zeros((28, 28), np.uint8)
    seven[6:9, 8:20], seven[9:22, 16:19] = 255, 255
    first = corrections.save(7, png(seven), png(255 - np.pad(seven, 10)))
    second = corrections.save(7, png(seven))
    assert first != second and first.parent == tmp_path / "fixes" / "7" and corrections.count() == 2
    assert np.array_equal(np.asarray(Image.open(first)), seven)
    assert (tmp_path / "fixes" / ORIGINALS / "7" / first.name).is_file()
    assert not [p for p in (tmp_path / "fixes").rglob("*") if p.name.startswith(".") and p.is_file()]  # no leftovers
    x, y, skipped = read_digit_folder(tmp_path / "fixes")  # the originals' hidden folder is not read
    assert y.tolist() == [7, 7] and skipped == []
    for digit, pixels, reason in ((10, png(seven), "0 to 9"), (3, b"junk", "not an image"),
                                  (3, png(np.zeros((40, 40), np.uint8)), "28x28")):  # fmt: skip
        with pytest.raises(ImageError, match=reason):
            corrections.save(digit, pixels)
    assert corrections.count() == 2


def test_a_corrections_folder_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DigitnetError, match="cannot write there"):
        Corrections(tmp_path / "a_file" / "fixes")
