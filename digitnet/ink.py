"""Where the ink is, in a greyscale photo, scan or drawing of a digit or a number: `ink_map`, (H, W) ink in [0, 1].
Uneven light, a desk around the sheet, a digit cropped to its ink, junk at the edges, ruled lines: a function each."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from digitnet.errors import ImageError

# Ink must differ from the paper by at least this much (out of 255) and by 6 noise sigmas.
MIN_CONTRAST = 16.0
# ... and make a mark of at least this many pixels: JPEG's and the sensor's noise leave isolated specks.
MIN_MARK = 8
# Two tones this far apart (the medians of Otsu's classes) are ink and paper even without a valley between them
# in the histogram: thick, blurred strokes spread their greys over the whole range between the two.
FAR_APART = 64.0
# A light rectangle in a dark frame is a sheet of paper on a desk if it covers this share of the picture or more,
# or SMALL_SHEET with writing on it (`written_on`): a light-on-dark 1 is a light bar in a dark frame too.
SHEET, SMALL_SHEET = 0.4, 0.05


def histogram(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Counts of whole grey levels (values rounded), from the lowest level; and that level."""
    levels = np.round(values).astype(np.int64).ravel()
    low = int(levels.min())
    return np.bincount(levels - low), low


def otsu_threshold(values: np.ndarray) -> float:
    """The level t that splits `values` into `< t` and `>= t` with the most between-class variance (Otsu's
    method): between ink and paper however much of the picture the ink covers."""
    counts, low = histogram(values)
    p, level = counts / counts.sum(), np.arange(len(counts))
    w = np.cumsum(p)[:-1]  # share of the values in levels 0..k, for each split k
    mu = np.cumsum(p * level)[:-1]  # their summed levels
    between = (float(p @ level) * w - mu) ** 2 / np.maximum(w * (1 - w), 1e-12)
    if len(between) == 0:  # one level
        return low + 0.5
    # Splits inside an empty stretch of the histogram tie; the first one gives the same two classes as the last.
    return float(low + np.argmax(between >= between.max() * (1 - 1e-9)) + 0.5)


def bimodal(values: np.ndarray, t: float) -> bool:
    """Whether the histogram of `values`, split at `t`, has a valley between the two classes' medians under 70%
    of the peaks on either side of it: two tones, not one tone's noise, texture or shading split in two."""
    counts, low = histogram(values)
    hist = np.convolve(counts, np.ones(9), "same")
    a, b = (int(np.round(np.median(values[side]))) - low for side in (values < t, values >= t))
    valley = a + int(np.argmin(hist[a : b + 1]))
    return bool(hist[valley] < 0.7 * min(hist[: valley + 1].max(), hist[valley:].max()))


def components(mask: np.ndarray) -> np.ndarray:
    """(H, W) int32 labels 1, 2, ... of the 8-connected regions of a boolean mask (0 outside it)."""
    return ndimage.label(mask, structure=np.ones((3, 3), bool))[0]


def long_runs(mask: np.ndarray, length: float) -> np.ndarray:
    """The pixels of `mask` in runs along its rows at least `length` pixels long."""
    runs = ndimage.label(mask, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])[0]  # a label per run along a row
    long = np.bincount(runs.ravel()) >= length  # per label (0: the gaps between runs)
    return long[runs] & mask


def ruled_lines(marks: np.ndarray) -> np.ndarray:
    """The pixels of printed lines among `marks` (H, W): ruled, lined or squared paper, a margin line. Each runs
    across 80% of the picture or more, twice as long as the tallest other mark is high and at most a fifth as
    thick (a digit's own stroke is no longer than the digit). Where a stroke crosses a line, the crossing stays ink."""
    # Rows, then columns (transposed), of marks thickened 2 px across so that a slightly turned line is found too.
    found = [long_runs(ndimage.maximum_filter1d(m, size=5, axis=0), 0.8 * m.shape[1]) & m for m in (marks, marks.T)]
    rest = marks & ~found[0] & ~found[1].T
    # Lines either way are compared with the height of the marks beside them: digits stand upright.
    tallest = max((b[0].stop - b[0].start for b in ndimage.find_objects(components(rest))), default=0)
    lines = np.zeros(marks.shape, bool)
    for across, candidates in enumerate(found):
        labels = components(candidates)
        line, thickest = np.zeros_like(candidates), 0.0
        for k, box in enumerate(ndimage.find_objects(labels), start=1):
            length = box[1].stop - box[1].start
            thickness = (labels[box] == k).sum() / length
            if tallest and length >= 2 * tallest and thickness <= 0.2 * tallest:
                line[box] |= labels[box] == k
                thickest = max(thickest, thickness)
        if not line.any():
            continue
        # A crossing: ink of the other marks within a line's thickness and two pixels, on both sides of it.
        beside = rest.T if across else rest
        h, w = beside.shape
        reach = 2 + int(np.ceil(thickest))
        count = np.concatenate([np.zeros((1, w), np.int32), np.cumsum(beside, axis=0, dtype=np.int32)])  # rows < y
        y = np.arange(h)
        above = count[y] - count[np.maximum(y - reach, 0)] > 0
        below = count[np.minimum(y + 1 + reach, h)] - count[y + 1] > 0
        line &= ~(above & below)
        lines |= line.T if across else line
    return lines


def border_pixels(mask: np.ndarray) -> np.ndarray:
    """The values along the image's four edges, as one 1-D array."""
    return np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])


def corner_pixels(mask: np.ndarray, share: float = 0.1) -> np.ndarray:
    """The values in the image's four corners, squares of `share` of its shorter side, as one 1-D array."""
    k = max(1, round(share * min(mask.shape)))
    return np.concatenate([mask[:k, :k].ravel(), mask[:k, -k:].ravel(), mask[-k:, :k].ravel(), mask[-k:, -k:].ravel()])


def touching_border(mask: np.ndarray) -> np.ndarray:
    """The regions of a boolean mask that reach the image's edges."""
    labels = components(mask)
    edge = np.unique(border_pixels(labels))
    return np.isin(labels, edge[edge > 0])


def is_sheet(region: np.ndarray, longest: float) -> bool:
    """Whether a region looks like a sheet of paper: it fills 90% of a rectangle turned by up to 15 degrees, less
    than `longest` times as long as wide.

    No digit fills its box so (a filled 0 fills 79% of it), but a light bar, which could be a thick 1, may."""
    rows = np.nonzero(region.any(1))[0]
    left = region.argmax(1)[rows]
    right = region.shape[1] - 1 - region[:, ::-1].argmax(1)[rows]
    y, x = np.r_[rows, rows].astype(float), np.r_[left, right].astype(float)  # the hull is among these points
    boxes = []
    for angle in np.deg2rad(np.arange(-15, 16)):
        u, v = x * np.cos(angle) + y * np.sin(angle), y * np.cos(angle) - x * np.sin(angle)
        boxes.append((np.ptp(u) + 1, np.ptp(v) + 1))
    long, short = max(min(boxes, key=np.prod)), min(min(boxes, key=np.prod))
    return region.sum() / (long * short) >= 0.9 and long < longest * short


def written_on(gray: np.ndarray, small: np.ndarray, inside: np.ndarray, margin: int) -> bool:
    """Whether a light region (`inside`, on `small`, the copy of `gray` that sheet_region works on) has writing on it
    away from its edges: a dark mark at least a fifth of the region's shorter side long. A light-on-dark 1 with
    specks where the pen skipped has none. Dark, on a copy that keeps each cell's darkest pixel (a fine pen's line
    averages away into the paper on `small`): a quarter of the way from the region's tone to the frame's, and
    6 noise sigmas from the region's tone."""
    darkest = -F.adaptive_max_pool2d(-torch.from_numpy(gray)[None, None], small.shape)[0, 0].numpy()
    paper, frame = float(np.median(darkest[inside])), float(np.median(small[~inside]))
    sigma = 1.4826 * float(np.median(np.abs(darkest[inside] - paper)))
    ink = ndimage.binary_erosion(inside, iterations=margin) & (darkest < paper - max(0.25 * (paper - frame), 6 * sigma))
    rows, cols = np.nonzero(inside.any(1))[0], np.nonzero(inside.any(0))[0]
    shorter = min(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    boxes = ndimage.find_objects(components(ink))
    return any(max(b[0].stop - b[0].start, b[1].stop - b[1].start) >= 0.2 * shorter for b in boxes)


def sheet_region(gray: np.ndarray, size: int = 256) -> np.ndarray | None:
    """For a photo of a light sheet on a dark desk (or in a dark border): the sheet, less a margin along its
    edge; None for a picture without such a frame.

    The frame is the dark pixels (of Otsu's split) connected to the image's edges, around a light rectangle
    (`is_sheet`): a light-on-dark digit is enclosed by its dark background too, but is no light rectangle.
    Frames are big: they are found on a copy of the image `size` pixels at most a side.
    """
    h, w = gray.shape
    scale = min(1.0, size / max(h, w))
    shape = (max(1, int(h * scale)), max(1, int(w * scale)))  # as scale_factor would, but never 0 pixels (1000x3)
    small = F.interpolate(torch.from_numpy(gray)[None, None], size=shape, mode="area")[0, 0].numpy()
    t = otsu_threshold(small)
    dark = small < t
    outside = touching_border(dark)
    # The opening cuts thin parts off the frame: strokes that run into the sheet's edge stay cut off, the
    # frame's own narrow stretches (where a turned sheet nears the image's edge) go back to it.
    margin = max(1, round(0.03 * max(small.shape)))
    frame = touching_border(ndimage.grey_opening(dark, size=2 * margin + 1))
    frame |= touching_border(outside & ~frame)
    inside = ~frame
    marks, share = int((dark & inside).sum()), float(inside.mean())
    if border_pixels(outside).mean() < 0.4 or share < SMALL_SHEET or marks > 0.2 * inside.sum():
        return None
    if share < SHEET and not written_on(gray, small, inside, margin):
        return None
    # bimodal: a shadow darkens the paper gradually; a desk is a tone of its own.
    # A sheet may be long when written on; an unmarked one, or one under SHEET of the picture, is not a 1's stroke.
    longest = 3.5 if share < SHEET else math.inf if marks > 0.002 * inside.sum() else 2.2
    if not bimodal(small.ravel(), t) or not is_sheet(inside, longest):
        return None
    full = F.interpolate(torch.from_numpy(frame.astype(np.float32))[None, None], size=(h, w))[0, 0].numpy() > 0
    # The sheet's edge is blurred (focus, rotation, JPEG): a margin along it goes with the frame.
    sheet = ~ndimage.maximum_filter(full, size=2 * max(2, round(0.01 * max(h, w))) + 1)
    return sheet if sheet.any() else None  # a few pixels' picture: the margin leaves no sheet


def paper_level(gray: np.ndarray, paper: np.ndarray, blocks: int = 8) -> np.ndarray:
    """(H, W) paper grey level under uneven light: a quadratic surface fitted to the median `paper` pixel of each of
    blocks x blocks tiles at least a quarter paper, refitted without the tiles the ink dominates."""
    flat = np.full_like(gray, np.median(gray[paper]))
    h, w = gray.shape
    if min(h, w) < 64:
        return flat
    medians, centres = [], []
    for r in np.array_split(np.arange(h), blocks):
        for c in np.array_split(np.arange(w), blocks):
            tile = gray[r[0] : r[-1] + 1, c[0] : c[-1] + 1][paper[r[0] : r[-1] + 1, c[0] : c[-1] + 1]]
            if tile.size >= 0.25 * len(r) * len(c):
                medians.append(np.median(tile)), centres.append((r.mean() / h, c.mean() / w))

    def basis(y: np.ndarray, x: np.ndarray) -> np.ndarray:  # (..., 6): 1, y, x, y^2, xy, x^2
        return np.stack([np.ones_like(y), y, x, y * y, x * y, x * x], axis=-1)

    if len(medians) < 12:
        return flat
    A, b = basis(*np.array(centres).T), np.array(medians)
    fit = np.full_like(b, np.median(b))  # start flat, at the median tile
    for _ in range(4):
        residual = np.abs(b - fit)
        keep = residual <= 3 * (1.4826 * np.median(residual) + 2.0)  # + 2 grey levels: noise alone is paper
        if keep.sum() < 12:  # too few tiles of paper left for 6 coefficients: one flat level
            return flat
        coef = np.linalg.lstsq(A[keep], b[keep], rcond=None)[0]
        fit = A @ coef
    y, x = np.meshgrid(np.arange(h, dtype=np.float32) / h, np.arange(w, dtype=np.float32) / w, indexing="ij")
    return (basis(y, x) @ coef.astype(np.float32)).astype(np.float32)


def paper_deviation(gray: np.ndarray, paper: np.ndarray) -> tuple[np.ndarray, float]:
    """The image less the paper's level (`paper_level` of the `paper` pixels), and how far from it ink must
    lie: MIN_CONTRAST, or 6 noise sigmas (from the paper's median absolute deviation) when that is more."""
    deviation = gray - paper_level(gray, paper)
    sigma = 1.4826 * float(np.median(np.abs(deviation[paper])))
    return deviation, max(6 * sigma, MIN_CONTRAST)


def two_tones(gray: np.ndarray, flat: np.ndarray, valid: np.ndarray, dark_ink: bool | None) -> tuple | None:
    """(deviation, threshold, dark_ink) as `paper_deviation` gives them, when the ink covers enough of the
    picture to be a tone of its own (a digit cropped to its ink, with no paper margin); else None.

    The paper is the tone along the image's edges, which a digit only touches here and there (unless `dark_ink`
    is given). Its level is fitted to its pixels away from the ink (the strokes' blurred edges drag the class's
    median towards it), chosen on `flat` (the image less the level fitted to every pixel) so that they are not all
    on the bright side of a shadow. A split of one tone's shading leaves most of the other class near the paper.
    """
    t = otsu_threshold(gray[valid])
    dark = valid & (gray < t)
    light = valid & ~dark
    if not dark.any() or not light.any():
        return None
    if not bimodal(gray[valid], t) and np.median(gray[light]) - np.median(gray[dark]) < FAR_APART:
        return None
    if dark_ink is None:
        edges = border_pixels(dark).mean()
        if 0.35 < edges < 0.65:  # strokes along the edges as much as paper: a digit leaves its box's corners
            edges = corner_pixels(dark).mean()
        dark_ink = bool(edges < 0.5 if edges != 0.5 else dark.sum() < light.sum())  # a tie: the minority is ink
    paper, ink = (light, dark) if dark_ink else (dark, light)
    middle = np.median(flat[paper])
    core = paper & ((flat > middle) if dark_ink else (flat < middle))
    deviation, threshold = paper_deviation(gray, core if core.any() else paper)
    away = -deviation[ink] if dark_ink else deviation[ink]  # how far each ink pixel lies from the paper
    threshold = max(MIN_CONTRAST, min(threshold, float(np.median(away)) / 2))
    return (deviation, threshold, dark_ink) if (away > threshold).mean() >= 0.5 else None


def border_junk(labels: np.ndarray) -> np.ndarray:
    """The marks (`components` labels) along the image's edges rather than across them (a desk, a turned sheet's
    dark corners, a scan's shadow): they touch the edge over half their outline or more, a stroke running into
    it only over its width. Dropped only when the digit is elsewhere (an elongated mark off the edges): a digit
    cropped to its ink keeps all of its strokes."""
    edge = np.unique(border_pixels(labels))
    edge = edge[edge > 0]
    area = np.bincount(labels.ravel())
    outline = np.zeros_like(area)  # pixel sides between a mark and the paper, per mark
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        np.add.at(outline, a[a != b], 1), np.add.at(outline, b[a != b], 1)
    inner = np.setdiff1d(np.arange(1, len(area)), edge)
    width = 2 * area[inner] / np.maximum(outline[inner], 1)  # as `stroke_width`
    if len(edge) == 0 or not ((area[inner] >= 20) & (area[inner] >= 4 * width**2)).any():
        return np.zeros(labels.shape, bool)
    contact = np.bincount(border_pixels(labels), minlength=len(area))
    return np.isin(labels, edge[contact[edge] >= 0.5 * outline[edge]])


def ink_map(gray: np.ndarray) -> np.ndarray:
    """(H, W) ink in [0, 1] (1 = stroke core, 0 = paper) from a greyscale image of any polarity.

    The paper's tone is subtracted and the contrast stretched, so that a grey sheet under dim, uneven light and
    a white scan give the same strokes. Raises ImageError when no ink is found.
    """
    sheet = sheet_region(gray)
    valid = np.ones(gray.shape, bool) if sheet is None else sheet
    dark_ink = True if sheet is not None else None  # a sheet on a desk: dark ink on the light sheet
    deviation, threshold = paper_deviation(gray, valid)  # every pixel taken for paper, the ink for outliers
    reading = two_tones(gray, deviation, valid, dark_ink)
    if reading is not None:  # the ink covers too much of the picture to be outliers
        deviation, threshold, dark_ink = reading
    if dark_ink is None:
        bright = deviation[valid & (deviation > threshold)].sum()
        dark_ink = bool(-deviation[valid & (deviation < -threshold)].sum() > bright)
    ink = np.where(valid, -deviation if dark_ink else deviation, 0)  # ink is now brighter than the paper
    labels = components(ink > threshold)
    if labels.max() == 0 or np.bincount(labels.ravel())[1:].max() < MIN_MARK:
        where = "image" if sheet is None else "sheet"
        raise ImageError(f"blank: no ink found (nothing on the {where} stands out from its tone: empty, or the ink "
                         "too faint)")
    marks = (labels > 0) & ~border_junk(labels)
    marks &= ~ruled_lines(marks)
    if not marks.any():
        raise ImageError("blank: no ink found (only printed lines)")
    return stroke_levels(ink, marks)


def stroke_levels(ink: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """Ink (H, W), brighter than the paper, as `ink_map` gives it, in [0, 1]: the marks (H, W) bool and their blurred
    edges, scaled so that their strokes' core (the 90th percentile, MNIST's saturated pixels) is 1, and softly
    thresholded: paper texture and noise below 30% of the stroke contrast vanish, the core saturates."""
    full = float(np.percentile(ink[marks], 90))
    near = ndimage.maximum_filter(marks, size=3)  # the marks and their blurred edges only
    level = np.clip(np.where(near, ink, 0) / full, 0, 1)
    return np.clip((level - 0.3) / 0.4, 0, 1).astype(np.float32)
