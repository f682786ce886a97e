"""The drawing page in headless Chromium, driven by Playwright: mouse strokes on the canvas come back as
digits, with their probabilities drawn as bars, "not sure" for a low probability, and the served network
named. What is checked is what a person sees: the text shown and the bars' rendered widths. Needs the
system's Chromium (Playwright brings its driver only) and the real MNIST, for a model that reads
handwriting; skipped, saying how to get them, when either is missing.

DIGITNET_UPDATE_SCREENSHOT=1 also writes the README's screenshot, docs/draw.png."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from digitnet.checkpoints import default_checkpoint
from digitnet.recognizer import DigitRecognizer
from serve_helpers import SOURCE, ServerProcess, have_real_mnist, mnist_test_set, trained_run

playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install -e '.[dev]'")

CHROMIUM = os.environ.get("DIGITNET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
PAD = 280  # the canvas' own pixels (draw.html), 10 per MNIST pixel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium: install it (sudo apt-get install chromium) or point DIGITNET_CHROMIUM at a Chrome binary",
    ),
    pytest.mark.skipif(not have_real_mnist(), reason="needs the real MNIST for a model that reads drawings "
                       "(set DIGITNET_DATA_DIR)"),  # fmt: skip
]


@pytest.fixture(scope="module", params=["MLP", "ConvNet"])
def run(request, tmp_path_factory) -> Path:
    """A folder with one `fit` run of each network in turn: the page is tested on either."""
    return trained_run(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def server(run):
    # No --ckpt_path: serve picks the latest run's best checkpoint, as after `python -m digitnet fit`.
    server = ServerProcess(cwd=run)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(server):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 760, "height": 540})
        page.goto(server.url + "/")
        yield page
        browser.close()


def draw(page, strokes: list[list[tuple[float, float]]]) -> str:
    """Clear the pad, draw the strokes (in pad pixels) with the mouse, and return the digit shown once
    the page has read the finished drawing."""
    page.click("#clear")
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / PAD
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=2)
        page.mouse.up()
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=15_000)
    return page.inner_text("#digit")


def shown_probabilities(page) -> list[float]:
    """The ten probabilities the page prints beside the bars, 0-1."""
    return [float(text.rstrip("%")) / 100 for text in page.locator("#bars .pct").all_inner_texts()]


def bar_fractions(page) -> list[float]:
    """How much of each digit's bar is drawn filled: the fill's rendered width over its bar's."""
    fractions = []
    for li in page.locator("#bars li").all():
        bar, fill = li.locator(".bar").bounding_box(), li.locator(".fill").bounding_box()
        fractions.append(fill["width"] / bar["width"])
    return fractions


def assert_bars_drawn(page, clear_digit: int | None = None) -> None:
    """Each bar is drawn as long as its number says; for a clear digit, its bar nearly full and the other
    nine nearly empty."""
    fractions, shown = bar_fractions(page), shown_probabilities(page)
    assert all(abs(f - p) < 0.02 for f, p in zip(fractions, shown)), (fractions, shown)
    if clear_digit is not None:
        assert fractions[clear_digit] > 0.9, f"{clear_digit}'s bar drawn {fractions[clear_digit]:.0%} full"
        assert max(f for d, f in enumerate(fractions) if d != clear_digit) < 0.1, fractions


def one() -> list[list[tuple[float, float]]]:
    return [[(140, 40 + 20 * i) for i in range(11)]]  # a vertical bar, top to bottom


def zero() -> list[list[tuple[float, float]]]:
    return [[(140 + 65 * math.sin(t), 140 - 100 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 40)]]


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


def traced(image: np.ndarray) -> list[list[tuple[float, float]]]:
    """Pen strokes along the centre lines of a 28x28 MNIST image, in pad pixels: walks from pixel to
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
        strokes.append([(10 * x + 5, 10 * y + 5) for y, x in path])
    return strokes


def test_drawing_a_1_a_0_and_a_traced_test_digit_shows_them(page, tmp_path):
    assert draw(page, one()) == "1"
    assert_bars_drawn(page, 1)
    assert draw(page, zero()) == "0"
    assert_bars_drawn(page, 0)
    images, labels = mnist_test_set()
    index = int((labels == 2).nonzero()[0][0])  # the first 2 of the test set
    assert draw(page, traced(images[index])) == "2"
    assert_bars_drawn(page)  # read less surely than the drawn 1 and 0: only the lengths are checked

    # The 28x28 preview shows the image the model saw: drawn, not blank.
    ink = page.evaluate("""() => {
        const data = document.getElementById('preview').getContext('2d').getImageData(0, 0, 28, 28).data;
        let lit = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] > 128) lit++;
        return lit;
    }""")
    assert 20 < ink < 400, f"{ink} bright pixels in the 28x28 preview"
    assert page.inner_text("#bars").count("%") == 10
    page.screenshot(path=tmp_path / "draw.png")
    if os.environ.get("DIGITNET_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "draw.png", SOURCE / "docs" / "draw.png")


def test_the_page_names_the_served_network(page, run):
    checkpoint = default_checkpoint(run / "lightning_logs")[0]  # the one serve picked
    net = DigitRecognizer.from_checkpoint(checkpoint).net
    name, parameters = type(net).__name__, sum(p.numel() for p in net.parameters())
    page.wait_for_function("document.getElementById('model').textContent !== ''", timeout=10_000)
    assert page.inner_text("#net") == name
    assert page.inner_text("#model") == f"Read by {name}, {parameters:,} parameters, from {checkpoint.name}"


def answer_with(probabilities: list[float]) -> dict:
    """A /predict answer, as the server would send it, for the given ten probabilities."""
    ranked = sorted(range(10), key=lambda d: -probabilities[d])
    return {
        "digit": ranked[0],
        "probability": probabilities[ranked[0]],
        "probabilities": probabilities,
        "top3": [{"digit": d, "probability": probabilities[d]} for d in ranked[:3]],
        "pixels": [[0] * 28 for _ in range(28)],
        "net": "Crafted",
    }


def test_a_low_probability_says_not_sure_and_names_the_two_likeliest(page):
    # The network's own answers to a scribble vary with the checkpoint; answers with chosen probabilities
    # (the page's /predict requests answered by Playwright) test the page's decision deterministically.
    threshold = page.evaluate("NOT_SURE_BELOW")
    unsure = [0.03] * 10
    unsure[4], unsure[9] = 0.41, 0.35
    assert 0.41 < threshold
    rest = (1 - threshold) / 9
    sure = [rest] * 10
    sure[4] = threshold  # just sure: at the threshold the digit is stated
    answer = {}
    page.route("**/predict", lambda route: route.fulfill(json=answer))
    try:
        answer.update(answer_with(unsure))
        assert draw(page, zero()) == "?"
        assert page.inner_text("#probability") == "not sure"
        assert page.inner_text("#status") == "Not sure: 4 (41.0%) or 9 (35.0%)."
        assert page.locator("#bars li.top").count() == 0  # no bar is marked as the answer
        assert shown_probabilities(page)[4] == 0.41  # the numbers are still all shown

        answer.update(answer_with(sure))
        assert draw(page, zero()) == "4"
        assert page.inner_text("#status").startswith("Read as 4;")
    finally:
        page.unroute("**/predict")
    assert draw(page, one()) == "1"  # the server's own answers again


def test_clear_empties_the_answer_and_the_page_loads_nothing_from_elsewhere(page, server):
    draw(page, one())
    page.click("#clear")
    assert page.inner_text("#digit") == ""
    html = page.content()
    assert "http://" not in html.replace(server.url, "") and "https://" not in html
    # Every control has a label and takes keyboard focus.
    assert page.get_attribute("#photo", "accept") == "image/*"
    assert page.locator("label[for=photo]").inner_text() == "or use a photo"
    page.focus("#clear")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "photo"


def test_a_5xx_shows_its_reason_and_the_next_drawing_is_read(page):
    # While a worker restarts the server may answer 504 {"error": reason}; a proxy in front of it may answer
    # with a page of its own. Either is shown as an error, and the page goes on reading drawings.
    from digitnet.serve import timed_out

    answer = {}  # how Playwright answers the page's requests to /predict (one drawing may send several)
    page.route("**/predict", lambda route: route.fulfill(**answer))
    try:
        answer.update(status=504, json={"error": timed_out(11)})
        draw(page, one())
        assert page.inner_text("#status") == timed_out(11)
        assert page.get_attribute("#status", "class") == "error" and page.inner_text("#digit") == ""
        answer.clear()
        answer.update(status=502, body="<html>Bad Gateway</html>", content_type="text/html")
        draw(page, one())
        assert page.inner_text("#status") == "the server answered 502: draw again to retry"
    finally:
        page.unroute("**/predict")
    assert draw(page, one()) == "1"
    assert page.get_attribute("#status", "class") == ""
