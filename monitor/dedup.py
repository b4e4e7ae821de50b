"""Exact-duplicate keys and near-duplicate detection.

Three layers catch re-published copies of the same article, cheapest first:

1. ``canonical_url`` - the same page reached through tracking links, AMP mirrors or
   cosmetic URL differences.  The store looks the key up before inserting.
2. ``content_hash`` - the same text under a different URL (mirrors, feeds that
   carry the body).  Normalised so that whitespace/punctuation/case changes from
   different extractors do not defeat it.
3. ``NearDuplicateIndex`` - syndicated wire copies and re-posts that differ by a
   headline, a paragraph or a few edited words.  MinHash signatures over word
   shingles are indexed with locality-sensitive hashing (datasketch
   ``MinHashLSH``) so that finding candidates costs a few hash-table lookups,
   never a scan of the store.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

if TYPE_CHECKING:
    from datasketch import MinHash

# Query parameters that identify a campaign/click/referrer, never the content.
_TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "yclid", "igshid", "twclid",
        "mc_cid", "mc_eid", "mkt_tok", "ref", "ref_src", "ref_url", "referrer",
        "_ga", "_gl", "_hsenc", "_hsmi", "hsctatracking", "cmpid", "cmp", "ocid", "ito",
        "sr_share", "smid", "smtyp", "spm", "guccounter", "guce_referrer",
        "guce_referrer_sig", "__twitter_impression", "wt.mc_id", "wt_mc_id", "ns_mchannel",
        "ns_source", "ns_campaign", "ns_linkname", "ns_fee", "rss", "taid", "soc_src",
        "soc_trk",
    }
)
_TRACKING_PREFIXES = ("utm_", "at_", "pk_", "piwik_", "matomo_", "hmb_", "vero_", "oly_")
# Query parameters that only select the AMP rendering of the same article.
_AMP_PARAMS = frozenset({"amp", "outputtype", "amp_js_v", "usqp", "_amp"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_AMP_CACHE = re.compile(r"^[^/]+\.cdn\.ampproject\.org$")


def _is_tracking(key: str, value: str) -> bool:
    k = key.lower()
    if k in _TRACKING_PARAMS or k.startswith(_TRACKING_PREFIXES):
        return True
    # ``?amp=1``/``?amp``/``?outputType=amp`` select the AMP view of the same page.
    return k in _AMP_PARAMS and value.lower() in ("", "1", "true", "amp", "yes")


def _strip_amp_path(path: str) -> str:
    """Remove AMP path variants: ``/amp``, ``/amp/`` segments, ``.amp`` / ``.amp.html``."""
    segments = [s for s in path.split("/") if s.lower() != "amp"]
    path = "/".join(segments)
    path = re.sub(r"\.amp(\.html?)?$", lambda m: m.group(1) or "", path, flags=re.IGNORECASE)
    return path


def _unwrap_amp_cache(parts):  # type: ignore[no-untyped-def]
    """``https://x-com.cdn.ampproject.org/c/s/x.com/a`` -> ``https://x.com/a``."""
    host = (parts.hostname or "").lower()
    if not _AMP_CACHE.match(host):
        return parts
    m = re.match(r"^/[a-z]/(s/)?([^/]+)(/.*)?$", parts.path)
    if not m:
        return parts
    scheme = "https" if m.group(1) else "http"
    return urlsplit(urlunsplit((scheme, m.group(2), m.group(3) or "", parts.query, "")))


def canonical_url(url: str) -> str:
    """Normalise a URL so that the same article reached different ways gets one key.

    Lowercases scheme and host, drops the fragment, default ports, tracking and
    AMP-selector query parameters, sorts the remaining parameters, strips the
    trailing slash and AMP variants (``amp.`` host, ``/amp`` segments, AMP cache
    URLs).  Path case and non-tracking parameters are kept because servers may
    treat them as significant.  ``file://`` and non-HTTP URLs are returned intact:
    they are local or opaque and any rewriting could point elsewhere.
    """
    url = url.strip()
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        return url
    parts = _unwrap_amp_cache(parts)
    host = (parts.hostname or "").lower().rstrip(".")
    if host.startswith("amp."):
        host = host[4:]
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host
    if parts.username:
        netloc = f"{parts.username}@{host}"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    path = _strip_amp_path(parts.path).rstrip("/")
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k, v)
    ]
    query.sort()
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    """Casefold, NFKC, punctuation and whitespace runs collapsed to one space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", text).strip()


def content_hash(text: str) -> str:
    """Exact-duplicate key of a text: sha256 of its normalised form.

    Normalising first means the same article extracted with different quotes,
    spacing or capitalisation (feeds vs. HTML, two extractor versions) still
    collides, while any real word change does not.
    """
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def shingle_hashes(text: str, size: int = 3) -> np.ndarray:
    """Sorted unique 32-bit hashes of the word ``size``-grams of the normalised text.

    Word shingles, not character ones: a wire copy with an edited headline or an
    added paragraph keeps most of its word sequences, while two different stories
    that share vocabulary share almost no 3-word sequences.

    Hashing is done per word (crc32, C speed) and combined per shingle with numpy.
    Measured: building and sha1-hashing shingle strings for datasketch took ~3 ms for
    a 900-word article, this takes ~0.3 ms, which is what makes >300 articles/s
    possible.  A text shorter than ``size`` words yields one shingle of all its words.
    """
    words = normalise_text(text).split()
    if not words:
        return np.empty(0, dtype=np.uint64)
    wh = np.fromiter(map(zlib.crc32, map(str.encode, words)), np.uint64, len(words))  # UTF-8, in C
    if len(words) < size:
        size = len(words)
    h = wh[: len(wh) - size + 1].copy()
    for i in range(1, size):
        h = (h * np.uint64(1_000_003)) ^ wh[i : len(wh) - size + 1 + i]
    # Sorted, then the repeats dropped: what ``np.unique`` returns, at a third of its cost for a
    # few hundred values (its generic path dominated; measured 25 -> 8 us an article).
    h = np.sort(h & np.uint64(0xFFFFFFFF))
    keep = np.empty(len(h), bool)
    keep[0] = True
    np.not_equal(h[1:], h[:-1], out=keep[1:])
    return h[keep]


# What datasketch's MinHash computes from hashes already made, in numpy (``MinHashes``): per scheme, the
# permutation of a 32-bit hash and the dtype of the values. Legacy is datasketch 1.x's only scheme.
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)
_FMIX = {  # the MurmurHash3 finalizer datasketch 2 applies first: shifts and multipliers
    np.uint32: (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16)),
    np.uint64: (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(33), np.uint64(0xC4CEB9FE1A85EC53),
                np.uint64(33)),
}
_SCHEMES = {"legacy": np.uint64, "affine32": np.uint32, "affine64": np.uint64}


def _fmix(hv: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX[hv.dtype.type]
    hv = hv ^ (hv >> s1)
    hv = hv * m1
    hv = hv ^ (hv >> s2)
    hv = hv * m2
    return hv ^ (hv >> s3)


@dataclass(frozen=True, eq=False)
class MinHashes:
    """A MinHash's permutations (datasketch's ``scheme`` and ``permutations``), to compute signature values
    of shingle hashes with numpy, without datasketch.

    Why: an extraction process computes each page's signature beside its text (``features.read_text``),
    so the one writer does not: datasketch would load scipy there (0.35 s), and its ``update_batch``
    calls the hash function once per shingle in Python, about 0.1 ms of the writer's time per read.
    The writer takes such values only when ``made_by`` names its own permutations and it has checked
    this arithmetic against datasketch's (:meth:`NearDuplicateIndex.presigned`)."""

    scheme: str
    a: np.ndarray
    b: np.ndarray

    @staticmethod
    def of(num_perm: int, seed: int = 1) -> MinHashes:
        """The permutations datasketch 2 makes by default (scheme ``affine32``) for ``num_perm`` and ``seed``:
        what an extraction process uses, where datasketch is not loaded."""
        return _affine32(num_perm, seed)

    @functools.cached_property
    def made_by(self) -> str:
        """A digest of the scheme and permutations: values are comparable only under equal ones."""
        return hashlib.blake2b(self.scheme.encode() + self.a.tobytes() + self.b.tobytes(), digest_size=16).hexdigest()

    def values(self, hashes: np.ndarray) -> np.ndarray:
        """The signature values of these 32-bit hashes (at least one), as datasketch's ``update_batch`` makes them."""
        dtype = _SCHEMES[self.scheme]
        if self.scheme == "legacy":
            phv = (hashes.astype(np.uint64)[:, None] * self.a + self.b) % _MERSENNE & _MAX32
            return np.minimum(np.full(len(self.a), _MAX32, np.uint64), phv.min(axis=0))
        phv = _fmix(hashes.astype(dtype)[:, None]) * self.a + self.b
        return phv.min(axis=0)


@functools.cache
def _affine32(num_perm: int, seed: int) -> MinHashes:
    gen = np.random.RandomState(seed)  # the legacy generator: its stream is fixed across numpy versions
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return MinHashes("affine32", a, b)


def _identity(hashed: int) -> int:
    """``hashfunc`` for datasketch: shingles arrive already hashed by ``shingle_hashes``."""
    return int(hashed)


@functools.cache
def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """The LSH bands and rows datasketch picks for ``threshold``, worked out once per process: it integrates
    the false positive and negative rates over every split of ``num_perm`` (0.1 s of scipy), and the writer
    makes a new index on every start and every ``Clusterer.forget``."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


class NearDuplicateIndex:
    """MinHash-LSH index of documents for finding near-duplicates without a scan.

    Keys are article ids.  ``threshold`` is the LSH Jaccard threshold used to pick
    band parameters; candidates are then re-checked with the estimated Jaccard, so
    the reported similarity is the signature estimate, not the band collision.
    """

    def __init__(self, threshold: float = 0.5, num_perm: int = 128, shingle_size: int = 3):
        # Imported here: datasketch loads scipy (0.35 s), which a page-extraction worker never needs.
        from datasketch import MinHash, MinHashLSH

        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self._lsh = MinHashLSH(num_perm=num_perm, params=_bands(threshold, num_perm))
        self._sigs: dict[int, MinHash] = {}
        # One template MinHash; signatures share its permutations instead of regenerating
        # them (the permutation setup is the costliest part of creating a MinHash).
        self._template = MinHash(num_perm=num_perm, seed=1, hashfunc=_identity)
        self.minhashes = _checked(self._template)

    def __len__(self) -> int:
        return len(self._sigs)

    def signature(self, text: str | np.ndarray) -> MinHash | None:
        """MinHash of the text's shingles (or of shingle hashes already made: ``shingle_hashes``),
        or None for a text too short to judge."""
        hashes = shingle_hashes(text, self.shingle_size) if isinstance(text, str) else text
        if len(hashes) < 2:
            return None
        if self.minhashes is not None:  # datasketch's arithmetic in numpy: 0.10 -> 0.03 ms a 400-word text
            return self.from_values(self.minhashes.values(hashes))
        m = self._template.copy()
        m.update_batch(hashes)
        return m

    def presigned(self, values: bytes, made_by: str) -> MinHash | None:
        """The signature an extraction process computed (``MinHashes.values``), if under this index's own
        permutations (None if not: the caller signs the text itself)."""
        if self.minhashes is None or made_by != self.minhashes.made_by:
            return None
        return self.from_values(np.frombuffer(values, _SCHEMES[self.minhashes.scheme]).copy())

    def from_values(self, values: np.ndarray) -> MinHash:
        """A signature from its stored hash values (``values_of``), without the text."""
        m = copy.copy(self._template)  # as pickling copies it: 2 us, where ``MinHash.copy`` checks all again (9 us)
        m.hashvalues = values
        return m

    def values_of(self, key: int) -> np.ndarray | None:
        """The hash values of an indexed doc's signature, for the store to keep."""
        sig = self._sigs.get(key)
        return sig.hashvalues if sig is not None else None

    def query(self, sig: MinHash, min_similarity: float | None = None) -> list[tuple[int, float]]:
        """Indexed docs with estimated Jaccard >= ``min_similarity``, best (then oldest) first."""
        floor = self.threshold if min_similarity is None else min_similarity
        out = []
        for key in self._lsh.query(sig):
            sim = float(np.count_nonzero(sig.hashvalues == self._sigs[key].hashvalues))
            sim /= self.num_perm
            if sim >= floor:
                out.append((key, sim))
        out.sort(key=lambda kv: (-kv[1], kv[0]))
        return out

    def insert(self, key: int, sig: MinHash) -> None:
        if key in self._sigs:
            return
        self._lsh.insert(key, sig)
        self._sigs[key] = sig

    def remove(self, key: int) -> None:
        if key in self._sigs:
            self._lsh.remove(key)
            del self._sigs[key]

    def keys(self) -> Iterable[int]:
        return self._sigs.keys()


def _checked(template: MinHash) -> MinHashes | None:
    """``template``'s permutations, if ``MinHashes.values`` gives what datasketch's ``update_batch`` gives
    under them (checked once on a probe; None for a scheme or a datasketch that computes otherwise)."""
    scheme = getattr(template, "scheme", "legacy")  # datasketch 1.x has no schemes
    if scheme not in _SCHEMES:
        return None
    a, b = template.permutations
    mine = MinHashes(scheme, np.asarray(a), np.asarray(b))
    probe = np.random.RandomState(0).randint(0, 1 << 32, 64, dtype=np.uint64)
    theirs = template.copy()
    theirs.update_batch(probe)
    ours = mine.values(probe)
    return mine if ours.dtype == theirs.hashvalues.dtype and np.array_equal(ours, theirs.hashvalues) else None


# -- whose identity is it? ----------------------------------------------------------------------
# Second-level labels that are a public suffix under a two-letter country code (bbc.co.uk, abc.net.au).
_COUNTRY_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go", "gob", "nic"})
# Shared hosts whose subdomains are different owners (a.blogspot.com is not b.blogspot.com).
_SHARED_HOSTS = frozenset({
    "blogspot.com", "wordpress.com", "substack.com", "medium.com", "tumblr.com", "github.io", "gitlab.io",
    "herokuapp.com", "appspot.com", "netlify.app", "vercel.app", "pages.dev", "cloudfront.net",
    "azurewebsites.net", "web.app", "firebaseapp.com", "ampproject.org",
})


def registrable_domain(host: str) -> str:
    """The part of a host name one owner registers: ``www.bbc.co.uk`` -> ``bbc.co.uk``, ``a.b.nytimes.com`` ->
    ``nytimes.com``.

    A deliberately small rule, not the Public Suffix List (``tldextract`` would fetch that list over
    the network at first use): the last two labels, or three when the second-to-last is a common
    second-level suffix under a country code (``co.uk``, ``com.au``, ``ne.jp``) or the last two are a
    shared host (``blogspot.com``, ``github.io``). An IP address, or a single-label name, is itself.
    Where the rule is too coarse it only ever merges two hosts of the same registered name.
    """
    host = host.lower().rstrip(".")
    if not host or ":" in host or host.replace(".", "").isdigit():
        return host
    labels = host.split(".")
    if len(labels) <= 2:
        return host
    if (len(labels[-1]) == 2 and labels[-2] in _COUNTRY_SECOND_LEVEL) or ".".join(labels[-2:]) in _SHARED_HOSTS:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _host(url: str) -> str:
    try:
        return (urlsplit(url.strip()).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def same_outlet(url: str, other: str) -> bool:
    """Do two http(s) URLs belong to one outlet (the same registrable domain)? A URL can vouch only for its own."""
    first, second = _host(url), _host(other)
    return bool(first and second) and registrable_domain(first) == registrable_domain(second)
