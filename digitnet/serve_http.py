"""The HTTP side of `serve` in front of LitServe: early refusals, an answer for every request, the errors' reasons."""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_UPLOAD_BYTES = 5 * 2**20  # uploads are photos or drawings of digits: a few MB is plenty
API_PATH = "/predict"
USAGE = ("send the image as a multipart form field named 'file', e.g. "
         f"curl -F file=@digit.png http://HOST:PORT{API_PATH}")  # fmt: skip
ANSWER_GRACE_S = 1.0  # a digit is read in milliseconds: unanswered this long after --timeout, its worker died
SERVER_ERROR = "the server failed to read this image (its log says why): send the request again"


class Refusal(NamedTuple):
    status: int
    reason: str


def too_large(max_bytes: int) -> str:
    return f"request body over the limit of {max_bytes / 2**20:g} MB: send a smaller image"


def timed_out(seconds: float) -> str:
    return (f"no answer within {seconds:g} s: the server is busy, or restarting its inference worker; "
            "send the request again in a few seconds")


class PredictGuard:
    """ASGI middleware in front of `POST /predict`. It refuses a request that cannot be a form upload before its body
    is read: an empty body, one not multipart/form-data or without its boundary (LitServe would answer 500), or a
    Content-Length over MAX_UPLOAD_BYTES (bodies without one are capped by LitServer's `max_payload_size` as they
    arrive). And it answers 504 to a request still unanswered ANSWER_GRACE_S after LitServe's `timeout`, counted
    from the end of its upload (LitServe never answers one held by a worker that died: docs/serving.md, "Faults"),
    and 408 to an upload of which no part came for as long."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app, self.seconds = app, timeout + ANSWER_GRACE_S

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["path"] == API_PATH and scope["method"] == "POST"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length", "")
        media, _, options = headers.get("content-type", "").partition(";")
        refusal = None
        if length == "0" or (not length and "transfer-encoding" not in headers):  # no body: no length, not chunked
            refusal = Refusal(400, f"empty request body: {USAGE}")
        elif media.strip().lower() != "multipart/form-data":
            refusal = Refusal(415, f"not a multipart form upload: {USAGE}")
        elif "boundary=" not in options.lower():  # set by hand (requests, fetch): LitServe's 500
            refusal = Refusal(400, f"multipart/form-data without its boundary: let the HTTP library set the "
                                   f"Content-Type; {USAGE}")  # fmt: skip
        elif length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
            refusal = Refusal(413, too_large(MAX_UPLOAD_BYTES))
        if refusal is not None:
            await JSONResponse({"error": refusal.reason}, status_code=refusal.status)(scope, receive, send)
            return
        if media != "multipart/form-data":  # a media type is case-insensitive (RFC 9110); LitServe compares it as is
            kept = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            scope = {**scope, "headers": [*kept, (b"content-type", f"multipart/form-data;{options}".encode("latin-1"))]}
        started = False

        async def send_and_note(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        uploaded, arrived = asyncio.Event(), asyncio.Event()  # the body's last part; any part, since the last look

        async def receive_and_note():
            message = await receive()
            arrived.set()
            if message["type"] != "http.request" or not message.get("more_body", False):
                uploaded.set()  # the last of the body, or the client gone
            return message

        answer = asyncio.ensure_future(self.app(scope, receive_and_note, send_and_note))
        try:  # the clock starts once the body is in: a phone on a slow line takes longer to send than any worker
            refusal = await self.stalled(answer, uploaded, arrived) or await self.unanswered(answer)
        except asyncio.CancelledError:  # uvicorn stops this request (shutting down): stop waiting for the worker
            answer.cancel()
            raise
        if refusal is None or started:
            await answer  # answered, or being answered; the app's exception, if any, is raised here
            return
        answer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answer
        if not started:
            await JSONResponse({"error": refusal.reason}, status_code=refusal.status)(scope, receive, send)

    async def stalled(self, answer: asyncio.Future, uploaded: asyncio.Event, arrived: asyncio.Event) -> Refusal | None:
        """While the body comes in: a 408 once no part of it has come for as long as an answer may take."""
        while not (answer.done() or uploaded.is_set()):
            arrived.clear()
            watch = [asyncio.ensure_future(event.wait()) for event in (uploaded, arrived)]
            try:
                await asyncio.wait({answer, *watch}, timeout=self.seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in watch:
                    task.cancel()
            if not (answer.done() or uploaded.is_set() or arrived.is_set()):
                return Refusal(408, f"no part of the upload came for {self.seconds:g} s: send the image again")
        return None

    async def unanswered(self, answer: asyncio.Future) -> Refusal | None:
        done, _ = await asyncio.wait({answer}, timeout=self.seconds)
        return None if done else Refusal(504, timed_out(self.seconds))
