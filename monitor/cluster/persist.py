"""What the clusterer keeps of a doc and of a cluster, as bytes the store can hold.

The store is the clusterer's memory: each doc's kept state and each cluster's centroid
are written in the article's own transaction, so start-up reads them back instead of
reading every recent article again, and a cluster that left memory can be brought back
when a late report of its story arrives.

A blob is a small JSON header (terms, keys, scalars) followed by the numbers as packed
arrays (float64 weights, int32 hashed columns and float32 values of the split-check rows,
MinHash values in their own dtype), in the order the header lists them.  Not pickle: a database file
must never be able to run code, and the format should outlive the classes that wrote it
(``VERSION``).
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections import Counter

import numpy as np

from monitor.cluster.features import SIGNALS
from monitor.cluster.state import ClusterState, DocState
from monitor.cluster.vectors import Row

VERSION = 1
_HEAD = struct.Struct("<BI")  # format version, header length


def _pack(header: dict[str, object], *arrays: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"".join([_HEAD.pack(VERSION, len(text)), text, *arrays])


def _unpack(blob: bytes) -> tuple[dict, memoryview]:
    version, size = _HEAD.unpack_from(blob)
    if version != VERSION:
        raise ValueError(f"clusterer state of format {version}, this version reads {VERSION}")
    start = _HEAD.size
    return json.loads(bytes(blob[start:start + size])), memoryview(blob)[start + size:]


def encode_doc(state: DocState, signature: np.ndarray | None) -> bytes:
    """A doc's kept state (its cluster is the article's, stored beside it) and its MinHash."""
    raw_terms = {sig: list(terms) for sig, (terms, _) in state.raw.items()}
    header = {
        "root": state.root, "ts": state.ts, "raw": raw_terms, "keys": list(state.keys),
        "years": sorted(state.years), "lower": list(state.terms["lower"]), "cap": list(state.terms["cap"]),
        "rows": sorted(state.rows) if state.rows is not None else None,
        # The LSH bands hash the values' bytes: they must come back in the dtype they had.
        "sig": signature.dtype.str if signature is not None else None,
    }
    weights = b"".join(state.raw[sig][1].tobytes() for sig in raw_terms)
    rows = b"".join(state.rows[sig][0].astype(np.int32).tobytes() + state.rows[sig][1].astype(np.float32).tobytes()
                    for sig in header["rows"] or ())
    sig = signature.tobytes() if signature is not None else b""
    return _pack(header, weights, rows, sig)


def decode_doc(blob: bytes, cluster_id: int) -> tuple[DocState, np.ndarray | None]:
    """The doc's state, placed in ``cluster_id`` (where the store says it is now), and its
    MinHash values (None if it had no signature)."""
    h, rest = _unpack(blob)
    raw: dict[str, tuple[tuple[str, ...], array]] = {}
    at = 0
    for sig in SIGNALS:
        terms = h["raw"].get(sig)
        if terms is None:
            continue
        n = 8 * len(terms)
        raw[sig] = (tuple(terms), array("d", rest[at:at + n].tobytes()))
        at += n
    rows: dict[str, Row] | None = None
    if h["rows"] is not None:
        rows = {}
        for sig in h["rows"]:
            n = 4 * len(raw[sig][0])
            cols = np.frombuffer(rest[at:at + n], np.int32).copy()
            rows[sig] = (cols, np.frombuffer(rest[at + n:at + 2 * n], np.float32).copy())
            at += 2 * n
    signature = np.frombuffer(rest[at:], np.dtype(h["sig"])).copy() if h["sig"] else None
    terms = {table: raw[table][0] if table in raw else () for table in ("body", "ents", "nums")}
    terms["lower"] = tuple(map(sys.intern, h["lower"]))
    terms["cap"] = tuple(map(sys.intern, h["cap"]))
    state = DocState(cluster_id, h["root"], h["ts"], terms, raw, tuple(h["keys"]), frozenset(h["years"]), rows)
    return state, signature


def encode_cluster(c: ClusterState) -> bytes:
    """A cluster's centroid, norms, span, size, years and index keys (not its members:
    those are the articles the store places in it)."""
    header = {
        "first": c.first_ts, "last": c.last_ts, "size": c.size, "years": dict(c.years),
        "keys": sorted(c.keys), "norm_sq": c.norm_sq, "centroid": {sig: list(cen) for sig, cen in c.centroid.items()},
    }
    weights = b"".join(array("d", cen.values()).tobytes() for cen in c.centroid.values())
    return _pack(header, weights)


def decode_cluster(cluster_id: int, blob: bytes) -> ClusterState:
    h, rest = _unpack(blob)
    c = ClusterState(cluster_id, h["first"], h["last"], h["size"])
    at = 0
    for sig, terms in h["centroid"].items():
        weights = array("d", rest[at:at + 8 * len(terms)].tobytes())
        c.centroid[sig] = dict(zip(terms, weights, strict=True))
        at += 8 * len(terms)
    c.norm_sq = dict(h["norm_sq"])
    c.keys = set(h["keys"])
    c.years = Counter(h["years"])
    return c
