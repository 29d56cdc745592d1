"""Throughput of the sandbox on loopback, next to a bare stdlib server measured in the same
run (a floor for what Python's http.server can do on this machine).

    python bench/bench_sandbox.py [--requests 1000] [--threads 4] [--size 256]

The first row is the baseline of the ratio column. Every server runs in its own
subprocess; the clients are threads here, each with a keep-alive requests.Session. Only
loopback addresses are used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from volccli.auth import V4Auth  # noqa: E402 (after the path set-up above)

API_KEY = "sandbox-api-key"
ACCESS_KEY = "AKLTsandboxAccessKey"
SECRET_KEY = "sandbox-secret-key"

SANDBOX = "from volccli.cli.sandbox_cmd import app; app()"
BASELINE = r'''
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = b'{"code":10000,"data":{"ok":true},"message":"Success","status":10000}'
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    if sys.argv[1:] == ["tuned"]:
        # One write per reply and no Nagle delay, as the sandbox does.
        wbufsize = -1
        disable_nagle_algorithm = True
    def log_message(self, *args):
        pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
server = Server(("127.0.0.1", 0), Handler)
print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
'''


@dataclass
class Result:
    name: str
    count: int
    threads: int
    seconds: float
    latencies: list[float]
    failures: int

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


@contextmanager
def server(args: list[str]) -> Iterator[str]:
    """Start a server subprocess and yield the base URL it prints first."""
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"server did not start: {url!r}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def drive(name: str, send: Callable[[requests.Session], bool], count: int,
          threads: int) -> Result:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    per_thread = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def worker(n: int) -> None:
        nonlocal failures
        session = requests.Session()
        for _ in range(3):  # warm the connection
            send(session)
        local: list[float] = []
        bad = 0
        barrier.wait()
        for _ in range(n):
            started = time.perf_counter()
            ok = send(session)
            local.append(time.perf_counter() - started)
            bad += not ok
        with lock:
            latencies.extend(local)
            failures += bad

    barrier = threading.Barrier(threads + 1)
    pool = [threading.Thread(target=worker, args=(n,)) for n in per_thread]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    return Result(name, count, threads, time.perf_counter() - started, latencies, failures)


def bearer_sender(url: str, body: dict[str, object]) -> Callable[[requests.Session], bool]:
    target = f"{url}/volcv/v1?Action=CVProcess&Version=2022-08-31"
    data = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    def send(session: requests.Session) -> bool:
        response = session.post(target, data=data, headers=headers, timeout=30)
        return response.status_code == 200 and response.json()["code"] == 10000

    return send


def v4_sender(url: str, body: dict[str, object]) -> Callable[[requests.Session], bool]:
    target = f"{url}/?Action=CVProcess&Version=2022-08-31"
    data = json.dumps(body).encode()
    digest = hashlib.sha256(data).hexdigest()
    auth = V4Auth(ACCESS_KEY, SECRET_KEY)

    def send(session: requests.Session) -> bool:
        headers = auth.headers("POST", target, digest)
        response = session.post(target, data=data, headers=headers, timeout=30)
        return response.status_code == 200 and response.json()["code"] == 10000

    return send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--size", type=int, default=256, help="txt2img width and height")
    args = parser.parse_args()
    body = {"req_key": "high_aes_general_v14", "prompt": "a small benchmark image",
            "width": args.size, "height": args.size}
    results: list[Result] = []
    with server(["-c", BASELINE, "tuned"]) as url:
        results.append(drive("baseline: bare http.server, tuned", _plain_sender(url),
                             args.requests, args.threads))
    with server(["-c", BASELINE]) as url:
        results.append(drive("bare http.server, stdlib defaults", _plain_sender(url),
                             args.requests, args.threads))
    with server(["-c", SANDBOX, "serve", "--port", "0"]) as url:
        results.append(drive(f"sandbox txt2img {args.size}px, bearer",
                             bearer_sender(url, body), args.requests, args.threads))
        results.append(drive(f"sandbox txt2img {args.size}px, V4 signed",
                             v4_sender(url, body), args.requests, args.threads))
    print_table(results)


def _plain_sender(url: str) -> Callable[[requests.Session], bool]:
    data = b'{"req_key": "high_aes_general_v14", "prompt": "a small benchmark image"}'

    def send(session: requests.Session) -> bool:
        response = session.post(url + "/", data=data, timeout=30)
        return response.status_code == 200 and response.json()["code"] == 10000

    return send


def print_table(results: list[Result]) -> None:
    baseline = results[0].rate
    header = f"| {'target':<38} | requests | threads | req/s  | p50 ms | p95 ms | vs baseline |"
    print(header)
    print("|" + "|".join("-" * len(part) for part in header.split("|")[1:-1]) + "|")
    for result in results:
        print(f"| {result.name:<38} | {result.count:>8} | {result.threads:>7} | "
              f"{result.rate:>6.0f} | {result.percentile(0.5):>6.1f} | "
              f"{result.percentile(0.95):>6.1f} | {result.rate / baseline:>11.2f} |")
    failures = sum(result.failures for result in results)
    print(f"\nfailures: {failures}. 'tuned' writes each reply at once with TCP_NODELAY, as the "
          "sandbox does;\nwith the stdlib defaults, headers and body leave in two writes and "
          "Nagle's algorithm\nwith delayed ACKs adds about 40 ms to every request.")


if __name__ == "__main__":
    main()
