"""A real redis-server on a free loopback port, and ``newsmonitor worker`` processes, for the distributed tests.

The tests skip, saying why, only where the redis-server binary is absent
(``.ci/run`` installs Debian's redis-server, so CI runs them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT
from tests.helpers_daemon import wait_for


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); the distributed tests need it")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """redis-server with an append-only file fsynced on every write (a restart keeps the queued jobs), or none."""

    def __init__(self, folder: Path, *, persist: bool = True) -> None:
        self.binary = redis_binary()
        self.persist = persist
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        assert wait_for(lambda: _pings(client), timeout=20), "redis-server did not start"
        client.close()
        return self

    def stop(self) -> None:
        """SIGTERM: redis-server flushes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


class WorkerProcess:
    """A worker process (``newsmonitor worker``, or a script of ``tests/``), its log in a file; ready when it says."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        assert wait_for(lambda: "event=worker.ready" in self.text() or self.process.poll() is not None, timeout=60)
        assert self.process.poll() is None, f"the worker exited: {self.text()}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def newsmonitor_worker(config: Path, log: Path) -> WorkerProcess:
    return WorkerProcess(["-m", "monitor", "--config", str(config), "worker"], log)
