"""The HTTP side of `python -m digitnet serve`, in front of LitServe: ASGI middlewares that serve the drawing
page, refuse an upload that cannot be an image before reading it, and give every request an answer; and the
reasons given for the errors, LitServe's own included."""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

# Uploads are photos or drawings of one digit: a few MB is plenty, and a bigger body is refused before it
# is read whole (by its Content-Length, or as it arrives when it has none).
MAX_UPLOAD_BYTES = 5 * 2**20
API_PATH = "/predict"
USAGE = (
    "send the image as a multipart form field named 'file', e.g. "
    f"curl -F file=@digit.png http://HOST:PORT{API_PATH}"
)
# A digit is read in milliseconds: a request still unanswered this long after its --timeout is one that no
# worker will answer (the worker holding it died), not a slow one.
ANSWER_GRACE_S = 1.0


class Refusal(NamedTuple):
    """A request that cannot be answered with a digit: the HTTP status and the reason for the client."""

    status: int
    reason: str


class DrawPage:
    """ASGI middleware answering `GET /` with the drawing page. LitServe registers `/` itself ("litserve
    running") and Starlette's first matching route wins, so the page is served in front of the router."""

    def __init__(self, app: ASGIApp, page: bytes) -> None:
        self.app, self.page = app, page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            response = Response(self.page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class UploadCheck:
    """ASGI middleware refusing a `POST /predict` that cannot be a form upload before its body is read: an
    empty body, a body that is not multipart/form-data (LitServe would parse it as JSON and answer 500),
    or a Content-Length over `max_bytes` (a 100 MB upload is refused at once; with `Expect: 100-continue`,
    as curl sends for large files, it is not even sent). Bodies without a Content-Length are capped by
    LitServer's `max_payload_size` as they arrive."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == API_PATH and scope["method"] == "POST":
            headers = Headers(scope=scope)
            length = headers.get("content-length", "")
            refusal = None
            if length == "0":
                refusal = Refusal(400, f"empty request body: {USAGE}")
            elif not headers.get("content-type", "").startswith("multipart/form-data"):
                refusal = Refusal(415, f"not a multipart form upload: {USAGE}")
            elif length.isdigit() and int(length) > self.max_bytes:
                refusal = Refusal(413, too_large(self.max_bytes))
            if refusal is not None:
                await JSONResponse({"error": refusal.reason}, status_code=refusal.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def too_large(max_bytes: int) -> str:
    return f"request body over the limit of {max_bytes / 2**20:g} MB: send a smaller image"


def timed_out(seconds: float) -> str:
    return (f"no answer within {seconds:g} s: the server is busy, or restarting its inference worker; "
            "send the request again in a few seconds")


def server_error() -> str:
    return "the server failed to read this image (its log says why): send the request again"


class AnswerDeadline:
    """ASGI middleware answering a `POST /predict` that is still unanswered `seconds` after it arrived with a
    504 and `reason`.

    A request that an inference worker had taken when it died is never answered by LitServe (docs/serving.md,
    "Faults"): with this, every request gets an answer, at the latest `seconds` after it arrived."""

    def __init__(self, app: ASGIApp, seconds: float, reason: str) -> None:
        self.app, self.seconds, self.reason = app, seconds, reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["path"] == API_PATH and scope["method"] == "POST"):
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        answer = asyncio.ensure_future(self.app(scope, receive, send_and_note))
        try:
            done, _ = await asyncio.wait({answer}, timeout=self.seconds)
        except asyncio.CancelledError:  # uvicorn stops this request (shutting down): stop waiting for the worker
            answer.cancel()
            raise
        if answer in done or started:
            await answer  # answered, or being answered; the app's exception, if any, is raised here
            return
        answer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answer
        if not started:
            await JSONResponse({"error": self.reason}, status_code=504)(scope, receive, send)
