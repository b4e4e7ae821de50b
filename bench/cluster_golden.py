"""Golden assignment sequences of the clusterer: proof that a refactor changes no decision.

Records, for fixed input streams, every ``Assignment`` the clusterer returns when driven
as ``bench.cluster_eval.run_direct`` does (``decide`` then ``add``, default
``ClusterParams``), with every float written as its ``repr`` so that a comparison is
exact, not approximate.  Streams (all built from ``<repo>/../shared/data``):

- ``synthetic``: the first 3,000 docs of ``bench.cluster_scale.stream`` (20% wire copies,
  1,000 docs a day).  Its base texts are the ECB+ docs and trafilatura extracts of the
  shared web pages (``cluster_scale.load_texts``): there is no way to build them without
  the shared data, and a trafilatura upgrade that extracts differently changes the stream;
- ``ecb_seed0``, ``ecb_seed1``, ``ecb_seed2``: ECB+ dev topics 1-25 in the seeded shuffles
  of ``bench.cluster_eval`` (``_ordered(items, "shuffled", seed)``), ids 1..n in stream order.

Each file ``tests/golden/cluster_<name>.jsonl`` (gzipped as ``.jsonl.gz`` above 1 MB) starts
with a header line naming the stream, its length and a sha256 of its input docs, so that a
changed input (other data, another trafilatura) is reported as such rather than as a
clusterer difference; then one compact JSON line per doc.

    .venv/bin/python bench/cluster_golden.py --check     # replay, print the first difference
    .venv/bin/python bench/cluster_golden.py --write     # (re)record: only on purpose, e.g.
                                                         # after a deliberate change of behaviour
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cluster_eval import DEFAULT_DATA, _ordered, load_ecb
from bench.cluster_scale import load_texts, stream
from monitor.cluster import Assignment, Clusterer, ClusterParams, Doc, Reason

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden"
SYNTHETIC_DOCS = 3000
ECB_TOPICS = range(1, 26)
ECB_SEEDS = (0, 1, 2)
GZIP_ABOVE = 1_000_000


@cache
def _ecb_items(data: Path) -> tuple:
    return tuple(load_ecb(data, ECB_TOPICS))


def synthetic_docs(data: Path, n: int = SYNTHETIC_DOCS) -> list[Doc]:
    """The first ``n`` docs of the scale benchmark's stream (the generator's defaults)."""
    return [doc for doc, _, _ in stream(load_texts(data), n, dup_rate=0.2, per_day=1000)]


def ecb_docs(data: Path, seed: int) -> list[Doc]:
    items = _ordered(list(_ecb_items(data)), "shuffled", seed)
    return [Doc(i, it.title, it.text, it.published, it.source) for i, it in enumerate(items, start=1)]


STREAMS: dict[str, Callable[[Path], list[Doc]]] = {
    "synthetic": synthetic_docs,
    **{f"ecb_seed{s}": (lambda data, s=s: ecb_docs(data, s)) for s in ECB_SEEDS},
}


def data_missing(data: Path) -> str | None:
    """Why the golden streams cannot be built from ``data``, or None if they can."""
    for need in (data / "ecb-plus" / "ECB+", data / "web-pages"):
        if not need.is_dir():
            return f"shared data not present at {need}"
    return None


# --------------------------------------------------------------------------- encoding


def _float(x: float | None) -> str | None:
    return None if x is None else repr(x)


def _reasons(reasons: Sequence[Reason]) -> list[list[object]]:
    return [[r.doc_id, repr(r.score), list(r.shared_terms)] for r in reasons]


def encode(doc_id: int, a: Assignment) -> str:
    """One doc's assignment as a compact JSON line; floats as their exact ``repr``."""
    rec: dict[str, object] = {
        "doc": doc_id,
        "cluster_id": a.cluster_id,
        "is_new_cluster": a.is_new_cluster,
        "duplicate_of": a.duplicate_of,
        "duplicate_similarity": _float(a.duplicate_similarity),
        "score": _float(a.score),
        "shared_terms": list(a.shared_terms),
    }
    if a.split is not None:
        s = a.split
        rec["split"] = {"cluster_id": s.cluster_id, "new_cluster_id": s.new_cluster_id, "moved": list(s.moved),
                        "ratio": repr(s.ratio), "reasons": _reasons(s.reasons)}
    if a.merge is not None:
        m = a.merge
        rec["merge"] = {"absorbed": m.absorbed, "moved": list(m.moved), "cross": repr(m.cross),
                        "reasons": _reasons(m.reasons)}
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False)


def input_digest(docs: Iterable[Doc]) -> str:
    h = hashlib.sha256()
    for d in docs:
        published = d.published.isoformat() if d.published is not None else ""
        h.update(json.dumps([d.id, d.title, d.text, published, d.source], ensure_ascii=False).encode())
    return h.hexdigest()


def header(name: str, docs: Sequence[Doc]) -> str:
    return json.dumps({"stream": name, "docs": len(docs), "input_sha256": input_digest(docs)},
                      separators=(",", ":"))


def replay(docs: Iterable[Doc], params: ClusterParams | None = None) -> Iterator[str]:
    """Encoded assignments of ``docs`` streamed through a fresh clusterer, as they come."""
    clusterer = Clusterer(params or ClusterParams())
    for doc in docs:
        a = clusterer.decide(doc)
        clusterer.add(doc, a)
        yield encode(doc.id, a)


# --------------------------------------------------------------------------- files


def path_of(name: str) -> Path:
    """The golden file of a stream, gzipped or not (the plain name if neither exists yet)."""
    plain = GOLDEN / f"cluster_{name}.jsonl"
    packed = plain.with_suffix(".jsonl.gz")
    return packed if packed.exists() and not plain.exists() else plain


def read_lines(name: str) -> list[str]:
    path = path_of(name)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8").splitlines()


def write(name: str, lines: Sequence[str]) -> Path:
    """Write a golden file; gzipped (reproducibly: no name, no time stamp) when large."""
    GOLDEN.mkdir(parents=True, exist_ok=True)
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    plain = GOLDEN / f"cluster_{name}.jsonl"
    packed = plain.with_suffix(".jsonl.gz")
    for stale in (plain, packed):
        stale.unlink(missing_ok=True)
    if len(raw) > GZIP_ABOVE:
        packed.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
        return packed
    plain.write_bytes(raw)
    return plain


def first_difference(name: str, data: Path, limit: int | None = None) -> str | None:
    """Replay stream ``name`` (its first ``limit`` docs) and compare with its golden file.

    None when identical; else a message naming the first differing doc with both lines,
    or saying the input itself changed (then the clusterer was not the cause)."""
    docs = STREAMS[name](data)
    golden = read_lines(name)
    if golden[0] != header(name, docs):
        return (f"{name}: input differs from the recorded stream (other data or trafilatura version?): "
                f"recorded {golden[0]}, now {header(name, docs)}")
    expected = golden[1:][:limit]
    for i, (want, got) in enumerate(itertools.zip_longest(expected, replay(docs[:len(expected)])), start=1):
        if want != got:
            where = f"{name}: first difference at doc #{i} ({path_of(name).name} line {i + 1})"
            return f"{where}\n  golden: {want}\n  now:    {got}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="record the golden files with the current code")
    mode.add_argument("--check", action="store_true", help="replay and compare; exit 1 on a difference")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--stream", action="append", choices=sorted(STREAMS), help="only these streams")
    ap.add_argument("--limit", type=int, default=None, help="--check: only the first N docs of each stream")
    args = ap.parse_args(argv)

    missing = data_missing(args.data)
    if missing:
        print(f"cannot build the golden streams: {missing}", file=sys.stderr)
        return 2
    failed = 0
    for name in args.stream or list(STREAMS):
        if args.write:
            docs = STREAMS[name](args.data)
            path = write(name, [header(name, docs), *replay(docs)])
            print(f"{name}: {len(docs)} docs -> {path.relative_to(GOLDEN.parents[1])} ({path.stat().st_size} bytes)")
            continue
        diff = first_difference(name, args.data, args.limit)
        print(diff if diff else f"{name}: identical")
        failed += diff is not None
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
