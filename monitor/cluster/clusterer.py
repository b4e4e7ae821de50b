"""The clusterer: reads a doc, decides where it goes, and records the decision once committed.

The work is done by the parts it wires together (``features``, ``vocabulary``, ``vectors``,
``state``, ``scoring``, ``revisions``); the overview is in the ``monitor.cluster`` docstring.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.cluster.decisions import Assignment, Doc, Merge, Split
from monitor.cluster.features import SIGNALS, Features, extract
from monitor.cluster.revisions import Reviser
from monitor.cluster.scoring import Query, Scorer
from monitor.cluster.state import ClusterState, DocState, Window
from monitor.cluster.vectors import Row, cosine, query, salient, similarity, split_rows
from monitor.cluster.vocabulary import IDF, Vocabulary
from monitor.cluster_params import ClusterParams
from monitor.dedup import NearDuplicateIndex


@dataclass
class Prepared:
    """A doc as read under one state of the clusterer (``version``): its features, the IDF
    of its terms counting the doc itself, its time, its index keys, and its split-check rows
    (computed when first needed).

    ``decide`` keeps the last one it made; ``add`` of the same doc with nothing added in
    between reuses it instead of reading the doc again, since a fresh read would give the
    same values.  Any ``add`` bumps the version, so a reading never outlives the state it
    was made under."""

    doc: Doc
    version: int
    features: Features
    idf: IDF
    ts: float
    salient: list[tuple[str, float]]  # index keys (top terms, entities) and weights (``vectors.salient``)
    _rows: dict[str, Row] | None = field(default=None, repr=False)

    def rows(self) -> dict[str, Row]:
        if self._rows is None:
            self._rows = split_rows(self.features, self.idf)
        return self._rows


class Clusterer:
    """Single-pass event clusterer; ``decide`` is pure, ``add`` commits a decision."""

    def __init__(self, params: ClusterParams) -> None:
        self.params = params
        self.duplicates = NearDuplicateIndex(
            threshold=params.near_dup_threshold,
            num_perm=params.num_perm,
            shingle_size=params.shingle_size,
        )
        self.vocabulary = Vocabulary()
        self.window = Window(params, self.vocabulary)
        self.scorer = Scorer(params)
        self.reviser = Reviser(params, self.window, self.vocabulary, self.scorer)
        self._version = 0  # bumped by every add
        self._prepared: Prepared | None = None

    # ------------------------------------------------------------------ public API

    def decide(self, doc: Doc) -> Assignment:
        """Where ``doc`` would go given everything added so far.  Does not change state."""
        p = self._prepare(doc)
        f, ts = p.features, p.ts
        q = query(f.vectors(), p.idf, self.params.query_terms)
        copy = self._as_copy(f, q, ts)
        if copy is not None:
            return copy
        # Best first; ties go to the older (lower) cluster id.
        clusters = self.window.clusters
        candidates = self.scorer.candidates(self.window, p.salient, ts)
        ranked = sorted((-self.scorer.score(q, f.years, ts, clusters[cid]), cid) for cid in candidates)
        threshold = self.params.threshold if f.long else self.params.short_threshold
        if not ranked or -ranked[0][0] < threshold:
            return Assignment.new(doc.id)
        score, cluster = -ranked[0][0], clusters[ranked[0][1]]
        shared = self.scorer.shared_terms(q, cluster)
        if not f.long:
            return Assignment.join(cluster.id, score, shared)
        also = [clusters[cid] for neg, cid in ranked[1:] if -neg >= threshold]
        split, merge = self._revisions(p, cluster, also)
        return Assignment.join(cluster.id, score, shared, split, merge)

    def add(self, doc: Doc, assignment: Assignment) -> None:
        """Record ``doc`` as placed by ``assignment`` (after the caller has committed it)."""
        if doc.id in self.window.docs:
            return
        # Features and IDF as they will be once this doc is counted (reused from decide()).
        p = self._prepare(doc)
        root = assignment.duplicate_of if assignment.duplicate_of is not None else doc.id
        if root not in self.window.docs:
            root = doc.id
        state = self._state(p, assignment.cluster_id, root)
        self._version += 1
        # Document frequencies first, so the centroid norm below uses IDF including this doc.
        self.vocabulary.count(state.terms)
        self.window.keep(doc.id, state)
        if p.features.sig is not None:
            self.duplicates.insert(doc.id, p.features.sig)
        self.window.add_to_cluster(assignment.cluster_id, doc.id, p.features, p.ts, p.idf, state.keys)
        if assignment.split is not None:
            self.window.apply_split(assignment.split)
        if assignment.merge is not None:
            self.window.apply_merge(assignment.cluster_id, assignment.merge)
        for doc_id, gone in self.window.evict():
            self.vocabulary.forget(gone.terms)
            self.duplicates.remove(doc_id)

    def cluster_of(self, doc_id: int) -> int | None:
        """The cluster a doc in the window belongs to now (splits move docs)."""
        state = self.window.docs.get(doc_id)
        return state.cluster_id if state is not None else None

    @property
    def live_docs(self) -> int:
        """Docs kept in the time window."""
        return len(self.window.docs)

    @property
    def live_clusters(self) -> int:
        """Clusters kept in the time window."""
        return len(self.window.clusters)

    # ------------------------------------------------------------------ for benchmarks and tests

    def features(self, doc: Doc) -> Features:
        """What the clusterer reads of ``doc`` given the docs added so far."""
        return self._read(doc).features

    def pair_similarity(self, docs: Sequence[Doc]) -> np.ndarray:
        """Doc x doc similarity as split checks compute it, each doc read as if it arrived
        now (IDF from the docs added so far, counting it)."""
        return similarity([self._read(doc).rows() for doc in docs], self.scorer.weights)[0]

    def signal_scores(self, doc: Doc) -> dict[int, dict[str, float]]:
        """Per live cluster: each signal's cosine with ``doc`` (0.0 if either side lacks
        it), ``year_conflict`` (1.0 if both name years, none in common) and the combined
        ``score`` a decision would give: the inputs of a decision, for fitting weights."""
        p = self._prepare(doc)
        f = p.features
        q = query(f.vectors(), p.idf, self.params.query_terms)
        out = {}
        for cid, c in self.window.clusters.items():
            sig = {s: (cosine(q[s], c.centroid[s], c.norm_sq[s]) if s in q and s in c.centroid else 0.0)
                   for s in SIGNALS}
            sig["year_conflict"] = float(bool(f.years and c.years and not any(y in c.years for y in f.years)))
            sig["score"] = self.scorer.score(q, f.years, p.ts, c)
            out[cid] = sig
        return out

    # ------------------------------------------------------------------ helpers

    def _prepare(self, doc: Doc) -> Prepared:
        """The reading of ``doc`` kept from ``decide`` if still valid, else a new one (kept)."""
        p = self._prepared
        if p is None or p.version != self._version or p.doc != doc:
            p = self._prepared = self._read(doc)
        return p

    def _read(self, doc: Doc) -> Prepared:
        df = self.vocabulary.df
        f = extract(doc, self.params, df["lower"], df["cap"], self.duplicates.signature)
        idf = self.vocabulary.idf_for(f)
        return Prepared(doc, self._version, f, idf, self.window.ts(f), salient(f, idf, self.params.salient_terms))

    def _state(self, p: Prepared, cluster_id: int, root: int) -> DocState:
        """What the clusterer keeps of a doc (``decide`` also builds one for the doc it is
        deciding, to re-score a split or merge that includes it)."""
        f = p.features
        terms = {"body": tuple(f.body), "ents": tuple(f.ents), "nums": tuple(f.nums),
                 "lower": tuple(f.lower), "cap": tuple(f.cap)}
        keys = tuple(k for k, _ in p.salient)
        raw = {sig: (tuple(vec), array("d", vec.values())) for sig, vec in f.vectors().items() if vec}
        rows = p.rows() if root == p.doc.id and f.long else None
        return DocState(cluster_id, root, p.ts, terms, raw, keys, f.years, rows)

    def _as_copy(self, f: Features, q: Query, ts: float) -> Assignment | None:
        """A near-duplicate joins the cluster of its first copy, unless it names others."""
        dup = self._near_duplicate(f)
        if dup is None:
            return None
        root, sim = dup
        cid = self.window.docs[root].cluster_id
        c = self.window.clusters.get(cid)
        # A copy keeps the names of what it copies; shared wording with other names
        # is a templated story about something else, left to the event clustering.
        if c is None or self.scorer.names_conflict(q.get("ents", {}), self.scorer.cosine_of(q, c, "ents")):
            return None
        score = self.scorer.score(q, f.years, ts, c)
        return Assignment.duplicate(cid, root, sim, score, self.scorer.shared_terms(q, c))

    def _near_duplicate(self, f: Features) -> tuple[int, float] | None:
        """Best near-duplicate among tracked docs, resolved to its first copy."""
        if f.sig is None or not len(self.duplicates):
            return None
        for key, sim in self.duplicates.query(f.sig, self.params.near_dup_threshold):
            state = self.window.docs.get(key)
            if state is not None:
                root = state.root if state.root in self.window.docs else key
                return root, sim
        return None

    def _revisions(
        self, p: Prepared, cluster: ClusterState, also: list[ClusterState]
    ) -> tuple[Split | None, Merge | None]:
        """A merge with the best other cluster the doc also matched, else a split of the
        cluster it joins, each with the reasons of the docs it moves; or neither."""
        rows = p.rows()
        merge = self.reviser.merge_check(cluster, also, rows)
        if merge is not None:
            return None, self.reviser.explain_merge(merge, cluster, self._state(p, cluster.id, p.doc.id))
        split = self.reviser.split_check(cluster, p.doc.id, rows)
        if split is not None:
            split = self.reviser.explain_split(split, p.doc.id, self._state(p, cluster.id, p.doc.id))
        return split, None
