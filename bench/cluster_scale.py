"""Scaling benchmark of the clustering stage (near-dup + event clustering), one core.

Generates a deterministic stream of ``--n`` articles (default 100,000) from the shared
ECB+ texts and web pages and feeds them to ``Clusterer.decide``/``add`` one at a time,
as the daemon does, timing only those calls.  Generation models realistic re-use:

- each *event* takes a base text and renames every capitalised word with an
  event-specific pseudo-name, so events of the same kind share vocabulary but not
  entities (the hard case), and gets 1-8 reports spread over two days;
- each report keeps 60-95% of the base sentences plus a sentence from another text;
- ``--dup-rate`` (20%) of articles are wire copies of a recent report with a new
  headline and one added paragraph.

Articles arrive at ``--per-day`` (1,000) per day, so with the default 7-day window
about 7,000 articles are live; older state is evicted.  Prints ms/article over the
1,000 articles before 1k, 10k and 100k stored articles (wall clock, CPU time, and the
median article's CPU time, which other processes on a shared machine distort least), the
mean CPU time over each tenth of the stream (a trend with the store shows there),
overall articles/s, peak RSS, how many generated copies were reported as
near-duplicates, and B-cubed scores against the generated events (a sanity check at
scale: same-base events are same-kind events told with different names).

``--read-beside`` reads each text (``features.read_text``) before the timed call, as the
daemon's extraction processes do beside the article: the figures are then the writer's
share of clustering, not all of it.
"""

from __future__ import annotations

import argparse
import atexit
import heapq
import random
import re
import resource
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cluster_eval import DEFAULT_DATA, Labels, bcubed, load_ecb
from monitor.cluster import Assignment, Clusterer, ClusterParams, Doc
from monitor.cluster.features import read_text

_SYLL = "ka lo mi ter san vel dor ri an bu ze tho ga lin mar os pe qui ra sol".split()  # noqa: SIM905
_CAPWORD = re.compile(r"\b[A-Z][a-z]{2,}\b")
_SENT = re.compile(r"(?<=[.!?])\s+")
START = datetime(2024, 1, 1, tzinfo=UTC)


def _pseudo(word: str, event: int) -> str:
    h = zlib.crc32(f"{event}:{word}".encode())
    return "".join(_SYLL[(h >> (5 * i)) % len(_SYLL)] for i in range(2 + h % 2)).capitalize()


def load_texts(data: Path) -> list[str]:
    """Base texts: ECB+ docs plus trafilatura extracts of the shared web pages."""
    texts = [it.text for it in load_ecb(data)]
    pages = data / "web-pages"
    if pages.is_dir():
        import trafilatura

        for path in sorted(pages.glob("*.html")):
            t = trafilatura.extract(path.read_text(encoding="utf-8", errors="replace"))
            if t and len(t.split()) > 50:
                texts.append(t)
    return texts


def stream(texts: list[str], n: int, dup_rate: float, per_day: int) -> Iterator[tuple[Doc, bool, int]]:
    """Yield (doc, is_generated_copy, event) in arrival order, deterministically."""
    rng = random.Random(42)
    sentences = [[s for s in _SENT.split(t) if s.strip()] for t in texts]
    recent: list[Doc] = []
    event_of: dict[int, int] = {}
    # (due time, event, base) as a heap: the backlog of scheduled reports grows through the
    # run (~28k at 100k), and re-sorting it per article cost the generator 1.7 ms each.
    pending: list[tuple[float, int, int]] = []
    event = 0
    for i in range(n):
        now = START + timedelta(days=i / per_day)
        if recent and rng.random() < dup_rate:
            src = rng.choice(recent[-300:])
            extra = f"Additional reporting from our correspondent {_pseudo('x', i)} in {i}."
            paras = src.text.split("\n\n")
            paras.insert(rng.randrange(len(paras) + 1), extra)
            doc = Doc(i + 1, f"UPDATE: {src.title[:60]}", "\n\n".join(paras), now, "copy")
            yield doc, True, event_of[src.id]
            continue
        if not pending or rng.random() < 0.3:
            event += 1
            base = rng.randrange(len(texts))
            for _ in range(rng.randint(1, 8)):
                due = i + rng.expovariate(1 / (per_day / 4))
                heapq.heappush(pending, (due, event, base))
        _, ev, base = heapq.heappop(pending)
        sents = sentences[base] or [texts[base]]
        keep = [s for s in sents if rng.random() < rng.uniform(0.6, 0.95)] or sents[:1]
        keep.insert(rng.randrange(len(keep) + 1), rng.choice(rng.choice(sentences) or ["."]))
        text = _CAPWORD.sub(lambda m, ev=ev: _pseudo(m.group(0), ev), "\n\n".join(keep))
        # The headline is the report's first sentence, renamed like the rest of it.
        doc = Doc(i + 1, text.split("\n\n")[0][:120], text, now, f"outlet{rng.randrange(50)}")
        recent.append(doc)
        event_of[doc.id] = ev
        if len(recent) > 1000:
            for old in recent[:500]:
                del event_of[old.id]
            del recent[:500]
        yield doc, False, ev


def _placer(params: ClusterParams, store: bool) -> Callable[[Doc], tuple[Assignment, Clusterer]]:
    """Place one doc: straight through the clusterer, or through the writer's ``ingest_article``
    into a temporary SQLite store (removed at exit), which keeps the clusterer's memory."""
    clusterer = Clusterer(params)
    if not store:
        def direct(doc: Doc) -> tuple[Assignment, Clusterer]:
            a = clusterer.decide(doc)
            clusterer.add(doc, a)
            return a, clusterer
        return direct
    from monitor.ingest import Stored, build_clusterer, ingest_article
    from monitor.models import Article
    from monitor.store import Store

    folder = tempfile.TemporaryDirectory()
    db = Store.open(Path(folder.name) / "scale.db")
    atexit.register(folder.cleanup)
    atexit.register(db.close)
    stored_clusterer = build_clusterer(db, params)

    doc_of: dict[int, int] = {}  # article id -> doc id (an exact copy is not stored, so they drift)

    def through_store(doc: Doc) -> tuple[Assignment, Clusterer]:
        out = ingest_article(db, stored_clusterer, Article(
            url=f"https://{doc.source}.example/{doc.id}", title=doc.title, text=doc.text, source=doc.source,
            published=doc.published, fetched_at=doc.published, extraction="text-file", reading=doc.reading))
        if not isinstance(out, Stored):  # the same text again: it counts in the stored copy's cluster
            (cid,) = db.db.execute("SELECT cluster_id FROM articles WHERE id = ?", [out.article_id]).fetchone()
            return Assignment.join(cid, 1.0, ()), stored_clusterer
        doc_of[out.article_id] = doc.id
        split = out.split and replace(out.split, moved=tuple(doc_of[m] for m in out.split.moved))
        a = Assignment(out.cluster_id, out.is_new_cluster, out.duplicate_of, None, None, (), split, out.merge)
        return a, stored_clusterer
    return through_store


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dup-rate", type=float, default=0.2)
    ap.add_argument("--per-day", type=int, default=1000)
    ap.add_argument("--set", action="append", default=[], help="override a param: name=value")
    ap.add_argument("--store", action="store_true",
                    help="through the writer's path: ingest_article into a SQLite file, the store as the "
                         "clusterer's memory (times the whole ingest, store writes included)")
    ap.add_argument("--read-beside", action="store_true",
                    help="read each text before timing it, as the daemon's extraction processes do "
                         "(features.read_text): times the writer's share of clustering only")
    ap.add_argument("--late", type=int, default=0,
                    help="then this many late reports of events from the stream's first tenth (weeks "
                         "out of memory by then): their cost, and how many join their event's story")
    return ap.parse_args(argv)


@dataclass
class Tally:
    """What the stream's placing cost and decided, article by article."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    copies: int = 0
    flagged: int = 0
    new_clusters: int = 0
    splits: int = 0
    merges: int = 0
    gold: dict[int, int] = field(default_factory=dict)
    labels: Labels = field(default_factory=Labels)

    def record(self, doc: Doc, a: Assignment, is_copy: bool, event: int, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)
        self.copies += is_copy
        self.flagged += is_copy and a.duplicate_of is not None
        self.new_clusters += a.is_new_cluster
        self.splits += a.split is not None
        self.merges += a.merge is not None
        self.gold[doc.id] = event
        self.labels.record(doc.id, a)

    def checkpoint(self, clusterer: Clusterer, window: int = 1000) -> str:
        recent, recent_cpu = self.wall[-window:], self.cpu[-window:]
        return (f"at {len(self.wall):>7} stored: {1000 * sum(recent) / len(recent):6.2f} ms/article wall, "
                f"{1000 * sum(recent_cpu) / len(recent_cpu):6.2f} ms CPU, "
                f"median {1000 * statistics.median(recent_cpu):5.2f} ms CPU "
                f"(last {len(recent)}), live docs={clusterer.live_docs} clusters={clusterer.live_clusters}")

    def summary(self) -> list[str]:
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # A 1,000-article mean moves +-20% with what else the machine runs and with the stream's
        # content; means over tenths of the stream show whether the cost trends with the store.
        tenth = max(1, len(self.cpu) // 10)
        spans = [1000 * statistics.mean(self.cpu[k : k + tenth]) for k in range(0, tenth * 10, tenth)]
        ids = sorted(self.gold)
        cluster_of = self.labels.cluster_of
        p, r, f = bcubed([cluster_of[i] for i in ids], [self.gold[i] for i in ids])
        return [
            "CPU ms/article by tenth of the stream: " + " ".join(f"{x:.2f}" for x in spans),
            f"overall {len(self.wall) / sum(self.wall):.0f} articles/s wall, {len(self.cpu) / sum(self.cpu):.0f} "
            f"articles/s CPU (clustering stage), {self.new_clusters} clusters created, {self.splits} split, "
            f"{self.merges} merged, copies flagged as near-duplicates {self.flagged}/{self.copies}, "
            f"peak RSS {rss_mb:.0f} MB",
            f"quality against the generated events: B-cubed P={p:.4f} R={r:.4f} F1={f:.4f}, "
            f"{len(set(cluster_of.values()))} clusters vs {len(set(self.gold.values()))} events",
        ]


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    texts = load_texts(args.data)
    print(f"{len(texts)} base texts; streaming {args.n} articles")
    params = ClusterParams(**dict(s.split("=", 1) for s in args.set))  # pydantic converts the strings
    place = _placer(params, args.store)
    checkpoints = [c for c in (1_000, 10_000, 100_000) if c <= args.n] or [args.n]
    tally = Tally()
    early: list[Doc] = []
    for doc, is_copy, event in stream(texts, args.n, args.dup_rate, args.per_day):
        if not is_copy and doc.id <= args.n // 10:
            early.append(doc)
        if args.read_beside:
            doc = replace(doc, reading=read_text(doc.text, params.max_words, params.shingle_size, params.num_perm,
                                                 digest=True))
        t0, c0 = time.perf_counter(), time.process_time()
        a, clusterer = place(doc)
        tally.record(doc, a, is_copy, event, time.perf_counter() - t0, time.process_time() - c0)
        if len(tally.wall) in checkpoints:
            print(tally.checkpoint(clusterer))
    print(*tally.summary(), sep="\n")
    if args.late:
        late_reports(place, tally.labels, early, args.late, args.n)
    return 0


def late_reports(place: Callable[[Doc], tuple[Assignment, Clusterer]], labels: Labels, early: list[Doc],
                 n: int, after: int) -> None:
    """Reports of early events that arrive only now (a feed that was down, a backfill): each
    retells an early report (its paragraphs in reverse order, dated six hours later).  Their
    stories left memory long ago; the store is where they can be found."""
    picked = random.Random(7).sample(early, min(n, len(early)))
    cpu, joined = 0.0, 0
    for k, old in enumerate(picked, start=after + 1):
        text = "\n\n".join(reversed(old.text.split("\n\n"))) + "\n\nThis report was updated."
        doc = Doc(k, old.title, text, old.published + timedelta(hours=6), "late")
        c0 = time.process_time()
        a, _ = place(doc)
        cpu += time.process_time() - c0
        joined += a.cluster_id == labels.cluster_of[old.id]
    print(f"late reports (of events in the first tenth, arriving after {after}): "
          f"{1000 * cpu / len(picked):.2f} ms CPU/article, {joined}/{len(picked)} joined their event's story")


if __name__ == "__main__":
    raise SystemExit(main())
