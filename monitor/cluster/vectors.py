"""TF-IDF vectors of a doc and how they compare: query vectors against centroids (a join),
hashed unit rows against each other (a split or merge check)."""

from __future__ import annotations

import heapq
import math
import zlib
from functools import lru_cache
from itertools import repeat
from operator import itemgetter, mul, truediv

import numpy as np
from threadpoolctl import ThreadpoolController

from monitor.cluster.features import CACHE_TERMS, SIGNALS, Features
from monitor.cluster.vocabulary import DF_OF, IDF

# A doc's unit TF-IDF vector of one signal as (hashed column ids, weights): what the split
# check multiplies.  Hashing (crc32, stable across runs, unlike ``hash``) avoids keeping a
# vocabulary that would grow for ever; a collision in 2^24 columns only blurs one weight.
Row = tuple[np.ndarray, np.ndarray]
_COLUMNS = 1 << 24
# BLAS would start threads for the split check's small matrix products: measured 227
# articles/CPU-s with them, 279 without, on the scale benchmark.  One core does it.
_BLAS = ThreadpoolController()


@lru_cache(maxsize=CACHE_TERMS)
def column(term: str) -> int:
    return zlib.crc32(term.encode("utf-8", "surrogatepass")) & (_COLUMNS - 1)


_second = itemgetter(1)


def cosine(qv: dict[str, float], cen: dict[str, float], cen_norm_sq: float) -> float:
    """Cosine of a query vector (IDF folded in, see ``query``) and a centroid.

    Only shared terms are visited (a C-level key intersection: measured 2x faster than a
    lookup per query term).  Set order varies between runs, so ``fsum``, whose result
    does not depend on the order, keeps decisions deterministic.
    """
    common = qv.keys() & cen.keys()
    dot = math.fsum(map(mul, map(qv.__getitem__, common), map(cen.__getitem__, common)))
    return dot / (math.sqrt(cen_norm_sq) or 1.0)


def tfidf(vec: dict[str, float], idf: dict[str, float]) -> tuple[dict[str, float], float]:
    """TF-IDF weights of a doc's signal vector and their norm (the arithmetic of a loop over the terms, in
    the same order, so the same floats, done in C with ``map``)."""
    values = list(map(mul, vec.values(), map(idf.__getitem__, vec)))
    return dict(zip(vec, values, strict=True)), math.sqrt(sum(map(mul, values, values))) or 1.0


def query(vectors: dict[str, dict[str, float]], idf: IDF, query_terms: int) -> dict[str, dict[str, float]]:
    """Per-signal query weights ``tf*idf^2/|tf*idf|``: a cosine with a raw-TF centroid
    is then one dict lookup per doc term (IDF applied once here, not per candidate)."""
    out = {}
    for sig, vec in vectors.items():
        if not vec:
            continue
        tidf = idf[DF_OF[sig]]
        wv, dn = tfidf(vec, tidf)
        qv = dict(zip(wv, map(truediv, map(mul, wv.values(), map(tidf.__getitem__, wv)), repeat(dn)), strict=True))
        if len(qv) > query_terms:
            # The long tail of rare-in-doc terms adds little to a cosine but costs one
            # lookup per candidate each; keep the heaviest (the norm stays exact). Sorted in C, which
            # ``heapq.nlargest`` documents as its equivalent: with ``tfidf`` and the ``map`` above,
            # 0.13 -> 0.10 ms a doc on real pages.
            qv = dict(sorted(qv.items(), key=_second, reverse=True)[:query_terms])
        out[sig] = qv
    return out


def salient(f: Features, idf: IDF, k: int) -> list[tuple[str, float]]:
    """Index keys of a doc: its top ``k`` TF-IDF body terms and entities (prefixed '@')."""
    bidf, eidf = idf["body"], idf["ents"]
    body = heapq.nlargest(k, ((w * bidf[t], t) for t, w in f.body.items()))
    ents = heapq.nlargest(k, ((w * eidf[t], t) for t, w in f.ents.items()))
    return [(t, s) for s, t in body] + [("@" + t, s) for s, t in ents]


def split_rows(f: Features, idf: IDF) -> dict[str, Row]:
    """Unit TF-IDF vectors per signal with IDF as of the doc's arrival, kept for split checks.

    Frozen IDF is a simplification: a split compares docs of one story that arrived
    within days of each other, when IDF has barely moved.
    """
    out: dict[str, Row] = {}
    for sig in SIGNALS:
        vec = getattr(f, sig)
        if not vec:
            continue
        wv, norm = tfidf(vec, idf[DF_OF[sig]])
        out[sig] = (
            np.fromiter((column(t) for t in wv), np.int32, len(wv)),
            np.fromiter((x / norm for x in wv.values()), np.float32, len(wv)),
        )
    return out


def similarity(rows: list[dict[str, Row]], weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray | None]:
    """Doc x doc weighted mean of per-signal cosines; a signal one doc lacks is left out.
    Also the entity cosines alone (None if no doc has entities)."""
    n = len(rows)
    total = np.zeros((n, n))
    wsum = np.zeros((n, n))
    ents = None
    for sig, weight in weights.items():
        if weight <= 0:
            continue
        present = [r.get(sig) for r in rows]
        lengths = np.array([0 if x is None else len(x[0]) for x in present])
        if not lengths.any():
            continue
        rows_of = np.repeat(np.arange(n), lengths)
        cols = np.concatenate([x[0] for x in present if x is not None])
        vals = np.concatenate([x[1] for x in present if x is not None])
        # Renumber the hashed columns densely; at <= split_max_docs rows a dense
        # product is faster than scipy.sparse, whose per-call overhead dominated.
        used, cols = np.unique(cols, return_inverse=True)
        mat = np.zeros((n, len(used)), np.float32)
        mat[rows_of, cols] = vals
        has = (lengths > 0).astype(float)
        with _BLAS.limit(limits=1, user_api="blas"):
            prod = mat @ mat.T
        if sig == "ents":
            ents = prod
        total += weight * prod
        wsum += weight * np.outer(has, has)
    return np.divide(total, wsum, out=np.zeros_like(total), where=wsum > 0), ents
