"""Requests/s and latency of `python -m digitnet serve`, with MNIST test digits sent as PNG files.

    python scripts/serve_benchmark.py --data_dir ../shared/mnist --clients 1 8 --images 2000

Starts the server on a free port of 127.0.0.1 (the best checkpoint of the latest run unless --ckpt_path
is given), writes the first --images test digits as PNG files into --png_dir, and for each number of
concurrent clients sends every file once (clients in threads, each with its own connection; a warm-up
of 50 requests first), then prints requests/s, p50 and p99 latency, and how many digits were read
right. --answers CSV keeps each file's answer (file, digit, probability) from the last run, to compare
with `python -m digitnet predict --data.predict_path PNG_DIR --output predict.csv`.
Any other argument goes to `serve` (--max_batch_size 8, --workers_per_device 2, ...).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def read_idx(data_dir: Path, name: str, header: int) -> np.ndarray:
    for path in (data_dir / name, data_dir / f"{name}.gz"):
        if path.is_file():
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            return np.frombuffer(raw[header:], dtype=np.uint8)
    sys.exit(f"no {name}[.gz] in {data_dir}; pass --data_dir (the folder of MNIST's four files)")


def write_pngs(data_dir: Path, n: int, folder: Path) -> list[tuple[Path, int]]:
    """The first n MNIST test digits as PNG files, named by index and label."""
    images = read_idx(data_dir, "t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)[:n]
    labels = read_idx(data_dir, "t10k-labels-idx1-ubyte", 8)[:n]
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (image, label) in enumerate(zip(images, labels)):
        path = folder / f"{i:05d}_label{label}.png"
        if not path.exists():
            Image.fromarray(image).save(path)
        files.append((path, int(label)))
    return files


def start_server(serve_args: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "digitnet", "serve", f"--port={port}", *serve_args]
    server = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).text == "ok":
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    sys.exit(f"the server did not start:\n{server.stderr.read().decode()[-3000:]}")


def run(url: str, files: list[tuple[Path, bytes]], clients: int) -> tuple[float, np.ndarray, dict[Path, dict]]:
    """Send every file once from `clients` threads; returns requests/s, the latencies (s) and the answers."""
    todo = iter(range(len(files)))
    lock = threading.Lock()
    latencies, answers = [], {}

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                path, data = files[i]
                start = time.perf_counter()
                response = http.post(f"{url}/predict", files={"file": (path.name, data, "image/png")})
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    answers[path] = response.json() if response.status_code == 200 else {"error": response.text}

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(files) / (time.perf_counter() - start), np.array(latencies), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("DIGITNET_DATA_DIR", "data"))
    parser.add_argument("--images", type=int, default=2000, help="MNIST test digits to send (each once per run)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrent clients, one run each")
    parser.add_argument("--png_dir", default=None, help="where to write the PNG files (default: a temporary folder)")
    parser.add_argument("--answers", default=None, help="CSV of the last run's answers: file, digit, probability")
    args, serve_args = parser.parse_known_args()

    with tempfile.TemporaryDirectory() as tmp:
        files = write_pngs(Path(args.data_dir), args.images, Path(args.png_dir or tmp))
        payloads = [(path, path.read_bytes()) for path, _ in files]
        labels = {path: label for path, label in files}
        server, url = start_server(serve_args)
        try:
            run(url, payloads[:50], 1)  # warm-up: first requests pay for lazy initialisation
            print(f"{len(files)} MNIST test digits as PNG ({sum(len(d) for _, d in payloads) / len(files):.0f} bytes "
                  f"each), serve {' '.join(serve_args) or '(defaults)'}, {os.cpu_count()} CPUs")  # fmt: skip
            print(f"{'clients':>7}  {'requests/s':>10}  {'p50 ms':>7}  {'p99 ms':>7}  {'read right':>10}")
            for clients in args.clients:
                rate, latencies, answers = run(url, payloads, clients)
                right = sum(answers[path].get("digit") == labels[path] for path in answers)
                p50, p99 = np.percentile(latencies, [50, 99]) * 1000
                print(f"{clients:>7}  {rate:>10.1f}  {p50:>7.1f}  {p99:>7.1f}  {right / len(files):>10.2%}", flush=True)
        finally:
            os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: LitServe stops its workers
            server.wait(timeout=30)
    if args.answers:
        with open(args.answers, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "digit", "probability", "error"])
            for path, _ in files:
                answer = answers[path]
                writer.writerow([str(path), *(answer.get(key, "") for key in ("digit", "probability", "error"))])
        print(f"Wrote {args.answers}")


if __name__ == "__main__":
    main()
