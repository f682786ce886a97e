"""Reading whole numbers (digitnet.number_reader) without a trained model: pictures composed of drawn digits, and a
stand-in for the network that knows where each digit is (an oracle), so that each test checks the finding,
cutting and joining of the digits alone."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import ndimage

from digitnet.errors import ImageError
from digitnet.images import mnist_pixels, picture_ink
from digitnet import number_reader
from digitnet.number_reader import UNSURE_BELOW, best_reading, candidates
from helpers import digitnet_env
from photos import draw_digit, on_paper

DIGITS = {"zero": 0, "one": 1, "seven": 7, "four": 4}


def compose(names: list[str], gaps: list[int], sizes: list[float] | None = None, rises: list[int] | None = None,
            height: int = 112, pen: int = 12) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:  # fmt: skip
    """Drawn digits side by side, white on black: (ink (H, W) uint8, each digit's ink box: left, top, right,
    bottom). gaps[i]: pixels between the ink of digit i and i + 1 (negative: overlapping); pen: its width in
    pixels at size 1."""
    sizes, rises = sizes or [1.0] * len(names), rises or [0] * len(names)
    pieces = []
    for name, size in zip(names, sizes):
        drawing = draw_digit(name, int(height * size), max(6, int(pen * size)))
        rows, cols = np.nonzero(drawing)
        pieces.append(drawing[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    canvas = np.zeros((2 * height, sum(p.shape[1] for p in pieces) + sum(max(g, 0) for g in gaps) + 80), np.uint8)
    boxes, x, baseline = [], 40, int(1.5 * height)
    for i, (piece, rise) in enumerate(zip(pieces, rises)):
        h, w = piece.shape
        top = baseline - h - rise
        canvas[top : top + h, x : x + w] = np.maximum(canvas[top : top + h, x : x + w], piece)
        boxes.append((x, top, x + w, top + h))
        x += w + (gaps[i] if i < len(gaps) else 0)
    return canvas, boxes


def iou(a: tuple, b: tuple) -> float:
    inner = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inner / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inner)


def oracle(found, boxes: list[tuple], digits: list[int], sure: float = 0.95) -> np.ndarray:
    """(K, 10) probabilities of a network that reads a candidate as the digit whose box it covers best, the surer
    the closer its box is to that digit's (some of a neighbour's ink may come with it), and a candidate that
    is no digit's as nothing (all ten at 0.1)."""
    probabilities = np.full((len(found.spans), 10), 0.1)
    for k, box in enumerate(found.boxes):
        overlap, digit = max((iou(box, truth), digit) for truth, digit in zip(boxes, digits))
        p = max(0.1, sure * min(1.0, (overlap - 0.6) / 0.3))
        probabilities[k] = (1 - p) / 9
        probabilities[k, digit] = p
    return probabilities


def read(picture: np.ndarray, boxes: list[tuple], digits: list[int]) -> str:
    ink, scale = picture_ink(picture)
    found = candidates(ink)
    return best_reading(found, oracle(found, boxes, digits), scale).number


@pytest.mark.parametrize("polarity", ["dark on light", "light on dark"])
def test_separated_digits_are_read_left_to_right(polarity):
    names = ["seven", "one", "four", "zero"]
    ink, boxes = compose(names, [30, 25, 40])
    picture = on_paper(ink, np.random.default_rng(0)) if polarity == "dark on light" else ink
    assert read(picture, boxes, [DIGITS[n] for n in names]) == "7140"


def test_boxes_are_in_the_pictures_own_pixels():
    # A picture larger than the reader's working size is made smaller: the boxes are scaled back.
    ink, boxes = compose(["four", "seven"], [40], height=700)
    picture = on_paper(ink, np.random.default_rng(1))
    assert max(picture.shape) > 1024
    found_ink, scale = picture_ink(picture)
    assert scale > 1
    found = candidates(found_ink)
    reading = best_reading(found, oracle(found, [tuple(v / scale for v in b) for b in boxes], [4, 7]), scale)
    assert reading.number == "47"
    for digit, truth in zip(reading.digits, boxes):
        assert iou(digit.box, truth) >= 0.8


@pytest.mark.parametrize("names, overlap", [(["zero", "four"], 10), (["seven", "zero", "four"], 6), (["four", "zero", "zero"], 8)])
def test_touching_and_overlapping_digits_are_cut_apart(names, overlap):
    ink, boxes = compose(names, [-overlap] * (len(names) - 1))
    labels = (ink > 0).astype(int)
    assert ndimage.label(labels)[1] < len(names)  # some digits do touch
    assert read(on_paper(ink, np.random.default_rng(2)), boxes, [DIGITS[n] for n in names]) == "".join(
        str(DIGITS[n]) for n in names)


def test_two_touching_digits_are_not_read_as_one_wide_digit():
    # Two 4s overlapping into one mark, about one and a half times as wide as high: no digit is that wide. A network
    # that reads the pair as an 8 at 0.43 and each 4 alone at 0.9 would make it one 8, were width free.
    ink, boxes = compose(["four", "four"], [-6])
    found = candidates(picture_ink(on_paper(ink, np.random.default_rng(8)))[0])
    pair = (boxes[0][0], boxes[0][1], boxes[1][2], boxes[1][3])
    probabilities = np.full((len(found.spans), 10), 0.1)
    for k, box in enumerate(found.boxes):
        if iou(box, pair) >= 0.8:
            probabilities[k] = 0.57 / 9
            probabilities[k, 8] = 0.43
        elif max(iou(box, b) for b in boxes) >= 0.6:
            probabilities[k] = 0.1 / 9
            probabilities[k, 4] = 0.9
    assert best_reading(found, probabilities, wide_cost=0).number == "8"
    assert best_reading(found, probabilities).number == "44"


def test_a_touching_pair_narrower_than_a_wide_digit_pays_for_its_width(monkeypatch):
    # A 1 touching a 4: together 0.9 times as wide as high, no wider than a wide 0, 2 or 5 alone. A network that
    # reads the pair as one 4 at 0.47 and each digit alone at 0.97 makes it "4" when only a digit wider than 1.25
    # times its height pays for its width, and "14" with the reader's WIDE_DIGIT.
    ink, boxes = compose(["one", "four"], [-6])
    found = candidates(picture_ink(on_paper(ink, np.random.default_rng(8)))[0])
    assert 1 in found.cuts  # they touch: one mark, cut between them
    pair = (boxes[0][0], boxes[0][1], boxes[1][2], boxes[1][3])
    probabilities = np.full((len(found.spans), 10), 0.1)
    for k, box in enumerate(found.boxes):
        matches = [iou(box, b) for b in boxes]
        if iou(box, pair) >= 0.9:
            probabilities[k] = 0.53 / 9
            probabilities[k, 4] = 0.47
        elif max(matches) >= 0.9:
            probabilities[k] = 0.03 / 9
            probabilities[k, [1, 4][int(np.argmax(matches))]] = 0.97
    assert best_reading(found, probabilities).number == "14"
    monkeypatch.setattr(number_reader, "WIDE_DIGIT", 1.25)
    assert best_reading(found, probabilities).number == "4"


def test_a_blot_is_not_cut_into_slices_that_read_as_1s():
    # A smudge half as wide again as high. Cut, its upright slices would read as 1s to a network that takes a slab
    # for a 1 (the oracle below); read whole, it is a "?".
    y, x = np.mgrid[:240, :300]
    blot = ((((x - 150) / 84) ** 2 + ((y - 120) / 60) ** 2) <= 1).astype(np.uint8) * 255
    picture = np.asarray(Image.fromarray(255 - blot).filter(ImageFilter.GaussianBlur(3)))
    found = candidates(picture_ink(picture)[0])
    assert found.primitives == 1
    probabilities = np.full((len(found.spans), 10), 0.1)
    for k, (left, top, right, bottom) in enumerate(found.boxes):
        if right - left < 0.8 * (bottom - top):  # an upright slab: a 1 at 0.9
            probabilities[k] = 0.1 / 9
            probabilities[k, 1] = 0.9
    assert best_reading(found, probabilities).number == "?"


def test_touching_digits_drawn_with_a_thick_pen_are_still_cut_apart():
    # A pen a fifth of the digits' height: thick, but no blot. The four 8 pixels into the zero.
    ink, boxes = compose(["zero", "four"], [-8], pen=22)
    assert read(on_paper(ink, np.random.default_rng(3)), boxes, [0, 4]) == "04"


def test_a_digit_in_two_strokes_stays_one_digit():
    # A 4 drawn in two strokes that do not touch: its left part and its upright, side by side.
    ink, boxes = compose(["four", "one"], [40])
    left, top, right, bottom = boxes[0]
    upright = left + int(0.62 * (right - left))
    ink[:, upright - 6 : upright - 1] = 0  # a gap between the two strokes
    assert ndimage.label(ink[:, : boxes[1][0]] > 0)[1] >= 2
    assert read(on_paper(ink, np.random.default_rng(3)), boxes, [4, 1]) == "41"


def test_a_small_stroke_a_gap_beside_a_digit_is_no_digit_of_its_own():
    # A tick a quarter of the digit's height, further right than the gap that keeps two digits apart (a 5's flag
    # drawn apart, a stray mark): the whole picture may still be one digit.
    ink, boxes = compose(["zero"], [])
    left, top, right, bottom = boxes[0]
    height = bottom - top
    ink[bottom - height // 2 : bottom - height // 2 + height // 4, right + 16 : right + 20] = 255
    found = candidates(picture_ink(on_paper(ink, np.random.default_rng(7)))[0])
    assert found.primitives == 2 and 0 not in found.wide  # the tick and the 0 may be read together
    # A network that reads the 0 with or without the tick as a 0, and the tick alone as nothing.
    probabilities = np.full((len(found.spans), 10), 0.1)
    holds_zero = [k for k, box in enumerate(found.boxes) if iou(box, boxes[0]) >= 0.6]
    probabilities[holds_zero] = np.eye(10)[0] * 0.8 + 0.02
    assert best_reading(found, probabilities).number == "0"


def test_a_flat_digit_in_two_marks_may_be_read_whole():
    # A 0 drawn 1.8 times as wide as high, in two strokes with a thin gap between them (as a flat 5 with its flag
    # drawn apart): together wider than most digits, but one digit, which the whole picture is read as.
    drawing = draw_digit("zero")
    rows, cols = np.nonzero(drawing)
    zero = drawing[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    flat = np.array(Image.fromarray(zero).resize((int(1.8 * zero.shape[0]), zero.shape[0])))
    middle = flat.shape[1] // 2
    flat[:, middle - 2 : middle + 2] = 0
    ink = np.pad(flat, 60)
    found = candidates(picture_ink(on_paper(ink, np.random.default_rng(9)))[0])
    assert ndimage.label(ink > 0)[1] == 2 and 0 not in found.wide  # two marks, and the whole may be read
    # A network that reads the whole as a 0 and each half as nothing.
    probabilities = np.full((len(found.spans), 10), 0.1)
    probabilities[0] = np.eye(10)[0] * 0.8 + 0.02
    assert best_reading(found, probabilities).number == "0"


def test_digits_of_different_sizes_on_a_sloping_line():
    names = ["one", "zero", "seven", "four", "zero"]
    ink, boxes = compose(names, [25, 30, 20, 30], sizes=[0.8, 1.2, 1.0, 0.75, 1.1], rises=[0, 12, 24, 40, 50])
    assert read(on_paper(ink, np.random.default_rng(4)), boxes, [DIGITS[n] for n in names]) == "10740"


def test_a_piece_the_network_does_not_believe_is_a_question_mark():
    ink, boxes = compose(["seven", "zero", "four"], [30, 30])
    picture = on_paper(ink, np.random.default_rng(5))
    found_ink, scale = picture_ink(picture)
    found = candidates(found_ink)
    probabilities = oracle(found, boxes, [7, 0, 4])
    middle = [k for k, box in enumerate(found.boxes) if iou(box, boxes[1]) >= 0.8]
    probabilities[middle] = np.full(10, 0.1)
    probabilities[middle, 6], probabilities[middle, 8] = UNSURE_BELOW - 0.2, 0.2  # a guess: 6 or 8
    reading = best_reading(found, probabilities, scale)
    assert reading.number == "7?4"
    unsure = reading.digits[1]
    assert not unsure.sure and unsure.text == "?" and [d for d, _ in unsure.top3[:2]] == [6, 8]


def test_one_digit_is_read_as_the_whole_picture():
    # A picture of one digit: the number reader reads exactly what `predict` reads as one digit.
    for name in DIGITS:
        picture = on_paper(np.pad(draw_digit(name), 40), np.random.default_rng(6))
        ink, _ = picture_ink(picture)
        found = candidates(ink)
        assert found.spans[0] == (0, found.primitives)
        assert np.array_equal(found.pixels[0], mnist_pixels(picture))
        reading = best_reading(found, oracle(found, [found.boxes[0]], [DIGITS[name]]))
        assert reading.number == str(DIGITS[name]) and np.array_equal(reading.digits[0].pixels, found.pixels[0])


def test_a_dot_apart_from_a_digit_leaves_its_picture_as_it_was():
    # A dot beside or above a 4 (a slip of the pen, or its first touch of the next digit) is no reason to shrink the
    # 4 in its 28x28 picture; a speck close to it, as a digit's own detached bits lie, is kept.
    ink, boxes = compose(["four"], [])
    ink = np.pad(ink, ((0, 0), (0, 120)))
    left, top, right, bottom = boxes[0]

    def picture(row: int | None = None, col: int | None = None) -> np.ndarray:
        dotted = ink.copy()
        if row is not None:
            dotted[row : row + 10, col : col + 10] = 255  # a speck: under a fifth of the 4's height
        return on_paper(dotted, np.random.default_rng(3))

    alone = mnist_pixels(picture())
    for row, col in [((top + bottom) // 2, right + 80), (top - 40, (left + right) // 2), (top - 40, right + 40)]:
        assert np.array_equal(mnist_pixels(picture(row, col)), alone), (row, col)
        assert np.array_equal(candidates(picture_ink(picture(row, col))[0]).pixels[0], alone)  # the whole picture
    assert not np.array_equal(mnist_pixels(picture((top + bottom) // 2, right + 8)), alone)


def ruled_page(ink: np.ndarray, rng: np.random.Generator, squared: bool = False) -> np.ndarray:
    """Dark ink on white paper with printed lines a little lighter than the ink: a ruled line under the digits and
    others above it, a margin line to their left, and with `squared` lines across as well."""
    page = np.pad(ink, ((60, 60), (120, 60))).astype(np.float32) / 255
    rows = np.nonzero(page.any(1))[0]
    lines = np.zeros_like(page)
    for y in range(rows.max() + 2, 0, -70):
        lines[y : y + 3] = 1
    if squared:
        for x in range(page.shape[1] - 1, 0, -70):
            lines[:, x : x + 3] = 1
    lines[:, 60:64] = 1  # the margin
    gray = 245 - 215 * page
    gray = np.where((lines > 0) & (page < 0.5), 120, gray)  # lines over the paper, never over the ink
    return np.clip(gray + rng.normal(0, 3, gray.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("squared", [False, True])
def test_printed_lines_are_paper_not_ink(squared):
    names = ["four", "zero", "seven", "one"]
    ink, boxes = compose(names, [30, 30, 30])
    page = ruled_page(ink, np.random.default_rng(7), squared)
    found_ink, _ = picture_ink(page)
    assert found_ink[:, 60:64].max() == 0  # the margin line is gone
    shifted = [(l + 120, t + 60, r + 120, b + 60) for l, t, r, b in boxes]
    assert read(page, shifted, [DIGITS[n] for n in names]) == "4071"


def test_a_page_of_marks_asks_to_crop_to_the_number():
    rng = np.random.default_rng(8)
    page = np.zeros((800, 1000), np.uint8)
    for _ in range(60):  # a page of short words
        y, x = rng.integers(20, 760), rng.integers(20, 940)
        page[y : y + 25, x : x + 8] = 255
    with pytest.raises(ImageError, match=r"^\d+ separate marks, more than a number of up to 20 digits: crop the picture"):
        candidates(picture_ink(255 - page)[0])


def test_a_page_of_digits_in_rows_asks_to_crop_to_the_number():
    # Its digits stand in columns as well as in rows: each column joined into one "digit" of stacked strokes, and
    # the page was read as a confident number.
    row, boxes = compose(["seven", "four", "one", "zero", "seven", "four"], [30] * 5)
    rows, _ = np.nonzero(row)
    line = row[rows.min() - 20 : rows.max() + 20]
    for lines in (3, 8):
        with pytest.raises(ImageError, match=r"^writing on several lines, not one number: crop the picture"):
            candidates(picture_ink(255 - np.concatenate([line] * lines))[0])
    assert len(candidates(picture_ink(255 - line)[0]).spans) > 1  # one line of them is a number
    # A 1 alone, broken into stacked pieces (a skipping pen), is no page: its pieces are all there is to measure by.
    left, _, right, _ = boxes[2]
    broken = np.pad(line[:, left:right], 20)
    broken[(np.arange(len(broken)) % 20) < 6] = 0
    assert ndimage.label(broken > 0)[1] >= 5
    candidates(picture_ink(255 - broken)[0])


def thick_blurred_crop(digit: np.ndarray, thickness: int, blur: float) -> np.ndarray:
    """A digit (white on black) drawn with a marker and blurred, dark on white, cropped to its ink."""
    image = Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC)
    image = image.filter(ImageFilter.MaxFilter(thickness)).filter(ImageFilter.GaussianBlur(blur))
    ink = np.asarray(image)
    rows, cols = np.nonzero(ink > 128)
    return 255 - ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


@pytest.mark.parametrize("name", DIGITS)
@pytest.mark.parametrize("thickness, blur", [(9, 3), (15, 4), (21, 4)])
def test_thick_blurred_strokes_into_the_edges_of_a_tight_crop_are_ink(name, thickness, blur):
    digit = np.asarray(Image.fromarray(draw_digit(name)).resize((28, 28), Image.Resampling.BOX))
    crop = thick_blurred_crop(digit, thickness, blur)
    pixels = mnist_pixels(crop)  # not refused as blank
    assert pixels.max() > 200 and 20 < (pixels > 128).sum() < 400


def test_thick_blurred_mnist_digits_cropped_tight_are_never_refused(real_mnist):
    from digitnet.mnist import TEST_FILES, load_split

    images, labels = load_split(real_mnist, TEST_FILES)
    refused = []
    for i in range(300):
        for thickness, blur in ((9, 3), (15, 4), (21, 4)):
            crop = thick_blurred_crop(images[i].numpy(), thickness, blur)
            if (crop < 128).mean() > 0.85:
                continue  # a 1 so thick that it fills its own crop: no paper left to tell it from
            try:
                mnist_pixels(crop)
            except ImageError:
                refused.append((int(labels[i]), thickness, blur))
    assert refused == []


def test_a_blank_picture_is_still_refused():
    with pytest.raises(ImageError, match="^blank: no ink found"):
        candidates(picture_ink(np.full((200, 300), 230, np.uint8))[0])


@pytest.mark.slow  # subprocesses
@pytest.mark.parametrize("args, message", [
    (["--ckpt", "last.ckpt"], "argument --ckpt: expected NAME=PATH, e.g. ConvNet=last.ckpt; got last.ckpt"),
    (["--ckpt", "ConvNet=missing.ckpt"], "missing.ckpt: no such checkpoint"),
    (["--ckpt", "ConvNet=missing.ckpt", "--tune", "0.25", "0.5", "0.4"], "argument --tune: expected 4 arguments"),
    (["--ckpt", "ConvNet=missing.ckpt", "--tune", "0.25", "x", "0.4", "1"],
     "argument --tune: invalid comma_floats value: 'x'"),
])  # fmt: skip
def test_read_numbers_script_refuses_bad_arguments_in_one_line(args, message, tmp_path):
    script = Path(__file__).parents[1] / "scripts" / "read_numbers.py"
    result = subprocess.run([sys.executable, str(script), *args, "--out", str(tmp_path / "numbers")], cwd=tmp_path,
                            capture_output=True, text=True, env=digitnet_env())  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"error: {message}")
    assert not (tmp_path / "numbers").exists()


def test_the_measurement_s_half_digits_are_never_halves_of_a_1():
    # Half a 1 is a 1: read_numbers.py must not count it as a non-digit the reader failed to mark.
    script = Path(__file__).parents[1] / "scripts" / "read_numbers.py"
    spec = importlib.util.spec_from_file_location("read_numbers", script)
    read_numbers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(read_numbers)
    images = np.zeros((10, 28, 28), np.uint8)
    images[:, 4:24, 13:15] = 255  # nine upright bars, labelled 1
    images[3] = 0
    images[3, 13:15, 4:24] = 255  # one flat bar, labelled 7
    labels = np.array([1, 1, 1, 7, 1, 1, 1, 1, 1, 1])
    for seed in range(20):
        ink = read_numbers.half(images, labels, np.random.default_rng(seed))
        rows, cols = np.flatnonzero(ink.max(1) > 0.5), np.flatnonzero(ink.max(0) > 0.5)
        assert cols[-1] - cols[0] > 3 * (rows[-1] - rows[0])  # a half of the flat bar, never of an upright one


def test_the_measurement_s_found_column_is_whether_some_split_reads_the_number():
    # `found`, the ceiling of any scoring of the candidates: every split counts, whatever its probabilities.
    script = Path(__file__).parents[1] / "scripts" / "read_numbers.py"
    spec = importlib.util.spec_from_file_location("read_numbers", script)
    read_numbers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(read_numbers)
    spans = [(0, 3), (0, 1), (1, 3), (0, 2), (2, 3), (1, 2)]  # the whole picture first, as `candidates` lists them
    likeliest = [7, 1, 2, 4, 5, 9]  # each candidate's likeliest digit
    probabilities = np.eye(10)[likeliest] * 0.5 + 0.05
    found = number_reader.Candidates(np.zeros((6, 28, 28), np.uint8), spans, [(0, 0, 1, 1)] * 6, 3, frozenset(),
                                     frozenset())  # fmt: skip
    read = {want: read_numbers.split_found(found, probabilities, want) for want in ["7", "12", "45", "195", "21", "1"]}
    assert read == {"7": True, "12": True, "45": True, "195": True, "21": False, "1": False}
    assert not read_numbers.split_found(found._replace(wide=frozenset([0])), probabilities, "7")  # never read whole
