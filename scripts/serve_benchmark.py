"""Requests/s and latency of `python -m digitnet serve`, with MNIST test digits sent as PNG files; and a soak.

    python scripts/serve_benchmark.py --data_dir $DIGITNET_DATA_DIR --clients 1 8 --images 2000
    python scripts/serve_benchmark.py --data_dir $DIGITNET_DATA_DIR --clients 1 8 --images 500 --digits 4
    python scripts/serve_benchmark.py --data_dir $DIGITNET_DATA_DIR --soak --requests 5000 --clients 8 --rounds 3

Starts the server on a free port of 127.0.0.1 (the best checkpoint of the latest run unless --ckpt_path
is given; any argument this script does not take goes to `serve`: --max_batch_size 8, --workers_per_device 2,
...) and writes the first --images test digits as PNG files into --png_dir (a temporary folder by default).
Clients are threads, each with its own connection; the first requests are a warm-up, not counted.

Benchmark (the default): for each number of --clients, sends every file once, then prints requests/s, p50 and
p99 latency, and how many numbers were read right (with --digits N, each picture holds N digits side by side).
--answers CSV keeps each file's answer (file, number, digit, probability) from the last run, to compare with
`python -m digitnet predict --data.predict_path PNG_DIR`.

Soak (--soak): --rounds rounds of --requests requests from max(--clients) clients, one in five bad, in turn
not an image (422), a PNG cut in half (422) and the image in a field not named `file` (400). Each round prints
requests/s, p50/p99 latency and what each kind of request got; then the resident memory of every process of
the server after the warm-up and after each round. Exits with status 1 when a good request did not get a 200
or a bad one a 4xx.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from digitnet.errors import DigitnetError
from digitnet.files import check_folder, check_output
from digitnet.mnist import COUNTS, TEST_FILES, default_data_dir, load_split

BAD = {  # name: the request's files= from a good PNG; each must be answered with a 4xx
    "not an image": lambda png: {"file": ("d.png", b"hello, world\n" * 10, "image/png")},
    "truncated PNG": lambda png: {"file": ("d.png", png[: len(png) // 2], "image/png")},
    "wrong field name": lambda png: {"image": ("d.png", png, "image/png")},
}


def write_pngs(data_dir: str, n: int, folder: Path, digits: int = 1) -> list[tuple[Path, str]]:
    """n PNG files of `digits` MNIST test digits each (the first n * digits, side by side, 4 pixels apart),
    named by index and label; and each file's label, the number it holds."""
    images, labels = load_split(data_dir, TEST_FILES)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        chunk = slice(i * digits, (i + 1) * digits)
        label = "".join(str(d) for d in labels[chunk].tolist())
        path = folder / f"{i:05d}_label{label}.png"
        if not path.exists():
            row = [np.pad(image, ((0, 0), (0, 4))) for image in images[chunk].numpy()]
            Image.fromarray(np.concatenate(row, axis=1)[:, :-4] if digits > 1 else row[0][:, :-4]).save(path)
        files.append((path, label))
    return files


def start_server(serve_args: list[str]) -> tuple[subprocess.Popen, str]:
    """`python -m digitnet serve` on a free port of 127.0.0.1, in its own process group, once /health says ok."""
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


def plan(n: int, pngs: list[tuple[bytes, int]], bad: bool) -> list[tuple[str, dict, int]]:
    """(kind, files=, label) for each of n requests; with `bad`, every fifth is bad, the bad kinds in turn."""
    requests, bad_kinds = [], list(BAD)
    for i in range(n):
        png, label = pngs[i % len(pngs)]
        if bad and i % 5 == 4:
            name = bad_kinds[(i // 5) % len(bad_kinds)]
            requests.append((name, BAD[name](png), label))
        else:
            requests.append(("good", {"file": ("d.png", png, "image/png")}, label))
    return requests


def run(url: str, requests: list, clients: int) -> tuple[float, list[tuple[str, int | None, float, object]]]:
    """Send the requests from `clients` threads, in order; returns requests/s and, per request in that order,
    (kind, status or None for a connection error, seconds, answer: the JSON body, or the error)."""
    todo = iter(range(len(requests)))
    lock = threading.Lock()
    results: list = [None] * len(requests)

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                name, files, _ = requests[i]
                start = time.perf_counter()
                try:
                    response = http.post(f"{url}/predict", files=files)
                    status, answer = response.status_code, response.json()
                except httpx.TransportError as err:
                    status, answer = None, {"error": repr(err)}
                except ValueError:  # not JSON
                    status, answer = response.status_code, {"error": response.text[:200]}
                results[i] = (name, status, time.perf_counter() - start, answer)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(requests) / (time.perf_counter() - start), results


def read_right(requests: list, results: list) -> float:
    answers = [(label, answer) for (kind, _, label), (_, status, _, answer) in zip(requests, results)
               if kind == "good" and status == 200]  # fmt: skip
    return sum(answer["number"] == label for label, answer in answers) / max(len(answers), 1)


def report(requests: list, results: list) -> bool:
    """Print what each kind of request got; True when every good one got 200 and every bad one a 4xx."""
    ok = True
    for name in ["good", *BAD]:
        statuses = Counter(status for kind, status, _, _ in results if kind == name)
        expected = (lambda s: s == 200) if name == "good" else (lambda s: s is not None and 400 <= s < 500)
        wrong = {s: n for s, n in statuses.items() if not expected(s)}
        ok &= not wrong
        shown = ", ".join(f"{n} x {s if s is not None else 'connection error'}" for s, n in sorted(
            statuses.items(), key=lambda item: item[0] or 0))  # fmt: skip
        print(f"  {name:<17} {sum(statuses.values()):>6} requests: {shown}{'' if not wrong else '   <-- WRONG'}")
    server_errors = sum(1 for _, status, _, _ in results if status is not None and status >= 500)
    refused = sum(1 for _, status, _, _ in results if status is None)
    print(f"  5xx answers: {server_errors}, connection errors: {refused}; "
          f"digits read right: {read_right(requests, results):.2%}")  # fmt: skip
    return ok


def memory(server_pid: int) -> dict[int, tuple[str, float]]:
    """Each process of the server (itself, then what it started): pid -> (what it is, resident memory in MB)."""
    server = psutil.Process(server_pid)
    found = {}
    for process in [server, *server.children(recursive=True)]:
        try:
            command = " ".join(process.cmdline())
            rss = process.memory_info().rss / 2**20
        except psutil.Error:  # ended while listing
            continue
        if process.pid == server_pid:
            name = "serve (main)"
        elif "resource_tracker" in command:
            name = "resource tracker"
        elif "spawn_main" in command:  # LitServe starts its inference workers with multiprocessing's spawn
            name = "inference worker"
        else:
            name = "uvicorn or manager"  # forked: the server's own command line
        found[process.pid] = (name, rss)
    return found


def print_memory(memories: list[tuple[str, dict[int, tuple[str, float]]]]) -> None:
    print("server memory (RSS, MB):")
    pids = sorted(set().union(*(m for _, m in memories)))
    print(f"  {'process':<24}" + "".join(f"{when:>20}" for when, _ in memories))
    for pid in pids:
        name = next(m[pid][0] for _, m in memories if pid in m)
        print(f"  {f'{name} {pid}':<24}" + "".join(f"{m.get(pid, ('', 0))[1]:>20.1f}" for _, m in memories))
    print(f"  {'all processes':<24}" + "".join(f"{sum(v for _, v in m.values()):>20.1f}" for _, m in memories))


def latency_ms(results: list) -> tuple[float, float]:
    p50, p99 = np.percentile([seconds for _, _, seconds, _ in results], [50, 99]) * 1000
    return p50, p99


def benchmark(url: str, args, files: list[tuple[Path, int]], pngs: list[tuple[bytes, int]]) -> None:
    requests = plan(len(pngs), pngs, bad=False)
    what = "MNIST test digits" if args.digits == 1 else f"numbers of {args.digits} MNIST test digits"
    print(f"{len(pngs)} {what} as PNG ({np.mean([len(p) for p, _ in pngs]):.0f} bytes each), "
          f"serve {' '.join(args.serve_args) or '(defaults)'}, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'clients':>7}  {'requests/s':>10}  {'p50 ms':>7}  {'p99 ms':>7}  {'read right':>10}")
    for clients in args.clients:
        rate, results = run(url, requests, clients)
        p50, p99 = latency_ms(results)
        print(f"{clients:>7}  {rate:>10.1f}  {p50:>7.1f}  {p99:>7.1f}  {read_right(requests, results):>10.2%}",
              flush=True)  # fmt: skip
    if args.answers:
        with open(args.answers, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "number", "digit", "probability", "error"])
            for (path, _), (_, _, _, answer) in zip(files, results):
                writer.writerow([str(path), *(answer.get(key, "") for key in ("number", "digit", "probability", "error"))])
        print(f"Wrote {args.answers}")


def soak(url: str, args, server_pid: int, pngs: list[tuple[bytes, int]]) -> bool:
    clients, ok = max(args.clients), True
    memories = [("after the warm-up", memory(server_pid))]
    print(f"serve {' '.join(args.serve_args) or '(defaults)'}; {args.rounds} x {args.requests} requests from "
          f"{clients} clients, one in five bad; {os.cpu_count()} CPUs")  # fmt: skip
    for r in range(1, args.rounds + 1):
        requests = plan(args.requests, pngs, bad=True)
        rate, results = run(url, requests, clients)
        p50, p99 = latency_ms(results)
        print(f"round {r}: {rate:.1f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        ok &= report(requests, results)
        memories.append((f"after round {r}", memory(server_pid)))
    print_memory(memories)
    print("every good request 200, every bad one 4xx" if ok else "FAILED: see the rows marked WRONG")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=default_data_dir(), help="the folder of MNIST's four files")
    parser.add_argument("--images", type=int, default=2000, help="pictures to send")
    parser.add_argument("--digits", type=int, default=1, help="MNIST test digits side by side in each picture, "
                                                              "a number (default 1)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrent clients, one run each")
    parser.add_argument("--png_dir", default=None, help="where to write the PNG files (default: a temporary folder)")
    parser.add_argument("--answers", default=None,
                        help="CSV of the last run's answers: file, number, digit, probability")
    parser.add_argument("--soak", action="store_true", help="rounds of requests, one in five bad, and memory")
    parser.add_argument("--requests", type=int, default=5000, help="--soak: requests per round")
    parser.add_argument("--rounds", type=int, default=1, help="--soak: rounds, memory read after each")
    args, args.serve_args = parser.parse_known_args()
    for name in ("images", "digits", "requests", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if min(args.clients) < 1:
        parser.error("--clients must be at least 1")
    if args.images * args.digits > COUNTS[TEST_FILES[0]]:
        parser.error(f"--images {args.images} of --digits {args.digits} take {args.images * args.digits:,} test "
                     f"digits; MNIST has {COUNTS[TEST_FILES[0]]:,}")  # fmt: skip
    try:
        if args.png_dir:
            check_folder("--png_dir", args.png_dir)
        if args.answers:
            check_output(args.answers, "--answers")
    except DigitnetError as err:
        parser.error(str(err))

    with tempfile.TemporaryDirectory() as tmp:
        try:
            files = write_pngs(args.data_dir, args.images, Path(args.png_dir or tmp), args.digits)
        except DigitnetError as err:
            sys.exit(f"{err}; pass --data_dir (the folder of MNIST's four files)")
        pngs = [(path.read_bytes(), label) for path, label in files]
        server, url = start_server(args.serve_args)
        try:
            run(url, plan(200 if args.soak else 50, pngs, bad=args.soak), max(args.clients))  # warm-up
            if args.soak:
                ok = soak(url, args, server.pid, pngs)
            else:
                benchmark(url, args, files, pngs)
                ok = True
        finally:
            os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: LitServe stops its workers
            server.wait(timeout=60)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
