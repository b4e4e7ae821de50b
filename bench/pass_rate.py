"""Pass rate: real pages through the whole pipeline vs. a bare trafilatura loop over the same bytes.

    .venv/bin/python bench/pass_rate.py                      # the pages in ../shared/data/web-pages
    .venv/bin/python bench/pass_rate.py --pages DIR --outlets 10

The saved pages are served by a child process from ``--outlets`` loopback
outlets (127.0.0.2, 127.0.0.3, ...: separate hosts, so per-host limits apply to
each), every outlet with an RSS feed listing its share of the pages, newest
first. Politeness delays are off (``fetch.per_host_delay: 0``); the other fetch
settings are the defaults (8 requests in flight, 2 per host, robots.txt asked).

It prints, from one run:

* the **bare rate**: one process, ``trafilatura.bare_extraction`` with its
  defaults and metadata over each page's bytes in turn, nothing else, timed on its
  second round over the pages (what a process loads on its first pages, about
  0.3 CPU-s, is not counted, as it is not for the warmed-up extraction processes);
  and, for reference, the rate of the extraction processes' own task in one process;
* the **pass rate**: ``run --once`` through :func:`monitor.engine.run_pass` on a
  new database (fetch, parse, extract, language, dedup, cluster, SQLite),
  pages per second of the whole pass, the extraction pool's start included;
* their ratio, the writer's idle share (the time the one writer thread
  waited for the producers, over the pass), how many articles it placed while
  pages were still extracted, and the time it spent ending the batch (placing the
  rest, reading it again) at the end of the pass, when the extraction processes
  have no page left.

Not a timed test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.pipeline import PassReport  # noqa: E402

DEFAULT_PAGES = ROOT.parent / "shared" / "data" / "web-pages"


def outlet_host(index: int) -> str:
    return f"127.0.0.{index + 2}"


def shares(names: list[str], outlets: int) -> list[list[str]]:
    """The pages dealt round-robin over the outlets."""
    return [names[i::outlets] for i in range(outlets)]


def rss(base: str, names: list[str], now: datetime) -> bytes:
    items = "".join(
        f"<item><title>{escape(name)}</title><link>{base}/p/{name}</link><guid>{base}/p/{name}</guid>"
        f"<pubDate>{format_datetime(now - timedelta(minutes=i))}</pubDate>"
        f"<description>{escape(name)}</description></item>" for i, name in enumerate(names))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{base}</title>'
            f"<link>{base}/</link><description>bench</description>{items}</channel></rss>").encode()


class _QuietServer(ThreadingHTTPServer):
    """An outlet's server; a client closing its kept-alive connection at the end of a pass is no error."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(folder: str, outlets: int, ready: multiprocessing.Queue) -> None:
    """The child process: one threaded HTTP server per outlet; pages served as saved, byte for byte."""
    pages = {p.name: p.read_bytes() for p in sorted(Path(folder).glob("*.html"))}
    now = datetime.now(UTC).replace(microsecond=0)
    bases = []
    for index, names in enumerate(shares(sorted(pages), outlets)):
        server = _QuietServer((outlet_host(index), 0), _handler(pages, names, now))
        bases.append(f"http://{outlet_host(index)}:{server.server_address[1]}")
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ready.put(bases)
    threading.Event().wait()


def _handler(pages: dict[str, bytes], names: list[str], now: datetime) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            base = f"http://{self.headers['Host']}"
            if self.path == "/feed.xml":
                self._send(200, "application/rss+xml", rss(base, names, now))
            elif self.path.startswith("/p/") and self.path[3:] in pages:
                self._send(200, "text/html", pages[self.path[3:]])
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def descendants_cpu(skip: int) -> float:
    """CPU seconds used so far by this process's descendants (the extraction processes and their forkserver),
    read from /proc while they live; ``skip``: a child left out with its own descendants (the page server)."""
    parents, cpu = {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid], cpu[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid in cpu:
        ancestor = parents.get(pid)
        while ancestor and ancestor not in (os.getpid(), skip):
            ancestor = parents.get(ancestor)
        if ancestor == os.getpid() and pid != skip:
            total += cpu[pid]
    return total


def bare_rate(folder: Path) -> tuple[int, float, float]:
    """Pages per second and CPU seconds per page of a bare, single-process trafilatura loop over the same bytes."""
    import trafilatura

    pages = [p.read_bytes() for p in sorted(folder.glob("*.html"))]

    def loop() -> None:
        for index, page in enumerate(pages):
            trafilatura.bare_extraction(page, url=f"http://127.0.0.2/p/{index}", with_metadata=True,
                                        include_comments=False)

    loop()  # once untimed: what a process loads on its first pages (stop lists, month names) is not counted,
    started, cpu = time.perf_counter(), time.process_time()  # as the pass's warmed-up processes do not count it
    loop()
    return len(pages), len(pages) / (time.perf_counter() - started), (time.process_time() - cpu) / len(pages)


def task_rate(folder: Path) -> float:
    """Pages per second of the extraction processes' own task (:func:`monitor.tasks.extract_page`), one process."""
    from monitor.tasks import PageJob, extract_page, warm_up

    warm_up()
    pages = [p.read_bytes() for p in sorted(folder.glob("*.html"))]
    started = time.perf_counter()
    for index, page in enumerate(pages):
        url = f"http://127.0.0.2/p/{index}"
        extract_page(PageJob(url, url, page, None, datetime.now(UTC)))
    return len(pages) / (time.perf_counter() - started)


def full_pass(bases: list[str], workdir: Path, *, warm: bool, server: int) -> tuple[PassReport, float, float]:
    """``run --once`` on a new database: its report, wall-clock seconds and CPU seconds (this process, the
    extraction processes and their forkserver, which the first cold pass starts). Cold: timed from opening
    the database, the processes' start included, as ``run --once`` pays it; ``warm``: from the moment the
    extraction processes are up, as in a daemon."""
    from monitor.engine import Engine, open_runtime
    from monitor.logs import configure_logging
    from monitor.settings import settings_from_mapping

    configure_logging("ERROR")
    workdir.mkdir(parents=True)
    settings = settings_from_mapping({
        "database": "bench.db", "seeds_dir": None, "log_level": "ERROR",
        "feeds": [{"url": f"{base}/feed.xml"} for base in bases],
        "fetch": {"per_host_delay": 0, "allow_networks": ["127.0.0.0/8"]},
    }, path=workdir / "bench.yaml")
    cpu, started = time.process_time() + descendants_cpu(server), time.perf_counter()  # cold: the pool's start counts
    with open_runtime(settings) as runtime, Engine(runtime) as engine:
        if warm:
            engine.wait_ready()
            cpu, started = time.process_time() + descendants_cpu(server), time.perf_counter()
        report = engine.run_pass()
        return report, time.perf_counter() - started, time.process_time() + descendants_cpu(server) - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, default=DEFAULT_PAGES, help="a folder of saved *.html pages")
    parser.add_argument("--outlets", type=int, default=10)
    args = parser.parse_args()
    names = sorted(args.pages.glob("*.html")) if args.pages.is_dir() else []
    if not names:
        print(f"pass_rate: no *.html pages found in {args.pages}; nothing measured")
        return 0
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Queue()
    child = spawn.Process(target=serve, args=(str(args.pages), args.outlets, ready), daemon=True)
    child.start()
    bases = ready.get(timeout=60)
    try:
        count, bare, bare_cpu = bare_rate(args.pages)
        task = task_rate(args.pages)
        with tempfile.TemporaryDirectory(prefix="pass_rate-") as tmp:
            cold, cold_wall, cold_cpu = full_pass(bases, Path(tmp) / "cold", warm=False, server=child.pid)
            warm, warm_wall, warm_cpu = full_pass(bases, Path(tmp) / "warm", warm=True, server=child.pid)
    finally:
        child.terminate()
    from monitor.engine import extraction_workers
    from monitor.settings import FetchSettings

    cores = len(os.sched_getaffinity(0))
    print(f"{count} pages from {args.pages} on {args.outlets} loopback outlets; {cores} cores, "
          f"{extraction_workers(FetchSettings())} extraction processes; load average {os.getloadavg()[0]:.1f}")
    print(f"bare trafilatura loop (1 process): {bare:.1f} pages/s, {bare_cpu * 1000:.1f} CPU-ms/page; "
          f"extract_page, the workers' task (decode, trafilatura, cleaning, language): {task:.1f} pages/s")
    for name, report, wall in (("full pass, processes up (daemon)", warm, warm_wall),
                               ("full pass, cold (run --once)", cold, cold_wall)):
        print(f"{name}: {count / wall:.1f} pages/s ({wall:.2f} s, {report.feeds.added} "
              f"articles stored, {report.feeds_ok} feeds ok); writer idle {report.writer_idle / wall:.0%}; "
              f"{report.placed_early} placed while pages were extracted; ending the batch (placing the rest, "
              f"reading it again) {report.placing:.2f} s ({report.placing / wall:.0%}, one core busy)")
    print(f"ratio: {count / warm_wall / bare:.2f} (processes up), {count / cold_wall / bare:.2f} (cold)")
    per_page = warm_cpu / count
    print(f"CPU: the pass costs {per_page * 1000:.1f} CPU-ms/page (this process and the extraction processes; "
          f"the page server apart), {per_page / bare_cpu:.2f}x the bare loop's; on {cores} free cores that is at "
          f"most {cores * bare_cpu / per_page:.2f}x its rate (the wall-clock ratio above moves with the load); "
          f"the cold pass {cold_cpu / count * 1000:.1f} CPU-ms/page, the pool's start and warm-up included")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
