"""`python -m digitnet serve`: a page to write a number on, and `POST /predict`, on LitServe (docs/serving.md)."""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
import os
import shlex
import signal
import socket
from importlib.resources import files
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from digitnet.arguments import command_parser
from digitnet.errors import DigitnetError
from digitnet.images import ImageError, picture_ink, open_image
from digitnet.checkpoints import announce_default_checkpoint
from digitnet.corrections import Corrections
from digitnet.number_reader import Candidates, best_reading, candidates, with_number_net
from digitnet.recognizer import DigitRecognizer, predictions

try:
    import litserve as ls
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from digitnet.serve_http import (API_PATH, MAX_UPLOAD_BYTES, SERVER_ERROR, USAGE, PredictGuard, Refusal, timed_out,
                                     too_large)  # fmt: skip
except ImportError as err:  # the package imports without the extra; `serve` says what to install
    raise DigitnetError(f"serve needs {err.name}: pip install -e '.[serve]'") from None

HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # the hosts LitServer.run accepts


class DigitAPI(ls.LitAPI):
    """Numbers from uploaded images, read as `predict` reads files. A bad upload is answered with its own 4xx and
    never raises: with batching on, an exception in any hook would fail every request of the batch."""

    def __init__(self, ckpt_path: str, max_batch_size: int = 1, batch_timeout: float = 0.0) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=API_PATH)
        self.ckpt_path = ckpt_path

    def setup(self, device: str) -> None:
        # Ctrl-C reaches the worker too (one process group) and would print a traceback; the main process stops it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.recognizer = DigitRecognizer.from_checkpoint(self.ckpt_path, map_location=device)

    def decode_request(self, request) -> tuple[Candidates, float, np.ndarray] | Refusal:
        uploads = request.getlist("file") if hasattr(request, "getlist") else []  # a form (FormData)
        if not uploads:
            return Refusal(400, f"no 'file' field: {USAGE}")
        if len(uploads) > 1:  # else the last would be read, the others not a word
            return Refusal(400, f"{len(uploads)} 'file' fields: send one image per request")
        upload = uploads[0]
        if not isinstance(upload, UploadFile):  # a text field: never taken as a path to read
            return Refusal(400, f"the 'file' field is text, not a file: {USAGE}")
        data = upload.file.read()
        if not data:
            return Refusal(400, "empty file (0 bytes)")
        try:
            ink, scale = picture_ink(open_image(io.BytesIO(data)))  # over images.MAX_PIXELS: refused before decoding
            return candidates(ink), scale, ink
        except ImageError as err:  # not an image, truncated, over the pixel limit, blank, a page of marks
            return Refusal(422, str(err))

    def predict(self, x):
        items = x if isinstance(x, list) else [x]  # batching: LitServe's `batch` passes the list as it is
        pictures = [item for item in items if not isinstance(item, Refusal)]
        if pictures:  # every candidate digit of every picture, in one batch: (K, 28, 28) MNIST pixels
            probabilities = self.recognizer.probabilities(np.concatenate([found.pixels for found, *_ in pictures]))
            sizes = np.cumsum([len(found.spans) for found, *_ in pictures])[:-1]
            per_picture = iter(np.split(probabilities, sizes))
        outputs = [item if isinstance(item, Refusal) else (*item, next(per_picture)) for item in items]
        return outputs if isinstance(x, list) else outputs[0]

    def encode_response(self, output) -> Response:
        if isinstance(output, Refusal):
            return JSONResponse({"error": output.reason}, status_code=output.status)
        found, scale, ink, probabilities = output
        (whole,) = predictions(torch.from_numpy(probabilities[:1]))
        symbols = self.recognizer.symbols if self.recognizer.number_net is not None else None
        reading = with_number_net(best_reading(found, probabilities, scale), ink, scale, symbols)
        return JSONResponse({
            "number": reading.number,
            "digits": [{"digit": d.digit, "text": d.text, "probability": d.probability, "sure": d.sure,
                        "top3": [{"digit": k, "probability": p} for k, p in d.top3],
                        "box": list(d.box),  # left, top, right, bottom, in the picture's pixels
                        "pixels": d.pixels.tolist()} for d in reading.digits],  # the (28, 28) uint8 image read
            "digit": whole.digit, "probability": whole.probability, "probabilities": probabilities[0].tolist(),
            "top3": [{"digit": d, "probability": p} for d, p in whole.top3],
            "pixels": found.pixels[0].tolist(),  # the (28, 28) uint8 image of the whole picture, white on black
            "net": type(self.recognizer.net).__name__,
        })  # fmt: skip


def build_server(ckpt_path: str, max_batch_size: int = 1, batch_timeout: float = 0.005, workers_per_device: int = 1,
                 accelerator: str = "auto", timeout: float = 10.0,
                 corrections: str | None = None) -> ls.LitServer:  # fmt: skip
    """The LitServer of `serve`: DigitAPI at POST /predict, the page at /, and every error as {"error": reason}.
    A missing or foreign checkpoint, or a corrections folder it cannot write: a DigitnetError here, not in a worker."""
    net = DigitRecognizer.from_checkpoint(ckpt_path).net
    model = {"net": type(net).__name__, "parameters": sum(p.numel() for p in net.parameters()),
             "checkpoint": Path(ckpt_path).name}  # fmt: skip
    server = ls.LitServer(
        DigitAPI(ckpt_path, max_batch_size=max_batch_size, batch_timeout=batch_timeout),
        accelerator=accelerator,  # "auto": the GPU when there is one
        workers_per_device=workers_per_device,
        timeout=timeout,  # seconds a request may wait in the queue for a worker, then LitServe answers 504
        restart_workers=True,  # a page people keep open outlives a dead worker (docs/serving.md, "Faults")
        max_payload_size=MAX_UPLOAD_BYTES,
        model_metadata=model,  # what the page says of the network: GET /info answers {"model": model, "server": ...}
        middlewares=[(PredictGuard, {"timeout": timeout})],
    )
    page = files("digitnet").joinpath("static", "draw.html").read_bytes()

    async def draw_page(request: Request) -> Response:
        # A new Response each time: LitServe's GZipMiddleware edits the headers of the one it sends.
        return Response(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    # In front of LitServe's own `/` ("litserve running"): the first matching route wins. GET answers HEAD too.
    server.app.router.routes.insert(0, Route("/", draw_page, methods=["GET"]))

    async def error_json(request: Request, exc: HTTPException) -> JSONResponse:
        cause = exc.__cause__  # LitServe answers 500 to Starlette's own 400 for a form it cannot parse
        if exc.status_code == 500 and isinstance(cause, HTTPException) and cause.status_code < 500:
            reason = f"the form could not be read ({cause.detail}): {USAGE}"
            return JSONResponse({"error": reason}, status_code=cause.status_code)
        # LitServe's own reasons ("Payload too large", "Request timed out", ...) say neither the limit nor what to do.
        reasons = {413: too_large(MAX_UPLOAD_BYTES), 504: timed_out(timeout), 500: SERVER_ERROR}
        reason = reasons.get(exc.status_code, str(exc.detail))
        return JSONResponse({"error": reason}, status_code=exc.status_code, headers=exc.headers)

    server.app.add_exception_handler(HTTPException, error_json)
    logging.getLogger(ls.server.__name__).addFilter(CLIENT_ERRORS)  # inherited by the API server LitServe forks
    if corrections is not None:
        add_corrections(server.app, Corrections(corrections), ckpt_path)
    return server


def add_corrections(app, corrections: Corrections, ckpt_path: str) -> None:
    """GET /corrections: their count and the command that fine-tunes on them; POST /corrections: a form with
    `digit` (0-9), `pixels` (the 28x28 PNG the model read) and, optionally, `original` (the piece of the picture)."""
    command = shlex.join(["python", "-m", "digitnet", "finetune", "--ckpt_path", ckpt_path, "--data.extra_dir",
                          str(corrections.folder)])  # fmt: skip

    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"count": corrections.count(), "folder": str(corrections.folder), "command": command})

    async def save(request: Request) -> JSONResponse:
        form = await request.form()
        digit, pixels, original = form.get("digit"), form.get("pixels"), form.get("original")
        if digit not in tuple("0123456789") or not isinstance(pixels, UploadFile):  # "²".isdigit(), and int fails
            return JSONResponse({"error": "send a form with 'digit' (0 to 9) and the file 'pixels' (the 28x28 image "
                                          "the model read), and if you have it the file 'original' (the piece of "
                                          "the picture)"}, status_code=400)  # fmt: skip
        crop = await original.read() if isinstance(original, UploadFile) else None
        try:
            path = corrections.save(int(digit), await pixels.read(), crop)
        except ImageError as err:
            return JSONResponse({"error": str(err)}, status_code=422)
        return JSONResponse({"saved": str(path), "count": corrections.count(), "command": command}, status_code=201)

    app.add_api_route("/corrections", info, methods=["GET"])
    app.add_api_route("/corrections", save, methods=["POST"])


def serve(
    ckpt_path: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch_size: int = 1,
    batch_timeout: float = 0.005,
    workers_per_device: int = 1,
    accelerator: Literal["auto", "cpu", "cuda", "mps"] = "auto",
    timeout: float = 10.0,
    corrections: str | None = None,
) -> None:
    """Serve a page to write numbers on and POST /predict for images, until Ctrl-C or SIGTERM.

    Args:
        ckpt_path: The DigitClassifier checkpoint; default: the best (else the newest) checkpoint of the latest
            run under lightning_logs/.
        host: The address to listen on: 127.0.0.1 or localhost (this machine only), 0.0.0.0 or :: (every network
            interface: anyone who can reach this machine can use the page and the API).
        port: The TCP port, 1024-65535.
        max_batch_size: Requests the network reads together (LitServe's batching); 1 answers each at once.
        batch_timeout: Seconds to wait for a batch to fill, with max_batch_size > 1.
        workers_per_device: Inference processes per device (CPU or each GPU).
        accelerator: auto (the GPU when there is one), cpu, cuda or mps.
        timeout: Seconds a request may wait for an inference worker; then it is answered 504 (busy, or a worker
            restarting), and at the latest a second later if the worker holding it died.
        corrections: A folder to save the page's corrections in (`DIR/7/<id>.png`, what `finetune
            --data.extra_dir DIR` reads); without it the page offers no saving.
    """
    host = "127.0.0.1" if host.lower() == "localhost" else host  # the name people type; LitServe takes addresses
    if host not in HOSTS:
        raise DigitnetError(f"--host {host}: use one of localhost, {', '.join(HOSTS)} (LitServe listens on these only)")
    if not 1024 <= port <= 65535:
        raise DigitnetError(f"--port {port}: use a port from 1024 to 65535")
    if max_batch_size < 1 or workers_per_device < 1 or batch_timeout < 0:
        raise DigitnetError("--max_batch_size and --workers_per_device take 1 or more, --batch_timeout 0 or more")
    if not timeout > batch_timeout:  # LitServe's own rule; also refuses 0, negative and nan
        raise DigitnetError(f"--timeout {timeout:g}: use more seconds than --batch_timeout ({batch_timeout:g})")
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if accelerator in available and not available[accelerator]():
        raise DigitnetError(f"--accelerator {accelerator}: torch finds no such device here; use auto or cpu")
    if ckpt_path is None:
        ckpt_path = str(announce_default_checkpoint())
    check_port_free(host, port)  # first: a port in use leaves no corrections folder made for nothing
    server = build_server(ckpt_path, max_batch_size, batch_timeout, workers_per_device, accelerator, timeout,
                          corrections=corrections)  # fmt: skip
    shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]" if host == "::" else host
    print(f"Write a number at http://{shown}:{port}/  (API: POST http://{shown}:{port}{API_PATH}; Ctrl-C stops)",
          flush=True)  # fmt: skip
    with stop_on_signals(server):
        server.run(host=host, port=port, generate_client_file=False, access_log=False)


@contextlib.contextmanager
def stop_on_signals(server: ls.LitServer):
    """While serving, SIGTERM stops the server as Ctrl-C does, and neither signal has a worker restarted (LitServe
    stops its processes on KeyboardInterrupt only: docs/serving.md, "Faults"). Processes forked from this one inherit
    the handler and keep their old behaviour. A signal before LitServe answers one itself stops the workers it
    started so far (tests/test_serve.py::test_sigterm_while_the_server_starts_stops_its_workers_quietly)."""
    main_pid = os.getpid()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    received = []

    def stop(signum, frame) -> None:
        if os.getpid() != main_pid:
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
            return
        for sig in previous:
            signal.signal(sig, lambda *_: None)
        server.restart_workers = False
        logging.getLogger(ls.server.__name__).addFilter(ManagerGone())  # for the rest of the process: it is stopping
        received.append(signum)
        raise KeyboardInterrupt

    for sig in previous:
        signal.signal(sig, stop)
    try:
        yield
    except KeyboardInterrupt:  # out of LitServer.run: it came before LitServe's own handling began
        # Its processes so far (the manager, inference workers): a worker left running dies with a traceback.
        for process in multiprocessing.active_children():
            process.terminate()
            process.join(timeout=10)
        if received != [signal.SIGTERM]:  # SIGTERM ends here, status 0, as a running server stops
            raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ManagerGone(logging.Filter):
    """Drops log records of an exception from a lost connection (a broken pipe, EOF): after Ctrl-C, LitServe shuts
    its manager down while its worker monitor may still ask it whether to stop (docs/serving.md, "A clean stop";
    tests/test_serve.py::test_a_stopping_server_does_not_report_litserve_s_lost_connection_to_its_manager)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], (ConnectionError, EOFError)))


class ClientError(logging.Filter):
    """Drops LitServe's ERROR record, with its traceback, of a client's mistake it did not expect: Starlette's 400
    for a form it cannot parse, which error_json answers as a 400
    (tests/test_serve.py::test_a_form_that_cannot_be_parsed_gets_a_400_that_says_how_to_send_one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, HTTPException) and error.status_code < 500)


CLIENT_ERRORS = ClientError()  # one instance: addFilter adds it once however many servers a process builds


def check_port_free(host: str, port: int) -> None:
    """Raise DigitnetError when another program listens on host:port (uvicorn would exit with a log line)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as err:
            raise DigitnetError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror}); "
                                "stop what uses it or choose another port with --port") from None  # fmt: skip


def main(args: list[str] | None = None) -> None:
    parser = command_parser("serve", serve, args)
    parser.add_function_arguments(serve, as_group=False)
    serve(**parser.parse_args(args).as_dict())
