"""How well a doc matches a cluster: candidate clusters, the combined score, and the terms
that explain a match to a reader."""

from __future__ import annotations

import math
from collections import Counter

from monitor.cluster.state import DAY, ClusterState, Window
from monitor.cluster.vectors import cosine
from monitor.cluster_params import ClusterParams

Query = dict[str, dict[str, float]]  # signal -> term -> query weight (``vectors.query``)


def signal_weights(params: ClusterParams) -> dict[str, float]:
    """Weight of each signal in a score and in a split check's similarity."""
    return {"body": params.w_body, "title": params.w_title, "ents": params.w_entities, "nums": params.w_numbers}


class Scorer:
    """Scores docs against clusters under one set of parameters."""

    def __init__(self, params: ClusterParams) -> None:
        self.params = params
        self.weights = signal_weights(params)

    def candidates(self, window: Window, keys: list[tuple[str, float]], ts: float) -> list[int]:
        """Clusters sharing salient terms (``keys``, weighted) with the doc, within the time
        window, best first."""
        span = self.params.window_days * DAY
        votes: dict[int, float] = {}
        for key, weight in keys:
            posting = window.postings.get(key)
            if not posting:
                continue
            for cid in posting:
                votes[cid] = votes.get(cid, 0.0) + weight
        ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        out = []
        for cid, _ in ranked:
            c = window.clusters.get(cid)
            if c is None or ts < c.first_ts - span or ts > c.last_ts + span:
                continue
            out.append(cid)
            if len(out) >= self.params.max_candidates:
                break
        return out

    def score(self, q: Query, years: frozenset[str], ts: float, c: ClusterState) -> float:
        """Combined similarity of a doc to a cluster.

        Why each signal is there:
        - body TF-IDF: the bulk of the evidence about what happened;
        - title TF-IDF: the headline states the event compactly, and is the only text for
          headline-only feeds;
        - entities: two events of the same kind (two earthquakes, two rehab stays) share
          vocabulary but not who/where; entities keep them apart;
        - numbers/dates: magnitudes, death tolls, years and dates differ between
          same-kind events even when the names are generic;
        - time distance: the same words a month apart are usually a new event.
        A signal that one side lacks is left out of the weighted mean rather than counted
        as disagreement (a headline-only item has no body entities to compare).
        """
        p = self.params
        weights = self.weights
        total = 0.0
        wsum = 0.0
        for sig, qv in q.items():
            cen = c.centroid.get(sig)
            weight = weights[sig]
            if not cen or weight <= 0:
                continue
            cos = cosine(qv, cen, c.norm_sq[sig])
            total += weight * cos
            wsum += weight
            if sig == "ents" and self.names_conflict(qv, cos):
                total -= p.entity_conflict_penalty * weight
        score = total / wsum if wsum else 0.0
        # Years are the cheapest tell between a recurring kind of event and its repeat
        # (this year's vs. last year's flood): both sides date themselves, none in common.
        if years and c.years and not any(y in c.years for y in years):
            score -= p.year_conflict_penalty
        gap = max(0.0, c.first_ts - ts, ts - c.last_ts) / 3600.0
        score -= p.time_penalty * min(1.0, gap / p.time_scale_hours)
        return score

    @staticmethod
    def cosine_of(q: Query, c: ClusterState, sig: str) -> float:
        """Cosine of one signal, 1.0 when either side lacks it."""
        cen = c.centroid.get(sig)
        return cosine(q[sig], cen, c.norm_sq[sig]) if cen and sig in q else 1.0

    def names_conflict(self, ents_query: dict[str, float], cos: float) -> bool:
        """Same words, other names: a report naming several people and places, none of
        them the cluster's, is a same-kind event (another quake, another rehab stay) or a
        templated text reused, however alike the rest of it reads."""
        p = self.params
        return len(ents_query) >= p.entity_conflict_min_terms and cos < p.entity_conflict_below

    def shared_terms(self, q: Query, c: ClusterState) -> tuple[str, ...]:
        """Body terms and entities that contributed most to the match, for the reader."""
        contrib: Counter[str] = Counter()
        for sig, weight in (("ents", self.params.w_entities), ("body", self.params.w_body)):
            cen = c.centroid.get(sig)
            if not cen or sig not in q:
                continue
            norm = math.sqrt(c.norm_sq[sig]) or 1.0
            for t, x in q[sig].items():
                if t in cen:
                    contrib[t] += weight * x * cen[t] / norm
        ranked = sorted(contrib.items(), key=lambda kv: (-kv[1], kv[0]))
        return tuple(t for t, _ in ranked[: self.params.shared_terms])
