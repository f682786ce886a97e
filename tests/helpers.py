"""What several test modules share: running a program in a subprocess that imports this checkout's digitnet
(and the modules in tests/, such as the callbacks of probes.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).parents[1]  # the checkout: digitnet/, tests/, docs/, ...


def digitnet_env() -> dict[str, str]:
    """The environment of a subprocess that imports this checkout's digitnet and tests/ modules first."""
    paths = [str(SOURCE), str(SOURCE / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_digitnet(*args: str, cwd: str | Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m digitnet ARGS` in a subprocess, as a user runs it; its output captured as text."""
    command = [sys.executable, "-m", "digitnet", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=digitnet_env())


def run_python(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -c SCRIPT ARGS` in a subprocess that imports this checkout's digitnet."""
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, timeout=timeout,
                          env=digitnet_env())  # fmt: skip


def unwritable_folder() -> Path:
    """A folder that even root cannot create files in (sysfs), or a skip."""
    import pytest

    try:
        tempfile.TemporaryFile(dir="/sys").close()
    except OSError:
        return Path("/sys")
    pytest.skip("no folder here that cannot be written")
