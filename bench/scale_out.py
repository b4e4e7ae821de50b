"""Scale-out: the same pages ingested embedded, through 1 worker and through 2, on this machine.

    .venv/bin/python bench/scale_out.py                      # the pages in ../shared/data/web-pages
    .venv/bin/python bench/scale_out.py --pages DIR --outlets 10

It starts a redis-server (Debian's package) on a free loopback port, serves
the saved pages from ``--outlets`` loopback outlets with an RSS feed each
(``bench/pass_rate.py``'s server, in a child process), and runs one
``run --once`` pass (:func:`monitor.engine.run_pass` on a new database) three
times: embedded (the local process pool, one process per core), with
``distributed.broker_url`` and one ``newsmonitor worker`` process, and with two.
The daemon fetches and writes in every case; only parsing and extraction move.
Each pass is timed once its extractors are up and warm (``worker.warm``: what a
worker's first pages would load is loaded), as in a running daemon; the three
modes take turns for ``--rounds`` rounds and each mode's best pass counts (the
machine's load from other processes moves between passes).

It prints how long a worker took to be ready and its resident memory, each
pass's pages per second and CPU per page (the daemon, the workers, and redis-server
with the page server, which on this machine compete with the workers), whether
the stored articles (URL, title, text) and the clusters (as sets of URLs) are the
same in all three, and as its last line
``scale-out: workers=1 X pages/s, workers=2 Y pages/s, speedup S, identical=yes|no``.
Not a timed test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pass_rate import DEFAULT_PAGES, serve  # noqa: E402
from monitor.pipeline import PassReport  # noqa: E402

Stored = tuple[set[tuple[str, str, str]], set[frozenset[str]]]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"scale_out: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.02)


def serve_quietly(folder: str, outlets: int, ready: multiprocessing.Queue) -> None:
    """``bench/pass_rate.py``'s page server, without a traceback per connection the client closes first."""
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  # for the life of this child process
    serve(folder, outlets, ready)


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """redis-server as Debian ships it, with an append-only file (fsynced each second) as the README advises."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("scale_out: redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                                "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(pings, "redis-server answering")
    return process, f"redis://127.0.0.1:{port}/0"


class Worker:
    """``newsmonitor worker`` as a separate process; ready when it logs so."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        started = time.perf_counter()
        with log.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "worker"],
                                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_until(lambda: "event=worker.ready" in log.read_text(errors="replace") or self.process.poll() is not None,
                   "a worker getting ready")
        if self.process.poll() is not None:
            raise SystemExit(f"scale_out: the worker exited: {log.read_text(errors='replace')}")
        self.ready_after = time.perf_counter() - started
        self.rss_mb = rss_mb(self.process.pid)
        self.warm_rss_mb = float("nan")

    def wait_warm(self) -> None:
        """Until it has loaded what its first pages would otherwise pay for (``worker.warm``), as a running
        daemon's workers have: a pass is timed with its workers up and warm, as the embedded pool's are."""
        log = self.log
        wait_until(lambda: "event=worker.warm" in log.read_text(errors="replace") or self.process.poll() is not None,
                   "a worker warming up")
        self.warm_rss_mb = rss_mb(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_mb(pid: int) -> tuple[float, float]:
    """Resident and proportional set size (shared pages split among the processes sharing them), MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(fields["Rss"].split()[0]) / 1024, int(fields["Pss"].split()[0]) / 1024


def forked_start(config: Path, log: Path, processes: int = 2) -> list[tuple[float, float, float]]:
    """``newsmonitor worker --processes N``: each child's readiness after the fork (ms), its RSS and PSS (MB)."""
    from datetime import datetime

    with log.open("wb") as out:
        parent = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "worker",
                                   "--processes", str(processes)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_until(lambda: log.read_text(errors="replace").count("event=worker.ready") == processes,
                   "the forked workers getting ready")
        lines = log.read_text(errors="replace").splitlines()

        def stamp(line: str) -> datetime:
            return datetime.fromisoformat(line.split()[0].removeprefix("ts="))

        forked = stamp(next(line for line in lines if "event=worker.forking" in line))
        ready = [stamp(line) for line in lines if "event=worker.ready" in line]
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        return [((at - forked).total_seconds() * 1000, *memory_mb(int(pid))) for at, pid in zip(ready, children,
                                                                                                strict=True)]
    finally:
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=60)


def config(folder: Path, bases: list[str], broker_url: str | None) -> dict[str, object]:
    return {"database": str(folder / "bench.db"), "seeds_dir": None, "log_level": "ERROR",
            "feeds": [{"url": f"{base}/feed.xml"} for base in bases],
            "fetch": {"per_host_delay": 0, "allow_networks": ["127.0.0.0/8"]},
            "distributed": {"broker_url": broker_url}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Pass:
    report: PassReport
    duration: float  # wall-clock seconds of the pass, from the moment its extractors are up
    daemon_cpu: float  # this process: fetch threads and the writer
    workers_cpu: float  # the worker processes
    others_cpu: float  # redis-server and the page server: on this machine they compete with the workers too


def one_pass(folder: Path, bases: list[str], broker_url: str | None, workers: list[int],
             others: list[int]) -> Pass:
    from monitor.engine import Engine, open_runtime
    from monitor.settings import settings_from_mapping

    folder.mkdir(parents=True)
    settings = settings_from_mapping(config(folder, bases, broker_url), path=folder / "bench.yaml")
    with open_runtime(settings) as runtime, Engine(runtime) as engine:
        engine.wait_ready()
        daemon = time.process_time()
        working, serving = sum(cpu_seconds(pid) for pid in workers), sum(cpu_seconds(pid) for pid in others)
        started = time.perf_counter()  # the report's own duration counts from the engine's start, pool start included
        report = engine.run_pass()
        return Pass(report, time.perf_counter() - started, time.process_time() - daemon,
                    sum(cpu_seconds(pid) for pid in workers) - working,
                    sum(cpu_seconds(pid) for pid in others) - serving)


def stored(database: Path) -> Stored:
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute("SELECT url, title, text, cluster_id FROM articles").fetchall()
    finally:
        conn.close()
    clusters: dict[int, set[str]] = {}
    for url, _, _, cluster in rows:
        clusters.setdefault(cluster, set()).add(url)
    return {(url, title, text) for url, title, text, _ in rows}, {frozenset(urls) for urls in clusters.values()}


def differences(a: Stored, b: Stored) -> str:
    """How many articles and clusters differ, and the pages whose cluster differs (by file name)."""
    articles = {url for url, _, _ in a[0] ^ b[0]}
    moved = sorted({url.rsplit("/", 1)[-1] for cluster in a[1] ^ b[1] for url in cluster})
    return f"{len(articles)} articles differ, {len(a[1] ^ b[1])} clusters differ (pages {', '.join(moved[:6])})"


@dataclass
class Modes:
    """What the modes' rounds gave: each mode's passes, what its first round stored, a mode whose later round
    stored something else than its first, and the start-up figures of the workers started and forked."""

    reports: dict[str, list[Pass]]
    results: dict[str, Stored]
    unsteady: dict[str, str]
    started: list[Worker]
    forked: list[tuple[float, float, float]]


def run_modes(work: Path, bases: list[str], url: str, rounds: int, others: list[int]) -> Modes:
    """``rounds`` rounds of the three modes taking turns (the machine's load moves: each mode's best counts),
    one worker kept across rounds and a second started for each two-worker pass; ``others``: the processes
    (redis, the page server) whose CPU competes with the workers."""
    modes = Modes({"embedded": [], "workers=1": [], "workers=2": []}, {}, {}, [], [])
    worker_config = work / "worker.yaml"
    worker_config.write_text(f"database: unused.db\nseeds_dir: null\nlog_level: INFO\n"
                             f"distributed:\n  broker_url: {url}\n", encoding="utf-8")
    first: Worker | None = None
    try:
        modes.forked = forked_start(worker_config, work / "forked.log")
        for round_ in range(rounds):
            for name in modes.reports:
                folder = work / f"{name.replace('=', '')}-{round_}"
                if name == "workers=1" and first is None:
                    first = Worker(worker_config, work / "worker1.log")
                    modes.started.append(first)
                second = Worker(worker_config, work / f"worker2-{round_}.log") if name == "workers=2" else None
                workers = [w for w in (first, second) if w is not None] if name != "embedded" else []
                for worker in workers:
                    worker.wait_warm()
                try:
                    modes.reports[name].append(one_pass(folder, bases, None if name == "embedded" else url,
                                                        [w.process.pid for w in workers], others))
                finally:
                    if second is not None:
                        modes.started.append(second)
                        second.stop()
                this = stored(folder / "bench.db")
                if modes.results.setdefault(name, this) != this:
                    modes.unsteady[name] = differences(modes.results[name], this)
    finally:
        if first is not None:
            first.stop()
    return modes


def print_starts(modes: Modes) -> None:
    for n, worker in enumerate(modes.started, 1):
        print(f"worker start {n}: ready in {worker.ready_after:.2f} s (process start, imports), "
              f"RSS {worker.rss_mb:.0f} MB when ready, "
              f"{worker.warm_rss_mb:.0f} MB once warm (the language model, stop lists, month names)")
    for n, (after, rss, pss) in enumerate(modes.forked, 1):
        print(f"forked worker {n} (newsmonitor worker --processes 2): ready {after:.0f} ms after the fork, "
              f"RSS {rss:.0f} MB, PSS {pss:.0f} MB (pages shared with its parent and sibling counted once)")


def print_passes(modes: Modes, count: int, cores: int) -> dict[str, float]:
    """Each mode's best pass, and the most two workers could gain on this machine; returns pages/s by mode."""
    rates = {}
    for name, runs in modes.reports.items():
        best = min(runs, key=lambda run: run.duration)
        report = best.report
        rates[name] = count / best.duration
        articles, clusters = modes.results[name]
        cpu = (f"; CPU per page: daemon {best.daemon_cpu / count * 1000:.1f} ms, "
               f"workers {best.workers_cpu / count * 1000:.1f} ms, redis and page server "
               f"{best.others_cpu / count * 1000:.1f} ms") if name != "embedded" else ""
        print(f"{name}: {rates[name]:.1f} pages/s, best of {len(runs)} "
              f"({', '.join(f'{run.duration:.2f}' for run in runs)} s; {report.feeds.added} articles stored, "
              f"{len(articles)} rows, {len(clusters)} clusters); writer idle {report.writer_idle / best.duration:.0%}, "
              f"placing the batch {report.placing:.2f} s"
              f"{cpu}")
    two_best = min(modes.reports["workers=2"], key=lambda run: run.duration)
    if two_best.workers_cpu > 0:  # the CPU the pages cost, whatever else the machine was doing
        per_page = (two_best.workers_cpu + two_best.daemon_cpu + two_best.others_cpu) / count
        ceiling = min(2.0, cores * (two_best.workers_cpu / count) / per_page) if cores >= 2 else 1.0
        print(f"CPU per page {per_page * 1000:.1f} ms (workers, daemon, redis and page server): on {cores} "
              f"otherwise idle cores "
              f"2 workers could reach at most {ceiling:.2f}x one worker; load average now {os.getloadavg()[0]:.1f}")
    return rates


def print_sameness(modes: Modes, rates: dict[str, float]) -> None:
    results = modes.results
    same_articles = results["embedded"][0] == results["workers=1"][0] == results["workers=2"][0]
    identical = same_articles and results["embedded"][1] == results["workers=1"][1] == results["workers=2"][1]
    print(f"articles (URL, title, text): {'identical' if same_articles else 'differ'} in the three modes")
    for name in ("workers=1", "workers=2"):
        if results[name] != results["embedded"]:
            print(f"{name} vs embedded: {differences(results['embedded'], results[name])}")
    for name, what in modes.unsteady.items():
        print(f"{name} vs itself, a later round: {what} (the order articles reach the writer moves clusters)")
    one, two = rates["workers=1"], rates["workers=2"]
    print(f"scale-out: workers=1 {one:.1f} pages/s, workers=2 {two:.1f} pages/s, speedup {two / one:.2f}, "
          f"identical={'yes' if identical else 'no'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, default=DEFAULT_PAGES, help="a folder of saved *.html pages")
    parser.add_argument("--outlets", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="passes of each mode; the best is reported")
    args = parser.parse_args()
    count = len(list(args.pages.glob("*.html"))) if args.pages.is_dir() else 0
    if not count:
        raise SystemExit(f"scale_out: no *.html pages found in {args.pages}")
    from monitor.logs import configure_logging

    configure_logging("ERROR")
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Queue()
    server = spawn.Process(target=serve_quietly, args=(str(args.pages), args.outlets, ready), daemon=True)
    server.start()
    bases = ready.get(timeout=60)
    with tempfile.TemporaryDirectory(prefix="scale_out-") as tmp:
        work = Path(tmp)
        (work / "redis").mkdir()
        redis_server, url = start_redis(work / "redis")
        try:
            modes = run_modes(work, bases, url, args.rounds, [redis_server.pid, server.pid])
        finally:
            redis_server.terminate()
            redis_server.wait(timeout=30)
            server.terminate()
    cores = len(os.sched_getaffinity(0))
    print(f"{count} pages from {args.pages} on {args.outlets} loopback outlets; {cores} cores; "
          f"load average {os.getloadavg()[0]:.1f}")
    print_starts(modes)
    print_sameness(modes, print_passes(modes, count, cores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
