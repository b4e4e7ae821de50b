"""Document frequencies of the docs in the window, and the IDF they give.

Evicted docs are forgotten here too, so IDF describes the recent stream.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import compress, repeat
from operator import mul, not_, sub

from monitor.cluster.features import Features

# Which document-frequency table each signal uses (titles share the body vocabulary).
DF_OF = {"body": "body", "title": "body", "ents": "ents", "nums": "nums"}

# df table -> term -> IDF weight
IDF = dict[str, dict[str, float]]


class Vocabulary:
    """Per-table document frequencies and the number of docs counted."""

    def __init__(self) -> None:
        # Document frequencies per vocabulary; "lower" and "cap" count how docs in the window
        # write each word (``features.case_usage``), to tell names from capitalised common words.
        self.df: dict[str, Counter[str]] = {t: Counter() for t in ("body", "ents", "nums", "lower", "cap")}
        self.n_docs = 0

    def count(self, terms: dict[str, tuple[str, ...]]) -> None:
        """Count a doc's distinct terms (df table -> terms)."""
        for table, table_terms in terms.items():
            self.df[table].update(table_terms)
        self.n_docs += 1

    def forget(self, terms: dict[str, tuple[str, ...]]) -> None:
        """Uncount an evicted doc's terms; a term no doc uses any more is dropped.

        Read and written a table at a time through ``dict`` methods, which run in C: a loop
        doing both per term took 0.75 ms a doc, a sixth of a doc's cost once the window is
        full, which made the per-article cost grow with the store (``bench/cluster_scale.py``)."""
        for table, table_terms in terms.items():
            df = self.df[table]
            left = list(map(sub, map(df.__getitem__, table_terms), repeat(1)))
            dict.update(df, zip(table_terms, left, strict=True))
            if 0 in left:
                for t in list(compress(table_terms, map(not_, left))):
                    del df[t]
        self.n_docs -= 1

    def idf_for(self, f: Features) -> IDF:
        """Smoothed IDF of the doc's own terms, counting the doc itself (as sklearn's
        ``smooth_idf``).  Counting the doc keeps cold start sane: with only two docs,
        shared terms get weight 1 and unshared ones ~1.4, instead of undefined values.

        These are exactly the values ``idf_now`` gives once the doc is added, so ``add``
        right after ``decide`` reuses them (see ``clusterer.Prepared``)."""
        n1 = self.n_docs + 2
        out: IDF = {}
        for table in ("body", "ents", "nums"):
            df = self.df[table]
            vec = f.body if table == "body" else f.ents if table == "ents" else f.nums
            terms = list(set(vec) | (set(f.title) if table == "body" else set()))
            counts = list(map(df.get, terms, repeat(0)))
            out[table] = dict(zip(terms, map(_idf_by_count(n1, counts).__getitem__, counts), strict=True))
        return out

    def idf_now(self, table: str, term: str) -> float:
        n = self.n_docs
        return math.log((1 + n) / (1 + self.df[table].get(term, 0))) + 1.0

    def exact_norm_sq(self, sig: str, cen: dict[str, float]) -> float:
        """Squared norm of a centroid under the current IDF (``idf_now`` inlined: this
        runs over whole centroids and was 8% of the scale benchmark's time)."""
        counts = list(map(self.df[DF_OF[sig]].get, cen, repeat(0)))
        idf = map(_idf_by_count(self.n_docs + 1, counts, 1).__getitem__, counts)
        return sum(map(pow, map(mul, cen.values(), idf), repeat(2)))


def _idf_by_count(n1: int, counts: list[int], smooth: int = 2) -> dict[int, float]:
    """``log(n1 / (smooth + df)) + 1`` for each distinct document frequency in ``counts``.

    A doc's or a centroid's hundreds of terms have a few dozen distinct frequencies (most
    terms are rare), so one ``log`` per frequency instead of per term, and the lookups and
    arithmetic in C (``map``), in the order a loop would do them: the same floats."""
    return {d: math.log(n1 / (smooth + d)) + 1.0 for d in set(counts)}
