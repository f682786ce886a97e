"""What the serve tests share: a checkpoint trained once per test session (on the real MNIST when present,
else on the tiny synthetic set), and `ServerProcess`, `python -m digitnet serve` on a free port of
127.0.0.1, stopped as Ctrl-C would stop it; and the server's processes, as Linux's /proc lists them."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from conftest import REAL_MNIST, write_mnist

SOURCE = Path(__file__).parents[1]


def digitnet_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess that imports this checkout's digitnet, with `extra` variables."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")]), **extra}


def descendants(pid: int) -> list[int]:
    """The processes started by `pid`, their own children and so on, from every /proc/N/stat's parent pid."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after "pid (command name)"
        except OSError:  # ended while listing
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = [], [pid]
    while todo:
        ancestor = todo.pop()
        children = [child for child, parent in parents.items() if parent == ancestor]
        found += children
        todo += children
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a process that has not ended (an ended one not yet reaped, a zombie, has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def inference_workers(server_pid: int) -> list[int]:
    """The server's inference workers: LitServe starts them with multiprocessing's spawn method, so theirs is
    the command line of `spawn_main` (uvicorn's process and the manager are forked: the server's own command
    line; multiprocessing's resource tracker runs `resource_tracker`)."""
    return [pid for pid in descendants(server_pid) if running(pid) and "spawn_main" in command_line(pid)]


def mnist_file(name: str) -> Path | None:
    for path in (REAL_MNIST / name, REAL_MNIST / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def have_real_mnist() -> bool:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return all(mnist_file(name) for name in names)


def mnist_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST test images (10000, 28, 28) uint8 and labels (10000,), read from the IDX files."""

    def read(name: str, header: int) -> np.ndarray:
        path = mnist_file(name)
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return np.frombuffer(raw[header:], dtype=np.uint8)

    return read("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28), read("t10k-labels-idx1-ubyte", 8)


def trained_run(tmp_path_factory, net: str = "MLP") -> Path:
    """A folder whose lightning_logs/ holds one trained run of `net` (MLP or ConvNet): 1 epoch on the real
    MNIST when present, else a few steps on the synthetic digits. Trained once per session and network, by
    `python -m digitnet fit` as a user would, and shared by the serve test modules."""
    root = tmp_path_factory.getbasetemp() / f"serve_run_{net}"
    done = root / "trained"
    if done.exists():
        return root
    root.mkdir(exist_ok=True)
    if have_real_mnist():
        args = [f"--data.data_dir={REAL_MNIST}", "--trainer.max_epochs=1"]
    else:
        data = write_mnist(root / "synthetic")
        args = [f"--data.data_dir={data}", "--data.val_size=20", "--data.batch_size=32", "--trainer.max_epochs=3"]
    # MLP is the default; as a bare name it is ambiguous (torchvision.ops has an MLP too), so it is not named.
    # The ConvNet is the preset's, cut to 2 epochs: one epoch of it at the defaults misread 2 of 20 test digits.
    choice = [] if net == "MLP" else [f"--config={SOURCE / 'configs' / 'convnet.yaml'}"]
    if net != "MLP" and have_real_mnist():
        args.append("--trainer.max_epochs=2")  # after the 1 epoch above, so that it wins
    command = [sys.executable, "-m", "digitnet", "fit", *choice, "--model.optimizer=Adam",
               "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", *args]  # fmt: skip
    result = subprocess.run(command, cwd=root, env=digitnet_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    done.touch()
    return root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _restore_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored across exec:
    # the server must get Ctrl-C's SIGINT to stop as a user's would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ServerProcess:
    """`python -m digitnet serve ARGS --port P` in `cwd` (with `env`'s variables), in its own process group;
    `url` once /health says ok.

    Stopped with SIGINT to the whole group, as Ctrl-C in a terminal does (LitServe's inference worker,
    uvicorn's process and the multiprocessing manager are children), then killed if still there after 20 s.
    """

    def __init__(self, *args: str, cwd: Path, startup_timeout: float = 90, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        command = [sys.executable, "-m", "digitnet", "serve", *args, f"--port={self.port}"]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, cwd=cwd, env=digitnet_env(**(env or {})), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_restore_sigint)  # fmt: skip
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with status {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).text == "ok":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"serve did not answer /health within {startup_timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        """Ctrl-C to the server's process group; returns its exit status."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        try:  # whatever is left of the group (nothing, after a clean stop)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.process.returncode
