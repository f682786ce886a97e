"""Reading a whole number: the digits of a picture found, read one by one by the classifier, left to right.

    reading = read_number(ink, probabilities)    # ink: (H, W) in [0, 1], from digitnet.images.picture_ink
    reading.number                               # "4096", "7", or "12?4" where a piece is no digit it believes

The method is segmentation by recognition, the classic reader of digit strings:
1. the ink's connected marks are found (SciPy's `ndimage.label`); specks are dropped, and marks that lie over
   one another (a 5's flag, the two strokes of a 4, a crossed 7) join into one: digits stand side by side;
2. a mark too wide for one digit (touching or overlapping digits) is cut where its ink is thinnest, at a few
   candidate columns (a blot is never cut: its slices would read as 1s): the pieces it is cut into are the
   primitives, left to right;
3. every run of up to `MAX_PRIMITIVES` neighbouring primitives that could be one digit is made into an MNIST
   picture (`digitnet.images.digit_pixels`) and the network reads them all in one batch;
4. the reading is the split of the primitives into digits with the highest sum of log-probabilities of their
   likeliest digits, less `SPLIT_COST` per digit after the first and `WIDE_COST` for a digit wider than digits are
   (dynamic programming): a bad split leaves pieces the network does not believe, a missed split two digits it
   does not believe as one, or one too wide.
A digit whose probability is under `UNSURE_BELOW` is a `?` in the number. The choices, and how they were
measured: docs/numbers.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from digitnet.errors import ImageError
from digitnet.images import SPECK, digit_pixels, without_stray_specks
from digitnet.strings import MARGIN, NOT_A_DIGIT, STRIDE, Symbol, strip_columns

# A digit read with a lower probability is shown as "?" (docs/numbers.md: how it was chosen).
UNSURE_BELOW = 0.4
# What splitting into one more digit costs, in log-probability: a split must make the pieces that much likelier;
# a split that cuts through a mark costs CUT_COST more (docs/numbers.md: how both were chosen).
SPLIT_COST = 0.25
CUT_COST = 0.5
# A digit read wider than WIDE_DIGIT times its height costs WIDE_COST per unit of width over it, as a share of its
# height: little for a wide 0, 2 or 5 alone, more for two touching digits read as one (docs/numbers.md: how both
# were chosen).
WIDE_DIGIT = 0.8
WIDE_COST = 1.0
MAX_DIGITS = 20  # more marks than this is a page, not a number
MAX_PRIMITIVES = 16  # a digit is made of at most this many primitives (strokes, pieces of a cut mark)
OVERLAP = 0.5  # marks whose columns overlap by this share of the narrower one are strokes of one digit
WIDEST_DIGIT = 2.0  # marks wider together than this share of their height hold several digits (docs/numbers.md)
SLOPES = (0.0, -0.15, 0.15, -0.3, 0.3)  # how cuts may lean, in columns per row: as handwriting leans
CUT_WIDER_THAN = 0.7  # marks wider than this share of their height are tried cut into several digits
JOIN_GAP = 0.2  # marks further apart than this share of a digit's height are never joined into one digit
STROKE = 0.3  # ... unless one is under this share of the tallest mark's height: a digit's detached stroke or tick
BLOT = 0.55  # a mark whose ink is thicker than this share of its height is a blot, never cut into digits
MIN_PIECE = 0.12  # pieces of a cut mark are at least this share of a digit's height wide (a 1 is about a quarter)
# A NumberNet's reading is taken over the cuts' only with every digit this sure; over one digit the cuts read, only
# with every digit NET_SURE_ONE sure (docs/numbers.md, "The number net": how both were chosen).
NET_SURE, NET_SURE_ONE = 0.5, 0.95


@dataclass(frozen=True)
class ReadDigit:
    """One digit of a number: the likeliest digit, its probability and the three likeliest with theirs, where
    it is in the picture (`box`: left, top, right, bottom, in the picture's pixels, right and bottom exclusive)
    and the (28, 28) uint8 MNIST picture the network read."""

    digit: int
    probability: float
    top3: tuple[tuple[int, float], ...]
    box: tuple[int, int, int, int]
    pixels: np.ndarray = field(repr=False)  # 784 numbers: printed, a reading would fill a notebook's screen

    @property
    def sure(self) -> bool:
        return self.probability >= UNSURE_BELOW

    @property
    def text(self) -> str:
        return str(self.digit) if self.sure else "?"


@dataclass(frozen=True)
class NumberReading:
    """The number read from a picture, as text (`?` for a digit the network does not believe), and its digits."""

    number: str
    digits: tuple[ReadDigit, ...]


class Candidates(NamedTuple):
    """The pieces of a picture that may be digits, for the network to read in one batch.

    pixels: (K, 28, 28) uint8, each as MNIST would hold it; the first is the whole picture, as
        `digitnet.images.mnist_pixels` makes it (what `predict` reads as one digit).
    spans: (first, last + 1) primitives of each candidate; the whole picture spans them all.
    boxes: (left, top, right, bottom) of each, in pixels of the ink map.
    primitives: how many primitives the picture was cut into.
    cuts: the primitives that begin where a mark was cut (the others begin a mark of their own).
    wide: the candidates that join marks into a box too wide for one digit (`too_wide`), or across a clear gap.
    """

    pixels: np.ndarray
    spans: list[tuple[int, int]]
    boxes: list[tuple[int, int, int, int]]
    primitives: int
    cuts: frozenset[int]
    wide: frozenset[int]


def marks(ink: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """The 8-connected marks of the ink, less specks: (labels (H, W) int32, 0 for paper and specks; the slices of
    each label's box, label k at index k - 1, None for a speck).

    Marks are the strokes' cores (ink over half strength), so that the blurred edges of two digits close
    together do not join them; each core then takes the faint edge around it, two pixels deep, which the
    network needs to read a digit as surely as MNIST's."""
    labels, count = ndimage.label(ink > 0.5, structure=np.ones((3, 3), bool))
    edge = (ink > 0) & (labels == 0)
    for _ in range(2):
        grown = ndimage.maximum_filter(labels, size=3)
        labels = np.where(edge & (labels == 0), grown, labels)
    boxes = ndimage.find_objects(labels)
    heights = np.array([b[0].stop - b[0].start for b in boxes])
    widths = np.array([b[1].stop - b[1].start for b in boxes])
    speck = (heights < SPECK * heights.max()) & (widths < SPECK * heights.max())
    if speck.any():
        labels[np.isin(labels, np.flatnonzero(speck) + 1)] = 0
        boxes = [None if s else b for b, s in zip(boxes, speck)]
    return labels, boxes


def strokes_of_digits(boxes: list) -> list[list[int]]:
    """Marks (labels) grouped into what stands side by side: marks whose columns overlap by OVERLAP of the
    narrower one join. Groups are in order of their left edges."""
    kept = [k for k, b in enumerate(boxes) if b is not None]
    left = {k: boxes[k][1].start for k in kept}
    right = {k: boxes[k][1].stop for k in kept}
    groups: list[list[int]] = []
    for k in sorted(kept, key=left.get):
        for group in groups:
            if any(min(right[k], right[g]) - max(left[k], left[g]) >= OVERLAP * min(right[k] - left[k], right[g] - left[g])
                   for g in group):  # fmt: skip
                group.append(k)
                break
        else:
            groups.append([k])
    return [[k + 1 for k in group] for group in groups]


def cut_lines(mask: np.ndarray, step: int) -> list[np.ndarray]:
    """Where to try cutting a mark too wide to be one digit, `mask` (H, W): lines across it, each leaning by one of
    SLOPES as the writing does, where they cross the least ink (the minima of that, over three columns), then
    every `step` columns between them (overlapping digits meet where their strokes are thickest), at least `step`
    columns from each side and from each other, left to right. Each line is given as its column in each row, (H,)."""
    h, w = mask.shape
    middle = np.arange(h) - (h - 1) / 2
    columns = np.arange(w)
    crossed, lean = np.full(w, np.inf), np.zeros(w)
    for slope in SLOPES:  # upright first: it wins a tie
        shift = np.round(slope * middle).astype(int)
        ink = np.zeros(w)
        for y in range(h):  # the ink the line through column c (at mid-height) crosses in row y
            at = columns + shift[y]
            inside = (at >= 0) & (at < w)
            ink[inside] += mask[y, at[inside]]
        better = ink < crossed
        crossed, lean = np.where(better, ink, crossed), np.where(better, slope, lean)
    profile = np.convolve(crossed, np.ones(3) / 3, mode="same")
    inner = range(step, w - step)
    minima = [c for c in inner if profile[c] <= profile[c - 1] and profile[c] <= profile[c + 1]]
    chosen: list[int] = []
    for c in sorted(minima, key=lambda c: profile[c]) + list(range(step, w - step, step)):
        if all(abs(c - other) >= step for other in chosen):
            chosen.append(c)
    lines: list[np.ndarray] = []
    for c in sorted(chosen):
        line = c + lean[c] * middle
        if lines and (line <= lines[-1] + 1).any():  # it would cross the last one: parallel to it instead
            line = lines[-1] + (c - lines[-1][h // 2])
        lines.append(line)
    return lines


def candidates(ink: np.ndarray) -> Candidates:
    """The candidate digits of a picture's ink (see the module's docstring, steps 1-3).

    Raises ImageError when the picture holds more marks than a number of MAX_DIGITS digits, or lines of writing."""
    labels, boxes = marks(ink)
    groups = strokes_of_digits(boxes)
    if len(groups) > MAX_DIGITS:
        raise ImageError(f"{len(groups)} separate marks, more than a number of up to {MAX_DIGITS} digits: crop the "
                         "picture to the number")  # fmt: skip
    # Each group's rows and columns, and the height of a digit: the groups' median height.
    spans_of = [(slice(min(boxes[k - 1][0].start for k in g), max(boxes[k - 1][0].stop for k in g)),
                 slice(min(boxes[k - 1][1].start for k in g), max(boxes[k - 1][1].stop for k in g))) for g in groups]
    heights = [rows.stop - rows.start for rows, _ in spans_of]
    line, tallest = float(np.median(heights)), max(heights)
    # Lines of writing: a page of digits joins into columns, each of strokes stacked higher than 2.5 of the tallest
    # mark. Only when most are: one such column alone is a digit in pieces (a skipping pen), or half a 3.
    tallest_mark = max(b[0].stop - b[0].start for b in boxes if b is not None)
    stacked = sum(h > 2.5 * tallest_mark for h in heights)
    if len(groups) > 1 and 2 * stacked > len(groups):
        raise ImageError("writing on several lines, not one number: crop the picture to the number")
    # Primitives, left to right: (rows, columns, mask) of their ink, in their group's box.
    primitives: list[tuple[slice, slice, np.ndarray]] = []
    cuts: set[int] = set()
    apart: set[int] = set()  # the primitives that begin a mark a clear gap right of the one before: not joined
    for k, (group, (rows, cols)) in enumerate(zip(groups, spans_of)):
        if (k and cols.start - max(c.stop for _, c in spans_of[:k]) > JOIN_GAP * line
                and min(heights[k - 1], heights[k]) >= STROKE * tallest):  # fmt: skip
            apart.add(len(primitives))
        mask = np.isin(labels[rows, cols], group)
        height, width = mask.shape
        lines = []
        if width > CUT_WIDER_THAN * height and not blot(mask & (ink[rows, cols] > 0.5)):  # could be several digits
            lines = cut_lines(mask, max(2, int(MIN_PIECE * max(line, height))))
        x = np.arange(width)[None, :]
        bounds = [np.full(height, -np.inf), *lines, np.full(height, np.inf)]
        cuts.update(range(len(primitives) + 1, len(primitives) + len(bounds) - 1))
        for left, right in zip(bounds[:-1], bounds[1:]):
            primitives.append((rows, cols, mask & (x >= left[:, None]) & (x < right[:, None])))

    def span_mask(i: int, j: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """The ink of primitives i..j-1, cropped to their box (left, top, right, bottom)."""
        first, last = min(c.start for _, c, _ in primitives[i:j]), max(c.stop for _, c, _ in primitives[i:j])
        top, bottom = min(r.start for r, _, _ in primitives[i:j]), max(r.stop for r, _, _ in primitives[i:j])
        region = np.zeros((bottom - top, last - first), bool)
        for rows, cols, mask in primitives[i:j]:
            region[rows.start - top : rows.stop - top, cols.start - first : cols.stop - first] |= mask
        # A cut leaves bits of the neighbour's strokes on its side: a small piece that the cut made (it does not
        # reach as far as the rest) is the neighbour's, not this digit's.
        if i in cuts or j in cuts:
            parts, count = ndimage.label(region, structure=np.ones((3, 3), bool))
            if count > 1:
                area = np.bincount(parts.ravel())[1:]
                region &= ~np.isin(parts, np.flatnonzero(area < 0.15 * area.sum()) + 1)
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        if len(rows) == 0:
            return np.zeros((0, 0), np.float32), (first, top, first, top)
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        box = (int(first + c0), int(top + r0), int(first + c1), int(top + r1))
        return ink[top + r0 : top + r1, first + c0 : first + c1] * region[r0:r1, c0:c1], box

    n = len(primitives)
    whole = span_mask(0, n)[1]

    def one_mark(i: int, j: int) -> bool:  # primitives i..j-1 are pieces of one mark: no mark begins among them
        return all(k in cuts for k in range(i + 1, j))

    pixels, spans, places = [digit_pixels(without_stray_specks(ink))], [(0, n)], [whole]  # as mnist_pixels has it
    for i in range(n):
        for j in range(i + 1, min(n, i + MAX_PRIMITIVES) + 1):
            if (i, j) == (0, n):
                continue  # the whole picture, read as `predict` reads one digit
            if any(k in apart for k in range(i + 1, j)):
                continue  # marks a clear gap apart are two digits
            piece, box = span_mask(i, j)
            if piece.size == 0 or (not one_mark(i, j) and too_wide(box)):
                continue  # several marks side by side, too wide for one digit
            pixels.append(digit_pixels(piece))
            spans.append((i, j))
            places.append(box)
    wide = frozenset([0] if not one_mark(0, n) and (too_wide(whole) or apart) else [])
    return Candidates(np.stack(pixels), spans, places, n, frozenset(cuts), wide)


def blot(core: np.ndarray) -> bool:
    """Whether a mark's core (H, W), its ink over half strength, is thicker than BLOT times its height: a smudge,
    whose upright slices, were it cut, would read as 1s. Thickness: twice the largest distance from a core pixel
    to the core's edge (padded: a core may fill its box)."""
    return 2 * ndimage.distance_transform_edt(np.pad(core, 1)).max() > BLOT * core.shape[0]


def too_wide(box: tuple[int, int, int, int]) -> bool:
    """Whether ink in this box (left, top, right, bottom) is too wide to be one digit."""
    return box[2] - box[0] > WIDEST_DIGIT * (box[3] - box[1])


def best_reading(found: Candidates, probabilities: np.ndarray, scale: float = 1.0, split_cost: float | None = None,
                 cut_cost: float | None = None, wide_cost: float | None = None) -> NumberReading:  # fmt: skip
    """The split of the primitives into digits with the highest sum of log-probabilities, less `split_cost`
    (default SPLIT_COST) per digit after the first, `cut_cost` (CUT_COST) more for a split that cuts a mark and
    `wide_cost` (WIDE_COST) per unit of a digit's width over WIDE_DIGIT times its height (the module's step 4).
    `probabilities` are the network's (K, 10) for the candidates; boxes are given in the picture's pixels, `scale`
    per pixel of the ink map."""
    split_cost = SPLIT_COST if split_cost is None else split_cost
    cut_cost = CUT_COST if cut_cost is None else cut_cost
    wide_cost = WIDE_COST if wide_cost is None else wide_cost
    n = found.primitives
    by_span = {span: k for k, span in enumerate(found.spans)}  # the whole picture first: it wins a tie
    best = [(-math.inf, [])] * (n + 1)
    best[0] = (0.0, [])
    for j in range(1, n + 1):
        for i in range(max(0, j - MAX_PRIMITIVES) if (0, j) != (0, n) else 0, j):
            k = by_span.get((i, j))
            if k is None or best[i][0] == -math.inf or k in found.wide:
                continue
            cost = (split_cost + (cut_cost if i in found.cuts else 0.0)) if i else 0.0
            left, top, right, bottom = found.boxes[k]
            cost += wide_cost * max(0.0, (right - left) / max(1, bottom - top) - WIDE_DIGIT)
            score = best[i][0] + math.log(max(float(probabilities[k].max()), 1e-12)) - cost
            if score > best[j][0]:
                best[j] = (score, best[i][1] + [k])
    digits = []
    for k in best[n][1]:
        order = np.argsort(-probabilities[k])[:3]
        left, top, right, bottom = found.boxes[k]
        box = tuple(int(round(v * scale)) for v in (left, top, right, bottom))
        digits.append(ReadDigit(int(order[0]), float(probabilities[k][order[0]]),
                                tuple((int(d), float(probabilities[k][d])) for d in order), box, found.pixels[k]))  # fmt: skip
    return NumberReading("".join(d.text for d in digits), tuple(digits))


def net_reading(ink: np.ndarray, symbols: list[Symbol], scale: float = 1.0) -> NumberReading:
    """The number a NumberNet read in a picture's ink (H, W), its symbols (`digitnet.strings.read_symbols`) as digits:
    a "?" for a mark it read as no digit, each box the ink between the middles of its neighbours' columns."""
    left, per_column = strip_columns(ink)
    middles = [(s.columns[0] + s.columns[1] + 1) / 2 * STRIDE for s in symbols]  # in the strip's columns
    edges = [-math.inf, *((a + b) / 2 for a, b in itertools.pairwise(middles)), math.inf]
    digits = []
    for symbol, (start, stop) in zip(symbols, itertools.pairwise(edges)):
        c0 = max(0, round(left + (start - MARGIN) * per_column)) if start > -math.inf else 0
        c1 = min(ink.shape[1], round(left + (stop - MARGIN) * per_column)) if stop < math.inf else ink.shape[1]
        piece = ink[:, c0:max(c1, c0 + 1)]
        rows, cols = np.flatnonzero((piece > 0.1).any(1)), np.flatnonzero((piece > 0.1).any(0))
        if len(rows) == 0:  # a symbol read where no ink is: no reading to take over the cuts' (choose)
            return NumberReading("", ())
        r0, r1, k0, k1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        box = tuple(round(float(v) * scale) for v in (c0 + k0, r0, c0 + k1, r1))
        # "?": its likeliest digit, at a probability under UNSURE_BELOW however few the other digits share.
        digit, probability = symbol.symbol, symbol.probability
        if digit == NOT_A_DIGIT:
            digit, probability = symbol.top3[0][0], min(symbol.top3[0][1], UNSURE_BELOW / 2)
        digits.append(ReadDigit(digit, probability, symbol.top3, box, digit_pixels(piece[r0:r1, k0:k1])))
    return NumberReading("".join(d.text for d in digits), tuple(digits))


def choose(cut: NumberReading, net: NumberReading) -> NumberReading:
    """The reading of the cuts (`best_reading`) or of the NumberNet. Where the cuts read several digits: the net's
    where it reads another number of as many digits or more, every digit at NET_SURE or more (CTC's best path reads
    a digit written twice with no gap between as one: "11" may come back as "1"). Where they read one digit or
    none: the net's only where it reads more, every one at NET_SURE_ONE (two touching digits the cuts read as one),
    and never over a single mark the cuts doubt (a letter, a scribble: the net was never shown those).
    docs/numbers.md, "The number net"."""
    if len(cut.digits) > 1:
        take = net.number != cut.number and len(net.digits) >= len(cut.digits) and every_digit_sure(net, NET_SURE)
    else:
        take = len(net.digits) > len(cut.digits) and "?" not in cut.number and every_digit_sure(net, NET_SURE_ONE)
    return net if take else cut


def every_digit_sure(reading: NumberReading, probability: float) -> bool:
    """Whether a reading has digits, every one read at `probability` or more (a NumberNet's "?" never is)."""
    return bool(reading.digits) and all(d.probability >= probability for d in reading.digits)


def read_number(ink: np.ndarray, probabilities: Callable[[np.ndarray], np.ndarray], scale: float = 1.0,
                symbols: Callable[[np.ndarray], list[Symbol]] | None = None) -> NumberReading:  # fmt: skip
    """The number in a picture's ink, (H, W) in [0, 1]; `probabilities` maps (K, 28, 28) uint8 MNIST pictures to
    the network's (K, 10) probabilities; `symbols`, if given, the ink to what a NumberNet reads in it."""
    found = candidates(ink)
    return with_number_net(best_reading(found, probabilities(found.pixels), scale), ink, scale, symbols)


def with_number_net(reading: NumberReading, ink: np.ndarray, scale: float,
                    symbols: Callable[[np.ndarray], list[Symbol]] | None) -> NumberReading:  # fmt: skip
    """The cuts' `reading` of a picture's ink, or a NumberNet's (`choose`) where `symbols` runs one."""
    return reading if symbols is None else choose(reading, read_with_net(ink, scale, symbols))


def read_with_net(ink: np.ndarray, scale: float, symbols: Callable[[np.ndarray], list[Symbol]]) -> NumberReading:
    """The number a NumberNet reads in a picture's ink, less specks apart from it (as the whole picture is read as
    one digit): one would stretch the strip the net reads and shrink the digits in it."""
    ink = without_stray_specks(ink)
    return net_reading(ink, symbols(ink), scale)
