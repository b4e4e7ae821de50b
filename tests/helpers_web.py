"""Real parts for the web tests: a database made by the real pipeline, and a real Datasette server.

The database is built by running ``newsmonitor run --once`` over a copy of the seeds plus one
near-duplicate "wire copy" of the first seed (so the cluster page has a duplicate to show).
The server is a subprocess on a free 127.0.0.1 port, polled until it answers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
FIRST_SEED = "000_19088d47ecff5c57.txt"
SECOND_SEED = "004_0b04817afffe1035.txt"
WIRE_COPY = "010_wire_copy_of_000.txt"
SECOND_TITLE = "Trump administration to send border patrol officers to arrest migrants in cities"
FIRST_TITLE_START = "Federal agents patrolling the US border will be stationed in"


def build_database(folder: Path, *, database: str = "monitor.db", wire_copy: bool = True) -> Path:
    """Run the real pipeline over the seeds in ``folder``; returns the config file."""
    seeds = folder / "seeds"
    shutil.copytree(SEEDS, seeds)
    if wire_copy:
        text = (seeds / FIRST_SEED).read_text(encoding="utf-8")
        text = text.replace("officials said on Friday", "officials announced on Friday", 1)
        (seeds / WIRE_COPY).write_text(text + "\n\nThis story was updated with comment from officials.\n",
                                       encoding="utf-8")
    config = folder / "monitor.yaml"
    YAML(typ="safe", pure=True).dump(
        {"database": database, "seeds_dir": "seeds", "feeds": [], "keywords": ["border patrol"],
         "log_level": "WARNING"}, config)
    subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "run", "--once"],
                   check=True, capture_output=True, timeout=120)
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(command: list[str], port: int, *, timeout: float = 30.0) -> Iterator[str]:
    """Start a server command, wait until it answers on ``port``, yield its base URL, stop it."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: {process.stdout.read()}")
            try:
                if httpx.get(f"{base}/-/versions.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer on {base} within {timeout}s")
            time.sleep(0.1)
        yield base
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the process is still there after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def newsmonitor_serve(config: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "monitor", "--config", str(config), "serve", "--port", str(port)]
