"""`python -m digitnet serve` as a client sees it: a real server process on a free port of 127.0.0.1,
answering POST /predict with the numbers and digits `DigitRecognizer` reads, and every bad request with a 4xx and
{"error": reason}, after which it goes on answering; a request that waits too long with a 504, a killed
inference worker with a new one, and SIGTERM by stopping every process of the server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from digitnet.errors import DigitnetError
from digitnet.images import mnist_pixels
from digitnet.checkpoints import default_checkpoint
from digitnet.number_reader import UNSURE_BELOW
from digitnet.recognizer import DigitRecognizer
from helpers import digitnet_env
from number_stand_in import with_number_stand_in
from photos import huge_png
from serve_helpers import (ServerProcess, free_port, have_real_mnist, inference_workers, mnist_test_set, processes,
                           running, trained_run)  # fmt: skip

pytest.importorskip("litserve", reason="needs the serve extra: pip install -e '.[serve]'")
pytestmark = pytest.mark.slow  # each test runs or starts a server process

CAP = 5 * 2**20  # digitnet.serve.MAX_UPLOAD_BYTES
ANSWER = {"number", "digits", "digit", "probability", "probabilities", "top3", "pixels", "net"}
READ_DIGIT = {"digit", "text", "probability", "sure", "top3", "box", "pixels"}  # each of "digits"


@pytest.fixture(scope="module", params=["MLP", "ConvNet"])
def checkpoint(request, tmp_path_factory) -> Path:
    """The best checkpoint of a `fit` run of each network, served in turn by the tests that take it."""
    return default_checkpoint(trained_run(tmp_path_factory, request.param) / "lightning_logs")[0]


@pytest.fixture(scope="module")
def one_checkpoint(tmp_path_factory) -> Path:
    """One network's checkpoint, for the tests of the server's processes (the same for either network)."""
    return default_checkpoint(trained_run(tmp_path_factory) / "lightning_logs")[0]


def slow_checkpoint(checkpoint: Path, delay: float, folder: Path, load_delay: float = 0.0) -> Path:
    """`checkpoint`'s MLP as a `slow_net.SlowMLP` (tests/ is on the server's import path): every forward pass of
    the server's network then takes `delay` seconds more, and building it `load_delay` seconds."""
    state = torch.load(checkpoint, weights_only=True)
    state["hyper_parameters"]["net"] = {"class_path": "slow_net.SlowMLP",
                                        "init_args": {"delay": delay, "load_delay": load_delay}}  # fmt: skip
    torch.save(state, folder / "slow.ckpt")
    return folder / "slow.ckpt"


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    server = ServerProcess(f"--ckpt_path={checkpoint}", cwd=tmp_path_factory.mktemp("serve"))
    yield server
    assert server.stop() == 0, server.output()  # Ctrl-C stops it cleanly
    assert "Traceback" not in server.output(), server.output()


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_pngs(n: int) -> list[tuple[bytes, int | None]]:
    """n PNG files of digits and their labels: MNIST test digits (white on black), or drawings of
    dark strokes on white paper (labels unknown) when the real MNIST is absent."""
    if have_real_mnist():
        images, labels = mnist_test_set()
        return [(png(images[i]), int(labels[i])) for i in range(n)]
    rng = np.random.default_rng(0)
    files = []
    for _ in range(n):
        paper = np.full((120, 100), 235, dtype=np.uint8)
        top, left = rng.integers(10, 40, size=2)
        paper[top : top + 60, left + 20 : left + 30] = 20  # a bar
        paper[top + 50 : top + 60, left : left + 50] = 20  # and a foot
        files.append((png(paper), None))
    return files


def post(url: str, data: bytes, name: str = "digit.png") -> httpx.Response:
    return httpx.post(f"{url}/predict", files={"file": (name, data, "image/png")}, timeout=30)


def test_the_page_health_and_known_digits(server):
    page = httpx.get(server.url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text and 'type="file"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing loaded from elsewhere
    assert httpx.get(server.url + "/health", timeout=10).text == "ok"

    files = digit_pngs(20)
    answers = [post(server.url, data).json() for data, _ in files]
    for answer in answers:
        assert set(answer) == ANSWER and len(answer["digits"]) >= 1
        assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-4
        assert answer["top3"][0] == {"digit": answer["digit"], "probability": answer["probability"]}
        assert np.array(answer["pixels"]).shape == (28, 28)
    if have_real_mnist():
        right = sum(answer["digit"] == label for answer, (_, label) in zip(answers, files))
        assert right >= 19, f"{right} of the first 20 MNIST test digits read right"


def test_the_page_is_the_same_at_every_load_compressed_or_not(server):
    # Browsers ask for gzip: every load must decode to the same page, as a phone's second visit does.
    loads = [httpx.get(server.url + "/", headers={"Accept-Encoding": encoding}, timeout=10)
             for encoding in ("gzip", "gzip", "identity", "gzip")]  # fmt: skip
    assert [load.status_code for load in loads] == [200] * 4
    assert len({load.text for load in loads}) == 1 and '<canvas id="pad"' in loads[0].text


def test_answers_equal_digit_recognizer(server, checkpoint, tmp_path):
    recognizer = DigitRecognizer.from_checkpoint(checkpoint)
    net = type(recognizer.net).__name__
    # /info's "model" is what the page shows: the checkpoint's network, its size and its file.
    parameters = sum(p.numel() for p in recognizer.net.parameters())
    model = httpx.get(server.url + "/info", timeout=10).json()["model"]
    assert model == {"net": net, "parameters": parameters, "checkpoint": checkpoint.name}
    for i, (data, _) in enumerate(digit_pngs(8)):
        path = tmp_path / f"{i}.png"
        path.write_bytes(data)
        answer = post(server.url, data).json()
        expected = recognizer.predict(path)
        assert answer["net"] == net
        assert answer["digit"] == expected.digit
        assert answer["probability"] == pytest.approx(expected.probability, abs=1e-6)
        assert [(t["digit"]) for t in answer["top3"]] == [d for d, _ in expected.top3]
        assert np.array_equal(np.array(answer["pixels"]), mnist_pixels(path))  # what predict's network saw


def number_png(indices: list[int], zoom: int = 1) -> tuple[bytes, list[tuple[int, int]], str | None]:
    """MNIST test digits side by side, each with 4 pixels of black around it (white on black), as a PNG `zoom`
    times their size; each digit's columns in it (left, right); and the number they make (bars, and None,
    without the real MNIST)."""
    if have_real_mnist():
        images, labels = mnist_test_set()
        digits, number = [images[i] for i in indices], "".join(str(labels[i]) for i in indices)
    else:
        digits, number = [np.pad(np.full((16, 4), 255, np.uint8), ((6, 6), (12, 12))) for _ in indices], None
    strip = np.concatenate([np.pad(digit, 4) for digit in digits], axis=1)
    picture = Image.fromarray(strip).resize((strip.shape[1] * zoom, strip.shape[0] * zoom), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue(), [(36 * zoom * k, 36 * zoom * (k + 1)) for k in range(len(digits))], number


def test_a_picture_of_a_number_is_answered_with_its_digits_boxes_and_images(server, checkpoint, tmp_path):
    recognizer = DigitRecognizer.from_checkpoint(checkpoint)
    # At zoom 12 the picture is 1296 pixels wide: read at 1024 (images.WORK_SIZE), its boxes scaled back.
    for zoom in (1, 12):
        data, columns, number = number_png([0, 1, 2], zoom)
        answer = post(server.url, data).json()
        assert set(answer) == ANSWER and len(answer["digits"]) == 3, answer.get("number")
        assert answer["number"] == "".join(d["text"] for d in answer["digits"])
        for d, (left, right) in zip(answer["digits"], columns):  # left to right
            assert set(d) == READ_DIGIT
            assert d["sure"] == (d["probability"] >= UNSURE_BELOW)  # "?" where the network does not believe it
            assert d["text"] == (str(d["digit"]) if d["sure"] else "?")
            assert d["top3"][0] == {"digit": d["digit"], "probability": d["probability"]} and len(d["top3"]) == 3
            assert [t["probability"] for t in d["top3"]] == sorted((t["probability"] for t in d["top3"]), reverse=True)
            box_left, top, box_right, bottom = d["box"]  # in the picture's pixels, right and bottom exclusive
            assert left <= box_left < box_right <= right and 0 <= top < bottom <= 36 * zoom, (d["box"], left, right)
            pixels = np.array(d["pixels"])
            assert pixels.shape == (28, 28) and pixels.min() >= 0 and 128 < pixels.max() <= 255
        # The same reading as DigitRecognizer.read_number's, to the box and the pixel.
        path = tmp_path / f"number-{zoom}.png"
        path.write_bytes(data)
        reading = recognizer.read_number(path)
        assert answer["number"] == reading.number
        for d, expected in zip(answer["digits"], reading.digits):
            assert d["box"] == list(expected.box) and d["digit"] == expected.digit
            assert d["probability"] == pytest.approx(expected.probability, abs=1e-6)
            assert np.array_equal(np.array(d["pixels"]), expected.pixels)
        if number is not None:
            assert answer["number"] == number
    if have_real_mnist():  # the first 30 test digits, three at a time
        strips = [number_png(list(range(k, k + 3))) for k in range(0, 30, 3)]
        right = sum(post(server.url, data).json()["number"] == number for data, _, number in strips)
        assert right >= 7, f"{right} of 10 numbers of three MNIST test digits read right"


def test_a_number_net_s_reading_is_answered_as_digit_recognizer_reads_it(one_checkpoint, tmp_path):
    # A stand-in number net that reads 1234, sure of each digit: another number, of more digits than the cuts find
    # in 3 digits, so the reader takes its reading (digitnet.number_reader.choose).
    checkpoint = with_number_stand_in(one_checkpoint, tmp_path, "1234")
    server = ServerProcess(f"--ckpt_path={checkpoint}", cwd=tmp_path)
    try:
        data, _, _ = number_png([0, 1, 2])
        answer = post(server.url, data).json()
        (tmp_path / "number.png").write_bytes(data)
        reading = DigitRecognizer.from_checkpoint(checkpoint).read_number(tmp_path / "number.png")
        assert answer["number"] == reading.number == "1234"
        assert [d["box"] for d in answer["digits"]] == [list(d.box) for d in reading.digits]
        assert [d["probability"] for d in answer["digits"]] == pytest.approx([d.probability for d in reading.digits])
    finally:
        assert server.stop() == 0, server.output()


def blank_png() -> bytes:
    return png(np.full((200, 200), 255, dtype=np.uint8))


def over_the_cap():  # a chunked upload (no Content-Length): refused by LitServe's cap as it arrives
    yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
    for _ in range(CAP // 2**16 + 4):
        yield b"\0" * 2**16


DIGIT = png(np.pad(np.full((16, 4), 255, dtype=np.uint8), ((6, 6), (12, 12))))  # a bar, as MNIST draws a 1


def form(data: bytes, boundary: str = "x") -> bytes:
    """A multipart form with `data` as its 'file' field, as an HTTP library sends one."""
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
    return (head + "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()


BAD_REQUESTS = {
    # name: (httpx.post keyword arguments, status, words of the reason)
    "empty body": (dict(content=b""), 400, "empty request body"),
    "JSON naming a path": (dict(json={"file": "/etc/passwd"}), 415, "multipart form field named 'file'"),
    "a path in a text field": (dict(data={"file": "/etc/passwd"}, files={"other": ("x", b"x")}), 400,
                               "text, not a file"),  # fmt: skip
    "no file field": (dict(files={"image": ("d.png", DIGIT)}), 400, "no 'file' field"),
    # Two: the last was read, the first not a word.
    "two files": (dict(files=[("file", ("a.png", DIGIT)), ("file", ("b.png", DIGIT))]), 400, "2 'file' fields"),
    "empty file": (dict(files={"file": ("d.png", b"")}), 400, "empty file"),
    "not an image": (dict(files={"file": ("d.png", b"hello, world\n" * 10)}), 422, "not an image"),
    "truncated image": (dict(files={"file": ("d.png", DIGIT[: len(DIGIT) // 2])}), 422, "truncated"),
    "blank drawing": (dict(files={"file": ("d.png", blank_png())}), 422, "no ink"),
    "over the pixel limit": (dict(files={"file": ("d.png", huge_png())}), 422, "too large"),
    "over the size cap": (dict(content=over_the_cap, headers={"content-type": "multipart/form-data; boundary=x"}),
                          413, "over the limit of 5 MB"),  # fmt: skip
    # The Content-Type set by hand (requests, fetch): LitServe answered 500, "send the request again".
    "a form without its boundary": (dict(content=form(DIGIT), headers={"content-type": "multipart/form-data"}), 400,
                                    "without its boundary: let the HTTP library set the Content-Type"),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_a_bad_request_gets_its_4xx_and_reason_and_the_next_is_answered(server, name):
    kwargs, status, reason = BAD_REQUESTS[name]
    kwargs = {key: value() if callable(value) else value for key, value in kwargs.items()}  # a new generator each run
    response = httpx.post(f"{server.url}/predict", timeout=30, **kwargs)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and reason in response.json()["error"]
    assert post(server.url, DIGIT).status_code == 200


def read_response(client: socket.socket) -> str:
    """An HTTP response's head and body as text: the body may come in a later packet than the head."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := client.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length and (chunk := client.recv(65536)):
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def test_a_100_mb_upload_is_refused_from_its_header_without_being_sent(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                       b"Content-Length: 100000000\r\n\r\n")  # fmt: skip
        answer = read_response(client)
    assert answer.startswith("HTTP/1.1 413") and "over the limit of 5 MB" in answer
    assert post(server.url, DIGIT).status_code == 200


def test_a_post_with_no_body_and_no_content_length_is_an_empty_body(server):
    # as `curl -X POST URL` sends it: no Content-Length and not chunked, so no body at all
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_response(client)
    assert answer.startswith("HTTP/1.1 400") and "empty request body" in answer
    assert post(server.url, DIGIT).status_code == 200


def test_bad_settings_are_errors_that_say_what_to_do(checkpoint):
    from digitnet.serve import main

    with pytest.raises(DigitnetError, match="no checkpoint under .*train a model first"):
        main([])  # cwd is an empty tmp_path: no lightning_logs
    with pytest.raises(DigitnetError, match="missing.ckpt: no such checkpoint"):
        main(["--ckpt_path=missing.ckpt", f"--port={free_port()}"])
    with pytest.raises(DigitnetError, match="use one of localhost, 127.0.0.1, 0.0.0.0, ::"):
        main([f"--ckpt_path={checkpoint}", "--host=example.com"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DigitnetError, match=f"cannot listen on 127.0.0.1:{port}.*choose another port"):
            main([f"--ckpt_path={checkpoint}", f"--port={port}", "--corrections=fixes"])
        assert not Path("fixes").exists()  # refused before the corrections folder is made
        with pytest.raises(DigitnetError, match=f"cannot listen on 127.0.0.1:{port}"):  # localhost is 127.0.0.1
            main([f"--ckpt_path={checkpoint}", f"--port={port}", "--host=LocalHost"])
    with pytest.MonkeyPatch.context() as patch:  # LitServe would start, then fail blaming the checkpoint or nothing
        patch.setattr(torch.cuda, "is_available", lambda: False)
        patch.setattr(torch.backends.mps, "is_available", lambda: False)
        for accelerator in ("cuda", "mps"):
            with pytest.raises(DigitnetError, match=f"--accelerator {accelerator}: torch finds no such device"):
                main([f"--ckpt_path={checkpoint}", f"--accelerator={accelerator}"])
    for timeout in ("0", "-1", "0.001"):  # the last under the default --batch_timeout of 0.005 s
        with pytest.raises(DigitnetError, match=f"--timeout {timeout}: use more seconds than --batch_timeout"):
            main([f"--ckpt_path={checkpoint}", f"--timeout={timeout}"])


def test_with_batching_a_bad_upload_does_not_fail_the_good_ones_batched_with_it(checkpoint, tmp_path):
    server = ServerProcess(f"--ckpt_path={checkpoint}", "--max_batch_size=8", "--batch_timeout=0.1", cwd=tmp_path)
    try:
        uploads = [DIGIT, b"not an image", DIGIT, blank_png(), DIGIT, DIGIT]
        with ThreadPoolExecutor(len(uploads)) as pool:  # sent together: read in one or two batches
            statuses = [r.status_code for r in pool.map(lambda data: post(server.url, data), uploads)]
        assert statuses == [200, 422, 200, 422, 200, 200]
    finally:
        assert server.stop() == 0


def test_litserve_s_own_errors_say_what_to_do(one_checkpoint):
    from starlette.exceptions import HTTPException

    from digitnet.serve import SERVER_ERROR, build_server, timed_out, too_large

    handler = build_server(str(one_checkpoint), timeout=2.5).app.exception_handlers[HTTPException]
    for exc, reason in ((HTTPException(504, "Request timed out"), timed_out(2.5)),  # waited too long in the queue
                        (HTTPException(500, "Internal server error"), SERVER_ERROR),
                        (HTTPException(413, "Payload too large"), too_large(CAP))):  # fmt: skip
        response = asyncio.run(handler(None, exc))
        assert response.status_code == exc.status_code and response.body == f'{{"error":"{reason}"}}'.encode()
    assert "2.5 s" in timed_out(2.5) and "again" in timed_out(2.5) and "again" in SERVER_ERROR


def test_a_request_not_answered_within_the_timeout_gets_a_504_that_says_to_retry(one_checkpoint, tmp_path):
    # Each predict takes 3 s here, longer than --timeout 0.5 and its grace of 1 s: of two requests sent
    # together one waits 3 s in the queue, the other as long for its answer; neither can be answered in time.
    server = ServerProcess(f"--ckpt_path={slow_checkpoint(one_checkpoint, 3, tmp_path)}", "--timeout=0.5",
                           cwd=tmp_path)  # fmt: skip
    try:
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(lambda _: post(server.url, DIGIT), range(2)))
        for response in responses:
            assert response.status_code == 504, response.text
            assert set(response.json()) == {"error"}
            assert re.fullmatch(r"no answer within 1\.5 s: .*send the request again.*", response.json()["error"])
    finally:
        assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def quick_server(one_checkpoint, tmp_path_factory):
    """A server whose answers may take 1.5 s at most (--timeout 0.5 and its grace), saving corrections in
    'my fixes', its log free to hold tracebacks."""
    server = ServerProcess(f"--ckpt_path={one_checkpoint}", "--timeout=0.5", "--corrections=my fixes",
                           cwd=tmp_path_factory.mktemp("quick"))  # fmt: skip
    yield server
    assert server.stop() == 0, server.output()


def test_the_time_to_answer_counts_from_the_end_of_the_upload_not_its_start(quick_server):
    # A photo sent over a slow line took longer than --timeout and its grace to arrive: a 504 every time.
    body = form(DIGIT)

    def slowly():  # the body over about 3 s, twice the 1.5 s the answer may take
        for start in range(0, len(body), len(body) // 30 + 1):
            yield body[start : start + len(body) // 30 + 1]
            time.sleep(0.1)

    expected = post(quick_server.url, DIGIT).json()["number"]  # and the worker warm: its answer comes in time
    sent = time.monotonic()
    response = httpx.post(f"{quick_server.url}/predict", content=slowly(), timeout=60,
                          headers={"content-type": "multipart/form-data; boundary=x"})  # fmt: skip
    assert time.monotonic() - sent > 2.5 and response.status_code == 200, response.text
    assert response.json()["number"] == expected


def test_an_upload_of_which_no_more_comes_gets_a_408_in_as_long_as_an_answer_may_take(quick_server):
    # Unbounded once the answer's clock waited for the upload's end: the request and its connection held for ever.
    body = form(DIGIT)
    with socket.create_connection(("127.0.0.1", quick_server.port), timeout=30) as client:
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                       + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])  # fmt: skip
        sent = time.monotonic()
        answer = read_response(client)
    assert answer.startswith("HTTP/1.1 408") and "no part of the upload came for 1.5 s: send" in answer, answer
    assert time.monotonic() - sent < 20
    assert post(quick_server.url, DIGIT).status_code == 200


def test_a_form_that_cannot_be_parsed_gets_a_400_that_says_how_to_send_one(quick_server):
    # Its boundary not in the body: Starlette's 400 became LitServe's 500, "send the request again", and LitServe
    # logged it at ERROR with three chained tracebacks.
    logged = len(quick_server.output())
    response = httpx.post(f"{quick_server.url}/predict", content=form(DIGIT, "x"), timeout=30,
                          headers={"content-type": "multipart/form-data; boundary=y"})  # fmt: skip
    assert response.status_code == 400 and set(response.json()) == {"error"}
    assert "Traceback" not in quick_server.output()[logged:], quick_server.output()[logged:]
    assert re.fullmatch(r"the form could not be read \(.+\): send the image as a multipart form field named 'file', .*",
                        response.json()["error"])  # fmt: skip
    assert post(quick_server.url, DIGIT).status_code == 200


def test_a_media_type_in_capitals_is_a_form_upload_as_any_other(quick_server):
    # Media types are case-insensitive (RFC 9110): LitServe took `Multipart/Form-Data` for no form (415).
    expected = post(quick_server.url, DIGIT).json()["number"]
    response = httpx.post(f"{quick_server.url}/predict", content=form(DIGIT, "AbC"), timeout=30,
                          headers={"content-type": "Multipart/Form-Data; Boundary=AbC"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["number"] == expected


class Load:
    """`clients` threads, each posting DIGIT again as soon as it has an answer, until `stop`; `outcomes` holds
    (sent, answered, status, body or the connection error) for each request, times from time.monotonic()."""

    def __init__(self, url: str, clients: int) -> None:
        self.url, self.outcomes, self.lock, self.done = url, [], threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.client) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def client(self) -> None:
        with httpx.Client(timeout=120) as http:
            while not self.done.is_set():
                sent = time.monotonic()
                try:
                    response = http.post(f"{self.url}/predict", files={"file": ("d.png", DIGIT, "image/png")})
                    outcome = (sent, time.monotonic(), response.status_code, response.text)
                except httpx.TransportError as err:
                    outcome = (sent, time.monotonic(), None, repr(err))
                with self.lock:
                    self.outcomes.append(outcome)

    def answered(self, sent_after: float = 0) -> int:
        """How many requests sent after `sent_after` were answered 200."""
        with self.lock:
            return sum(1 for sent, _, status, _ in self.outcomes if sent > sent_after and status == 200)

    def stop(self) -> list[tuple[float, float, int | None, str]]:
        self.done.set()
        for thread in self.threads:
            thread.join()
        return self.outcomes


def wait_for(condition, what: str, limit: float = 300) -> float:
    """Poll `condition` until it holds; returns when (time.monotonic()). `limit` only keeps a broken server
    from hanging the test: a slow machine waits longer, it does not fail."""
    give_up = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < give_up, f"still waiting, after {limit} s, for {what}"
        time.sleep(0.05)
    return time.monotonic()


def health(url: str) -> str:
    try:
        return httpx.get(f"{url}/health", timeout=5).text
    except httpx.TransportError as err:
        return repr(err)


def test_a_killed_inference_worker_is_replaced_and_only_requests_sent_before_it_is_back_fail(one_checkpoint,
                                                                                              tmp_path):  # fmt: skip
    # Each predict takes 0.2 s, so that the worker is in the middle of a request when it is killed.
    server = ServerProcess(f"--ckpt_path={slow_checkpoint(one_checkpoint, 0.2, tmp_path)}", "--timeout=3",
                           cwd=tmp_path)  # fmt: skip
    try:
        (worker,) = inference_workers(server.process.pid)
        load = Load(server.url, clients=4)
        wait_for(lambda: load.answered() >= 8, "8 answers before the kill")
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        # Back: a new worker, and LitServe's /health says ok again (it says "not ready" while the worker starts).
        back = wait_for(lambda: [w for w in inference_workers(server.process.pid) if w != worker]
                        and health(server.url) == "ok", "a new inference worker")  # fmt: skip
        wait_for(lambda: load.answered(sent_after=back) >= 20, "20 answers to requests sent after the restart")
        outcomes = load.stop()
        assert server.process.poll() is None, server.output()  # the server lives on

        assert not [o for o in outcomes if o[2] is None], "connection errors"
        failed = [(sent, answered, status, body) for sent, answered, status, body in outcomes if status != 200]
        for sent, answered, status, body in failed:
            assert 500 <= status < 600 and "send the request again" in json.loads(body)["error"], body
            assert killed < answered and sent < back, "a request failed before the kill or was sent after the restart"
        assert failed, "the request the worker held when it was killed was not failed"
        assert all(status == 200 for sent, _, status, _ in outcomes if sent > back)
    finally:
        assert server.stop() == 0, server.output()


def test_sigterm_stops_every_process_of_the_server_and_frees_its_port(one_checkpoint, tmp_path):
    server = ServerProcess(f"--ckpt_path={one_checkpoint}", cwd=tmp_path)
    try:
        assert post(server.url, DIGIT).status_code == 200
        children = processes(server.process.pid)  # uvicorn's process, the inference worker, the manager, ...
        assert len(inference_workers(server.process.pid)) == 1 and len(children) >= 3
        os.kill(server.process.pid, signal.SIGTERM)  # the server's process only, as `kill PID` does
        assert server.process.wait(timeout=300) in (0, 143), server.output()
        wait_for(lambda: not any(map(running, children)), "the server's child processes to end", limit=60)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        assert "Traceback" not in server.output(), server.output()
    finally:
        server.stop()


def test_sigterm_while_the_server_starts_stops_its_workers_quietly(one_checkpoint, tmp_path):
    # LitServe answers a signal only once its workers are up: before that, `kill PID` left a worker to die with a
    # traceback when the manager went, and the server said "interrupted" (status 130, as for Ctrl-C).
    ckpt = slow_checkpoint(one_checkpoint, 0, tmp_path, load_delay=10)  # the worker loads it for 10 s
    command = [sys.executable, "-m", "digitnet", "serve", f"--ckpt_path={ckpt}", f"--port={free_port()}"]
    server = subprocess.Popen(command, cwd=tmp_path, env=digitnet_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        assert server.stdout.readline().startswith("Write a number at "), server.stdout.read()
        def worker_loading() -> bool:  # LitServe has started the worker, which still takes 10 s to be ready
            return any(p.name != f"loading-{server.pid}" for p in tmp_path.glob("loading-*"))

        wait_for(worker_loading, "the inference worker to load the checkpoint")
        children = processes(server.pid)
        os.kill(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
        assert server.returncode == 0, output  # as a running server stops on SIGTERM
        assert "Traceback" not in output and "interrupted" not in output, output
        wait_for(lambda: not any(map(running, children)), "the server's child processes to end", limit=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)


def test_a_stopping_server_does_not_report_litserve_s_lost_connection_to_its_manager():
    # After Ctrl-C, LitServe shuts its multiprocessing manager down while its worker monitor, a thread, may still
    # wake and ask that manager whether to stop: a broken pipe it logs with a traceback. Any other fault is reported.
    import litserve.server

    from digitnet.serve import stop_on_signals

    logger, seen = logging.getLogger(litserve.server.__name__), []
    handler = logging.Handler()
    handler.emit = seen.append
    filters, server = list(logger.filters), types.SimpleNamespace(restart_workers=True)
    logger.addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt), stop_on_signals(server):
            signal.raise_signal(signal.SIGINT)
        for error in (BrokenPipeError(32, "Broken pipe"), EOFError(), ValueError("a real fault")):
            try:
                raise error
            except Exception:
                logger.exception("the monitor failed")
        logger.error("a worker died")
    finally:
        logger.removeHandler(handler)
        logger.filters[:] = filters
    assert server.restart_workers is False
    assert [(r.getMessage(), r.exc_info and type(r.exc_info[1])) for r in seen] == [
        ("the monitor failed", ValueError), ("a worker died", None)]


def test_corrections_sent_as_people_s_own_programs_send_them(quick_server):
    # A CMYK JPEG as the original got a plain-text 500, after its 28x28 file was saved (a retry saved it twice); a
    # digit "²" (str.isdigit) a 500; the finetune command to paste broke at the folder's space.
    cmyk = io.BytesIO()
    Image.new("CMYK", (40, 60), (0, 0, 0, 30)).save(cmyk, format="JPEG")
    url, pixels = f"{quick_server.url}/corrections", ("p.png", png(np.zeros((28, 28), np.uint8)))
    response = httpx.post(url, data={"digit": "3"}, files={"pixels": pixels, "original": ("o.jpg", cmyk.getvalue())},
                          timeout=30)  # fmt: skip
    assert response.status_code == 201, response.text
    saved = quick_server.log.parent / response.json()["saved"]  # relative to the server's folder
    folder = saved.parents[1]
    assert Image.open(folder / ".originals" / "3" / saved.name).mode == "RGB"
    response = httpx.post(url, data={"digit": "²"}, files={"pixels": pixels}, timeout=30)
    assert response.status_code == 400 and "'digit' (0 to 9)" in response.json()["error"]
    assert "if you have it the file 'original'" in response.json()["error"]  # not named as needed: it is not
    assert httpx.post(url, data={"digit": "5"}, files={"pixels": pixels}, timeout=30).status_code == 201
    info = httpx.get(url, timeout=30).json()
    assert info["count"] == 2 and shlex.split(info["command"])[-1] == "my fixes"
