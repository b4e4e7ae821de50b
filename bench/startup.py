"""Start-up cost: how soon a process is ready for its first page, and an idle pass on a full vs. empty database.

    .venv/bin/python bench/startup.py                # readiness, then 4,000 recent articles, 5 idle passes each
    .venv/bin/python bench/startup.py --readiness    # readiness only
    .venv/bin/python bench/startup.py --articles 20000 --passes 3

Readiness: a fresh ``python`` process imports what a page worker needs
(:mod:`monitor.tasks`, the unit of work of the engine's extraction processes and of
the next issue's distributed workers) and says so; the wall time from launching it
and its peak RSS at that moment are printed, then the same after its first real
page (``extract_page`` on a saved page, which loads the language model), median of
``--passes`` launches.

An idle pass is what cron's ``run --once --due`` or a restart does most of the time:
nothing is due, nothing new is stored.  It should cost what a pass on an empty database
costs, whatever the store holds.  The populated database is filled through the
daemon's own writer path (``ingest_article``) with the synthetic stream of
``bench/cluster_scale.py``, dated over the last few days so every article is recent.
Each pass is a fresh ``newsmonitor run --once --due`` process; passes on the two
databases alternate so the machine's load falls on both alike.  The figure is the
median CPU time of the child process (user + system), which other processes on a
busy machine do not distort; wall time is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cluster_eval import DEFAULT_DATA  # noqa: E402
from bench.cluster_scale import load_texts, stream  # noqa: E402
from monitor.engine import open_runtime  # noqa: E402
from monitor.ingest import ingest_article  # noqa: E402
from monitor.models import Article  # noqa: E402
from monitor.settings import load_settings  # noqa: E402
from monitor.store import Store  # noqa: E402

CONFIG = """database: {db}
seeds_dir: null
feeds: []
log_level: WARNING
"""


def write_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "monitor.yaml"
    path.write_text(CONFIG.format(db=folder / "monitor.db"), encoding="utf-8")
    return path


def fill(config: Path, n: int, data: Path) -> float:
    """Store ``n`` synthetic articles dated over the last days; returns the seconds it took."""
    settings = load_settings(config)
    texts = load_texts(data)
    end = datetime.now(UTC) - timedelta(hours=1)
    per_day = max(1, n // 5)
    t0 = time.perf_counter()
    with open_runtime(settings) as runtime:
        for doc, _, _ in stream(texts, n, 0.2, per_day):
            when = end - timedelta(days=(n - doc.id) / per_day)
            ingest_article(runtime.store, runtime.clusterer, Article(
                url=f"https://{doc.source}.example/{doc.id}", title=doc.title, text=doc.text,
                source=f"{doc.source}.example", published=when, fetched_at=when, extraction="text-file"))
    return time.perf_counter() - t0


def idle_pass(config: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one ``run --once --due`` child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "run", "--once", "--due"],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


READY = """
import sys
from datetime import UTC, datetime
from pathlib import Path


def peak_kb():  # VmHWM: this process's own peak (ru_maxrss keeps the parent's across fork and exec)
    return next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))


from monitor.tasks import PageJob, extract_page

print("ready", peak_kb(), flush=True)
for path in sys.argv[1:]:  # a page declaring its language, then one that does not (py3langid's model loads)
    page = Path(path).read_bytes()
    extract_page(PageJob("http://127.0.0.2/p", "http://127.0.0.2/p", page, None, datetime.now(UTC)))
    print("page", peak_kb(), flush=True)
"""


def readiness(pages: list[Path]) -> list[tuple[float, float]]:
    """(seconds since launch, peak MB) of one fresh process: ready, then after each page."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", READY, *map(str, pages)], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    marks = [(time.perf_counter() - started, int(line.split()[1]) / 1024) for line in child.stdout]
    child.wait()
    return marks


def print_readiness(data: Path, passes: int) -> None:
    from monitor.extract import declared_language

    pages = sorted((data / "web-pages").glob("*.html"))
    declared = [p for p in pages if declared_language(p.read_bytes())]
    undeclared = [p for p in pages if not declared_language(p.read_bytes())]
    if not (declared and undeclared):
        print(f"readiness: saved pages not found in {data / 'web-pages'}; not measured")
        return
    runs = [readiness([declared[0], undeclared[0]]) for _ in range(passes)]
    (ready_s, ready_mb), (page_s, page_mb), (model_s, model_mb) = (
        (statistics.median(r[i][0] for r in runs), statistics.median(r[i][1] for r in runs)) for i in range(3))
    print(f"readiness: a new worker process is ready for its first page in {ready_s:.2f} s, {ready_mb:.0f} MB peak "
          f"RSS; after a page declaring its language {page_s:.2f} s, {page_mb:.0f} MB; after one declaring none "
          f"(py3langid's model loaded) {model_s:.2f} s, {model_mb:.0f} MB (median of {passes}; "
          f"load average {os.getloadavg()[0]:.1f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--articles", type=int, default=4000)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--readiness", action="store_true", help="only how soon a worker process is ready")
    args = ap.parse_args(argv)
    print_readiness(args.data, args.passes)
    if args.readiness:
        return 0
    if not (args.data / "ecb-plus").is_dir():
        print(f"startup: shared data not found at {args.data}; nothing measured")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = write_config(Path(tmp) / "empty"), write_config(Path(tmp) / "full")
        Store.open(load_settings(empty).database).close()
        took = fill(full, args.articles, args.data)
        print(f"filled {args.articles} recent articles in {took:.1f} s")
        runs: dict[Path, list[tuple[float, float]]] = {empty: [], full: []}
        for _ in range(args.passes):
            for config in (empty, full):
                runs[config].append(idle_pass(config))
    cpu = {c: statistics.median(r[0] for r in runs[c]) for c in runs}
    wall = {c: statistics.median(r[1] for r in runs[c]) for c in runs}
    print(f"idle pass, empty database: {cpu[empty]:.2f} CPU-s ({wall[empty]:.2f} s wall)")
    print(f"idle pass, {args.articles} stored: {cpu[full]:.2f} CPU-s ({wall[full]:.2f} s wall)")
    print(f"startup: ratio {cpu[full] / cpu[empty]:.2f} (CPU, median of {args.passes} passes each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
