"""Document frequencies of the docs in the window, and the IDF they give.

Evicted docs are forgotten here too, so IDF describes the recent stream.
"""

from __future__ import annotations

import math
from collections import Counter

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
            left = [n - 1 for n in map(df.__getitem__, table_terms)]
            dict.update(df, zip(table_terms, left, strict=True))
            for t in [t for t, n in zip(table_terms, left, strict=True) if n <= 0]:
                del df[t]
        self.n_docs -= 1

    def idf_for(self, f: Features) -> IDF:
        """Smoothed IDF of the doc's own terms, counting the doc itself (as sklearn's
        ``smooth_idf``).  Counting the doc keeps cold start sane: with only two docs,
        shared terms get weight 1 and unshared ones ~1.4, instead of undefined values.

        These are exactly the values ``idf_now`` gives once the doc is added, so ``add``
        right after ``decide`` reuses them (see ``clusterer.Prepared``)."""
        n = self.n_docs + 1
        out: IDF = {}
        for table in ("body", "ents", "nums"):
            df = self.df[table]
            vec = f.body if table == "body" else f.ents if table == "ents" else f.nums
            terms = set(vec) | (set(f.title) if table == "body" else set())
            out[table] = {t: math.log((1 + n) / (2 + df.get(t, 0))) + 1.0 for t in terms}
        return out

    def idf_now(self, table: str, term: str) -> float:
        n = self.n_docs
        return math.log((1 + n) / (1 + self.df[table].get(term, 0))) + 1.0

    def exact_norm_sq(self, sig: str, cen: dict[str, float]) -> float:
        """Squared norm of a centroid under the current IDF (``idf_now`` inlined: this
        runs over whole centroids and was 8% of the scale benchmark's time)."""
        get, log, n1 = self.df[DF_OF[sig]].get, math.log, 1 + self.n_docs
        return sum((w * (log(n1 / (1 + get(t, 0))) + 1.0)) ** 2 for t, w in cen.items())
