"""What the serve tests share: a checkpoint trained once per test session (on the real MNIST when present,
else on the tiny synthetic set), and `ServerProcess`, `python -m digitnet serve` on a free port of
127.0.0.1, stopped as Ctrl-C would stop it; and the server's processes, as psutil lists them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from conftest import REAL_MNIST, write_mnist
from helpers import SOURCE, digitnet_env

from digitnet.mnist import FILES, TEST_FILES, find_file, load_split


def processes(server_pid: int) -> list[psutil.Process]:
    """The processes the server started, their own children and so on, that have not ended (a zombie has)."""
    try:
        children = psutil.Process(server_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if running(child)]


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def inference_workers(server_pid: int) -> list[int]:
    """The server's inference workers: LitServe starts them with multiprocessing's spawn method, so theirs is
    the command line of `spawn_main` (uvicorn's process and the manager are forked: the server's own command
    line; multiprocessing's resource tracker runs `resource_tracker`)."""
    workers = []
    for process in processes(server_pid):
        try:
            if "spawn_main" in " ".join(process.cmdline()):
                workers.append(process.pid)
        except psutil.Error:  # ended while listing
            pass
    return workers


def have_real_mnist() -> bool:
    return all(find_file(REAL_MNIST, name) for name in FILES)


def mnist_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The real MNIST test images (10000, 28, 28) uint8 and labels (10000,)."""
    images, labels = load_split(REAL_MNIST, TEST_FILES)
    return images.numpy(), labels.numpy()


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
    # The ConvNet is the preset's, cut to 2 epochs: one epoch of it at the defaults misread 2 of 20 test digits.
    choice = ["--model.net=MLP"] if net == "MLP" else [f"--config={SOURCE / 'configs' / 'convnet.yaml'}"]
    if net != "MLP" and have_real_mnist():
        args.append("--trainer.max_epochs=2")  # after the 1 epoch above, so that it wins
    command = [sys.executable, "-m", "digitnet", "fit", *choice, "--model.optimizer=Adam",
               "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", *args]  # fmt: skip
    result = subprocess.run(command, cwd=root, env=digitnet_env(), capture_output=True, text=True, timeout=900)
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
            self.process = subprocess.Popen(command, cwd=cwd, env={**digitnet_env(), **(env or {})}, stdout=log,
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
