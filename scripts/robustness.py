"""How well does each trained network read the digits people hand in? A table, one row per kind of digit.

    python scripts/robustness.py --data_dir "$DIGITNET_DATA_DIR" --images 1000 \
        --ckpt MLP=lightning_logs/Adam/version_0/checkpoints/last.ckpt \
        --ckpt ConvNet=lightning_logs/ConvNet-Adam/version_0/checkpoints/last.ckpt --out robustness

From the first `--images` digits of MNIST's test set (never seen in training), each kind below is made as an
image file, the way people hand digits in, and every file is read as `python -m digitnet predict` reads it
(`digitnet.images.mnist_pixels` on each file, then each network on those pixels, as `DigitRecognizer.predict`
does on a path). Nothing is tuned
on these digits: the kinds, their ranges and the seed are fixed here. Writes OUT/robustness.md (the table) and
OUT/robustness.csv (one row per kind and network), and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from digitnet import DigitRecognizer
from digitnet.errors import DigitnetError
from digitnet.files import check_folder
from digitnet.images import ImageError, mnist_pixels
from digitnet.mnist import TEST_FILES, default_data_dir, load_split

UP = 4  # each 28x28 digit is drawn at 112x112 before it is changed: strokes of about 8 pixels


def upscaled(digit: np.ndarray, size: int = 28 * UP) -> Image.Image:
    """The MNIST digit as dark ink on white paper, `size` pixels square (bicubic)."""
    return Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)


def on_sheet(ink: Image.Image, rng: np.random.Generator, height: int, width: int, paper: int = 255) -> Image.Image:
    """`ink` (dark on white) pasted at a random place of a `paper`-toned sheet."""
    sheet = Image.new("L", (width, height), paper)
    top, left = rng.integers(0, height - ink.height + 1), rng.integers(0, width - ink.width + 1)
    sheet.paste(Image.fromarray(np.minimum(np.asarray(ink), paper).astype(np.uint8)), (int(left), int(top)))
    return sheet


def mnist(digit, rng):  # the reference: the test image itself, white on black, as a PNG
    return Image.fromarray(digit)


def tight_crop(digit, rng):  # dark on white, cropped to the ink: no paper margin at all
    ink = upscaled(digit)
    box = Image.fromarray(255 - np.asarray(ink)).getbbox()
    return ink.crop(box)


def rotated(digit, rng):  # up to 20 degrees either way, on a sheet with a margin
    return upscaled(digit).rotate(rng.uniform(-20, 20), Image.Resampling.BICUBIC, expand=True, fillcolor=255)


def scaled(digit, rng):  # drawn at 0.6-1.3 times the size, each axis on its own (squashed or stretched)
    sx, sy = rng.uniform(0.6, 1.3, 2)
    ink = upscaled(digit).resize((int(28 * UP * sx), int(28 * UP * sy)), Image.Resampling.BICUBIC)
    return on_sheet(ink, rng, 28 * UP + 40, 28 * UP + 40)


def off_centre(digit, rng):  # a small digit anywhere on a large page
    return on_sheet(upscaled(digit, 28 * 2), rng, 300, 400)


def thick(digit, rng):  # a marker: strokes about 2.5 times as wide
    return upscaled(digit).filter(ImageFilter.MinFilter(9))


def thin(digit, rng):  # a fine pen: strokes eroded to about a third
    return Image.fromarray(np.where(np.asarray(upscaled(digit).filter(ImageFilter.MaxFilter(5))) < 128, 0, 255)
                           .astype(np.uint8))  # fmt: skip


def photo(digit, rng):  # grey paper in uneven light, blue-black ink, noise, blur, JPEG
    h = w = 28 * UP + 80
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    light = rng.uniform(150, 230) * (1 - rng.uniform(0.1, 0.35) * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y))
    ink = np.asarray(on_sheet(upscaled(digit), rng, h, w), np.float32) / 255  # 1 paper, 0 ink
    pen = rng.uniform(10, 70)
    gray = light * ink + pen * (1 - ink) + rng.normal(0, 4, (h, w))
    rgb = np.stack([gray * 0.95, gray * 0.97, gray], -1).clip(0, 255).astype(np.uint8)  # a blue cast
    return Image.fromarray(rgb, "RGB").filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))


def dark_border(digit, rng):  # a photo of the sheet on a dark desk: the paper fills 70-85% of the frame
    sheet = photo(digit, rng)
    side = int(sheet.width / rng.uniform(0.7, 0.85))
    frame = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(10, 50, 3)))
    frame.paste(sheet.rotate(rng.uniform(-4, 4), Image.Resampling.BICUBIC, fillcolor=(30, 30, 30)),
                ((side - sheet.width) // 2, (side - sheet.height) // 2))  # fmt: skip
    return frame


KINDS: dict[str, tuple[str, Callable]] = {
    "mnist": ("MNIST's test image itself (white on black, 28x28)", mnist),
    "tight_crop": ("dark on white, cropped to the ink (no margin)", tight_crop),
    "rotated": ("rotated by up to ±20°", rotated),
    "scaled": ("width and height each scaled by 0.6-1.3", scaled),
    "off_centre": ("small (56 px) anywhere on a 400x300 page", off_centre),
    "thick": ("strokes thickened about 2.5x (a marker)", thick),
    "thin": ("strokes thinned to about a third (a fine pen)", thin),
    "photo": ("photo: grey paper, uneven light, ink, noise, blur, JPEG", photo),
    "dark_border": ("photo of the sheet on a dark desk, rotated up to 4°", dark_border),
}


def make_files(kind: str, digits: np.ndarray, folder: Path, seed: int) -> list[Path]:
    rng = np.random.default_rng([seed, list(KINDS).index(kind)])  # the same images for every network
    files = []
    for i, digit in enumerate(digits):
        path = folder / kind / (f"{i:05d}.jpg" if kind in ("photo", "dark_border") else f"{i:05d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        KINDS[kind][1](digit, rng).save(path, **({"quality": int(rng.integers(40, 96))} if path.suffix == ".jpg" else {}))
        files.append(path)
    return files


def read(recognizers: dict[str, DigitRecognizer], files: list[Path], labels: np.ndarray) -> dict[str, float]:
    """Each network's accuracy over all files (an unreadable one counts as wrong), and how many were refused.

    Each file is made into MNIST pixels once, as `predict` makes it (`mnist_pixels`), then every network reads
    those pixels: the same input `DigitRecognizer.predict(path)` would give it, read once instead of per network.
    """
    pixels, kept = [], []
    for path, label in zip(files, labels):
        try:
            pixels.append(mnist_pixels(path))
            kept.append(label)
        except ImageError:
            pass
    results = {"refused": len(files) - len(pixels)}
    for name, recognizer in recognizers.items():
        digits = np.array([p.digit for p in recognizer.predict_many(pixels)]) if pixels else np.array([])
        results[name] = float((digits == np.array(kept)).sum()) / len(files)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=None, help="MNIST's folder (default: $DIGITNET_DATA_DIR, else ./data)")
    parser.add_argument("--ckpt", action="append", required=True, metavar="NAME=PATH",
                        help="a checkpoint to read with, and its column's name; repeat for each network")
    parser.add_argument("--images", type=int, default=1000, help="how many MNIST test digits per kind")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random changes")
    parser.add_argument("--out", default="robustness", help="folder for robustness.md and robustness.csv")
    args = parser.parse_args(argv)
    if args.images < 1 or args.seed < 0:
        parser.error("--images must be at least 1, --seed at least 0")
    try:
        columns = dict(item.split("=", 1) for item in args.ckpt)
    except ValueError:
        parser.error("--ckpt takes NAME=PATH, e.g. --ckpt ConvNet=lightning_logs/.../last.ckpt")
    if len(columns) < len(args.ckpt):  # else one would be dropped, silently
        parser.error("--ckpt names a network twice: give each its own NAME")
    try:
        check_folder("--out", args.out)
        recognizers = {name: DigitRecognizer.from_checkpoint(path) for name, path in columns.items()}
        images, labels = load_split(args.data_dir or default_data_dir(), TEST_FILES)
    except DigitnetError as err:
        sys.exit(f"robustness.py: error: {err}")
    digits, labels = images[: args.images].numpy(), labels[: args.images].numpy()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (description, _) in KINDS.items():
            files = make_files(kind, digits, Path(tmp), args.seed)
            results = read(recognizers, files, labels)
            for name in recognizers:
                rows.append({"kind": kind, "description": description, "net": name, "accuracy": results[name],
                             "refused": results["refused"], "images": len(files)})  # fmt: skip
                print(f"{kind:<12} {name:<10} {100 * results[name]:6.2f}%  refused {results['refused']}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "robustness.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = [f"| kind ({len(digits)} MNIST test digits each) | " + " | ".join(columns) + " |",
             "| --- |" + " ---: |" * len(columns)]  # fmt: skip
    for kind, (description, _) in KINDS.items():
        cells = []
        for row in (r for r in rows if r["kind"] == kind):
            cells.append(f"{100 * row['accuracy']:.1f}%" + (f" ({row['refused']} refused)" if row["refused"] else ""))
        table.append(f"| {description} | " + " | ".join(cells) + " |")
    (out / "robustness.md").write_text("\n".join(table) + "\n")
    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
