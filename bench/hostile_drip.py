"""How long a dripping server can hold a worker, and how fast SIGTERM ends a pass with a fetch in flight.

    .venv/bin/python bench/hostile_drip.py [--deadline 60] [--every 1.0]

1. A page that sends a byte every ``--every`` seconds (so no read ever waits long
   enough to time out), its headers dripped as well as its body, fetched under
   ``fetch.deadline``: the seconds the fetch held its thread.
2. ``newsmonitor run --once`` with one feed that drips under a 60 s deadline and
   a 30 s read timeout: the seconds from SIGTERM to the process's exit.

Loopback servers only; the configs allow 127.0.0.0/8 (``fetch.allow_networks``).
"""

from __future__ import annotations

import argparse
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.fetch import fetch_url, make_client  # noqa: E402
from monitor.settings import FetchSettings  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402

LOOPBACK = ["127.0.0.0/8"]


class _Drip(socketserver.BaseRequestHandler):
    """A status line, then headers and body a byte at a time, for as long as the client listens."""

    every = 1.0
    body = False

    def handle(self) -> None:
        self.request.recv(65536)
        try:
            self.request.sendall(b"HTTP/1.1 200 OK\r\n" + (b"Content-Type: text/html\r\n\r\n" if self.body else b""))
            while True:
                time.sleep(self.every)
                self.request.sendall(b"X")
        except OSError:
            return


def held(deadline: float, every: float, *, body: bool) -> tuple[float, str]:
    handler = type("Drip", (_Drip,), {"every": every, "body": body})
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with make_client(FetchSettings(timeout=20.0, deadline=deadline, allow_networks=LOOPBACK)) as client:
            started = time.monotonic()
            outcome = fetch_url(client, f"http://127.0.0.1:{httpd.server_address[1]}/", max_bytes=10_000_000)
            return time.monotonic() - started, getattr(outcome, "reason", "fetched")
    finally:
        httpd.shutdown()
        httpd.server_close()


def sigterm_to_exit() -> float:
    with FeedServer() as server, tempfile.TemporaryDirectory() as folder:
        server.drip("/drip.xml", every=0.5, count=240)
        config = write_config(Path(folder), seeds_dir=None, feeds=[{"url": server.url("/drip.xml")}],
                              fetch={"timeout": 30.0, "deadline": 60.0, "per_host_delay": 0})
        process = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run", "--once"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            while server.hits["/drip.xml"] == 0:
                time.sleep(0.05)
            time.sleep(1.0)  # well inside the fetch
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=120)
            return time.monotonic() - sent
        finally:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between dripped bytes")
    args = parser.parse_args()
    for body in (False, True):
        seconds, reason = held(args.deadline, args.every, body=body)
        part = "body" if body else "headers"
        print(f"dripping {part}, a byte every {args.every:g}s, fetch.deadline {args.deadline:g}s: "
              f"held the worker {seconds:.2f}s ({reason})")
    print(f"run --once, SIGTERM with a dripping fetch in flight: exited {sigterm_to_exit():.2f}s later")


if __name__ == "__main__":
    main()
