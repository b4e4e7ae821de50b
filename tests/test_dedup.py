"""Exact-duplicate keys and near-duplicate detection."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import numpy as np
import pytest

from monitor.cluster import Clusterer, ClusterParams, Doc
from monitor.dedup import (
    MinHashes,
    NearDuplicateIndex,
    _checked,
    _identity,
    canonical_url,
    content_hash,
    shingle_hashes,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://Example.COM/News/Story/", "https://example.com/News/Story"),
        ("https://example.com/a#comments", "https://example.com/a"),
        ("https://example.com/a?utm_source=x&utm_medium=rss&id=7", "https://example.com/a?id=7"),
        ("https://example.com/a?fbclid=abc&gclid=d&mc_cid=1&ref=tw", "https://example.com/a"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com/news/story/amp", "https://example.com/news/story"),
        ("https://example.com/amp/news/story", "https://example.com/news/story"),
        ("https://example.com/news/story?amp=1", "https://example.com/news/story"),
        ("https://example.com/news/story?amp", "https://example.com/news/story"),
        ("https://amp.example.com/news/story", "https://example.com/news/story"),
        ("https://example.com/news/story.amp.html", "https://example.com/news/story.html"),
        (
            "https://www-example-com.cdn.ampproject.org/c/s/www.example.com/news/story",
            "https://www.example.com/news/story",
        ),
        ("https://example.com/", "https://example.com"),
        ("file:///tmp/Seeds/A.TXT", "file:///tmp/Seeds/A.TXT"),
        ("", ""),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_canonical_url_is_idempotent() -> None:
    u = "https://AMP.Example.com/x/amp/?utm_campaign=a&z=1&a=2#top"
    assert canonical_url(canonical_url(u)) == canonical_url(u)


def test_content_hash_ignores_case_punctuation_and_spacing() -> None:
    a = "The  Mayor said: “We will rebuild.”\n\nMore follows."
    b = "the mayor said we will rebuild more follows"
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash("The mayor said we will not rebuild. More follows.")


def test_shingle_hashes_short_text() -> None:
    assert len(shingle_hashes("")) == 0
    assert len(shingle_hashes("two words")) == 1
    assert len(shingle_hashes("one two three four")) == 2


WIRE = [
    "A 6.1-magnitude earthquake struck off the coast of northern Chile late on Tuesday, "
    "shaking buildings in the port city of Iquique and prompting a brief tsunami warning.",
    "The US Geological Survey said the quake hit at a depth of 35 kilometres about 60 km "
    "north-west of Iquique, a city of some 190,000 people.",
    "Chile's national emergency office said there were no immediate reports of serious "
    "damage or injuries, although power was cut in several neighbourhoods.",
    "Residents of coastal areas were ordered to move to higher ground as a precaution, "
    "and the navy lifted the warning about two hours later.",
    "Chile is one of the most seismically active countries in the world. A magnitude 8.8 "
    "quake and the tsunami it triggered killed more than 500 people in 2010.",
    "Mining companies operating in the region said production had not been affected, "
    "though some staff had been evacuated from installations near the coast.",
]
OTHER = [
    "Shares in European carmakers fell sharply on Wednesday after the company that makes "
    "the best-selling compact models cut its profit forecast for the full year.",
    "The chief executive blamed weaker demand in China and higher costs for batteries, "
    "saying the group would review its investment plans over the coming months.",
    "Analysts said the warning would weigh on the whole sector, which has been struggling "
    "with a slow transition to electric vehicles and rising competition.",
    "The company also said it would cut about 2,000 jobs at its plants in Germany and "
    "Spain, a move unions said they would fight.",
    "Its shares closed down 9 percent in Frankfurt, their biggest one-day drop in two years.",
]
DAY = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)


def _doc(i: int, title: str, paras: list[str], source: str = "wire") -> Doc:
    return Doc(id=i, title=title, text="\n\n".join(paras), published=DAY, source=source)


def test_wire_copy_with_new_headline_and_added_paragraph_is_near_duplicate() -> None:
    c = Clusterer(ClusterParams())
    orig = _doc(1, "Strong quake hits northern Chile", WIRE)
    c.add(orig, c.decide(orig))
    extra = "Local television showed people leaving their homes in Iquique after the tremor."
    copy = _doc(2, "Chile earthquake: tsunami warning lifted", [*WIRE[:3], extra, *WIRE[3:]],
                source="regional-paper")
    a = c.decide(copy)
    assert a.duplicate_of == 1
    assert a.cluster_id == 1 and not a.is_new_cluster
    assert a.duplicate_similarity is not None and a.duplicate_similarity >= 0.7


def test_different_article_from_same_outlet_is_not_duplicate() -> None:
    c = Clusterer(ClusterParams())
    sign_off = "Reporting by the Example Wire newsroom; editing by the Example Wire desk."
    first = _doc(1, "Strong quake hits northern Chile", [*WIRE, sign_off], source="wire")
    c.add(first, c.decide(first))
    other = _doc(2, "Carmaker cuts profit forecast", [*OTHER, sign_off], source="wire")
    a = c.decide(other)
    assert a.duplicate_of is None
    assert a.is_new_cluster


def test_near_duplicate_index_reports_estimated_similarity() -> None:
    idx = NearDuplicateIndex(threshold=0.5, num_perm=128)
    text = " ".join(WIRE)
    sig = idx.signature(text)
    assert sig is not None
    idx.insert(10, sig)
    again = idx.signature(text + " One more sentence at the very end of it.")
    assert again is not None
    hits = idx.query(again)
    assert hits and hits[0][0] == 10 and hits[0][1] > 0.8
    idx.remove(10)
    assert idx.query(again) == []


def test_the_index_bands_its_signatures_as_datasketch_would_for_its_threshold() -> None:
    from datasketch import MinHashLSH

    for threshold, num_perm in ((0.5, 128), (0.8, 64), (0.3, 256)):
        ours = NearDuplicateIndex(threshold=threshold, num_perm=num_perm)._lsh
        theirs = MinHashLSH(threshold=threshold, num_perm=num_perm)
        assert (ours.b, ours.r) == (theirs.b, theirs.r)


def _schemes() -> tuple[str | None, ...]:
    from datasketch import MinHash

    return ("affine32", "affine64", "legacy") if "scheme" in inspect.signature(MinHash).parameters else (None,)


@pytest.mark.parametrize("scheme", _schemes())
def test_signature_values_computed_without_datasketch_are_datasketchs(scheme: str | None) -> None:
    from datasketch import MinHash

    template = MinHash(num_perm=128, seed=1, hashfunc=_identity, **({"scheme": scheme} if scheme else {}))
    mine = _checked(template)
    assert mine is not None
    rng = np.random.RandomState(7)
    for size in (1, 2, 37, 900):
        hashes = np.unique(rng.randint(0, 1 << 32, size, dtype=np.uint64))
        theirs = template.copy()
        theirs.update_batch(hashes)
        ours = mine.values(hashes)
        assert ours.dtype == theirs.hashvalues.dtype
        assert np.array_equal(ours, theirs.hashvalues)


def test_an_extraction_process_signs_under_the_writers_permutations() -> None:
    text = " ".join(WIRE)
    for num_perm in (128, 64):
        index = NearDuplicateIndex(num_perm=num_perm)
        pool = MinHashes.of(num_perm)  # what a process without datasketch makes
        assert index.minhashes is not None and pool.made_by == index.minhashes.made_by
        values = pool.values(shingle_hashes(text)).tobytes()
        signed = index.presigned(values, pool.made_by)
        assert signed is not None
        assert np.array_equal(signed.hashvalues, index.signature(text).hashvalues)
        assert index.query(signed) == []  # a usable signature: index it and find it
        index.insert(1, signed)
        assert index.query(index.signature(text))[0] == (1, 1.0)
    # Values under other permutations are refused: the writer then signs the text itself.
    assert NearDuplicateIndex(num_perm=64).presigned(MinHashes.of(128).values(shingle_hashes(text)).tobytes(),
                                                     MinHashes.of(128).made_by) is None
