"""Files written whole or not at all: a kill at any moment leaves the old file or the new one, never a part.

    atomic_write(path, text_or_bytes)        a text or a payload
    with replacing(path) as tmp: ...         anything that writes to a path of its own (a figure's savefig)

Both write to a temporary name beside the target, on the same filesystem, then rename it over the target:
several processes finishing together (the study's workers) each leave one complete file.
(Checkpoints have their own writer, `digitnet.faults.AtomicCheckpointIO`, a Lightning plugin.)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` on success, removed on an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name no other process or thread uses; the target's suffix last, since savefig chooses the format by it.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.part{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8, or bytes) to `path` through a temporary file; returns `path`."""
    with replacing(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)

