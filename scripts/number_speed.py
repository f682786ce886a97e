"""How much longer does reading a whole number take than reading one digit, from the same photo?

    python scripts/number_speed.py --data_dir "$DIGITNET_DATA_DIR" \
        --ckpt MLP=lightning_logs/Adam/version_0/checkpoints/last.ckpt \
        --ckpt ConvNet=lightning_logs/ConvNet-Adam/version_0/checkpoints/last.ckpt

A photo of about a megapixel (1200x860, JPEG) of an 8-digit number written with MNIST test digits, on grey paper
in uneven light. For each network, `DigitRecognizer.predict(photo)` (the photo read as one digit) and
`DigitRecognizer.read_number(photo)` are timed in turn, --repeats times each after two warm-up calls; the medians
and their ratio are printed, with where the number's time goes (decoding and the ink map, finding the candidate
digits, the network, the split).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digitnet import DigitRecognizer
from digitnet.errors import DigitnetError
from digitnet.images import picture_ink
from digitnet.mnist import TEST_FILES, default_data_dir, load_split
from digitnet.number_reader import best_reading, candidates


def photo_of_number(data_dir: str, digits: int = 8, size: tuple[int, int] = (1200, 860)) -> Image.Image:
    """`digits` MNIST test digits written side by side, dark ink on grey paper in uneven light, `size` pixels."""
    images, _ = load_split(data_dir, TEST_FILES)
    width, height = size
    rng = np.random.default_rng(0)
    ink = np.zeros((height, width), np.float32)
    side = (width - 200) // digits
    for k, digit in enumerate(images[:digits].numpy()):
        big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
        top, left = height // 2 - side // 2 + int(rng.integers(-10, 10)), 100 + k * side
        ink[top : top + side, left : left + side] = np.maximum(ink[top : top + side, left : left + side], big)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    light = 200 * (1 - 0.25 * x - 0.1 * y)
    gray = light * (1 - ink) + 40 * ink + rng.normal(0, 4, ink.shape)
    return Image.fromarray(np.stack([gray * 0.96, gray * 0.98, gray], -1).clip(0, 255).astype(np.uint8), "RGB")


def timed(call, repeats: int) -> list[float]:
    for _ in range(2):  # warm-up
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=None, help="MNIST's folder; default: $DIGITNET_DATA_DIR, else ./data")
    parser.add_argument("--ckpt", action="append", required=True, metavar="NAME=PATH", help="a network to time")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if not all("=" in spec for spec in args.ckpt):
        parser.error("--ckpt takes NAME=PATH, e.g. --ckpt ConvNet=lightning_logs/.../last.ckpt")
    if len({spec.split("=", 1)[0] for spec in args.ckpt}) < len(args.ckpt):
        parser.error("--ckpt names a network twice: give each its own NAME")
    try:  # the checkpoints and the data, in one line each when bad
        recognizers = [(name, DigitRecognizer.from_checkpoint(ckpt))
                       for name, ckpt in (spec.split("=", 1) for spec in args.ckpt)]
        picture = photo_of_number(args.data_dir or default_data_dir())
    except DigitnetError as err:
        parser.error(str(err))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "number.jpg"
        picture.save(path, quality=90)
        print(f"{path.name}: {picture.width}x{picture.height} ({picture.width * picture.height / 1e6:.2f} MP), "
              f"{path.stat().st_size / 1e3:.0f} kB")  # fmt: skip
        for name, recognizer in recognizers:
            one, number = [], []
            for _ in range(args.repeats):  # in turn, so that both meet the same machine
                one += timed(lambda: recognizer.predict(path), 1)
                number += timed(lambda: recognizer.read_number(path), 1)
            reading = recognizer.read_number(path)
            ink, scale = picture_ink(path)
            found = candidates(ink)
            probabilities = recognizer.probabilities(found.pixels)
            parts = {
                "decode and ink map": statistics.median(timed(lambda: picture_ink(path), args.repeats)),
                "candidates": statistics.median(timed(lambda: candidates(ink), args.repeats)),
                "network": statistics.median(timed(lambda: recognizer.probabilities(found.pixels), args.repeats)),
                "split": statistics.median(timed(lambda: best_reading(found, probabilities, scale), args.repeats)),
            }
            print(f"{name}: one digit {statistics.median(one) * 1e3:.0f} ms, the number ({reading.number}, "
                  f"{len(found.spans)} candidates) {statistics.median(number) * 1e3:.0f} ms: "
                  f"{statistics.median(number) / statistics.median(one):.2f}x")  # fmt: skip
            print("  " + ", ".join(f"{part} {seconds * 1e3:.0f} ms" for part, seconds in parts.items()))


if __name__ == "__main__":
    main()
