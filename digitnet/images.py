"""Photos and scans of handwritten digits -> MNIST-style 28x28 inputs, as MNIST itself was made (docs/robustness.md).
`to_input` is the one scaling of training, evaluation, `predict`, `serve` and `export`; `digitnet.ink` finds the ink."""

from __future__ import annotations

import math
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from digitnet.errors import DigitnetError, ImageError
from digitnet.ink import ink_map

MEAN, STD = 0.1307, 0.3081  # pixel mean and std of the MNIST training set, after dividing by 255
SIZE = 28  # MNIST images are SIZE x SIZE


def to_input(pixels: np.ndarray | torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """(28, 28) or (N, 28, 28) MNIST pixels 0-255 (white digit on black) -> (N, 1, 28, 28) float32 model input:
    pixels / 255, standardized with MNIST's mean and std unless `normalize` is False (`--data.normalize=false`)."""
    x = torch.as_tensor(pixels)
    if x.shape[-2:] != (SIZE, SIZE):
        raise DigitnetError(f"expected 28x28 MNIST pixels, got shape {tuple(x.shape)}")
    x = x.reshape(-1, 1, SIZE, SIZE).float() / 255  # a new tensor: the caller's pixels stay as they are
    return (x - MEAN) / STD if normalize else x


def scaling_text(normalize: bool) -> str:
    """`to_input`'s scaling as a formula, for people and for the ONNX file's metadata."""
    return f"(pixels / 255 - {MEAN}) / {STD}" if normalize else "pixels / 255"


MAX_PIXELS = 64_000_000  # more is refused before decoding: a 50-megapixel photo passes, a decompression bomb does not
WORK_SIZE = 1024  # work on at most this many pixels along the longer side: enough for pen strokes, fast on big photos
# MNIST's geometry: ink fits in 20x20, its centre of mass at pixel (14, 14) of 28x28, strokes about 2 pixels wide.
BOX, CENTRE, STROKE = 20, 14.0, 2.0
SPECK = 0.2  # marks under this share of the tallest mark's height, both ways, are specks


def open_image(source: str | Path | BinaryIO, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file (a path, or a binary file object such as an upload), upright as its EXIF says. Raises
    ImageError: unreadable, empty, not an image, larger than `max_pixels` (before decoding), truncated or corrupt."""
    name = source if isinstance(source, (str, Path)) else None  # errors name a file, not a buffer
    if name is not None:
        try:
            info = os.stat(source)
        except OSError as err:
            raise ImageError(f"cannot read the file ({err.strerror})", name) from None
        if stat.S_ISDIR(info.st_mode):  # else Pillow's IsADirectoryError, taken for a corrupt image
            raise ImageError("a folder, not an image file", name)
        size = info.st_size
    else:  # a file object: its length from where it is now
        start = source.tell()
        size = source.seek(0, os.SEEK_END) - start
        source.seek(start)
    if size == 0:
        raise ImageError("empty file (0 bytes)", name)
    try:
        with warnings.catch_warnings():
            # Pillow warns, then refuses, on huge images; the check below gives the reason instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height <= max_pixels:
                    image.load()
                    return ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise ImageError("not an image (Pillow cannot identify the format)", name) from None
    except PermissionError as err:
        raise ImageError(f"cannot read the file ({err.strerror})", name) from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"too large: {err}", name) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"truncated or corrupt image ({err})", name) from None
    raise ImageError(f"too large: {width}x{height} pixels, more than the limit of {max_pixels:,}", name)


def grayscale(image: Image.Image) -> np.ndarray:
    """(H, W) float32 luminance in [0, 255]. Transparent pixels become background: they are laid on
    white when the opaque strokes are dark, on black when they are light."""
    if image.mode in ("I", "F"):  # 16- or 32-bit greyscale
        gray = np.array(image, dtype=np.float32)
        top = float(gray.max())
        return gray * (255.0 / top) if top > 255 else gray
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"
        alpha = rgba[..., 3] / 255
        opaque = alpha > 0.5
        background = 255.0 if not opaque.any() or np.median(gray[opaque]) < 128 else 0.0
        return gray * alpha + background * (1 - alpha)
    return np.asarray(image.convert("L"), dtype=np.float32)


def ink_box(ink: np.ndarray, trim: float = 0.002) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the ink, bottom/right exclusive. Rows and columns are trimmed from
    each side while they hold under `trim` of the ink, so that a stray speck does not stretch the box."""
    bounds = []
    for profile in (ink.sum(1), ink.sum(0)):  # mass per row, per column
        cumulative = np.cumsum(profile) / profile.sum()
        first = int(np.searchsorted(cumulative, trim, side="right"))
        last = int(np.searchsorted(cumulative, 1 - trim, side="left"))
        bounds += [first, min(last, len(profile) - 1) + 1]
    return bounds[0], bounds[1], bounds[2], bounds[3]


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the area of the strokes over the length of their outline."""
    mask = ink > 0.5
    edges = (mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum()
    return 2 * float(mask.sum()) / max(int(edges), 1)


def fit_box(ink: np.ndarray) -> torch.Tensor:
    """The cropped ink scaled so that its longer side is 20 pixels: (h, w) float32. Thin pen strokes are thickened
    first to about MNIST's 2 pixels; scaled down as they are, they would be hairlines the model has never seen."""
    scale = BOX / max(ink.shape)
    width = stroke_width(ink) * scale  # in output pixels
    r = int(round((STROKE - width) / scale / 2))  # pixels to add on each side of a stroke, at input scale
    if width < 0.75 * STROKE and r >= 1:  # a dilation, padded first: room for the strokes to grow past the box
        ink = ndimage.maximum_filter(np.pad(ink, r), size=2 * r + 1)
    h, w = ink.shape
    size = (max(1, round(h * BOX / max(h, w))), max(1, round(w * BOX / max(h, w))))
    x = torch.from_numpy(ink)[None, None]  # (1, 1, H, W)
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0].clamp(0, 1)


def centre_by_mass(patch: torch.Tensor) -> torch.Tensor:
    """Paste an (h, w) patch into 28x28 so that its centre of mass lands on MNIST's (14, 14)."""
    h, w = patch.shape
    mass = patch.sum()
    cy = float((patch.sum(1) * torch.arange(h)).sum() / mass)
    cx = float((patch.sum(0) * torch.arange(w)).sum() / mass)
    top, left = int(round(CENTRE - cy)), int(round(CENTRE - cx))
    canvas = torch.zeros(SIZE + 2 * BOX, SIZE + 2 * BOX)  # margins: a shift never falls off the canvas
    canvas[BOX + top : BOX + top + h, BOX + left : BOX + left + w] = patch
    return canvas[BOX : BOX + SIZE, BOX : BOX + SIZE]


def grey_levels(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """A picture given as an array or tensor -> (H, W) float32 grey levels 0-255, a copy. Takes (H, W), (1, H, W)
    (torchvision's ToTensor) or (H, W, 1), 0-255, or 0-1 when no value is over 1 (floats, a bool or 0/1 mask);
    ImageError says what to pass instead of anything else (an RGB array, a batch, model inputs, NaN)."""
    try:
        gray = (array.detach().to("cpu", torch.float32).numpy() if isinstance(array, torch.Tensor)
                else np.array(array, dtype=np.float32))  # fmt: skip
    except (TypeError, ValueError):
        gray = np.array(0)
    if gray.ndim == 0:  # None, a number, a list of lists of different lengths
        raise ImageError(f"expected a file path, a PIL image or an array of grey levels, got {type(array).__name__}")
    if gray.ndim == 3 and 1 in (gray.shape[0], gray.shape[2]):  # one channel, first or last
        gray = gray[0] if gray.shape[0] == 1 else gray[..., 0]
    if gray.ndim != 2:
        hint = ("an RGB(A) array: pass Image.fromarray(array) instead" if gray.ndim == 3 and gray.shape[2] in (3, 4)
                else "an RGB(A) tensor, channels first (pass its grey levels), or several pictures (pass them as a "
                     "list to predict_many)" if gray.ndim == 3 and gray.shape[0] in (3, 4)
                else "several pictures: pass them as a list to predict_many" if gray.ndim == 3
                else "MNIST's 784 pixels in a row: reshape(28, 28)" if gray.shape == (SIZE * SIZE,)
                else "pass one picture")  # fmt: skip
        raise ImageError(f"expected an (H, W) array of grey levels, got shape {gray.shape}: {hint}")
    if gray.size == 0:
        raise ImageError(f"empty picture: an array of shape {gray.shape}")
    if not np.isfinite(gray).all():
        raise ImageError("the array holds NaN or infinite values, not grey levels")
    if gray.min() < 0:
        raise ImageError("negative grey levels: give pixels 0-255 or 0-1, not the network's input (preprocess's "
                         "output goes to recognizer.net)")  # fmt: skip
    if gray.max() > 255:
        raise ImageError(f"grey levels up to {gray.max():g}, over 255: give 0-255 or 0-1 (a 16-bit picture: "
                         "array / 257)")  # fmt: skip
    return gray * 255 if gray.max() <= 1 else gray  # 0-1: a 0-255 picture so faint would hold no ink


def greyscale_picture(image: str | Path | Image.Image | np.ndarray, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, float]:
    """A picture's grey levels, (H, W) float32 0-255, at most WORK_SIZE pixels a side, and its scale: picture pixels
    per grey-level pixel (1 unless a large picture was made smaller). `image` is a file path, a PIL image or an (H, W)
    array of grey levels 0-255; ImageError when the file cannot be read."""
    if isinstance(image, (str, Path)):
        image = open_image(image, max_pixels)
    elif (isinstance(image, Image.Image) and image.format  # as Image.open gave it, not a copy (made upright?)
          and image.getexif().get(ExifTags.Base.Orientation, 1) != 1):  # a phone's photo is stored turned
        image = ImageOps.exif_transpose(image)  # upright, as open_image makes a file
    if isinstance(image, Image.Image) and image.mode == "F" and image.getextrema()[1] <= 1:  # a float TIFF's 0-1
        image = np.asarray(image)  # taken as an array's
    if not isinstance(image, Image.Image):
        gray = grey_levels(image)
        if max(gray.shape) <= WORK_SIZE:
            return gray, 1.0
        image = Image.fromarray(gray, "F")
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):  # palette, CMYK, 16-bit, ...
        alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if alpha else "I" if image.mode.startswith("I;16") else "RGB")
    width = image.width
    if max(image.size) > WORK_SIZE:
        image = image.copy()
        image.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)  # averages: thin strokes stay
    return grayscale(image), width / image.width


def picture_ink(image: str | Path | Image.Image | np.ndarray, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, float]:
    """(ink, scale): where the ink is in a picture, (H, W) in [0, 1] (`digitnet.ink.ink_map` of
    `greyscale_picture`), and the picture's pixels per pixel of it. ImageError names the file, if any."""
    gray, scale = greyscale_picture(image, max_pixels)
    try:
        return ink_map(gray), scale
    except ImageError as err:  # a blank image: name its file
        raise ImageError(err.reason, image if isinstance(image, (str, Path)) else None) from None


def without_stray_specks(ink: np.ndarray) -> np.ndarray:
    """The ink (H, W) less specks lying apart from the rest of it, at least a speck's size away from its box: a dot
    beside a digit, or the pen's first touch of the next one, would otherwise stretch the box and shrink the digit."""
    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3), bool))
    if count < 2:
        return ink
    boxes = np.array([(r.start, r.stop, c.start, c.stop) for r, c in ndimage.find_objects(labels)])  # (count, 4)
    heights, widths = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
    margin = SPECK * heights.max()
    speck = (heights < margin) & (widths < margin)
    rest = boxes[~speck]  # never empty: the tallest mark is no speck
    apart = ((boxes[:, 1] <= rest[:, 0].min() - margin) | (boxes[:, 0] >= rest[:, 1].max() + margin)
             | (boxes[:, 3] <= rest[:, 2].min() - margin) | (boxes[:, 2] >= rest[:, 3].max() + margin))  # fmt: skip
    keep = np.concatenate([[True], ~(speck & apart)])  # per label; label 0 is the paper
    return ink if keep.all() else ink * keep[labels]


def digit_pixels(ink: np.ndarray) -> np.ndarray:
    """The ink of one digit, (H, W) in [0, 1], as MNIST would have it: (28, 28) uint8, its ink box scaled into
    20x20 and centred by its centre of mass."""
    top, bottom, left, right = ink_box(ink)
    return (centre_by_mass(fit_box(ink[top:bottom, left:right])) * 255).round().to(torch.uint8).numpy()


def mnist_pixels(image: str | Path | Image.Image | np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A photo, scan or drawing of one digit as MNIST would have it: (28, 28) uint8, white on black. `image` is a file
    path, a PIL image or an (H, W) array of grey levels 0-255, dark on light or light on dark. Raises ImageError (a
    DigitnetError) with the reason when the file cannot be read or holds no ink."""
    return digit_pixels(without_stray_specks(picture_ink(image, max_pixels)[0]))


def preprocess(image: str | Path | Image.Image | np.ndarray | torch.Tensor, normalize: bool = True,
               max_pixels: int = MAX_PIXELS) -> torch.Tensor:  # fmt: skip
    """An image of one digit -> the model's (1, 28, 28) float32 input, as `predict`, `serve` and `DigitRecognizer` read
    images: a 28x28 array white on black (its border dark, as MNIST's own pixels are) is taken as it is, anything
    else goes through `mnist_pixels` first (a dark digit on light paper too); then `to_input`."""
    if isinstance(image, (np.ndarray, torch.Tensor)) and math.prod(image.shape) == SIZE * SIZE:  # 28x28, (1, 28, 28)..
        pixels = grey_levels(image)
        border = np.r_[pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]
        # White on black, as MNIST's own: as it is. A flat one goes on to ink_map, which says it is blank.
        if pixels.shape == (SIZE, SIZE) and np.median(border) < 128 and pixels.max() > pixels.min():
            return to_input(pixels, normalize)[0]
    return to_input(mnist_pixels(image, max_pixels), normalize)[0]
