"""The exception types the CLI turns into a short message instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class DigitnetError(ValueError):
    """Bad input from the user (a missing or corrupt file, a bad setting); the message says what to do."""


class ImageError(DigitnetError):
    """An unusable image: `reason` in one line (`predict`'s `error` column); the message also names its file."""

    def __init__(self, reason: str, source: str | Path | None = None) -> None:
        super().__init__(f"{source}: {reason}" if source is not None else reason)
        self.reason, self.source = reason, source


def first_line(err: BaseException) -> str:
    """The first line of a library's error message, for a one-line DigitnetError that quotes it."""
    return (str(err).strip().splitlines() or [""])[0]
