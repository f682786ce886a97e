"""The MNIST-style preprocessing of photos (digitnet.images), without a model."""

import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from digitnet.pixels import MEAN, STD
from digitnet.errors import DigitnetError
from digitnet.image_files import ImageFiles, collate_images, list_files
from digitnet.images import ImageError, mnist_pixels, preprocess
from photos import KINDS, drawn_digits, photo, save_photo


def centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    mass = pixels.astype(float)
    rows, cols = np.indices(pixels.shape)
    return (rows * mass).sum() / mass.sum(), (cols * mass).sum() / mass.sum()


def ink_extent(pixels: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(pixels > 0)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.mark.parametrize("name, digit", drawn_digits().items())
def test_output_has_mnist_geometry(name, digit):
    # An off-centre dark digit on a big light sheet comes out white on black, its longer side 20 pixels,
    # its centre of mass at MNIST's (14, 14).
    sheet = np.full((300, 400), 220, np.uint8)
    sheet[40:152, 250:362] = 220 - np.asarray(Image.fromarray(digit).resize((112, 112))) * 0.8
    pixels = mnist_pixels(sheet)
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    assert max(ink_extent(pixels)) in (19, 20, 21)
    assert np.allclose(centre_of_mass(pixels), (14, 14), atol=0.6)
    assert pixels.max() > 240 and np.median(pixels) == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["zero", "one", "seven", "four"])
def test_photos_are_brought_back_to_the_mnist_digit(tmp_path, kind, name):
    mnist = mnist_pixels(drawn_digits()[name])  # the drawing as MNIST would hold it
    path = save_photo(mnist, tmp_path / name, np.random.default_rng(len(name)), kind)
    recovered = mnist_pixels(path).astype(float)
    assert np.allclose(centre_of_mass(recovered), (14, 14), atol=0.6)
    # Centring rounds the shift to whole pixels, as MNIST did: compare up to a shift of one pixel.
    error = min(
        np.abs(np.roll(recovered, (dy, dx), axis=(0, 1)) - mnist).mean() for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    )
    assert error < 12, error  # out of 255


def test_light_on_dark_and_dark_on_light_agree():
    digit = mnist_pixels(drawn_digits()["seven"])
    dark_on_light = np.asarray(photo(digit, np.random.default_rng(0), "png"))
    light_on_dark = 255 - dark_on_light
    assert np.array_equal(mnist_pixels(dark_on_light), mnist_pixels(light_on_dark))


def test_uneven_light_is_flattened():
    digit = mnist_pixels(drawn_digits()["four"])
    sheet = np.asarray(photo(digit, np.random.default_rng(1), "png")).astype(float)
    shaded = sheet * np.linspace(1.0, 0.55, sheet.shape[1])[None, :]  # a shadow darkening the sheet to one side
    error = np.abs(mnist_pixels(shaded).astype(float) - mnist_pixels(sheet).astype(float)).mean()
    assert error < 8


def test_small_drawing_and_normalization():
    # A 28x28 drawing from a paint program, dark on white: same geometry, then the training scaling.
    drawing = 255 - drawn_digits()["one"]
    x = preprocess(Image.fromarray(drawing))
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert x.min().item() == pytest.approx(-MEAN / STD) and x.max().item() == pytest.approx((1 - MEAN) / STD)
    plain = preprocess(Image.fromarray(drawing), standardize=False)
    assert plain.min() == 0 and plain.max() == 1


def huge_png(path, side: int = 9000):
    """A valid white PNG of side x side pixels that is only ~100 KB on disk: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * side  # filter byte + one row of white
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def write_bad_files(folder) -> dict[str, str]:
    """One file of each kind of trouble, and the words its reason must contain."""
    folder.mkdir(exist_ok=True)
    good = photo(mnist_pixels(drawn_digits()["zero"]), np.random.default_rng(2), "png")
    good.save(folder / "whole.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not a picture")
    (folder / "cut.png").write_bytes((folder / "whole.png").read_bytes()[:3000])
    good.save(folder / "whole.jpg", quality=90)
    (folder / "cut.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:1500])
    Image.new("RGB", (120, 80), (200, 190, 170)).save(folder / "blank.jpg")
    huge_png(folder / "huge.png")
    (folder / "whole.png").unlink(), (folder / "whole.jpg").unlink()
    return {
        "empty.png": "empty file (0 bytes)",
        "notes.txt": "not an image",
        "cut.png": "truncated",
        "cut.jpg": "truncated",
        "blank.jpg": "blank: no ink",
        "huge.png": "too large: 9000x9000 pixels",
    }


def test_each_bad_file_gives_its_reason(tmp_path):
    reasons = write_bad_files(tmp_path)
    for name, reason in reasons.items():
        with pytest.raises(ImageError, match=re.escape(reason)):
            mnist_pixels(tmp_path / name)


def test_image_files_dataset_keeps_going_past_bad_files(tmp_path):
    reasons = write_bad_files(tmp_path / "photos")
    save_photo(mnist_pixels(drawn_digits()["one"]), tmp_path / "photos" / "one", np.random.default_rng(3), "jpeg")
    files = list_files(tmp_path / "photos")
    assert [f.name for f in files] == sorted(list(reasons) + ["one.jpg"])
    x, names, errors = collate_images([ImageFiles(files)[i] for i in range(len(files))])
    assert x.shape == (1, 1, 28, 28) and len(names) == len(errors) == len(files)
    assert [n for n, e in zip(names, errors) if not e] == [str(tmp_path / "photos" / "one.jpg")]


def test_list_files_takes_a_file_a_folder_or_a_glob(tmp_path):
    for name in ("a.png", "b.jpg", ".hidden.png", "sub/c.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_files(tmp_path / "a.png") == [tmp_path / "a.png"]
    assert list_files(tmp_path) == [tmp_path / "a.png", tmp_path / "b.jpg"]
    assert list_files(f"{tmp_path}/*.png") == [tmp_path / "a.png"]
    assert list_files(f"{tmp_path}/**/*.png") == [tmp_path / "a.png", tmp_path / "sub" / "c.png"]
    with pytest.raises(DigitnetError, match="no such file or folder"):
        list_files(tmp_path / "missing.png")
    with pytest.raises(DigitnetError, match="no files found"):
        list_files(f"{tmp_path}/*.gif")
