"""Strings of digits for `NumberNet`, the reader of a whole number: made from training digits, and read back.

A number is read as one strip (`strip`: its ink 20 pixels high, as MNIST's digits are, any width), column by column,
by a network trained with CTC (Graves et al., ICML 2006) on strings composed on the fly from each training batch's
own digits (`make_strings`): side by side, touching or overlapping, of uneven sizes and baselines, some drawn in two
strokes, and now and then a mark that is no digit, which the network learns to read as "?". CTC needs no position of
any digit, only the string, so no split into digits has to be right: touching digits are read as they are written.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from digitnet.images import MEAN, STD
from digitnet.ink import stroke_levels

HEIGHT, INK_HEIGHT, MARGIN = 28, 20, 4  # a strip's rows; its ink's rows, centred; blank columns on each side
STRIDE = 4  # columns of a strip per column the network reads (its two poolings)
NOT_A_DIGIT, BLANK = 10, 11  # the network's classes after the ten digits: "?" and CTC's blank
MAX_DIGITS = 8  # the longest string made for training
TOUCHING = 0.5  # the share of neighbours made to touch or overlap, rather than stand apart


class Strings(NamedTuple):
    """A batch of strings for training: (S, 1, 28, W) strips (each padded to the widest with background), the
    targets of all of them one after the other, (sum of lengths,) int64, the length of each, (S,), and the columns
    the network reads in each, (S,)."""

    images: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor
    frames: torch.Tensor


def ink_crop(ink: np.ndarray, level: float = 0.1) -> np.ndarray:
    """The box of a picture's ink over `level`; an empty (0, 0) array for no ink."""
    rows, cols = np.flatnonzero((ink > level).any(1)), np.flatnonzero((ink > level).any(0))
    if len(rows) == 0:
        return np.zeros((0, 0), np.float32)
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def strip_width(h: int, w: int, widest: int = 400) -> int:
    """The columns `strip` scales an ink box of h rows and w columns to: 20 rows high, at most `widest` wide."""
    return min(widest, max(STRIDE, round(w * INK_HEIGHT / h)))


def strip_columns(ink: np.ndarray) -> tuple[int, float]:
    """Where `strip` takes a picture's ink from: its first column of ink, and the ink's columns per strip column."""
    cols = np.flatnonzero((ink > 0.1).any(0))
    if len(cols) == 0:
        return 0, 1.0
    h, w = ink_crop(ink).shape
    return int(cols[0]), w / strip_width(h, w)


def strip(ink: np.ndarray) -> torch.Tensor:
    """(H, W) ink in [0, 1] -> (28, W') float32: its ink box scaled to 20 rows (`strip_width` columns), centred
    between 4 empty rows above and below, 4 empty columns each side, W' a multiple of STRIDE."""
    ink = ink_crop(np.asarray(ink, np.float32))
    if ink.size == 0:
        return torch.zeros(HEIGHT, 2 * MARGIN)
    width = strip_width(*ink.shape)
    scaled = F.interpolate(torch.from_numpy(np.ascontiguousarray(ink))[None, None], size=(INK_HEIGHT, width),
                           mode="bilinear", antialias=True, align_corners=False)[0, 0].clamp(0, 1)  # fmt: skip
    out = torch.zeros(HEIGHT, math.ceil((width + 2 * MARGIN) / STRIDE) * STRIDE)
    top = (HEIGHT - INK_HEIGHT) // 2
    out[top : top + INK_HEIGHT, MARGIN : MARGIN + width] = scaled
    return out


def compose(pieces: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Ink crops (h, w) in [0, 1], side by side left to right as one (H, W) picture: each scaled by 0.8-1.2, its
    baseline up to 2 pixels off a line sloping up to 0.1, and the next one either TOUCHING (moved left until their
    inks meet, then up to 2.5 pixels into it) or 1-7 pixels apart."""
    slope = rng.uniform(-0.1, 0.1)
    canvas = np.zeros((60 + int(40 * abs(slope) * len(pieces)), 40 * len(pieces) + 40), np.float32)
    right = 10
    for k, piece in enumerate(pieces):
        size = rng.uniform(0.8, 1.2)
        h, w = max(1, round(piece.shape[0] * size)), max(1, round(piece.shape[1] * size))
        piece = F.interpolate(torch.from_numpy(np.ascontiguousarray(piece))[None, None], size=(h, w),
                              mode="bilinear", align_corners=False)[0, 0].numpy()  # fmt: skip
        top = round(canvas.shape[0] - 20 - h - rng.uniform(-2, 2) - slope * 20 * k)
        top = int(np.clip(top, 0, canvas.shape[0] - h))
        x = right + round(rng.uniform(1, 7))
        if k and rng.random() < TOUCHING:
            # Per row: the rightmost ink so far, the leftmost of the piece; where both have ink, the piece's is
            # put one column right of the canvas's, then moved 0-2.5 pixels into it.
            placed, new = canvas[top : top + h] > 0.3, piece > 0.3
            both = placed.any(1) & new.any(1)
            if both.any():
                last = placed.shape[1] - 1 - placed[:, ::-1].argmax(1)
                x = int((last - new.argmax(1))[both].max()) + 1 - round(rng.uniform(0, 2.5))
        x = max(x, 0)
        canvas[top : top + h, x : x + w] = np.maximum(canvas[top : top + h, x : x + w], piece)
        right = x + w
    return canvas


def two_strokes(piece: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A digit's ink with a 2-pixel band erased across its middle, in a random direction: a pen lifted once."""
    h, w = piece.shape
    cy, cx, angle = h / 2 + rng.uniform(-2, 2), w / 2 + rng.uniform(-2, 2), rng.uniform(0, math.pi)
    y, x = np.mgrid[0:h, 0:w]
    return np.where(np.abs((x - cx) * math.sin(angle) - (y - cy) * math.cos(angle)) < 1.0, 0, piece).astype(np.float32)


def make_strings(digits: torch.Tensor, labels: torch.Tensor, count: int, marks: torch.Tensor | None = None,
                 seed: int | None = None) -> tuple[list[torch.Tensor], list[list[int]]]:  # fmt: skip
    """`count` strings of 1 to MAX_DIGITS of these (B, 28, 28) digits' ink in [0, 1] (three in ten single digits),
    a tenth of the digits in two strokes, and 8% of the places taken by one of `marks`, (M, 28, 28) ink of non-digits
    (`digitnet.negatives`), labelled NOT_A_DIGIT, each string's ink as the reader's ink map draws a picture of it
    (`digitnet.ink.stroke_levels`). Returns each string's strip (`strip`) and its labels."""
    rng = np.random.default_rng(seed)
    digits, labels = digits.detach().float().cpu().numpy(), labels.cpu().tolist()
    crops = [ink_crop(d) for d in digits]
    usable = [k for k, c in enumerate(crops) if c.size]
    others = [c for c in (ink_crop(m) for m in marks.detach().float().cpu().numpy())] if marks is not None else []
    others = [c for c in others if c.size]
    strips, texts = [], []
    for _ in range(count if usable else 0):  # a batch with no ink at all makes none
        n = 1 if rng.random() < 0.2 else int(rng.integers(1, MAX_DIGITS + 1))
        pieces, text = [], []
        for _ in range(n):
            if others and rng.random() < 0.08:
                pieces.append(others[int(rng.integers(len(others)))])
                text.append(NOT_A_DIGIT)
                continue
            k = usable[int(rng.integers(len(usable)))]
            pieces.append(two_strokes(crops[k], rng) if rng.random() < 0.1 else crops[k])
            text.append(labels[k])
        # As the reader's ink map draws a clean picture of it: MNIST's soft edges cut, the rest stretched to full.
        # A net that saw only MNIST's soft edges reads such ink far worse (docs/numbers.md, "The number net").
        canvas = compose(pieces, rng)
        inked = canvas > 0.1
        if not inked.any():  # faint ink scaled smaller: nothing left at the level of a stroke
            continue
        strips.append(strip(stroke_levels(canvas, inked)))
        texts.append(text)
    return strips, texts


def batch_of(strips: list[torch.Tensor], texts: list[list[int]], fill: float = 0.0) -> Strings:
    """Strips of one or more widths as one training batch, padded on the right with `fill`."""
    width = max(s.shape[1] for s in strips)
    images = torch.full((len(strips), 1, HEIGHT, width), fill)
    for i, s in enumerate(strips):
        images[i, 0, :, : s.shape[1]] = s
    return Strings(images, torch.tensor([c for t in texts for c in t], dtype=torch.long),
                   torch.tensor([len(t) for t in texts]), torch.tensor([s.shape[1] // STRIDE for s in strips]))


def ctc_loss(logits: torch.Tensor, numbers: Strings) -> torch.Tensor:
    """CTC's loss of a NumberNet's (S, T, 12) logits of these strings, in float32: under mixed precision too, as its
    sums over paths need."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, S, 12), as CTC takes it
    return F.ctc_loss(log_probs, numbers.targets, numbers.frames, numbers.lengths, blank=BLANK, zero_infinity=True)


def read_right(logits: torch.Tensor, numbers: Strings) -> torch.Tensor:
    """(S,) float, on the logits' device: 1 where the best path of a strip's logits reads its string exactly."""
    texts = numbers.targets.split(numbers.lengths.tolist())
    right = [[s.symbol for s in read_symbols(row[:frames])] == text.tolist()
             for row, frames, text in zip(logits, numbers.frames.tolist(), texts)]  # fmt: skip
    return torch.tensor(right, dtype=torch.float, device=logits.device)


class Symbol(NamedTuple):
    """One symbol a NumberNet read: a digit (0-9) or NOT_A_DIGIT, its probability, the three likeliest digits with
    theirs (among the ten digits alone, as the classifier gives them), and the strip's columns it was read in."""

    symbol: int
    probability: float
    top3: tuple[tuple[int, float], ...]
    columns: tuple[int, int]


def read_symbols(logits: torch.Tensor) -> list[Symbol]:
    """(T, 12) logits of one strip -> the symbols read, left to right (CTC's best path: the likeliest class of each
    column, repeats merged, blanks dropped). A symbol's probability is its highest in the columns it was read in, and
    its top 3 those of that column."""
    p = logits.detach().float().softmax(-1)
    best = p.argmax(-1).tolist()
    symbols: list[Symbol] = []
    previous = BLANK
    for t, k in enumerate(best):
        if k == BLANK:
            previous = k
            continue
        if k == previous:  # the same symbol, read over one more column
            s = symbols[-1]
            if p[t, k] > s.probability:
                s = s._replace(probability=float(p[t, k]), top3=top3(p[t]))
            symbols[-1] = s._replace(columns=(s.columns[0], t))
        else:
            symbols.append(Symbol(k, float(p[t, k]), top3(p[t]), (t, t)))
        previous = k
    return symbols


def top3(p: torch.Tensor) -> tuple[tuple[int, float], ...]:
    """The three likeliest digits of one column's (12,) probabilities, with theirs."""
    values, order = p[:NOT_A_DIGIT].topk(3)
    return tuple((int(d), float(v)) for d, v in zip(order, values))


def strip_input(strips: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """(28, W) or (S, 28, W) strips of ink in [0, 1] -> (S, 1, 28, W) model input, scaled as `to_input` scales
    pixels."""
    x = strips.reshape(-1, 1, *strips.shape[-2:]).float()
    return (x - MEAN) / STD if normalize else x


@torch.no_grad()
def read_ink(number_net: torch.nn.Module, ink: np.ndarray, normalize: bool = True) -> list[Symbol]:
    """What a NumberNet reads in a picture's ink (H, W) in [0, 1], left to right, on the device of its weights."""
    x = strip_input(strip(ink), normalize)
    parameter = next(number_net.parameters(), None)
    # On the weights' device and in their type: `predict --trainer.precision=bf16-true` casts the nets, not this strip.
    return read_symbols(number_net(x if parameter is None else x.to(parameter.device, parameter.dtype))[0])
