"""The MNIST-style preprocessing of photos (digitnet.images), without a model."""

import io
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from digitnet.errors import DigitnetError
from digitnet.images import MEAN, STD, ImageError, mnist_pixels, open_image, picture_ink, preprocess, stroke_width
from digitnet.ink import components, sheet_region
from digitnet.predict import collate_images, list_files
from photos import (KINDS, cropped_to_ink, draw_digit, drawn_digits, huge_png, on_desk, on_paper, photo,
                    save_photo, write_bad_files)

NAMES = ["zero", "one", "seven", "four"]


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


def shift_error(pixels: np.ndarray, mnist: np.ndarray) -> float:
    """Mean absolute difference, out of 255. Centring rounds the shift to whole pixels, as MNIST did: the
    images are compared up to a shift of one pixel."""
    a, b = pixels.astype(float), mnist.astype(float)
    return min(np.abs(np.roll(a, (dy, dx), axis=(0, 1)) - b).mean() for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def assert_reads_as(pixels: np.ndarray, mnist: np.ndarray, bound: float = 12) -> None:
    """MNIST's geometry (longer side 20 pixels, centre of mass at (14, 14)), and the digit `mnist` holds."""
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    assert max(ink_extent(pixels)) in (19, 20, 21)
    assert np.allclose(centre_of_mass(pixels), (14, 14), atol=0.6)
    error = shift_error(pixels, mnist)
    assert error < bound, error


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NAMES)
def test_photos_are_brought_back_to_the_mnist_digit(tmp_path, kind, name):
    mnist = mnist_pixels(drawn_digits()[name])  # the drawing as MNIST would hold it
    path = save_photo(mnist, tmp_path / name, np.random.default_rng(len(name)), kind)
    recovered = mnist_pixels(path)
    assert np.allclose(centre_of_mass(recovered), (14, 14), atol=0.6)
    assert shift_error(recovered, mnist) < 12


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
    plain = preprocess(Image.fromarray(drawing), normalize=False)
    assert plain.min() == 0 and plain.max() == 1


def test_an_array_reads_the_same_in_every_form_python_code_holds_a_picture_in():
    # MNIST-style pixels, 0-255 white on black (read-only, as np.asarray of a PIL image is): 0-1 floats (torchvision's
    # ToTensor: (1, 28, 28), also needing grad or in bfloat16), (28, 28, 1), a bool or 0/1 mask, and the same digit
    # dark on light (as a paint program's PIL image) must read as those pixels do.
    pixels = drawn_digits()["seven"]
    assert not pixels.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns of a non-writable array it is handed
        x = preprocess(pixels)
        ones = torch.tensor(pixels / 255, dtype=torch.float32)[None]
        for same in (pixels / 255, ones, ones.clone().requires_grad_(), pixels[..., None]):
            assert torch.equal(preprocess(same), x)
        assert torch.allclose(preprocess(ones.bfloat16()), x, atol=0.02)
        mask = pixels > 127
        assert torch.equal(preprocess(mask), preprocess(mask.astype(np.uint8) * 255))
        assert torch.equal(preprocess(mask.astype(np.uint8)), preprocess(mask))
        dark_on_light = np.asarray(Image.fromarray(255 - pixels))
        assert torch.equal(preprocess(dark_on_light), preprocess(Image.fromarray(255 - pixels)))
        # A PIL image of floats (mode F, as a float TIFF opens) holds them as an array does: 0-1 read as blank.
        image = preprocess(Image.fromarray(pixels))
        assert torch.equal(preprocess(Image.fromarray(pixels.astype(np.float32) / 255, "F")), image)
        assert torch.equal(preprocess(Image.fromarray(pixels.astype(np.float32), "F")), image)
        assert torch.equal(preprocess(Image.fromarray(pixels.astype(np.float32) * 257, "F")), image)  # 16-bit levels


def test_a_pil_image_is_read_upright_as_its_exif_says_as_its_file_is(tmp_path):
    # A phone's photo is stored turned, with an EXIF tag that says so: Image.open(path) read it on its side.
    picture = Image.fromarray(255 - np.pad(np.concatenate([drawn_digits()["seven"], drawn_digits()["one"]], 1), 8))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored turned a quarter left: shown turned a quarter right
    picture.rotate(90, expand=True).save(tmp_path / "turned.png", exif=exif)
    upright = picture_ink(picture)[0]
    assert np.array_equal(picture_ink(tmp_path / "turned.png")[0], upright)
    with Image.open(tmp_path / "turned.png") as opened:
        assert np.array_equal(picture_ink(opened)[0], upright)
        # Turned upright by hand, it keeps the EXIF tag, which is then not applied again.
        assert np.array_equal(picture_ink(opened.rotate(-90, expand=True))[0], upright)


@pytest.mark.parametrize(("array", "reason"), [
    (np.zeros((28, 28), np.uint8), "blank: no ink found"),
    (np.full((28, 28), np.nan), "NaN or infinite"),
    (np.zeros((0, 0), np.uint8), r"empty picture: an array of shape \(0, 0\)"),
    (np.zeros((28, 28, 3), np.uint8), r"RGB\(A\) array: pass Image.fromarray"),
    (torch.zeros(3, 28, 28), r"RGB\(A\) tensor, channels first \(pass its grey levels\), or several pictures"),
    (np.zeros((8, 28, 28), np.uint8), "several pictures: pass them as a list to predict_many"),
    (np.zeros(784, np.uint8), r"MNIST's 784 pixels in a row: reshape\(28, 28\)"),
    (None, "got NoneType"),
    (-np.ones((28, 28)), "negative grey levels"),
    (np.full((28, 28), 40000, np.uint16), r"grey levels up to 40000, over 255: give 0-255 or 0-1 \(a 16-bit picture: array / 257\)"),
])  # fmt: skip
def test_an_array_that_is_no_picture_says_what_to_pass(array, reason):
    with pytest.raises(ImageError, match=reason):
        preprocess(array)
    if isinstance(array, np.ndarray) and array.ndim == 2 and array.size:
        with pytest.raises(ImageError, match=reason):  # the number reader's way in too
            mnist_pixels(np.pad(array, 3, constant_values=array.flat[0]))


def scaled(digit: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("polarity", ["dark on white", "light on black"])
def test_a_digit_cropped_to_its_ink_is_read(name, polarity):
    # No paper margin: the ink covers much of the picture and touches all four edges. Taking the median
    # for the paper read the ink as paper, or found no ink at all.
    digit = scaled(drawn_digits()[name], 64)
    crop = cropped_to_ink(digit, digit > 0)
    image = 255 - crop if polarity == "dark on white" else crop
    assert_reads_as(mnist_pixels(image), mnist_pixels(drawn_digits()[name]))


@pytest.mark.parametrize("name", NAMES)
def test_a_photo_cropped_to_its_ink_is_read(name):
    drawing = draw_digit(name, 224, 24)
    crop = Image.fromarray(cropped_to_ink(on_paper(drawing, np.random.default_rng(4)), drawing > 0))
    jpeg = io.BytesIO()
    crop.save(jpeg, "JPEG", quality=75)
    for image in (crop, Image.open(jpeg)):
        assert_reads_as(mnist_pixels(image), mnist_pixels(drawing))


@pytest.mark.parametrize("name", NAMES)
def test_a_digit_touching_the_edges_is_read(name):
    drawing = draw_digit(name, 224, 24)
    ink = cropped_to_ink(drawing, drawing > 0)
    page = np.zeros((300, 260), np.uint8)
    page[-ink.shape[0] :, : ink.shape[1]] = ink  # on the bottom and left edges, paper above and to the right
    assert_reads_as(mnist_pixels(on_paper(page, np.random.default_rng(5))), mnist_pixels(drawing))


@pytest.mark.parametrize("name", ["zero", "four"])
def test_a_tiny_digit_on_a_large_page_is_read(name):
    page = np.zeros((1000, 1500), np.uint8)
    page[600:640, 300:340] = scaled(drawn_digits()[name], 40)  # the digit's ink is 30 pixels tall
    image = Image.fromarray(on_paper(page, np.random.default_rng(6)))
    assert_reads_as(mnist_pixels(image), mnist_pixels(drawn_digits()[name]))


@pytest.mark.parametrize("name", NAMES)
def test_thick_strokes_are_read(name):
    thick = draw_digit(name, 112, 30)  # strokes over a quarter of the digit's width
    mnist = mnist_pixels(thick)
    assert stroke_width(mnist / 255) > 4
    for image in (on_paper(np.pad(thick, 40), np.random.default_rng(7)), cropped_to_ink(255 - thick, thick > 0)):
        assert_reads_as(mnist_pixels(image), mnist)


@pytest.mark.parametrize("name", ["zero", "seven"])
def test_a_hairline_on_a_big_digit_is_read(name):
    hairline = draw_digit(name, 448, 1)  # a 1-pixel pen
    pixels = mnist_pixels(on_paper(np.pad(hairline, 30), np.random.default_rng(8)))
    assert_reads_as(pixels, mnist_pixels(hairline))
    assert 1.5 < stroke_width(pixels / 255) < 3  # thickened to about MNIST's 2 pixels


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("angle", [0, 5])
@pytest.mark.parametrize("frame", [(300, 250), (520, 460)])
def test_a_sheet_on_a_dark_desk_is_read(name, angle, frame):
    # A grey sheet over the middle 80% of the frame, or a fifth of it, the rest near black (turned: the sheet too).
    # The desk touches the image's edges: background, not ink, else the digit shrinks into a corner of the box (or
    # the whole sheet is taken for ink).
    drawing = draw_digit(name, 160, 16)
    sheet = on_paper(np.pad(drawing, ((40, 40), (20, 20))), np.random.default_rng(9), paper=150)  # 240 x 200
    turned = np.asarray(Image.fromarray(drawing).rotate(angle, Image.Resampling.BICUBIC, expand=True))
    assert_reads_as(mnist_pixels(on_desk(sheet, frame, angle)), mnist_pixels(turned))


def test_a_small_sheet_written_in_a_fine_pen_is_a_sheet_and_a_light_bar_with_specks_is_not():
    # A sheet a twelfth of the picture, a 7 on it in a 2-pixel pen (half a pixel on sheet_region's 256-pixel copy).
    photo_ = np.full((768, 1024), 20, np.uint8)
    photo_[250:480, 350:650] = 170
    photo_[300:304, 440:560], photo_[300:430, 540:543] = 60, 60
    assert sheet_region(photo_.astype(np.float32)) is not None
    # A light-on-dark 1 as a plain bar, with dark specks where a chalk or marker skipped: no sheet, read as the bar.
    bar = np.full((300, 300), 10, np.uint8)
    bar[60:241, 128:173] = 235
    specked = bar.copy()
    rng = np.random.default_rng(2)
    for y, x in zip(rng.integers(70, 230, 15), rng.integers(134, 166, 15)):
        specked[y : y + 3, x : x + 3] = 40
    assert sheet_region(specked.astype(np.float32)) is None
    assert_reads_as(mnist_pixels(specked), mnist_pixels(bar), bound=25)


@pytest.mark.parametrize("name", ["zero", "seven"])
def test_the_desk_at_a_turned_sheets_corners_or_side_is_not_ink(name):
    drawing = draw_digit(name, 160, 16)
    rng = np.random.default_rng(10)
    turned = np.asarray(Image.fromarray(drawing).rotate(6, Image.Resampling.BICUBIC, expand=True))
    corners = on_desk(on_paper(np.pad(drawing, 60), rng, paper=160), (260, 260), 6)  # the sheet overfills the frame
    assert_reads_as(mnist_pixels(corners), mnist_pixels(turned))
    beside = on_paper(np.pad(drawing, ((50, 50), (40, 60))), rng, paper=160)
    beside[:, :25] = 20  # the desk along the left edge
    assert_reads_as(mnist_pixels(beside), mnist_pixels(drawing))


def blank_picture(kind: str) -> np.ndarray | Image.Image:
    rng = np.random.default_rng(11)
    if kind == "flat":
        return np.full((80, 120), 200, np.uint8)
    if kind == "paper texture":  # grain, and a gentle unevenness
        grain = rng.normal(0, 8, (300, 400)) + scaled((rng.random((4, 4)) * 255).astype(np.uint8), 400)[:300] / 20
        return np.clip(190 + grain, 0, 255).astype(np.uint8)
    if kind == "JPEG of an empty page":
        page, jpeg = Image.fromarray(on_paper(np.zeros((480, 640)), rng, paper=200)), io.BytesIO()
        page.convert("RGB").save(jpeg, "JPEG", quality=50)
        return Image.open(jpeg)
    angle = {"empty sheet on a desk": 0, "empty turned sheet on a desk": 5}[kind]
    return on_desk(on_paper(np.zeros((240, 200)), rng, paper=150), (300, 250), angle)


@pytest.mark.parametrize(
    "kind", ["flat", "paper texture", "JPEG of an empty page", "empty sheet on a desk", "empty turned sheet on a desk"]
)
def test_pictures_without_ink_are_blank(kind):
    with pytest.raises(ImageError, match="^blank: no ink found"):
        mnist_pixels(blank_picture(kind))


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (3, 1000), (600, 2), (2, 5000)])
def test_a_picture_a_few_pixels_high_or_wide_is_read_or_refused_in_one_line(shape):
    # Its 256-pixel copy for finding a sheet had a side of 0 pixels, or the sheet's margin left none of it: a crash.
    rng = np.random.default_rng(0)
    for picture in (np.full(shape, 255, np.uint8), (rng.random(shape) * 255).astype(np.uint8)):
        picture[shape[0] // 2] = 0  # a dark line along it
        try:
            ink, scale = picture_ink(Image.fromarray(picture))
        except ImageError as err:
            assert "\n" not in str(err)
        else:
            assert ink.dtype == np.float32 and 0 <= ink.min() <= ink.max() <= 1 and scale > 0


def test_components_are_the_8_connected_regions():
    rng = np.random.default_rng(12)
    for _ in range(30):
        mask = rng.random(rng.integers(1, 25, 2)) < rng.uniform(0.2, 0.7)
        labels = components(mask)
        # Reference: every pixel takes the largest index among itself and its 8 neighbours, until nothing changes.
        h, w = mask.shape
        flood = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), 0)
        while True:
            padded = np.pad(flood, 1)
            around = [padded[1 + y : h + 1 + y, 1 + x : w + 1 + x] for y in (-1, 0, 1) for x in (-1, 0, 1)]
            grown = np.where(mask, np.max(around, axis=0), 0)
            if np.array_equal(grown, flood):
                break
            flood = grown
        assert np.array_equal(labels > 0, mask) and set(labels[mask]) == set(range(1, labels.max() + 1))
        assert len(set(zip(labels[mask], flood[mask]))) == labels.max() == len(np.unique(flood[mask]))


def test_a_folder_or_a_file_that_cannot_be_read_is_named_so_not_a_corrupt_image(tmp_path, monkeypatch):
    # Both were "truncated or corrupt image ([Errno 21] Is a directory ...)".
    with pytest.raises(ImageError, match="a folder, not an image file"):
        mnist_pixels(tmp_path)
    (tmp_path / "locked.png").write_bytes(b"\x89PNG")

    def denied(*args, **kwargs):  # as open() answers a file of another user's, which root here never meets
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageError, match=r"cannot read the file \(Permission denied\)"):
        mnist_pixels(tmp_path / "locked.png")


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
    batch = collate_images(files)
    (picture,) = [p for p in batch.pictures if not p.error]  # the one readable file: its candidate digits
    assert picture.file == str(tmp_path / "photos" / "one.jpg") and len(batch.pictures) == len(files)
    assert batch.images.shape == (len(picture.candidates.spans), 1, 28, 28)


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
    with pytest.raises(DigitnetError, match="no files found$"):
        list_files(f"{tmp_path}/*.gif")


def test_a_folder_of_folders_says_how_to_read_them(tmp_path):
    # finetune's layout, DIR/7/a.png: a folder's own files only are read, so say how to reach the subfolders'.
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "a.png").write_bytes(b"x")
    with pytest.raises(DigitnetError, match=r"no files found; it holds folders: .* '.*/\*\*/\*\.png'"):
        list_files(tmp_path)
    assert list_files(f"{tmp_path}/**/*.png") == [tmp_path / "7" / "a.png"]


def test_open_image_reads_file_objects_with_the_same_checks():
    # serve's upload path: an in-memory file, not a path.
    buffer = io.BytesIO()
    Image.fromarray(np.pad(np.full((16, 4), 255, dtype=np.uint8), ((6, 6), (12, 12)))).save(buffer, format="PNG")
    digit = buffer.getvalue()
    assert open_image(io.BytesIO(digit)).size == (28, 28)
    for data, reason in ((b"", "empty"), (b"hello", "not an image"), (digit[: len(digit) // 2], "truncated")):
        with pytest.raises(ImageError, match=reason):
            open_image(io.BytesIO(data))
    with pytest.raises(ImageError, match="too large"):
        open_image(io.BytesIO(huge_png()))
