"""The number net: strings of digits made for training, CTC's reading read back, and where the reader takes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import custom_scalar_charts, tiny_run
from lightning.pytorch import Trainer
from PIL import Image
from torch import nn

from digitnet import DigitRecognizer
from digitnet.checkpoints import check_network
from digitnet.cli import main
from digitnet.data import MNISTDataModule
from digitnet.errors import DigitnetError
from digitnet.images import picture_ink
from digitnet.model import DigitClassifier
from digitnet.nets import NumberNet
from digitnet.number_reader import (
    NET_SURE,
    NET_SURE_ONE,
    UNSURE_BELOW,
    NumberReading,
    ReadDigit,
    choose,
    net_reading,
)
from digitnet.predict import collate_images
from digitnet.strings import (
    BLANK,
    NOT_A_DIGIT,
    STRIDE,
    batch_of,
    compose,
    ink_crop,
    make_strings,
    read_right,
    read_symbols,
    strip,
)


def bars(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 28, 28) ink in [0, 1]: upright bars 4 pixels wide, 20 high, labelled 0-9 in turn."""
    ink = torch.zeros(n, 28, 28)
    ink[:, 4:24, 12:16] = 1.0
    return ink, torch.arange(n) % 10


def test_strings_hold_one_to_eight_of_the_batch_s_digits_as_strips_28_high_read_every_four_columns():
    ink, labels = bars(16)
    strips, texts = make_strings(ink, labels, 40, marks=ink[:2], seed=0)
    assert len(strips) == len(texts) == 40
    assert {len(t) for t in texts} <= set(range(1, 9)) and max(map(len, texts)) > 1
    assert all(s.shape[0] == 28 and s.shape[1] % STRIDE == 0 for s in strips)
    assert all(0 <= c <= NOT_A_DIGIT for t in texts for c in t) and any(NOT_A_DIGIT in t for t in texts)
    numbers = batch_of(strips, texts)
    assert numbers.images.shape[:3] == (40, 1, 28) and numbers.lengths.tolist() == [len(t) for t in texts]
    assert numbers.targets.tolist() == [c for t in texts for c in t]
    assert (numbers.frames * STRIDE).tolist() == [s.shape[1] for s in strips]
    again = make_strings(ink, labels, 40, marks=ink[:2], seed=0)  # the same seed, the same strings
    assert again[1] == texts and all(torch.equal(a, b) for a, b in zip(again[0], strips))


def test_touching_neighbours_meet_with_no_paper_between_them(monkeypatch):
    monkeypatch.setattr("digitnet.strings.TOUCHING", 1.0)
    bar = np.ones((20, 4), np.float32)
    for seed in range(20):
        canvas = compose([bar, bar], np.random.default_rng(seed))
        inked = (canvas > 0.3).any(0)
        first, last = np.flatnonzero(inked)[[0, -1]]
        assert inked[first : last + 1].all()  # one run of inked columns: no gap between the two bars


def test_strings_are_drawn_as_the_reader_s_ink_map_draws_a_picture_of_them(monkeypatch):
    # A ring with MNIST's soft edges: a string of it alone is the strip the reader makes of a picture of it.
    y, x = np.mgrid[0:28, 0:28]
    ring = np.clip(1 - (np.abs(np.hypot(y - 14, x - 14) - 7) - 1) / 2.5, 0, 1).astype(np.float32)  # edges 2.5 px
    monkeypatch.setattr("digitnet.strings.compose", lambda pieces, rng: np.pad(pieces[0], 10))
    monkeypatch.setattr("digitnet.strings.two_strokes", lambda piece, rng: piece)
    strips, texts = make_strings(torch.from_numpy(ring)[None], torch.tensor([0]), 20, seed=0)
    picture = Image.fromarray(np.round(255 * (1 - np.pad(ink_crop(ring), 10))).astype(np.uint8))
    read = strip(picture_ink(picture)[0])
    ones = [s for s, t in zip(strips, texts) if t == [0]]
    assert ones and all(s.shape == read.shape and (s - read).abs().max() < 0.05 for s in ones)
    assert (strip(ring) - read).abs().max() > 0.3  # MNIST's own soft edges are not what the reader sees


def test_strip_scales_the_ink_to_20_rows_and_keeps_its_shape():
    ink = np.zeros((100, 300), np.float32)
    ink[20:80, 50:230] = 1.0  # 60 high, 180 wide: 20 high, 60 wide in the strip
    s = strip(ink)
    rows, cols = np.flatnonzero((s > 0.5).any(1)), np.flatnonzero((s > 0.5).any(0))
    assert s.shape[0] == 28 and rows[0] == 4 and rows[-1] == 23 and len(cols) == 60


def logits_reading(*columns: int) -> torch.Tensor:
    """(T, 12) logits whose every column is sure of one class."""
    logits = torch.full((len(columns), 12), -10.0)
    logits[torch.arange(len(columns)), torch.tensor(columns)] = 10.0
    return logits


def test_ctc_s_best_path_merges_repeats_drops_blanks_and_reads_a_mark_as_not_a_digit():
    symbols = read_symbols(logits_reading(BLANK, 4, 4, BLANK, 4, NOT_A_DIGIT, BLANK, 7))
    assert [s.symbol for s in symbols] == [4, 4, NOT_A_DIGIT, 7]
    assert [s.columns for s in symbols] == [(1, 2), (4, 4), (5, 5), (7, 7)]
    assert symbols[0].probability > 0.99 and all(d != NOT_A_DIGIT for s in symbols for d, _ in s.top3)


def test_a_string_is_read_right_only_when_the_best_path_within_its_own_columns_reads_it_all():
    logits = torch.stack([logits_reading(1, BLANK, 2, BLANK, 5), logits_reading(1, BLANK, 2, BLANK, 5),
                          logits_reading(7, 7, BLANK, BLANK, BLANK)])  # (3, 5, 12); the first two differ in frames
    numbers = batch_of([torch.zeros(28, 20), torch.zeros(28, 12), torch.zeros(28, 20)], [[1, 2], [1, 2], [7, 7]])
    # Strip 1 reads 1 2 5 over its 5 columns (its 5 is wrong); strip 2 has 3 columns, 1 2; 7 7 with no blank is one 7.
    assert read_right(logits, numbers).tolist() == [0.0, 1.0, 0.0]


def test_a_number_net_is_validated_on_the_same_strings_every_epoch_without_drawing_training_s_random_numbers(
        tmp_path, capsys, monkeypatch):  # fmt: skip
    ckpt, data = tiny_run(tmp_path, "--model.number_net=NumberNet", "--model.number_net.width=4",
                          "--model.number_net.hidden=8", "--data.strings=0.5")  # fmt: skip
    model = DigitClassifier.load_from_checkpoint(ckpt)
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    results, states = [], []
    for strings, seed in ((0.5, 5), (0.5, 6), (0.0, 5)):  # the same strings from another state of torch's generator
        torch.manual_seed(seed)
        datamodule = MNISTDataModule(data_dir=str(data), val_size=20, strings=strings)
        results.append(trainer.validate(model, datamodule, verbose=False)[0])
        states.append(torch.get_rng_state())
    first, second, without = results
    assert {"val/number_loss", "val/number_acc", "val/acc"} <= set(first) and first == second
    assert "val/number_acc" not in without and without["val/acc"] == first["val/acc"]
    # The DataLoader draws its seed from torch's generator; the strings draw nothing more from it.
    assert torch.equal(states[0], states[2])
    assert 0 <= first["val/number_acc"] <= 1 and first["val/number_loss"] > 0
    # The command too: `validate` takes --data.strings from the checkpoint, as it takes the data's other settings.
    main(["validate", f"--ckpt_path={ckpt}", f"--data.data_dir={data}", "--trainer.enable_progress_bar=false"])
    assert "val/number_acc" in capsys.readouterr().out
    # TensorBoard's Custom Scalars tab, where fit sends the user, has the number net's curves beside the others.
    tags = [tag for tags in custom_scalar_charts(ckpt.parents[1]).values() for tag in tags]
    assert {"val/number_acc", "val/number_loss", "train/number_loss", "val/acc"} <= set(tags)
    # A model without a number net is validated on its digits alone: no strings are made for it.
    monkeypatch.setattr("digitnet.data.make_strings", lambda *args, **kwargs: pytest.fail("strings made"))
    datamodule = MNISTDataModule(data_dir=str(data), val_size=20, strings=0.5)
    assert "val/number_acc" not in trainer.validate(DigitClassifier(), datamodule, verbose=False)[0]


def test_a_net_s_reading_boxes_each_digit_where_it_was_read_and_writes_a_mark_as_a_question_mark():
    ink = np.zeros((40, 100), np.float32)
    ink[10:30, 10:16] = 1.0
    ink[10:30, 60:90] = 1.0  # the ink: columns 10-89, 80 wide and 20 high: the strip is 4 + 80 + 4 columns
    # Read at strip columns 4-19 (network columns 1-4) and 64-83 (16-20): the ink's columns 10-15 and 70-89.
    logits = torch.full((22, 12), -10.0)
    logits[:, BLANK] = 10.0
    logits[1:5, BLANK], logits[1:5, 1] = -10.0, 10.0
    logits[16:21, BLANK], logits[16:21, NOT_A_DIGIT] = -10.0, 10.0
    reading = net_reading(ink, read_symbols(logits), scale=2.0)
    assert reading.number == "1?"
    one, mark = reading.digits
    assert one.digit == 1 and one.sure and one.box == (20, 20, 32, 60)  # in the picture's pixels: scale 2
    assert not mark.sure and mark.probability < UNSURE_BELOW and mark.box == (120, 20, 180, 60)
    assert one.pixels.shape == mark.pixels.shape == (28, 28)


def digits(text: str, probability: float = 0.99) -> NumberReading:
    found = [ReadDigit(int(c) if c != "?" else 0, probability if c != "?" else 0.1, ((0, 0.5),), (0, 0, 1, 1),
                       np.zeros((28, 28), np.uint8)) for c in text]  # fmt: skip
    return NumberReading("".join(d.text for d in found), tuple(found))


@pytest.mark.parametrize(("cut", "net", "chosen"), [
    ("7", "12", "net"),  # two touching digits the cuts read as one
    ("?", "12", "cut"),  # one mark the cuts doubt: a letter or a scribble, not two digits
    ("7", "7", "cut"),  # the same number: the cuts' boxes and probabilities
    ("1?4", "1234", "net"),  # a piece the cuts doubted, read as two digits
    ("1284", "1234", "net"),  # another number: the net's
    ("1234", "123", "cut"),  # fewer digits: CTC may have merged a digit written twice
    ("123", "123", "cut"),
    ("123", "1?3", "cut"),  # a "?" of the net's is never sure
    ("71", "", "cut"),  # no reading of the net's (a symbol read where no ink is)
])
def test_the_net_s_reading_is_taken_where_all_its_digits_are_sure(cut, net, chosen):
    line = NET_SURE if len(cut) > 1 else NET_SURE_ONE
    split, sure, unsure = digits(cut), digits(net, line), digits(net, line - 0.01)
    assert choose(split, sure) is (sure if chosen == "net" else split)  # at the line: taken
    assert choose(split, unsure) is split  # one digit less sure than that: the cuts'


class ReadsTwelve(nn.Module):
    """A stand-in NumberNet that reads "12" in any strip: a 1 in its first columns, a 2 in its last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[3] // STRIDE
        columns = [BLANK] * t
        columns[1], columns[t - 2] = 1, 2
        return logits_reading(*columns)[None].expand(len(x), -1, -1).clone()


class SureOfSeven(nn.Module):
    """A stand-in classifier that reads a 7 at 0.99 in any picture."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.eye(10)[7].expand(len(x), 10) * 10


def test_read_number_takes_the_number_net_s_reading_of_two_touching_digits():
    ink = np.zeros((60, 120), np.float32)
    ink[10:50, 20:100] = 1.0  # one wide blot, never cut: the cuts read one 7, the number net "12"
    recognizer = DigitRecognizer(SureOfSeven(), number_net=ReadsTwelve())
    picture = (255 - 255 * ink).astype(np.uint8)
    assert DigitRecognizer(SureOfSeven()).read_number(picture).number == "7"
    reading = recognizer.read_number(picture)
    assert reading.number == "12" and [d.digit for d in reading.digits] == [1, 2]
    (l1, _, r1, _), (l2, _, r2, _) = (d.box for d in reading.digits)
    assert l1 < r1 <= l2 < r2  # side by side, left to right


def test_number_net_maps_strips_of_any_width_to_a_column_of_twelve_logits_every_four_pixels():
    assert NumberNet(width=4, hidden=8)(torch.zeros(3, 1, 28, 40)).shape == (3, 10, 12)


def test_fit_trains_a_number_net_beside_the_classifier_and_its_checkpoint_reloads_with_it(tmp_path):
    nets = {}
    for weight in (0, 1):  # the same seed: the same first weights, which a weight of 0 leaves as they are
        ckpt, _ = tiny_run(tmp_path / str(weight), "--model.number_net=NumberNet", "--model.number_net.width=4",
                           "--model.number_net.hidden=8", "--data.strings=0.25", f"--model.number_weight={weight}")
        model = DigitClassifier.load_from_checkpoint(ckpt)  # alone: the settings are in the checkpoint
        assert isinstance(model.number_net, NumberNet) and model.number_net.width == 4
        nets[weight] = dict(model.number_net.named_parameters())
    assert any(not torch.equal(p, nets[1][name]) for name, p in nets[0].items())  # CTC's loss moved them
    assert isinstance(DigitRecognizer.from_checkpoint(ckpt).number_net, NumberNet)


def test_a_symbol_read_where_no_ink_is_gives_no_reading_to_take():
    ink = np.zeros((40, 60), np.float32)
    ink[10:30, 10:15] = 1.0
    logits = torch.full((8, 12), -10.0)  # a 3 read over the bar, a 5 in the strip's right margin
    logits[:, BLANK] = 10.0
    logits[1, BLANK], logits[1, 3], logits[7, BLANK], logits[7, 5] = -10.0, 10.0, -10.0, 10.0
    assert net_reading(ink, read_symbols(logits)).digits == ()
    assert choose(digits("7"), net_reading(ink, read_symbols(logits))).number == "7"


def test_a_batch_with_no_ink_makes_no_strings():
    assert make_strings(torch.zeros(4, 28, 28), torch.arange(4), 3, seed=0) == ([], [])


def test_faint_specks_scaled_to_nothing_make_no_string_rather_than_stop_the_training():
    ink = torch.zeros(2, 28, 28)
    ink[:, 10, [10, 14]] = 0.101  # two specks just over the level of ink: scaled down, they fade under it
    for seed in range(5):
        strips, texts = make_strings(ink, torch.tensor([1, 2]), 10, seed=seed)
        assert len(strips) == len(texts) and all(s.sum() > 0 for s in strips)


@pytest.mark.parametrize("args", [["--data.strings=0.25"], ["--model.number_net=NumberNet"]])
def test_a_number_net_without_strings_or_strings_without_one_is_refused_in_one_line(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as stopped:
        tiny_run(tmp_path, *args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--model.number_net and --data.strings go together" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "lightning_logs").exists()


def test_predict_s_batches_keep_each_picture_s_ink_only_for_a_number_net_to_read(tmp_path):
    picture = np.full((40, 60), 255, np.uint8)
    picture[10:30, 20:26] = 0
    Image.fromarray(picture).save(tmp_path / "one.png")
    assert collate_images([tmp_path / "one.png"]).pictures[0].ink is None  # a photo's ink map is megabytes
    assert collate_images([tmp_path / "one.png"], keep_ink=True).pictures[0].ink.shape[0] > 0


def test_a_number_net_that_cannot_be_imported_is_named_with_the_checkpoint_s_file():
    checkpoint = {"hyper_parameters": {"net": {"class_path": "digitnet.nets.MLP"},
                                       "number_net": {"class_path": "my_nets.MyReader"}}}  # fmt: skip
    with pytest.raises(DigitnetError) as refused:
        check_network("runs/numbers.ckpt", checkpoint)
    assert str(refused.value).startswith("runs/numbers.ckpt: its network, my_nets.MyReader, cannot be imported")
