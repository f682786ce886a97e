"""How much do k of a new writer's digits per class teach each network? Error on their hand before and after.

    python scripts/writer_adaptation.py --data_dir "$DIGITNET_DATA_DIR" \
        --ckpt MLP=lightning_logs/Adam/version_0/checkpoints/last.ckpt \
        --ckpt ConvNet=lightning_logs/ConvNet-Adam/version_0/checkpoints/last.ckpt --k 5 10 20 --out writer

The writer is drawn here, not taken from MNIST: digits 0-9 as pen strokes (lines, arcs, Bezier curves in a unit
box, `STROKES`) in one hand MNIST lacks (`STYLE`: a 22-degree right slant, a felt-tip pen 15% of the digit's
height with soft edges, wide digits, a 1 with a long flag and no foot, a crossed 7, an open 4, a flat-topped 3, an
8 with a small head, a 9 on a straight stem), each instance a little different (`VARY`: a smooth warp of a few
percent, slant, pen, rotation; size and place on the sheet), dark on grey paper with noise, 112-160 pixels square,
30% of them through JPEG; docs/writer.md shows them. For each network and k: k digits per class are written
as an ImageFolder (OUT/k{K}/{digit}/{i}.png, what `--data.extra_dir` of the fine-tune reads), the original
checkpoint is fine-tuned on them (`digitnet.finetune.finetune`, a run under OUT/lightning_logs/), and `--test`
other digits of the writer (OUT/test/{digit}/{i}.png) are read as `python -m digitnet predict` reads files, with
the original checkpoint and the fine-tuned one. The fine-tune reports MNIST's test accuracy before and after, and
its seconds. Writes OUT/writer.md (the tables), OUT/writer.csv and OUT/preview.png (10 test digits of each class),
and prints the tables.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from digitnet import DigitRecognizer
from digitnet.cli import quiet_lightning
from digitnet.errors import DigitnetError
from digitnet.files import check_folder
from digitnet.finetune import finetune
from digitnet.mnist import FILES, default_data_dir, download, load_split

# --- the writer's hand --------------------------------------------------------------------------------------------

# Each digit as pen strokes in a unit box (x right, y down, the digit's height is 1), before slant and width.
# A stroke is a list of pieces drawn without lifting the pen: ("line", points), ("arc", cx, cy, rx, ry, from, to)
# with angles in degrees counter-clockwise from 3 o'clock, ("bezier", p0, p1, p2, p3).
STROKES: dict[int, list[list[tuple]]] = {
    0: [[("arc", 0.5, 0.5, 0.48, 0.5, 100, 470)]],  # an oval, closed with a small overlap at the top
    1: [[("line", [(0.0, 0.4), (0.6, 0.0), (0.6, 1.0)])]],  # a long flag, then the stem: no foot
    2: [[("arc", 0.5, 0.27, 0.45, 0.27, 160, -10), ("line", [(0.92, 0.35), (0.05, 1.0), (0.95, 0.98)])]],
    3: [[("line", [(0.08, 0.0), (0.9, 0.0), (0.4, 0.4)]),  # a flat top, a diagonal, then the bowl
         ("bezier", (0.4, 0.4), (1.05, 0.33), (1.08, 1.0), (0.5, 1.0)), ("line", [(0.5, 1.0), (0.05, 0.88)])]],
    4: [[("line", [(0.5, 0.0), (0.02, 0.66), (1.0, 0.66)])],  # open at the top: the stem starts lower
        [("line", [(0.74, 0.28), (0.74, 1.0)])]],
    5: [[("line", [(0.95, 0.0), (0.2, 0.0)])],
        [("line", [(0.2, 0.0), (0.14, 0.45)]), ("bezier", (0.14, 0.45), (0.7, 0.25), (1.15, 0.7), (0.6, 1.0)),
         ("line", [(0.6, 1.0), (0.05, 0.9)])]],
    6: [[("bezier", (0.85, 0.0), (0.3, 0.05), (0.0, 0.45), (0.1, 0.75)), ("arc", 0.52, 0.72, 0.43, 0.28, 180, 540)]],
    7: [[("line", [(0.0, 0.0), (0.98, 0.0), (0.3, 1.0)])],
        [("line", [(0.25, 0.52), (0.88, 0.52)])]],  # the continental crossbar
    8: [[("arc", 0.5, 0.155, 0.2, 0.155, -90, 270)], [("arc", 0.5, 0.655, 0.45, 0.345, 90, 450)]],  # a small head
    9: [[("arc", 0.46, 0.27, 0.44, 0.27, 0, 360)], [("line", [(0.9, 0.27), (0.86, 1.0)])]],  # a straight stem
}

# The writer's habits (fixed: one person) and how much one instance differs from the next (drawn per digit).
STYLE = {"slant": 22.0, "width": 0.68, "pen": 0.15}  # degrees right; width / height; pen width / height
VARY = {"slant": 3.0, "pen": 0.15, "rotate": 3.0, "warp": 0.03}  # ± each; warp: std of its waves (size: `picture`)


def sample(piece: tuple) -> np.ndarray:
    """One piece of a stroke as (n, 2) points along it."""
    kind, *a = piece
    if kind == "line":
        return np.array(a[0], float)
    t = np.linspace(0, 1, 40)[:, None]
    if kind == "arc":
        cx, cy, rx, ry, start, end = a
        angle = np.radians(start + (end - start) * t[:, 0])
        return np.stack([cx + rx * np.cos(angle), cy - ry * np.sin(angle)], 1)
    p0, p1, p2, p3 = (np.array(p, float) for p in a)
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def warp(rng: np.random.Generator, amount: float):
    """A smooth random displacement of the unit box (two low sine waves per axis): strokes that meet still meet."""
    k = rng.uniform(1.5, 3.5, (2, 2))
    phase = rng.uniform(0, 2 * math.pi, (2, 2))
    size = rng.normal(0, amount, (2, 2))

    def move(p: np.ndarray) -> np.ndarray:  # (n, 2) points -> (n, 2)
        x, y = p[:, :1], p[:, 1:]
        return p + size[:, 0] * np.sin(k[:, 0] * y + phase[:, 0]) + size[:, 1] * np.sin(k[:, 1] * x + phase[:, 1])

    return move


def ink(digit: int, rng: np.random.Generator, height: float) -> np.ndarray:
    """The writer's `digit`, `height` pixels high, as ink (H, W) in [0, 1] with soft edges."""
    slant = math.tan(math.radians(STYLE["slant"] + rng.uniform(-VARY["slant"], VARY["slant"])))
    turn = math.radians(rng.uniform(-VARY["rotate"], VARY["rotate"]))
    pen = STYLE["pen"] * height * (1 + rng.uniform(-VARY["pen"], VARY["pen"]))
    move = warp(rng, VARY["warp"])
    up = 4  # drawn at 4x, then made smaller: smooth edges
    strokes = []
    for stroke in STROKES[digit]:
        p = move(np.concatenate([sample(piece) for piece in stroke]))
        x, y = p[:, 0] * STYLE["width"] + (1 - p[:, 1]) * slant, p[:, 1]  # lean the tops right
        x, y = x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)
        strokes.append(np.stack([x, y], 1) * height)
    points = np.concatenate(strokes)
    corner = points.min(0) - 0.75 * pen  # room for half the pen and its soft edge
    side = (points.max(0) + 0.75 * pen - corner) * up
    canvas = Image.new("L", (int(side[0]) + 1, int(side[1]) + 1), 0)
    draw = ImageDraw.Draw(canvas)
    r = pen * up / 2
    for stroke in strokes:
        xy = [tuple(v) for v in (stroke - corner) * up]
        draw.line(xy, fill=255, width=int(2 * r), joint="curve")
        for x, y in (xy[0], xy[-1]):  # round ends, as a felt tip leaves them
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    canvas = canvas.filter(ImageFilter.GaussianBlur(r * 0.25))  # the ink's soft edge
    small = canvas.resize((max(1, canvas.width // up), max(1, canvas.height // up)), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255


def picture(digit: int, rng: np.random.Generator) -> Image.Image:
    """The writer's `digit` as handed in: dark ink on grey paper, 112-160 pixels square, noise, sometimes JPEG."""
    size = int(rng.integers(112, 161))
    mark = ink(digit, rng, size * rng.uniform(0.5, 0.6))  # its height: 0.55 of the picture's, ±10%
    if max(mark.shape) > size - 4:  # a rare large warp: shrink it onto the sheet
        small = Image.fromarray((255 * mark).astype(np.uint8))
        small.thumbnail((size - 4, size - 4))
        mark = np.asarray(small, np.float32) / 255
    h, w = mark.shape
    shift = rng.integers(-size // 10, size // 10 + 1, 2)  # off centre by up to a tenth of the picture
    top, left = np.clip((size - np.array([h, w])) // 2 + shift, 2, size - 2 - np.array([h, w]))
    alpha = np.zeros((size, size), np.float32)
    alpha[top : top + h, left : left + w] = mark
    y, x = np.mgrid[0:size, 0:size] / size
    paper = rng.uniform(190, 245) * (1 - rng.uniform(0, 0.15) * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y))
    gray = paper * (1 - alpha) + rng.uniform(15, 60) * alpha + rng.normal(0, 3, alpha.shape)
    image = Image.fromarray(gray.clip(0, 255).astype(np.uint8))
    if rng.random() < 0.3:  # a photo sent as JPEG: its blocks stay in the picture
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(40, 90)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("L")
    return image


def draw(per_class: int, rng: np.random.Generator) -> dict[int, list[Image.Image]]:
    """`per_class` pictures of each digit, drawn in turn (0-9, 0-9, ...): the same seed gives the same pictures."""
    pictures: dict[int, list[Image.Image]] = {digit: [] for digit in range(10)}
    for _ in range(per_class):
        for digit in range(10):
            pictures[digit].append(picture(digit, rng))
    return pictures


def save(pictures: dict[int, list[Image.Image]], folder: Path, per_class: int) -> tuple[list[Path], list[int]]:
    """The first `per_class` pictures of each digit as folder/{digit}/{i}.png (torchvision's ImageFolder layout,
    what the fine-tune's `--data.extra_dir` reads): their paths and digits."""
    paths, labels = [], []
    for digit, images in pictures.items():
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images[:per_class]):
            paths.append(folder / str(digit) / f"{i}.png")
            image.save(paths[-1])
            labels.append(digit)
    return paths, labels


def preview(pictures: dict[int, list[Image.Image]], path: Path, rows: int = 10, cell: int = 64) -> None:
    """A grid of the writer's digits, one column per digit, `rows` instances each."""
    grid = Image.new("L", (10 * cell, rows * cell), 255)
    for digit, images in pictures.items():
        for row, image in enumerate(images[:rows]):
            grid.paste(image.resize((cell, cell), Image.Resampling.LANCZOS), (digit * cell, row * cell))
    grid.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path, optimize=True)  # 16 greys: ~85 kB


# --- the measurement ----------------------------------------------------------------------------------------------

def read(checkpoint: str, paths: list[Path]) -> np.ndarray:
    """The digit a checkpoint reads in each file, as `python -m digitnet predict` reads files."""
    return np.array([p.digit for p in DigitRecognizer.from_checkpoint(checkpoint).predict_many(paths)])


def per_digit(name: str, checkpoint: str, read_as: np.ndarray, labels: np.ndarray) -> str:
    """A row of the per-digit table: the share of each digit read right, in percent."""
    cells = [f"{100 * (read_as[labels == d] == d).mean():.0f}" for d in range(10)]
    return f"| {name} | {checkpoint} | " + " | ".join(cells) + " |"


def write_writer(out: Path, test: int, ks: list[int], seed: int) -> tuple[list[Path], np.ndarray]:
    """The writer's test digits (OUT/test/), the k digits per class of each fine-tune (OUT/k{K}/) and the preview:
    the test files and their digits. Test and training digits come from two streams of random numbers."""
    pictures = draw(test // 10, np.random.default_rng([seed, 1]))
    paths, labels = save(pictures, out / "test", test // 10)
    preview(pictures, out / "preview.png")
    train = draw(max(ks), np.random.default_rng([seed, 0]))
    for k in ks:  # k = 5 is the first 5 of k = 10's digits, and so on
        save(train, out / f"k{k}", k)
    return paths, np.array(labels)


def tables(rows: list[dict], digit_rows: list[str]) -> str:
    """The results as Markdown: one row per network and k, then the share of each digit read right."""
    lines = [f"| network | k per class | the writer's error ({rows[0]['writer_test']} digits) | cut | "
             "MNIST test accuracy | fine-tune (s) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['network']} | {r['k']} | {100 * r['writer_error_before']:.1f}% → "
                     f"{100 * r['writer_error_after']:.1f}% | {100 * r['relative_cut']:.0f}% | "
                     f"{100 * r['mnist_before']:.2f}% → {100 * r['mnist_after']:.2f}% | {r['seconds']:.1f} |")
    lines += ["", "The writer's test digits read right (%), per digit:", "",
              "| network | checkpoint | " + " | ".join(map(str, range(10))) + " |", "| --- | --- |" + " ---: |" * 10]
    return "\n".join(lines + digit_rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=None,
                        help="MNIST's folder, for the fine-tune (default: $DIGITNET_DATA_DIR, else ./data)")
    parser.add_argument("--ckpt", action="append", required=True, metavar="NAME=PATH",
                        help="a checkpoint to fine-tune, and its row's name; repeat for each network")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10, 20], help="the writer's digits per class to "
                        "fine-tune on; each k is its own fine-tune of the original checkpoint (default: 5 10 20)")
    parser.add_argument("--test", type=int, default=500, help="the writer's digits to test on, a tenth of each class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the writer's pictures")
    parser.add_argument("--out", default="writer", help="folder for the pictures, the fine-tuned runs "
                        "(OUT/lightning_logs/), writer.md, writer.csv and preview.png")
    args = parser.parse_args(argv)
    quiet_lightning()  # as the CLI: no Lightning tips or torch deprecation warnings between the tables' lines
    try:
        nets = dict(item.split("=", 1) for item in args.ckpt)
    except ValueError:
        parser.error("--ckpt takes NAME=PATH, e.g. --ckpt ConvNet=lightning_logs/.../last.ckpt")
    if len(nets) < len(args.ckpt):  # else one would be dropped, silently
        parser.error("--ckpt names a network twice: give each its own NAME")
    if args.test < 10 or min(args.k) < 1 or args.seed < 0:
        parser.error("--test needs at least 10 digits (one of each class), every --k at least 1, --seed at least 0")
    try:  # before the writer's pictures are written, or a first network's fine-tunes are lost to a later one's
        check_folder("--out", args.out)
        for checkpoint in nets.values():
            DigitRecognizer.from_checkpoint(checkpoint)
        download(args.data_dir or default_data_dir())  # what finetune reads, fetched if missing, then read whole
        for files in (FILES[:2], FILES[2:]):  # training, test
            load_split(args.data_dir or default_data_dir(), files)
    except DigitnetError as err:
        parser.error(str(err))
    out = Path(args.out)
    paths, labels = write_writer(out, args.test, args.k, args.seed)
    print(f"The writer: {len(paths)} test digits in {out / 'test'}, a preview in {out / 'preview.png'}", flush=True)

    rows, digit_rows = [], []
    try:
        for name, checkpoint in nets.items():
            before = read(checkpoint, paths)
            error_before = float((before != labels).mean())
            digit_rows.append(per_digit(name, "before", before, labels))
            for k in args.k:
                result = finetune(ckpt_path=checkpoint, extra_dir=str(out / f"k{k}"), data_dir=args.data_dir,
                                  root=str(out))  # fmt: skip
                after = read(result["checkpoint"], paths)
                error_after = float((after != labels).mean())
                digit_rows.append(per_digit(name, f"k = {k}", after, labels))
                rows.append({"network": name, "k": k, "writer_test": len(paths),
                             "writer_error_before": error_before, "writer_error_after": error_after,
                             "relative_cut": 1 - error_after / error_before if error_before else float("nan"),
                             "mnist_before": result["mnist_before"], "mnist_after": result["mnist_after"],
                             "seconds": result["seconds"], "checkpoint": result["checkpoint"]})  # fmt: skip
                print(f"{name} k={k}: the writer's error {100 * error_before:.1f}% -> {100 * error_after:.1f}%, "
                      f"MNIST {100 * result['mnist_before']:.2f}% -> {100 * result['mnist_after']:.2f}%, "
                      f"{result['seconds']:.1f} s", flush=True)  # fmt: skip
    except DigitnetError as err:
        sys.exit(f"writer_adaptation.py: error: {err}")

    with open(out / "writer.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "writer.md").write_text(tables(rows, digit_rows))
    print("\n" + tables(rows, digit_rows), end="")


if __name__ == "__main__":
    main()
