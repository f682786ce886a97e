"""Output files: checked before a command's work (`check_output`), then written whole or not at all (`replacing`)."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from digitnet.errors import DigitnetError


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` on success, removed on an error. A path that
    is a link replaces the file it links to; one that is no file (a pipe, /dev/stdout) is written to as it is."""
    path = Path(path).resolve()
    if path.exists() and not path.is_file():
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(path, f"{os.getpid()}-{secrets.token_hex(4)}")  # a name no other process or thread uses
    try:
        yield tmp
        fsync(tmp)  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync(path.parent)  # and so is the rename


def part_path(path: Path, tag: str) -> Path:
    """The temporary file beside `path` that `replacing` writes; its suffix last: savefig picks the format by it."""
    return path.with_name(f".{path.stem}.{tag}.part{path.suffix}")


def fsync(path: Path) -> None:
    """Flush a file's or a folder's contents to disk; a no-op where a folder cannot be opened or synced (Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_figure(figure, path: str | Path) -> None:
    with replacing(path) as tmp:
        figure.savefig(tmp, dpi=100)


def check_output(output: str, flag: str = "--output") -> None:
    """A DigitnetError in one line, before any work, where `output` (given as `flag`) cannot be written as a file."""
    path = Path(output)
    if path.is_dir() or output.endswith(("/", os.sep)):  # Path drops a trailing slash
        raise DigitnetError(f"{flag} {output}: is a folder; name a file in it")
    if path.parent.exists() and not path.parent.is_dir():
        raise DigitnetError(f"{flag} {output}: {path.parent} is a file, not a folder")
    if not path.parent.is_dir():
        raise DigitnetError(f"{flag} {output}: its folder does not exist; create {path.parent} first")
    if not path.exists() or path.is_file():  # else a pipe or /dev/stdout, written as it is
        check_writable(flag, output, path.resolve().parent)  # where `replacing` writes: beside a link's target


def check_folder(flag: str, folder: str | Path, what: str = "its files", writable: bool = True) -> None:
    """A DigitnetError in one line, before any work, where the output folder `folder` is a file or (`writable`)
    cannot be written."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise DigitnetError(f"{flag} {folder}: a file, not a folder: give the folder to write {what} into")
    if not writable or "://" in str(folder):  # s3://...: fsspec's to check
        return
    check_writable(flag, folder, Path(folder))


def check_writable(flag: str, given: str | Path, folder: Path) -> None:
    """A DigitnetError in one line where no file can be made in `folder`, or in the folder that would hold it."""
    folder = folder.resolve()
    folder = next(p for p in (folder, *folder.parents) if p.exists())
    # Tried with a file: os.access says yes to root where the filesystem or its driver refuses (a read-only mount).
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise DigitnetError(f"{flag} {given}: cannot write in {folder} ({err.strerror})") from None


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    with replacing(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)
