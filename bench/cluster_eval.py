"""Evaluate the online event clusterer against gold document clusters.

Datasets (under ``<repo>/../shared/data`` unless ``--data`` is given):

- ``ecb`` - ECB+ topics 1-25 (dev split): 535 documents, 46 gold clusters, one per
  (topic, ecb|ecbplus component).  Each topic holds two real events of the same kind,
  so this measures whether same-kind events stay apart.  The XML tokens are joined
  per sentence; in ``*ecbplus.xml`` sentence 0 is the source URL and is dropped.  The
  first remaining sentence doubles as the title (the text keeps it too, so one-sentence
  docs are not empty).  No timestamps exist, so every doc gets the same day.
- ``uci`` - UCI News Aggregator sample: 6,366 story-labelled headlines streamed in
  timestamp order (rows with other than 8 fields are dropped).  Labels come from
  Google News and are noisy (events split over several story ids), so pairwise
  precision is the more trustworthy figure there.

Docs are streamed one at a time, the clusterer is never told the number of clusters.
By default they go through the daemon's own path (``Store`` + ``ingest_article``
into a temporary SQLite file) when those modules are importable; ``--direct``
drives ``Clusterer`` alone (faster, no exact-dedup stage).

Input order: ECB+ has no dates, so the order is a deterministic shuffle
(``--seed``, default 0; ``--order sorted`` streams topic by topic, which is easier
because each event's reports arrive together).  A single-pass clusterer depends on
order: an early vague report can seed a cluster that later reports of a sibling
event are pulled into, and early IDF values are rough.  ``--seeds N`` runs N
shuffles and prints mean/min/max so the spread is visible.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.cluster import Assignment, Clusterer, ClusterParams, Doc
from monitor.cluster.joining import FITTED, JoinModel
from monitor.models import Article

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ECB_DAY = datetime(2015, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Item:
    """One evaluation document with its gold label."""

    key: str
    title: str
    text: str
    published: datetime
    source: str
    gold: str


# --------------------------------------------------------------------------- loading

_DETOK = [
    (re.compile(r" ([.,;:!?%)\]}'’”])"), r"\1"),
    (re.compile(r"([(\[{$“‘]) "), r"\1"),
    (re.compile(r" (n't|'s|'re|'ve|'ll|'d|'m)\b"), r"\1"),
    (re.compile(r"`` ?| ?''"), '"'),
]


def _detokenize(tokens: Iterable[str]) -> str:
    s = " ".join(tokens)
    for pat, rep in _DETOK:
        s = pat.sub(rep, s)
    return s


def load_ecb(data: Path, topics: Sequence[int] | None = None) -> list[Item]:
    """ECB+ documents sorted by (topic, file); gold = topic + component."""
    root = data / "ecb-plus" / "ECB+"
    if not root.is_dir():
        raise FileNotFoundError(f"ECB+ data not found at {root}")
    items = []
    for tdir in sorted(root.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0):
        if not tdir.name.isdigit() or (topics and int(tdir.name) not in topics):
            continue
        for path in sorted(tdir.glob("*.xml")):
            plus = path.name.endswith("ecbplus.xml")
            sentences: dict[int, list[str]] = defaultdict(list)
            for tok in ET.parse(path).getroot().iter("token"):
                sentences[int(tok.get("sentence", "0"))].append(tok.text or "")
            order = sorted(sentences)
            if plus and order and order[0] == 0:
                order = order[1:]
            lines = [_detokenize(sentences[i]) for i in order]
            if not lines:
                continue
            items.append(
                Item(
                    key=path.stem,
                    title=lines[0],
                    text="\n".join(lines),
                    published=ECB_DAY,
                    source=path.stem,
                    gold=f"{tdir.name}/{'ecbplus' if plus else 'ecb'}",
                )
            )
    return items


def load_uci(data: Path) -> list[Item]:
    """UCI headlines in timestamp order (stable on ID); gold = STORY."""
    path = data / "uci-news-aggregator-sample" / "uci-news-aggregator.csv"
    if not path.is_file():
        raise FileNotFoundError(f"UCI data not found at {path}")
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            if len(row) != 8 or not row[7].isdigit():
                continue
            rows.append(row)
    rows.sort(key=lambda r: (int(r[7]), int(r[0])))
    return [
        Item(
            key=r[0],
            title=r[1],
            # As the daemon's extract stage does for title-only feed entries (text = title);
            # an empty text would also make every item an exact duplicate by content hash.
            text=r[1],
            published=datetime.fromtimestamp(int(r[7]) / 1000, tz=UTC),
            source=r[6],
            gold=r[5],
        )
        for r in rows
    ]


# --------------------------------------------------------------------------- metrics


def _tallies(pred: Sequence[int], gold: Sequence[str]) -> tuple[int, Counter, Counter, Counter]:
    """Items, (cluster, event) co-occurrences, cluster sizes and event sizes: what B-cubed is computed from."""
    return len(pred), Counter(zip(pred, gold, strict=True)), Counter(pred), Counter(gold)


def bcubed(pred: Sequence[int], gold: Sequence[str]) -> tuple[float, float, float]:
    """B-cubed precision, recall, F1 (per-item averages), computed from co-occurrence counts."""
    n, joint, psize, gsize = _tallies(pred, gold)
    p = sum(c * c / psize[k] for (k, _), c in joint.items()) / n
    r = sum(c * c / gsize[g] for (_, g), c in joint.items()) / n
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def event_losses(pred: Sequence[int], gold: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Each gold event's share of the B-cubed precision and recall lost: summed over the events, the two
    parts are ``1 - P`` and ``1 - R``. A report loses precision for the others' reports in its cluster
    (counted to its own event) and recall for its event's reports in other clusters."""
    n, joint, psize, gsize = _tallies(pred, gold)
    out: dict[str, tuple[float, float]] = {}
    for (k, g), c in joint.items():
        p, r = out.get(g, (0.0, 0.0))
        out[g] = (p + c * (1 - c / psize[k]) / n, r + c * (1 - c / gsize[g]) / n)
    return out


def pairwise(pred: Sequence[int], gold: Sequence[str]) -> tuple[float, float]:
    """Pairwise precision and recall over all same-cluster pairs."""
    _, joint, psize, gsize = _tallies(pred, gold)
    same_both, same_pred, same_gold = (sum(c * (c - 1) / 2 for c in tally.values()) for tally in (joint, psize, gsize))
    precision = same_both / same_pred if same_pred else 1.0
    recall = same_both / same_gold if same_gold else 1.0
    return precision, recall


# --------------------------------------------------------------------------- running


def _pipeline_available() -> bool:
    try:
        from monitor.ingest import ingest_article  # noqa: F401
        from monitor.store import Store  # noqa: F401
    except Exception:  # any import problem means: use the direct path
        return False
    return True


class Labels:
    """Each doc's current cluster as the clusterer's decisions say, revisions included.

    Kept apart from the clusterer (as the store is in the daemon): a split moves the docs
    it names, a merge moves every doc of the absorbed cluster, including docs the
    clusterer has already evicted from its window."""

    def __init__(self) -> None:
        self.cluster_of: dict[int, int] = {}
        self._members: dict[int, set[int]] = defaultdict(set)

    def record(self, doc_id: int, a: Assignment) -> None:
        self._move([doc_id], a.cluster_id)
        if a.split is not None:
            self._move(a.split.moved, a.split.new_cluster_id)
        if a.merge is not None:
            self._move(list(self._members.pop(a.merge.absorbed, ())), a.cluster_id)

    def _move(self, doc_ids: Iterable[int], cluster_id: int) -> None:
        for d in doc_ids:
            old = self.cluster_of.get(d)
            if old is not None:
                self._members[old].discard(d)
            self.cluster_of[d] = cluster_id
            self._members[cluster_id].add(d)


def run_direct(items: Sequence[Item], params: ClusterParams, join_model: JoinModel = FITTED) -> list[int]:
    """Stream items through ``Clusterer`` only (ids are 1..n in stream order)."""
    clusterer = Clusterer(params, join_model=join_model)
    labels = Labels()
    for i, it in enumerate(items, start=1):
        doc = Doc(id=i, title=it.title, text=it.text, published=it.published, source=it.source)
        a = clusterer.decide(doc)
        clusterer.add(doc, a)
        labels.record(i, a)
    return [labels.cluster_of[i] for i in range(1, len(items) + 1)]


def _article(it: Item, published: datetime) -> Article:
    """An evaluation item as the pipeline stores it: its own URL and source, published (and fetched) then."""
    return Article(url=f"https://{it.source}.example/{it.key}", title=it.title, text=it.text, source=it.source,
                   guid=f"eval:{it.key}", published=published, fetched_at=published, extraction="text-file")


def run_pipeline(items: Sequence[Item], params: ClusterParams) -> list[int]:
    """Stream items through the daemon's ``ingest_article`` into a temporary SQLite store.

    Each item's cluster is read back from the database at the end, as a reader of it
    would see it (splits move earlier articles); an exact duplicate (``AlreadyStored``)
    counts in the cluster of the stored copy.
    """
    from monitor.ingest import ingest_article
    from monitor.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "eval.sqlite")
        clusterer = Clusterer(params)
        try:
            article_ids = []
            for it in items:
                article_ids.append(ingest_article(store, clusterer, _article(it, it.published)).article_id)
            cluster_of = dict(store.db.execute("SELECT id, cluster_id FROM articles").fetchall())
        finally:
            store.close()
    return [cluster_of[a] for a in article_ids]


def run_settled(items: Sequence[Item], params: ClusterParams) -> list[int]:
    """The items as the daemon places a first poll: each stored without a cluster, then one ``settle``,
    which places them in publication order and then reads the batch again (``Clusterer.reconsider``
    and ``rehome``). The n-th item is published n seconds after its own date, so items of one date
    (all of ECB+) are placed in stream order. Read back as in :func:`run_pipeline`."""
    from monitor.ingest import Pending, build_clusterer, store_article
    from monitor.pipeline import settle
    from monitor.store import Store

    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "eval.sqlite") as store:
        clusterer, held, article_ids = build_clusterer(store, params), {}, []
        for n, it in enumerate(items):
            stored = store_article(store, _article(it, it.published + timedelta(seconds=n)))
            if isinstance(stored, Pending):
                held[stored.article_id] = stored
            article_ids.append(stored.article_id)
        for _ in settle(store, clusterer, held, keywords=()):
            pass
        cluster_of = dict(store.db.execute("SELECT id, cluster_id FROM articles").fetchall())
    return [cluster_of[a] for a in article_ids]


def evaluate(
    name: str, items: Sequence[Item], params: ClusterParams, direct: bool, verbose: bool = True,
    batch: bool = False, losses: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """Cluster ``items`` and score them; with ``losses``, add each event's lost precision and recall
    (``event_losses``) to it."""
    use_pipeline = not direct and _pipeline_available()
    t0, c0 = time.perf_counter(), time.process_time()
    if use_pipeline:
        pred = run_settled(items, params) if batch else run_pipeline(items, params)
    else:
        pred = run_direct(items, params)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    gold = [it.gold for it in items]
    p, r, f = bcubed(pred, gold)
    pp, pr = pairwise(pred, gold)
    if losses is not None:
        for event, lost in event_losses(pred, gold).items():
            total = losses.setdefault(event, [0.0, 0.0])
            total[0] += lost[0]
            total[1] += lost[1]
    res = {
        "docs": len(items),
        "precision": p,
        "recall": r,
        "f1": f,
        "pair_precision": pp,
        "pair_recall": pr,
        "clusters": len(set(pred)),
        "gold_clusters": len(set(gold)),
        "docs_per_s": len(items) / elapsed if elapsed else float("inf"),
        # CPU time is what other processes on a shared machine do not distort.
        "docs_per_cpu_s": len(items) / cpu if cpu else float("inf"),
    }
    if verbose:
        path = ("settled batch+sqlite" if batch else "pipeline+sqlite") if use_pipeline else "Clusterer direct"
        print(
            f"{name:<5} [{path}] docs={res['docs']} B3 P={p:.4f} R={r:.4f} F1={f:.4f} "
            f"pairP={pp:.4f} pairR={pr:.4f} clusters={res['clusters']} "
            f"(gold {res['gold_clusters']}) {res['docs_per_s']:.0f} docs/s wall, "
            f"{res['docs_per_cpu_s']:.0f} docs/CPU-s"
        )
    return res


def reference_kmeans(items: Sequence[Item], seeds: int = 5) -> list[float]:
    """B-cubed F1 of the issue's batch reference on these items: TF-IDF K-means told the
    true number of clusters, all documents at once (one figure per K-means seed).

    The issue quotes about 0.97 for it on ECB+ *test* topics; printing it on the topics
    at hand shows how hard they are for that method, next to the online clusterer."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    gold = [it.gold for it in items]
    x = TfidfVectorizer(stop_words="english").fit_transform([f"{it.title}\n{it.text}" for it in items])
    k = len(set(gold))
    return [bcubed(list(KMeans(k, n_init=10, random_state=s).fit_predict(x)), gold)[2] for s in range(seeds)]


def worst_events(losses: Mapping[str, Sequence[float]], k: int, orders: int) -> list[str]:
    """The ``k`` events with the most lost precision and recall together, as lines (means over ``orders``)."""
    ranked = sorted(losses.items(), key=lambda kv: (-sum(kv[1]), kv[0]))[:k]
    return [f"loss {event:<12} P {p / orders:.4f} R {r / orders:.4f}" for event, (p, r) in ranked]


def _ordered(items: list[Item], order: str, seed: int) -> list[Item]:
    if order == "sorted":
        return list(items)
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def _by_fifths(items: list[Item], args: argparse.Namespace, params: ClusterParams) -> None:
    """Mean F1 over ``args.seeds`` orders of each fifth of the topics on its own, and their mean.

    Why: the held-out topics are other events, and a change tuned on all 25 can win on one pair of
    sibling events while cutting one-event stories elsewhere; on a fifth, a topic's siblings weigh more
    and the vocabulary is other, so a gain that holds on each fifth is likelier to hold out."""
    by_fifth: dict[int, list[Item]] = defaultdict(list)
    for it in items:  # topics 1-5, 6-10, ... (the dev topics are not all there)
        by_fifth[(int(it.gold.split("/")[0]) - 1) // 5].append(it)
    means = []
    for fifth, part in sorted(by_fifth.items()):
        f1s = [evaluate("ecb", _ordered(part, args.order, args.seed + j)[: args.limit], params, args.direct,
                        verbose=False, batch=args.batch)["f1"] for j in range(args.seeds)]
        means.append(statistics.mean(f1s))
        print(f"ecb   topics {5 * fifth + 1}-{5 * fifth + 5} alone, F1 over {len(f1s)} orders: "
              f"mean={means[-1]:.4f} min={min(f1s):.4f} max={max(f1s):.4f}")
    print(f"ecb   fifths: mean of their means {statistics.mean(means):.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--dataset", choices=["ecb", "uci", "all"], default="all")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N docs")
    ap.add_argument("--topics", type=str, default=None, help="ECB+ topics, e.g. 1,2,3")
    ap.add_argument("--order", choices=["shuffle", "sorted"], default="shuffle")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1, help="ECB+: run this many shuffles")
    ap.add_argument("--direct", action="store_true", help="drive Clusterer without the store")
    ap.add_argument("--batch", action="store_true",
                    help="through the store as one batch, as the daemon places a first poll (then read again)")
    ap.add_argument("--set", action="append", default=[], help="override a param: name=value")
    ap.add_argument("--fifths", action="store_true",
                    help="ECB+: also run each fifth of the topics (1-5, 6-10, ...) on its own, as a check that a "
                         "change tuned on all 25 holds on fewer, other topics")
    ap.add_argument("--losses", type=int, default=0, metavar="K",
                    help="ECB+: then the K events that lose the most B-cubed F1, with their lost precision and "
                         "recall (mean over the orders): where the remaining errors are")
    ap.add_argument("--reference", action="store_true",
                    help="ECB+: also print the batch reference, TF-IDF K-means told the true K")
    args = ap.parse_args(argv)

    overrides = dict(s.split("=", 1) for s in args.set)  # pydantic converts the strings
    params = ClusterParams(**overrides)
    if args.dataset in ("ecb", "all"):
        topics = [int(t) for t in args.topics.split(",")] if args.topics else None
        base = load_ecb(args.data, topics)
        results, losses = [], {}
        for k in range(args.seeds):
            items = _ordered(base, args.order, args.seed + k)[: args.limit]
            results.append(evaluate("ecb", items, params, args.direct, batch=args.batch,
                                    losses=losses if args.losses else None))
        if args.seeds > 1:
            f1s = [r["f1"] for r in results]
            print(
                f"ecb   F1 over {len(f1s)} orders: mean={statistics.mean(f1s):.4f} "
                f"min={min(f1s):.4f} max={max(f1s):.4f}"
            )
        for line in worst_events(losses, args.losses, args.seeds):
            print(f"ecb   {line}")
        if args.fifths:
            _by_fifths(base, args, params)
        if args.reference:
            ref = base[: args.limit]
            f1s = reference_kmeans(ref)
            print(
                f"ecb   reference (batch TF-IDF K-means, told K={len({it.gold for it in ref})}) "
                f"B3 F1 over {len(f1s)} seeds: mean={statistics.mean(f1s):.4f} "
                f"min={min(f1s):.4f} max={max(f1s):.4f}"
            )
    if args.dataset in ("uci", "all"):
        evaluate("uci", load_uci(args.data)[: args.limit], params, args.direct, batch=args.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
