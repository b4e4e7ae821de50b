"""A real worker (``monitor.distributed.run_worker``) whose next job is held mid-task, for the kill test.

    python -m tests.held_worker BROKER_URL HEARTBEAT_TIMEOUT MARKER

It takes a job off the queue as any worker does (the message is in its ack set,
not yet acknowledged), writes MARKER, and then holds the job forever: the test
kills it there with SIGKILL, so the job is certainly unfinished.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from dramatiq.middleware import Middleware

from monitor.distributed import run_worker
from monitor.logs import configure_logging
from monitor.settings import DistributedSettings


class Hold(Middleware):
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def before_process_message(self, broker: object, message: object) -> None:
        self.marker.write_text(str(message), encoding="utf-8")
        threading.Event().wait()  # until SIGKILL


def main() -> None:
    url, heartbeat, marker = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    configure_logging("INFO", "text")
    run_worker(DistributedSettings(broker_url=url, heartbeat_timeout=heartbeat), threading.Event(),
               middleware=[Hold(marker)])


if __name__ == "__main__":
    main()
