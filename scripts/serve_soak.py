"""A soak of `python -m digitnet serve`: thousands of requests from concurrent clients, one in five of them bad.

    python scripts/serve_soak.py --data_dir ../shared/mnist --requests 5000 --clients 8 --rounds 3

Starts the server as scripts/serve_benchmark.py does (any other argument goes to `serve`: --ckpt_path CKPT,
--max_batch_size 8, ...), sends 200 requests to warm it up, then for each round sends --requests requests from
--clients threads, each with its own connection: the first MNIST test digits as PNG files, and in every five
requests one bad one, in turn not an image (422), a PNG cut in half (422) and the image in a field not named
`file` (400). Each round prints requests/s and p50/p99 latency, then the report: good requests answered 200,
bad ones answered 4xx, 5xx answers and connection errors, and the memory of every process of the server (RSS
from /proc/PID/status, summed) after the warm-up and after each round. Exits with status 1 when a good
request did not get a 200 or a bad one a 4xx.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from serve_benchmark import start_server, write_pngs  # scripts/ is on sys.path: this file's folder

BAD = {  # name: the request's files= from a good PNG; each must be answered with a 4xx
    "not an image": lambda png: {"file": ("d.png", b"hello, world\n" * 10, "image/png")},
    "truncated PNG": lambda png: {"file": ("d.png", png[: len(png) // 2], "image/png")},
    "wrong field name": lambda png: {"image": ("d.png", png, "image/png")},
}


def processes(pid: int) -> list[int]:
    """`pid` and every process it started, their children and so on (from each /proc/N/stat's parent pid)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [pid], [pid]
    while todo:
        ancestor = todo.pop()
        children = [child for child, parent in parents.items() if parent == ancestor]
        found += children
        todo += children
    return found


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS), MB; 0 once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def kind(pid: int, server_pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        command = b""
    if pid == server_pid:
        return "serve (main)"
    if b"resource_tracker" in command:
        return "resource tracker"
    if b"spawn_main" in command:
        return "inference worker"
    return "uvicorn or manager"  # forked: the server's own command line


def memory(server_pid: int) -> dict[int, tuple[str, float]]:
    return {pid: (kind(pid, server_pid), rss_mb(pid)) for pid in processes(server_pid)}


def requests_of(round_size: int, pngs: list[tuple[bytes, int]]) -> list[tuple[str, dict, int | None]]:
    """(kind, files=, label) for each request of a round: every fifth bad, the bad kinds in turn."""
    plan, bad_kinds = [], list(BAD)
    for i in range(round_size):
        png, label = pngs[i % len(pngs)]
        if i % 5 == 4:
            name = bad_kinds[(i // 5) % len(bad_kinds)]
            plan.append((name, BAD[name](png), None))
        else:
            plan.append(("good", {"file": ("d.png", png, "image/png")}, label))
    return plan


def run(url: str, plan: list, clients: int) -> tuple[float, list[tuple[str, int | None, float, object]]]:
    """Send the plan from `clients` threads; returns requests/s and (kind, status or None, seconds, answer)."""
    todo = iter(range(len(plan)))
    lock = threading.Lock()
    results = []

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                name, files, label = plan[i]
                start = time.perf_counter()
                try:
                    response = http.post(f"{url}/predict", files=files)
                    status, answer = response.status_code, response.json()
                    answer = answer.get("digit") == label if name == "good" and status == 200 else answer
                except httpx.TransportError as err:
                    status, answer = None, repr(err)
                except ValueError:  # not JSON
                    status, answer = response.status_code, response.text[:200]
                with lock:
                    results.append((name, status, time.perf_counter() - start, answer))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(plan) / (time.perf_counter() - start), results


def report(results: list) -> bool:
    """Print the round's counts; True when every good request got 200 and every bad one a 4xx."""
    ok = True
    for name in ["good", *BAD]:
        statuses = Counter(status for kind, status, _, _ in results if kind == name)
        expected = (lambda s: s == 200) if name == "good" else (lambda s: s is not None and 400 <= s < 500)
        wrong = {s: n for s, n in statuses.items() if not expected(s)}
        ok &= not wrong
        shown = ", ".join(f"{n} x {s if s is not None else 'connection error'}" for s, n in sorted(
            statuses.items(), key=lambda item: item[0] or 0))  # fmt: skip
        print(f"  {name:<17} {sum(statuses.values()):>6} requests: {shown}{'' if not wrong else '   <-- WRONG'}")
    right = sum(1 for kind, status, _, answer in results if kind == "good" and answer is True)
    good = sum(1 for kind, *_ in results if kind == "good")
    server_errors = sum(1 for _, status, _, _ in results if status is not None and status >= 500)
    refused = sum(1 for _, status, _, _ in results if status is None)
    print(f"  5xx answers: {server_errors}, connection errors: {refused}; digits read right: {right / good:.2%}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("DIGITNET_DATA_DIR", "data"))
    parser.add_argument("--requests", type=int, default=5000, help="requests per round, one in five bad")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --requests, memory read after each")
    parser.add_argument("--images", type=int, default=1000, help="distinct MNIST test digits sent")
    args, serve_args = parser.parse_known_args()

    with tempfile.TemporaryDirectory() as tmp:
        files = write_pngs(Path(args.data_dir), args.images, Path(tmp))
        pngs = [(path.read_bytes(), label) for path, label in files]
    server, url = start_server(serve_args)
    ok = True
    try:
        run(url, requests_of(200, pngs), args.clients)  # warm-up: lazy initialisation, allocator pools
        memories = [("after the warm-up", memory(server.pid))]
        print(f"serve {' '.join(serve_args) or '(defaults)'}; {args.rounds} x {args.requests} requests from "
              f"{args.clients} clients, one in five bad; {os.cpu_count()} CPUs")  # fmt: skip
        for r in range(1, args.rounds + 1):
            rate, results = run(url, requests_of(args.requests, pngs), args.clients)
            latencies = np.array([seconds for _, _, seconds, _ in results]) * 1000
            p50, p99 = np.percentile(latencies, [50, 99])
            print(f"round {r}: {rate:.1f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            ok &= report(results)
            memories.append((f"after round {r}", memory(server.pid)))
        print("server memory (RSS, MB):")
        pids = sorted(set().union(*(m for _, m in memories)))
        print(f"  {'process':<24}" + "".join(f"{when:>20}" for when, _ in memories))
        for pid in pids:
            name = next(m[pid][0] for _, m in memories if pid in m)
            print(f"  {f'{name} {pid}':<24}" + "".join(f"{m.get(pid, ('', 0))[1]:>20.1f}" for _, m in memories))
        print(f"  {'all processes':<24}" + "".join(f"{sum(v for _, v in m.values()):>20.1f}" for _, m in memories))
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: LitServe stops its workers
        server.wait(timeout=60)
    print("every good request 200, every bad one 4xx" if ok else "FAILED: see the rows marked WRONG")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
