"""The clusterer's window: the docs and clusters it keeps, and the inverted index over them.

State is kept in memory and bounded.  What stays is the stream's neighbourhood in both
senses: every doc dated within ``window_days`` of the newest date seen (the live stories),
and the last ``hot_docs`` docs to arrive, whatever their dates.  The second half is what
makes arrival order not decide the clusters: a feed delivering weeks of history newest
first brings each story's older reports right after its newer ones, and they must still
be in memory when they do, although their dates are far behind the newest.  Docs leave in
arrival order once they are neither; a cluster leaves with its last doc.  A cluster that
stays alive because reports keep arriving unindexes keys that left its pruned centroid, so
its index entries do not grow with the story.
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from functools import reduce
from itertools import repeat
from operator import add, mul, sub

from monitor.cluster.decisions import Merge, Split
from monitor.cluster.features import SIGNALS, Features
from monitor.cluster.vectors import Row
from monitor.cluster.vocabulary import DF_OF, IDF, Vocabulary
from monitor.cluster_params import ClusterParams

DAY = 86400.0


@dataclass
class ClusterState:
    """A cluster as the clusterer keeps it: raw-TF centroids (pruned to ``centroid_terms``
    per signal) with their squared TF-IDF norms, time span, years named, index keys."""

    id: int
    first_ts: float
    last_ts: float
    size: int = 0
    centroid: dict[str, dict[str, float]] = field(default_factory=dict)
    norm_sq: dict[str, float] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    years: Counter[str] = field(default_factory=Counter)
    members: dict[int, None] = field(default_factory=dict)  # docs still in the window, in order


@dataclass
class DocState:
    """What is kept of a doc while it is in the window: enough to rebuild its cluster."""

    cluster_id: int
    root: int  # first copy when a near-duplicate, else own id
    ts: float
    terms: dict[str, tuple[str, ...]]  # df table -> distinct terms counted for it
    raw: dict[str, tuple[tuple[str, ...], array]]  # signal -> (terms, sublinear TF weights)
    keys: tuple[str, ...]  # its index keys when it was added
    years: frozenset[str]
    rows: dict[str, Row] | None  # split-check vectors; None for near-duplicates and headlines


class Window:
    """Docs and clusters in memory (see the module docstring for which), the posting lists
    that find candidate clusters, and the updates that keep them consistent (add, split,
    merge, evict)."""

    def __init__(self, params: ClusterParams, vocabulary: Vocabulary) -> None:
        self.params = params
        self.vocabulary = vocabulary
        self.docs: dict[int, DocState] = {}
        self.clusters: dict[int, ClusterState] = {}
        self.postings: dict[str, OrderedDict[int, None]] = {}
        self._arrivals: deque[int] = deque()  # docs in arrival order
        self._dated: list[tuple[float, int]] = []  # docs past hot_docs, kept while inside the window
        self.now: float | None = None
        # Latest end of a cluster that left memory (None: none did): a doc dated within
        # ``window_days`` of it may belong to a story only the store still holds.
        self.cold_after: float | None = None
        self._changed: dict[int, None] = {}  # clusters changed since ``take_changes``
        self._removed: set[int] = set()

    def ts(self, f: Features) -> float:
        """Publication time; a doc without one is treated as the newest time seen so far."""
        if f.ts is not None:
            return f.ts
        return self.now if self.now is not None else 0.0

    def root(self, doc_id: int) -> int:
        state = self.docs.get(doc_id)
        return state.root if state is not None else doc_id

    def keep(self, doc_id: int, state: DocState) -> None:
        """Keep a doc (placed in a cluster by ``add_to_cluster``) until it leaves the window."""
        self.now = state.ts if self.now is None else max(self.now, state.ts)
        self.docs[doc_id] = state
        self._arrivals.append(doc_id)

    def add_to_cluster(
        self, cid: int, doc_id: int, f: Features, ts: float, idf: IDF, keys: tuple[str, ...]
    ) -> None:
        c = self.clusters.get(cid)
        if c is None:
            c = ClusterState(cid, ts, ts)
            self.clusters[cid] = c
        c.size += 1
        c.members[doc_id] = None
        c.first_ts = min(c.first_ts, ts)
        c.last_ts = max(c.last_ts, ts)
        self._changed[cid] = None
        for sig in SIGNALS:
            vec = getattr(f, sig)
            if not vec:
                continue
            cen = c.centroid.setdefault(sig, {})
            # Sums and squares in C (``map``) over the doc's terms, in the order a loop would
            # make them: the same floats as a loop, at a third of its cost.
            olds = list(map(cen.get, vec, repeat(0.0)))
            news = list(map(add, olds, vec.values()))
            cen.update(zip(vec, news, strict=True))
            pruned = len(cen) > 2 * self.params.centroid_terms
            if pruned:
                keep = sorted(cen.items(), key=lambda kv: (-kv[1], kv[0]))
                c.centroid[sig] = cen = dict(keep[: self.params.centroid_terms])
            if pruned or sig not in c.norm_sq or c.size & (c.size - 1) == 0:
                # Exact recompute at sizes 1, 2, 4, 8, ... (amortised O(1) per add): between
                # them the norm is updated on the doc's terms only, so IDF drift of the
                # other terms is picked up late; measured to change no ECB+ decision.
                c.norm_sq[sig] = self.vocabulary.exact_norm_sq(sig, cen)
            else:
                idf2 = map(pow, map(idf[DF_OF[sig]].get, vec, repeat(1.0)), repeat(2))
                gained = map(sub, map(pow, news, repeat(2)), map(mul, olds, olds))
                c.norm_sq[sig] += reduce(add, map(mul, gained, idf2), 0.0)
        self._index(c, keys)
        c.years.update(f.years)

    # ------------------------------------------------------------------ index

    def _index(self, c: ClusterState, keys: tuple[str, ...]) -> None:
        """Post ``c`` under ``keys``, most recently updated last (posting lists are capped)."""
        postings = self.postings
        for key in keys:
            posting = postings.get(key)
            if posting is None:
                posting = postings[key] = OrderedDict()
            posting[c.id] = None
            posting.move_to_end(c.id)
            c.keys.add(key)
            if len(posting) > self.params.posting_cap:
                posting.popitem(last=False)
        if len(c.keys) > 4 * self.params.centroid_terms:
            self._prune_keys(c)

    def _unindex(self, c: ClusterState, keys: set[str] | list[str]) -> None:
        for key in keys:
            c.keys.discard(key)
            posting = self.postings.get(key)
            if posting is not None:
                posting.pop(c.id, None)
                if not posting:
                    del self.postings[key]

    def _prune_keys(self, c: ClusterState) -> None:
        """Unindex a long-lived cluster's keys that fell out of its centroid.

        A running story keeps a cluster alive for as long as reports arrive; without this
        its index keys (and posting entries) would grow with every report, so memory and
        candidate votes would grow with the stream instead of the window.  Keys still in
        the (pruned) body or entity centroid stay: they are what the story is about now.
        """
        body, ents = c.centroid.get("body", {}), c.centroid.get("ents", {})
        self._unindex(c, [k for k in c.keys if (k[1:] not in ents if k.startswith("@") else k not in body)])

    # ------------------------------------------------------------------ eviction

    def evict(self) -> list[tuple[int, DocState]]:
        """Forget the earliest arrived docs beyond ``hot_docs`` that are dated before the
        window (relative to the newest date seen), and clusters left without docs; the docs
        forgotten are returned, for the caller to uncount (IDF) and unindex (near-duplicates).

        A doc past ``hot_docs`` but still inside the window waits, by date, until the window
        moves past it: each doc is queued once in each order, so eviction is O(log n) a doc."""
        if self.now is None:
            return []
        horizon = self.now - self.params.window_days * DAY
        gone: list[tuple[int, DocState]] = []
        while len(self._arrivals) > self.params.hot_docs:
            did = self._arrivals.popleft()
            state = self.docs[did]
            if state.ts >= horizon:
                heapq.heappush(self._dated, (state.ts, did))
            else:
                gone.append((did, self._forget(did)))
        while self._dated and self._dated[0][0] < horizon:
            did = heapq.heappop(self._dated)[1]
            gone.append((did, self._forget(did)))
        return gone

    def _forget(self, doc_id: int) -> DocState:
        """Drop a doc, and its cluster if it was the cluster's last doc in memory."""
        state = self.docs.pop(doc_id)
        owner = self.clusters.get(state.cluster_id)
        if owner is not None:
            owner.members.pop(doc_id, None)
            if not owner.members:
                self._unindex(owner, list(owner.keys))
                del self.clusters[owner.id]
                self.cold_after = max(self.cold_after or owner.last_ts, owner.last_ts)
        return state

    def may_hold_cold(self, ts: float) -> bool:
        """Could a story that left memory be a candidate for a doc dated ``ts``?"""
        return self.cold_after is not None and ts - self.params.window_days * DAY <= self.cold_after

    # ------------------------------------------------------------------ the store as memory

    def adopt(self, c: ClusterState) -> None:
        """Take back a cluster read from the store (a late report joins a story that had
        left memory, or start-up): registered and indexed, its members added by the caller."""
        keys, c.keys = tuple(sorted(c.keys)), set()
        self.clusters[c.id] = c
        self._index(c, keys)

    def restore(self, doc_id: int, state: DocState) -> None:
        """Keep a doc read from the store as a member of its (adopted) cluster."""
        self.keep(doc_id, state)
        self.clusters[state.cluster_id].members[doc_id] = None

    def take_changes(self) -> tuple[list[ClusterState], list[int]]:
        """Clusters changed and clusters gone since the last call, for the store to write."""
        changed = [self.clusters[cid] for cid in self._changed if cid in self.clusters]
        removed = sorted(self._removed)
        self._changed.clear()
        self._removed.clear()
        return changed, removed

    # ------------------------------------------------------------------ revisions

    def apply_split(self, split: Split) -> None:
        """Rebuild the two clusters from their members' kept vectors and re-index them."""
        c = self.clusters.get(split.cluster_id)
        if c is None or split.new_cluster_id in self.clusters:
            return
        moved = set(split.moved)
        self._unindex(c, list(c.keys))
        del self.clusters[c.id]
        self._rebuild(c.id, [d for d in c.members if d not in moved])
        self._rebuild(split.new_cluster_id, [d for d in c.members if d in moved])

    def apply_merge(self, into: int, merge: Merge) -> None:
        """Rebuild ``into`` from its own and the absorbed cluster's docs; the absorbed one is gone."""
        c, gone = self.clusters.get(into), self.clusters.get(merge.absorbed)
        if c is None or gone is None:
            return
        for old in (c, gone):
            self._unindex(old, list(old.keys))
            del self.clusters[old.id]
        self._removed.add(gone.id)
        self._rebuild(into, [*c.members, *gone.members])

    def alone_in(self, cid: int) -> int | None:
        """The doc that opened cluster ``cid`` and is still all of it (not a copy), if so."""
        c = self.clusters.get(cid)
        if c is None or c.size != 1 or len(c.members) != 1:
            return None
        doc_id = next(iter(c.members))
        return doc_id if self.docs[doc_id].root == doc_id else None

    def has_copies(self, doc_id: int) -> bool:
        """Whether the doc is a near-duplicate of another or has one in its cluster: copies move together."""
        state = self.docs[doc_id]
        return state.root != doc_id or any(self.docs[d].root == doc_id for d in self.clusters[state.cluster_id].members
                                           if d != doc_id)

    def apply_move(self, doc_id: int, into: int) -> None:
        """One doc leaves its cluster for ``into``; both are rebuilt from their members' kept vectors."""
        source, target = self.clusters.get(self.docs[doc_id].cluster_id), self.clusters.get(into)
        if source is None or target is None or source is target:
            return
        for old in (source, target):
            self._unindex(old, list(old.keys))
            del self.clusters[old.id]
        self._rebuild(source.id, [d for d in source.members if d != doc_id])
        self._rebuild(into, [*target.members, doc_id])

    def _rebuild(self, cid: int, members: list[int]) -> None:
        """A cluster from scratch out of docs in the window (docs already evicted are gone
        from it, so its centroid describes only the reports still in the window).

        Summed in date order, then by id: ids follow the order pages happened to arrive in, and
        summing floats in another order moves a centroid in its last digits, enough to flip a
        near tie between two stories (the realistic stream, read newest first and shuffled, put
        one report in different clusters at scores 0.3751 and 0.3753)."""
        if not members:
            return
        members = sorted(members, key=lambda d: (self.docs[d].ts, d))
        states = [self.docs[d] for d in members]
        c = self.assemble(cid, states)
        keys: dict[str, None] = {}
        for d, state in zip(members, states, strict=True):
            state.cluster_id = cid
            c.members[d] = None
            keys.update(dict.fromkeys(state.keys))
        self.clusters[cid] = c
        self._changed[cid] = None
        self._index(c, tuple(keys))

    def assemble(self, cid: int, states: list[DocState]) -> ClusterState:
        """Centroid, years, span and size of a group of docs, as ``add_to_cluster`` would have
        built them one by one (pruned alike); not registered, indexed nor given members."""
        c = ClusterState(cid, min(s.ts for s in states), max(s.ts for s in states), len(states))
        for state in states:
            c.years.update(state.years)
            for sig, (terms, weights) in state.raw.items():
                cen = c.centroid.setdefault(sig, {})
                for t, w in zip(terms, weights, strict=True):
                    cen[t] = cen.get(t, 0.0) + w
        for sig, cen in list(c.centroid.items()):
            if len(cen) > 2 * self.params.centroid_terms:
                keep = sorted(cen.items(), key=lambda kv: (-kv[1], kv[0]))
                c.centroid[sig] = cen = dict(keep[: self.params.centroid_terms])
            c.norm_sq[sig] = self.vocabulary.exact_norm_sq(sig, cen)
        return c
