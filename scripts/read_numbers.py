"""How well does each trained network read whole numbers, and say "?" to what is no digit? A table per network.

    python scripts/read_numbers.py --data_dir "$DIGITNET_DATA_DIR" \
        --ckpt MLP=lightning_logs/Adam/version_0/checkpoints/last.ckpt \
        --ckpt ConvNet=lightning_logs/ConvNet-Adam/version_0/checkpoints/last.ckpt --out numbers

Numbers are built from MNIST's digits the way people write them (the kinds below), saved as image files and read
as `python -m digitnet predict` reads files (`DigitRecognizer.read_number` on each path). Reported per kind: the
share of numbers read exactly, and of their digits (one less the edit distance over the length), and the share
whose candidate digits hold a split that reads the number (`found`: the most that any scoring of those candidates
could read exactly, whatever their probabilities). Then the "?"
checks: MNIST's test digits one at a time (a single digit equal to the whole picture's `digit`, and how many are
marked "?"), and pictures that hold no digit (letters, scribbles, halves of digits, smudges: how many are read
as "?" only, no digit). Digits come from the test set (`--split test`, the default) or from the 2,000 training
images every preset holds out for validation (`--split val`): settings of the reader are chosen on those, never
on the test digits. Prints the tables and writes them to OUT/numbers.csv.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from digitnet import DigitRecognizer
from digitnet.errors import DigitnetError
from digitnet.files import check_folder
from digitnet.mnist import TEST_FILES, TRAIN_FILES, default_data_dir, load_split
from digitnet.images import picture_ink
from digitnet.number_reader import (CUT_COST, SPLIT_COST, UNSURE_BELOW, WIDE_COST, Candidates, NumberReading,
                                    best_reading, candidates, choose, read_with_net)

UP = 3  # an MNIST pixel is UP x UP pixels of the pictures: digits about 60 pixels high


# --- numbers, built from MNIST digits -----------------------------------------------------------------------------

def ink_box(digit: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(digit > 30)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def two_strokes(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit with a 2-pixel band erased across its middle, in a random direction: drawn in two strokes."""
    top, bottom, left, right = ink_box(digit)
    cy, cx = (top + bottom) / 2 + rng.uniform(-2, 2), (left + right) / 2 + rng.uniform(-2, 2)
    angle = rng.uniform(0, math.pi)
    y, x = np.mgrid[0:28, 0:28]
    distance = np.abs((x - cx) * math.sin(angle) - (y - cy) * math.cos(angle))
    return np.where(distance < 1.0, 0, digit).astype(np.uint8)


def compose(digits: list[np.ndarray], rng: np.random.Generator, gaps: list[float], sizes: list[float] | None = None,
            rises: list[float] | None = None, touch: list[bool] | None = None) -> np.ndarray:  # fmt: skip
    """Digits (white on black, 28x28) side by side as one ink picture (H, W) in [0, 1], UP times MNIST's scale.

    gaps[i]: pixels (MNIST's) between the ink of digit i and i + 1; with touch[i] the next digit is moved left
    until its ink meets this one's, then by -gaps[i] pixels more (0: just touching). sizes: each digit's scale;
    rises: each digit's baseline, in MNIST pixels, up is positive."""
    n = len(digits)
    sizes = sizes or [1.0] * n
    rises = rises or [0.0] * n
    touch = touch or [False] * n
    pieces = []
    for digit, size in zip(digits, sizes):
        top, bottom, left, right = ink_box(digit)
        crop = Image.fromarray(digit[top:bottom, left:right])
        w, h = max(1, round(crop.width * UP * size)), max(1, round(crop.height * UP * size))
        pieces.append(np.asarray(crop.resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255)
    height = int(max(p.shape[0] for p in pieces) + 2 * UP * (max(abs(r) for r in rises) + 2))
    width = int(sum(p.shape[1] for p in pieces) + UP * (sum(max(g, 0) for g in gaps) + 8))
    canvas = np.zeros((height + 4 * UP, width + 4 * UP), np.float32)
    baseline = canvas.shape[0] - 3 * UP - UP * max(0.0, -min(rises))
    x = 2 * UP
    for i, (piece, rise) in enumerate(zip(pieces, rises)):
        h, w = piece.shape
        top = int(round(baseline - h - rise * UP))
        if i and touch[i - 1]:  # move left until the inks meet
            while x > 0:
                region = canvas[top : top + h, x - 1 : x - 1 + w]
                if ((region > 0.3) & (piece > 0.3)).any():
                    break
                x -= 1
            x = max(0, x - int(round(-gaps[i - 1] * UP)))
        canvas[top : top + h, x : x + w] = np.maximum(canvas[top : top + h, x : x + w], piece)
        if i + 1 < n:
            x += w + (0 if touch[i] else int(round(gaps[i] * UP)))
    rows, cols = np.nonzero(canvas > 0.05)
    margin = 4 * UP
    return np.pad(canvas[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1], margin)


def on_white(ink: np.ndarray) -> Image.Image:
    """Ink as a dark pen on white paper."""
    return Image.fromarray((255 - 235 * ink).clip(0, 255).astype(np.uint8))


def photo(ink: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Ink on grey paper in uneven light, blue-black, with noise and blur (saved as JPEG)."""
    h, w = ink.shape
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    light = rng.uniform(150, 230) * (1 - rng.uniform(0.1, 0.35) * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y))
    pen = rng.uniform(10, 70)
    gray = light * (1 - ink) + pen * ink + rng.normal(0, 4, (h, w))
    rgb = np.stack([gray * 0.95, gray * 0.97, gray], -1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))


def ruled(ink: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Ink on lined paper: grey-blue lines, one under the digits as their baseline and others a digit's height
    apart, and a red margin line to the left of the number."""
    h, w = ink.shape
    pad_top, pad_left = 40, 60
    canvas = np.zeros((h + 2 * pad_top, w + pad_left + 40), np.float32)
    canvas[pad_top : pad_top + h, pad_left : pad_left + w] = ink
    rows, _ = np.nonzero(ink > 0.3)
    baseline = pad_top + rows.max() + int(rng.integers(-2, 3))
    spacing = int((rows.max() - rows.min()) * rng.uniform(0.9, 1.3))
    rgb = np.full(canvas.shape + (3,), 250.0)
    line_colour = np.array([150.0, 175.0, 215.0]) * rng.uniform(0.8, 1.05)
    for y0 in range(baseline % spacing, canvas.shape[0], spacing):
        rgb[y0 : y0 + 2] = line_colour
    margin = int(rng.integers(10, pad_left - 20))
    rgb[:, margin : margin + 2] = (220, 90, 90)
    pen = np.array([25.0, 30.0, 70.0])
    rgb = rgb * (1 - canvas[..., None]) + pen * canvas[..., None]
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")


KINDS = {
    "separated": "4 digits, 1-6 pixels apart",
    "touching": "4 digits, at least one pair touching or overlapping by up to 2 pixels",
    "two_strokes": "4 digits, 1-6 pixels apart, one of them in two strokes",
    "uneven": "4 digits of sizes 0.75-1.25, baselines up to 3 pixels off, a slope of up to 5 degrees",
    "long": "6-8 digits, from 8 pixels apart to touching",
    "photo": "4 digits, 1-6 pixels apart, photographed: grey paper, uneven light, noise, blur, JPEG",
    "ruled": "4 digits on lined paper with a margin line",
    "mix": "2-8 digits, each number of a kind above drawn at random",
}


def build_number(kind: str, pool: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, str, str]:
    """(picture, the number as text, file suffix) of one number of `kind`."""
    if kind == "mix":
        kind = str(rng.choice([k for k in KINDS if k != "mix"]))
        count = int(rng.integers(2, 9))
    else:
        count = int(rng.integers(6, 9)) if kind == "long" else 4
    index = rng.choice(len(pool), count, replace=False)
    digits = [pool[i] for i in index]
    text = "".join(str(labels[i]) for i in index)
    gaps = list(rng.uniform(1, 6, count - 1))
    touch = [False] * (count - 1)
    sizes = rises = None
    if kind == "touching":
        pairs = rng.random(count - 1) < 0.5
        pairs[rng.integers(count - 1)] = True  # at least one
        touch = list(pairs)
        gaps = [rng.uniform(-2, 0) if t else g for t, g in zip(touch, gaps)]
    elif kind == "long":
        touch = list(rng.random(count - 1) < 0.2)
        gaps = [rng.uniform(-1, 0) if t else rng.uniform(0, 8) for t in touch]
    elif kind == "two_strokes":
        k = int(rng.integers(count))
        digits[k] = two_strokes(digits[k], rng)
    elif kind == "uneven":
        sizes = list(rng.uniform(0.75, 1.25, count))
        slope = math.tan(math.radians(rng.uniform(-5, 5)))
        rises = list(rng.uniform(-3, 3, count) + slope * 20 * np.arange(count))
    ink = compose(digits, rng, gaps, sizes, rises, touch)
    if kind == "photo":
        return photo(ink, rng), text, ".jpg"
    if kind == "ruled":
        return ruled(ink, rng), text, ".png"
    return on_white(ink), text, ".png"


# --- pictures that hold no digit ----------------------------------------------------------------------------------

# Letters, as pen strokes in a 0-1 box (x right, y down): polylines, and arcs as (cx, cy, r, a0, a1).
LETTERS = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.25, 0.55), (0.75, 0.55)]],
    "E": [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, 0.5), (0.7, 0.5)]],
    "F": [[(1, 0), (0, 0), (0, 1)], [(0, 0.5), (0.7, 0.5)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0.5), (1, 0.5)]],
    "K": [[(0, 0), (0, 1)], [(1, 0), (0, 0.55), (1, 1)]],
    "M": [[(0, 1), (0, 0), (0.5, 0.6), (1, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "R": [[(0, 1), (0, 0), (0.7, 0), (0.9, 0.2), (0.7, 0.45), (0, 0.45)], [(0.4, 0.45), (1, 1)]],
    "T": [[(0, 0), (1, 0)], [(0.5, 0), (0.5, 1)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.3), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]],
    "k": [[(0, 0), (0, 1)], [(0.8, 0.4), (0, 0.75), (0.9, 1)]],
    "m": [[(0, 1), (0, 0.35)], [(0, 0.5), (0.25, 0.35), (0.5, 0.5), (0.5, 1)], [(0.5, 0.5), (0.75, 0.35), (1, 0.5), (1, 1)]],
    "w": [[(0, 0.3), (0.25, 1), (0.5, 0.5), (0.75, 1), (1, 0.3)]],
    "x": [[(0, 0.3), (1, 1)], [(1, 0.3), (0, 1)]],
    "&": [[(0.9, 1), (0.2, 0.35), (0.35, 0.05), (0.6, 0.1), (0.55, 0.35), (0.1, 0.7), (0.2, 0.95), (0.5, 1), (0.85, 0.6)]],
}


def letter(rng: np.random.Generator) -> np.ndarray:
    """A letter of LETTERS in a random hand: size, width, slant and pen, as ink (H, W) in [0, 1]."""
    name = str(rng.choice(list(LETTERS)))
    height = rng.uniform(50, 90)
    width = height * rng.uniform(0.55, 0.9)
    slant = math.tan(math.radians(rng.uniform(-15, 15)))
    pen = max(2, int(height * rng.uniform(0.06, 0.12)))
    size = int(height + width + 40)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in LETTERS[name]:
        points = [(20 + x * width + (1 - y) * height * slant + rng.normal(0, 1.5), 20 + y * height + rng.normal(0, 1.5))
                  for x, y in stroke]  # fmt: skip
        draw.line(points, fill=255, width=pen, joint="curve")
    return np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.8)), np.float32) / 255


def scribble(rng: np.random.Generator) -> np.ndarray:
    """One random pen stroke that turns as it goes, 30-80 steps long, as ink in [0, 1]."""
    steps, heading, turn = int(rng.integers(30, 80)), rng.uniform(0, 2 * math.pi), 0.0
    points, x, y = [], 100.0, 100.0
    for _ in range(steps):
        turn = 0.8 * turn + rng.normal(0, 0.35)
        heading += turn
        x, y = x + 4 * math.cos(heading), y + 4 * math.sin(heading)
        points.append((x, y))
    canvas = Image.new("L", (400, 400), 0)
    ImageDraw.Draw(canvas).line([(px + 100, py + 100) for px, py in points], fill=255, width=int(rng.integers(4, 9)),
                                joint="curve")  # fmt: skip
    return np.asarray(canvas, np.float32) / 255


def half(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The left or right half of one of `images` (one side of its ink box's middle), UP times larger. Never of a 1:
    half a 1 is a 1."""
    digit = images[rng.choice(np.flatnonzero(labels != 1))]
    top, bottom, left, right = ink_box(digit)
    middle = (left + right) // 2
    cut = digit.copy()
    if rng.random() < 0.5:
        cut[:, middle:] = 0
    else:
        cut[:, :middle] = 0
    big = Image.fromarray(cut).resize((28 * UP, 28 * UP), Image.Resampling.BICUBIC)
    return np.asarray(big, np.float32) / 255


def smudge(rng: np.random.Generator) -> np.ndarray:
    """A blot: a few overlapping blurred discs, as ink in [0, 1]."""
    canvas = Image.new("L", (160, 160), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = rng.uniform(60, 100, 2)
    for _ in range(int(rng.integers(2, 6))):
        r = rng.uniform(8, 25)
        x, y = cx + rng.normal(0, 12), cy + rng.normal(0, 12)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    blurred = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4)))
    return np.asarray(blurred, np.float32) / 255


NON_DIGITS = {
    "letter": "letters (A E F H K M N R T V W X Y k m w x &), slanted, pen 6-12% of their height",
    "scribble": "one random pen stroke that turns as it goes",
    "half": "the left or right half of an MNIST digit other than a 1",
    "smudge": "a blot of overlapping blurred discs",
}


# --- reading --------------------------------------------------------------------------------------------------------

def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def look(recognizer: DigitRecognizer, path: Path):
    """What the reader sees in a file, as `DigitRecognizer.read_number` does: (candidates, their probabilities,
    scale, the number net's reading or None without one), or the reason it cannot be read."""
    try:
        ink, scale = picture_ink(path)
        found = candidates(ink)
    except DigitnetError as err:
        return str(getattr(err, "reason", err))
    net = None if recognizer.number_net is None else read_with_net(ink, scale, recognizer.symbols)
    return found, recognizer.probabilities(found.pixels), scale, net


def split_found(found: Candidates, probabilities: np.ndarray, want: str) -> bool:
    """Whether some split of the candidates into digits reads `want`, each piece as its likeliest digit."""
    reached = [set() for _ in range(found.primitives + 1)]  # [j]: how many digits of `want` splits of 0..j-1 read
    reached[0].add(0)
    for k, (i, j) in sorted(enumerate(found.spans), key=lambda span: span[1][1]):  # each (i, j) after all (., i)
        digit = str(int(probabilities[k].argmax()))
        if k not in found.wide:
            reached[j].update(m + 1 for m in reached[i] if m < len(want) and want[m] == digit)
    return len(want) in reached[found.primitives]


def found_shares(seen: dict, truth: dict) -> dict[str, float]:
    """Per kind of number, the share whose candidates hold a split that reads it (`split_found`): the same for every
    setting of the reader, so worked out once, not in --tune's loop."""
    return {kind: np.mean([not isinstance(x, str) and split_found(x[0], x[1], want)
                           for x, want in zip(seen[kind], truth[kind])]) for kind in KINDS}  # fmt: skip


def text_of(reading: NumberReading | None, line: float) -> str:
    """The number read, with "?" under the probability `line` ("" for a picture that could not be read)."""
    if reading is None:
        return ""
    return "".join(str(d.digit) if d.probability >= line else "?" for d in reading.digits)


def read_all(seen: dict, split_cost: float, cut_cost: float, wide_cost: float) -> dict[str, list]:
    """Each picture's NumberReading with these costs (None for a picture that could not be read), by kind: the number
    net's where the reader would take it (`choose`)."""
    def read(found, probabilities, scale, net):
        reading = best_reading(found, probabilities, scale, split_cost=split_cost, cut_cost=cut_cost,
                               wide_cost=wide_cost)  # fmt: skip
        return reading if net is None else choose(reading, net)

    return {kind: [None if isinstance(x, str) else read(*x) for x in items] for kind, items in seen.items()}


def scores(seen: dict, read: dict, truth: dict, line: float) -> list[dict]:
    """One row per kind: exact numbers and digits read, non-digits marked "?", MNIST digits one at a time, from the
    readings `read` (read_all's) with "?" under the probability `line`."""
    rows = []
    for kind, items in seen.items():
        readings = read[kind]
        texts = [text_of(reading, line) for reading in readings]
        if kind in KINDS:
            want = truth[kind]
            rows.append({"what": kind, "exact": np.mean([t == w for t, w in zip(texts, want)]),
                         "digits": sum(max(0, len(w) - edit_distance(t, w)) for t, w in zip(texts, want))
                         / sum(map(len, want))})  # fmt: skip
        elif kind in NON_DIGITS:
            rows.append({"what": f"non-digit: {kind}",
                         "marked": np.mean([bool(t) and not any(c.isdigit() for c in t) for t in texts])})
        else:  # MNIST digits one at a time: one digit, the same as the whole picture read as one digit
            same = [reading is not None and len(t) == 1 and reading.digits[0].digit == int(x[1][0].argmax())
                    for reading, x, t in zip(readings, items, texts)]
            rows.append({"what": "MNIST digits one at a time", "same": np.mean(same),
                         "marked": np.mean(["?" in t for t in texts]),
                         "exact": np.mean([t == w for t, w in zip(texts, truth[kind])])})
    return rows


def print_table(name: str, rows: list[dict]) -> None:
    for row in rows:
        cells = [f"{k} {row[k]:.2%}" for k in ("exact", "digits", "found", "marked", "same") if k in row]
        print(f"{name:10s} {row['what']:28s} " + "  ".join(cells))


def name_and_path(spec: str) -> tuple[str, str]:
    """--ckpt's NAME=PATH as (name, path)."""
    if "=" not in spec:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, e.g. ConvNet=last.ckpt; got {spec}")
    name, path = spec.split("=", 1)
    return name, path


def comma_floats(text: str) -> list[float]:
    """--tune's values: 0.25,0.5 as [0.25, 0.5] (argparse names the function in its error: invalid comma_floats)."""
    return [float(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None, help="MNIST's folder; default: $DIGITNET_DATA_DIR, else ./data")
    parser.add_argument("--ckpt", action="append", required=True, type=name_and_path, metavar="NAME=PATH",
                        help="a network to read with")
    parser.add_argument("--numbers", type=int, default=300, help="numbers of each kind (default 300)")
    parser.add_argument("--non_digits", type=int, default=300, help="pictures of each kind of non-digit (default 300)")
    parser.add_argument("--singles", type=int, default=10000, help="MNIST digits read one at a time (default all)")
    parser.add_argument("--split", choices=["test", "val"], default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="numbers", help="folder for numbers.csv")
    parser.add_argument("--tune", type=comma_floats, nargs=4, default=None,
                        metavar=("SPLIT_COSTS", "CUT_COSTS", "LINES", "WIDE_COSTS"),
                        help="also print the scores of each combination of these comma-separated settings of the "
                             "reader (SPLIT_COST, CUT_COST, UNSURE_BELOW, WIDE_COST), to choose them on --split val")
    args = parser.parse_args()
    if min(args.numbers, args.non_digits, args.singles) < 1 or args.seed < 0:
        parser.error("--numbers, --non_digits and --singles must be at least 1, --seed at least 0")
    nets = dict(args.ckpt)
    if len(nets) < len(args.ckpt):  # else one would be dropped, silently
        parser.error("--ckpt names a network twice: give each its own NAME")
    try:  # the checkpoints, then MNIST: a bad one stops in one line before anything is written
        check_folder("--out", args.out)
        recognizers = {name: DigitRecognizer.from_checkpoint(path) for name, path in nets.items()}
        data_dir = args.data_dir or default_data_dir()
        if args.split == "test":
            images, labels = load_split(data_dir, TEST_FILES)
        else:  # the 2,000 validation images every preset holds out (MNISTDataModule's split with seed 0)
            images, labels = load_split(data_dir, TRAIN_FILES)
            held_out = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:2000]
            images, labels = images[held_out], labels[held_out]
    except DigitnetError as err:
        parser.error(str(err))
    images, labels = images.numpy(), labels.numpy()
    rows, out = [], Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Numbers: the first half of the pool for one kind's digits would bias nothing; draw from all of it.
        cases: dict[str, list[tuple[Path, str]]] = {}
        for kind in KINDS:
            rng = np.random.default_rng([args.seed, list(KINDS).index(kind)])
            cases[kind] = []
            for i in range(args.numbers):
                picture, text, suffix = build_number(kind, images, labels, rng)
                path = folder / kind / f"{i:04d}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                picture.save(path, **({"quality": int(rng.integers(40, 96))} if suffix == ".jpg" else {}))
                cases[kind].append((path, text))
        negatives: dict[str, list[Path]] = {}
        for kind in NON_DIGITS:
            rng = np.random.default_rng([args.seed, 100 + list(NON_DIGITS).index(kind)])
            negatives[kind] = []
            for i in range(args.non_digits):
                if kind == "letter":
                    ink = letter(rng)
                elif kind == "scribble":
                    ink = scribble(rng)
                elif kind == "half":
                    ink = half(images, labels, rng)
                else:
                    ink = smudge(rng)
                path = folder / kind / f"{i:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                on_white(ink).save(path)
                negatives[kind].append(path)
        singles = []
        for i in range(min(args.singles, len(images))):
            path = folder / "single" / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(path)  # MNIST's image itself, white on black
            singles.append(path)
        truth = {kind: [text for _, text in items] for kind, items in cases.items()}
        truth["single"] = [str(label) for label in labels[: len(singles)]]
        files = {**{kind: [p for p, _ in items] for kind, items in cases.items()}, **negatives, "single": singles}
        for name, recognizer in recognizers.items():
            seen = {kind: [look(recognizer, path) for path in paths] for kind, paths in files.items()}
            table = scores(seen, read_all(seen, SPLIT_COST, CUT_COST, WIDE_COST), truth, UNSURE_BELOW)
            found = found_shares(seen, truth)
            table = [{**row, "found": found[row["what"]]} if row["what"] in found else row for row in table]
            print_table(name, table)
            rows += [{"network": name, **row} for row in table]
            if args.tune:  # the grid the reader's settings were chosen on (--split val)
                print(f"{name}: split_cost cut_cost line wide_cost | separated touching mix exact | "
                      "non-digits marked | one digit: same, marked")
                split_costs, cut_costs, lines, wide_costs = args.tune
                for split_cost, cut_cost, wide_cost in itertools.product(split_costs, cut_costs, wide_costs):
                    read = read_all(seen, split_cost, cut_cost, wide_cost)  # the line only marks "?": found once
                    for line in lines:
                        t = {row["what"]: row for row in scores(seen, read, truth, line)}
                        marked = np.mean([row["marked"] for what, row in t.items() if what.startswith("non-digit")])
                        single = t["MNIST digits one at a time"]
                        print(f"  {split_cost:4.2f} {cut_cost:4.2f} {line:4.2f} {wide_cost:4.2f} | "
                              f"{t['separated']['exact']:6.1%} {t['touching']['exact']:6.1%} "
                              f"{t['mix']['exact']:6.1%} | {marked:6.1%} | {single['same']:6.2%} "
                              f"{single['marked']:6.2%}", flush=True)
    with open(out / "numbers.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["network", "what", "exact", "digits", "found", "marked", "same"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
