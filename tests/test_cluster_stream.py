"""Clustering on real streams: arrival order does not decide the clusters, memory stays bounded.

Feeds list items newest first and a new feed brings weeks of history, so an article
from three weeks ago routinely arrives after today's news.  These tests stream events
of distinct vocabularies with real dates, in the orders a daemon meets them.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from monitor.cluster import Clusterer, ClusterParams, Doc

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)

# Six events of different kinds, each told by five outlets in their own words.
EVENTS = {
    "quake": ("earthquake", "Valparaiso", "magnitude", "tremor", "Chile", "aftershock", "seismologists"),
    "strike": ("strike", "Hamburg", "dockers", "port", "union", "wages", "containers"),
    "flood": ("flood", "Mandalay", "monsoon", "river", "Myanmar", "evacuated", "villages"),
    "vote": ("election", "Tallinn", "ballots", "coalition", "Estonia", "parliament", "turnout"),
    "heist": ("robbery", "Antwerp", "diamonds", "vault", "thieves", "jewellers", "police"),
    "launch": ("rocket", "Kourou", "satellite", "launch", "Guiana", "orbit", "payload"),
}
FILLER = ("officials", "confirmed", "details", "expected", "later", "witnesses", "described", "scenes",
          "residents", "waited", "authorities", "announced", "measures", "spokesman", "added", "statement")


def _report(event: str, rng: random.Random) -> tuple[str, str]:
    words = list(EVENTS[event])
    title = " ".join(rng.sample(words, 4))
    body = []
    for _ in range(6):
        sentence = rng.sample(words, 5) + rng.sample(FILLER, 2)
        rng.shuffle(sentence)
        body.append(" ".join(sentence).capitalize() + f" in {words[1]}.")
    return title, " ".join(body)


def _stream(days_ago: dict[str, float], seed: int = 0) -> list[tuple[str, Doc]]:
    """Five reports per event within two days of its date, in publication order."""
    rng = random.Random(seed)
    out = []
    for event, ago in days_ago.items():
        for outlet in range(5):
            title, text = _report(event, rng)
            when = NOW - timedelta(days=ago) + timedelta(hours=rng.uniform(0, 48))
            out.append((event, Doc(0, title, text, when, f"outlet{outlet}.example")))
    out.sort(key=lambda pair: pair[1].published)
    return [(event, Doc(i, d.title, d.text, d.published, d.source)) for i, (event, d) in enumerate(out, 1)]


def _clusters(clusterer: Clusterer, stream: list[tuple[str, Doc]]) -> dict[str, set[int]]:
    """Each event's clusters once the whole stream is in."""
    for _, doc in stream:
        clusterer.add(doc, clusterer.decide(doc))
    out: dict[str, set[int]] = {}
    for event, doc in stream:
        out.setdefault(event, set()).add(clusterer.cluster_of(doc.id))
    return out


SPREAD = {"quake": 28, "strike": 24, "flood": 19, "vote": 12, "heist": 6, "launch": 1}


def test_newest_first_backfill_clusters_as_in_publication_order() -> None:
    """A month of history delivered newest first gives the same events as the same
    reports delivered in publication order: one cluster per event, none shared."""
    stream = _stream(SPREAD)
    for order in (stream, stream[::-1], random.Random(3).sample(stream, len(stream))):
        found = _clusters(Clusterer(ClusterParams()), order)
        assert all(len(ids) == 1 for ids in found.values()), found
        assert len(set().union(*found.values())) == len(EVENTS)


def test_a_late_report_joins_its_story_after_weeks_of_newer_news() -> None:
    """Today's news moved the stream's newest date three weeks past the quake; a quake
    report that arrives only now still joins the quake story."""
    stream = _stream({"quake": 22, "vote": 1, "launch": 0})
    late = next(doc for event, doc in reversed(stream) if event == "quake")
    clusterer = Clusterer(ClusterParams())
    found = _clusters(clusterer, [pair for pair in stream if pair[1] is not late])
    assert clusterer.decide(late).cluster_id in found["quake"]


def test_time_still_separates_a_repeat_of_the_same_event_kind() -> None:
    """The same words two months apart are another event: a report is compared with the
    stories around its own date, not with every story in memory."""
    clusterer = Clusterer(ClusterParams())
    first = _stream({"quake": 70}, seed=1)
    again = [(e, Doc(d.id + 100, d.title, d.text, d.published + timedelta(days=63), d.source))
             for e, d in _stream({"quake": 70}, seed=2)]
    found_first = _clusters(clusterer, first)
    found_again = _clusters(clusterer, again)
    assert found_first["quake"].isdisjoint(found_again["quake"])


def test_memory_holds_the_window_and_the_latest_arrivals() -> None:
    """Memory is bounded: what stays is every doc dated within the window of the newest
    date, and the last ``hot_docs`` arrivals whatever their dates (a backfill's own
    neighbourhood); the rest leaves, earliest arrived first."""
    stream = _stream(SPREAD)[::-1]
    params = ClusterParams(hot_docs=8)
    clusterer = Clusterer(params)
    _clusters(clusterer, stream)
    newest = max(doc.published for _, doc in stream)
    recent = {doc.id for _, doc in stream if doc.published >= newest - timedelta(days=params.window_days)}
    latest = {doc.id for _, doc in stream[-params.hot_docs:]}
    kept = {doc.id for _, doc in stream if clusterer.cluster_of(doc.id) is not None}
    assert kept == recent | latest
    assert len(recent) < len(stream) - params.hot_docs  # something had to go
    assert clusterer.live_clusters == len({clusterer.cluster_of(d) for d in kept})
