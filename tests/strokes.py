"""Handwriting for the drawing page's tests: MNIST test digits traced as pen strokes (`traced`), laid out side by
side as a number on a pad (`Number`), and drawn as the page's pen would draw them (`Number.picture`), so that a
test can first check in Python which digits the served network reads, then draw them with the mouse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Stroke = list[tuple[float, float]]


def thin(ink: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: a boolean image reduced to lines one pixel wide (the strokes' centre lines)."""
    ink = np.pad(ink, 1).astype(bool)
    while True:
        changed = False
        for step in (0, 1):
            n = [np.roll(np.roll(ink, -dy, 0), -dx, 1) for dy, dx in
                 ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))]  # P2..P9, clockwise
            count = sum(n)
            transitions = sum(~a & b for a, b in zip(n, n[1:] + n[:1]))
            if step == 0:
                remove = ~(n[0] & n[2] & n[4]) & ~(n[2] & n[4] & n[6])
            else:
                remove = ~(n[0] & n[2] & n[6]) & ~(n[0] & n[4] & n[6])
            remove &= ink & (count >= 2) & (count <= 6) & (transitions == 1)
            if remove.any():
                ink &= ~remove
                changed = True
        if not changed:
            return ink[1:-1, 1:-1]


def traced(image: np.ndarray) -> list[Stroke]:
    """Pen strokes along the centre lines of a 28x28 MNIST image, as (x, y) in its pixels: walks from pixel to
    neighbouring pixel of the thinned strokes, starting at loose ends, lifting the pen when stuck."""
    left = {(int(y), int(x)) for y, x in zip(*np.nonzero(thin(image > 96)))}

    def neighbours(p: tuple[int, int]) -> list[tuple[int, int]]:
        around = [(p[0] + dy, p[1] + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
        return [q for q in around if q in left]

    strokes = []
    while left:
        start = min(left, key=lambda p: (len(neighbours(p)), p))  # a loose end when there is one
        path = [start]
        left.discard(start)
        while nxt := neighbours(path[-1]):
            path.append(min(nxt, key=lambda q: abs(q[0] - path[-1][0]) + abs(q[1] - path[-1][1])))  # straight first
            left.discard(path[-1])
        points = np.array([(x, y) for y, x in path], dtype=float)
        if len(points) > 2:  # a pen's line, not a staircase of pixels: each point moved towards its neighbours'
            points[1:-1] = (points[:-2] + 2 * points[1:-1] + points[2:]) / 4
        strokes.append([(float(x), float(y)) for x, y in points])
    return strokes


@dataclass(frozen=True)
class Number:
    """MNIST digits traced and written side by side on a pad of `size` (width, height) pixels, with a pen of
    `pen` pixels: `strokes` in pad pixels, and each digit's ink box (left, top, right, bottom) in `boxes`."""

    size: tuple[int, int]
    pen: int
    strokes: list[Stroke]
    boxes: list[tuple[float, float, float, float]]

    @classmethod
    def written(cls, images: list[np.ndarray], size: tuple[int, int], pen: int, height: float = 0.6,
                gap: float = 0.3) -> Number:  # fmt: skip
        """The digits `images` (28x28 each) traced, `height` of the pad tall (the tallest), `gap` of that apart,
        centred on the pad; smaller where they would not fit its width."""
        traces = [traced(image) for image in images]
        extents = [np.array([p for stroke in trace for p in stroke]) for trace in traces]
        spans = [e.max(0) - e.min(0) for e in extents]  # (width, height) of each centre line, MNIST pixels
        tall = height * size[1] - pen
        scale = tall / max(h for _, h in spans)
        widths = [w * scale + pen for w, _ in spans]
        total = sum(widths) + gap * tall * (len(images) - 1)
        if total > 0.9 * size[0]:
            scale *= 0.9 * size[0] / total
            tall = scale * max(h for _, h in spans)
            widths = [w * scale + pen for w, _ in spans]
            total = sum(widths) + gap * tall * (len(images) - 1)
        strokes, boxes, x = [], [], (size[0] - total) / 2
        for trace, extent, (w, h), width in zip(traces, extents, spans, widths):
            top = (size[1] - h * scale) / 2  # each digit centred in height
            origin = (x + pen / 2 - extent.min(0)[0] * scale, top - extent.min(0)[1] * scale)
            strokes += [[(origin[0] + scale * px, origin[1] + scale * py) for px, py in s] for s in trace]
            boxes.append((x, top - pen / 2, x + width, top + h * scale + pen / 2))
            x += width + gap * tall
        return cls(size, pen, strokes, boxes)

    def picture(self) -> np.ndarray:
        """The strokes drawn as the page draws them (black, round pen, on white): (H, W) uint8 grey levels."""
        image = Image.new("L", self.size, 255)
        draw = ImageDraw.Draw(image)
        r = self.pen / 2
        for stroke in self.strokes:
            if len(stroke) > 1:
                draw.line(stroke, fill=0, width=self.pen)
            for x, y in stroke:  # round caps and joins
                draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
        return np.asarray(image)
