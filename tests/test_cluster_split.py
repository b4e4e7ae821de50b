"""Revisions of earlier decisions, in memory and in SQLite: a cluster that turns out to hold two
events is split; two clusters that turn out to hold one story are merged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import linkage

from bench.cluster_eval import Labels
from monitor.cluster import Assignment, Clusterer, ClusterParams, Doc
from monitor.cluster.decisions import Split
from monitor.cluster.revisions import kept_vectors, leave_out, two_way_cut
from monitor.ingest import Stored, build_clusterer, ingest_article
from monitor.models import Article
from monitor.store import Store
from monitor.store_read import ReadOnlyStore

# Two real-world-shaped events of the same kind: the same navy, sea, pirates and verbs; a
# different ship, day, count and merchant vessel.
MYSORE = [
    "The Indian Navy warship INS Mysore foiled a pirate attack on the Ethiopian merchant "
    "vessel MV Gibe in the Gulf of Aden on Saturday.",
    "Marine commandos from INS Mysore captured 23 Somali and Yemeni pirates after the MV Gibe "
    "sent a distress call.",
    "The 23 pirates surrendered with seven AK-47 rifles and a rocket launcher, navy spokesman "
    "Nirad Sinha said in New Delhi.",
    "INS Mysore, a Delhi-class destroyer, had been escorting ships through the Gulf of Aden "
    "since October.",
    "The MV Gibe and its crew of 25 were unharmed, the Defence Ministry said on Saturday.",
    "Piracy off the Horn of Africa has surged, and the navy called the Saturday operation "
    "its fourth success against Somali pirates.",
]
SUKANYA = [
    "The Indian Navy warship INS Sukanya foiled a multi-boat pirate attack on five merchant "
    "vessels in the Gulf of Aden on Thursday.",
    "INS Sukanya intercepted three pirate skiffs and arrested 26 Somali pirates, the Western "
    "Naval Command said in Mumbai.",
    "Arms and ammunition were seized from the 26 pirates, who were handed over to the police "
    "in Mumbai on Friday.",
    "INS Sukanya was escorting the five vessels through the Internationally Recognised "
    "Transit Corridor.",
    "Commander Satish Kumar said the Thursday operation was the fifth anti-piracy success "
    "of the Western Naval Command.",
    "Piracy off the Horn of Africa has surged, and the Indian Navy has kept warships in the "
    "Gulf of Aden to escort merchant vessels.",
]
TITLES = {
    "mysore": ["Indian Navy captures 23 pirates in Gulf of Aden", "INS Mysore foils hijack of MV Gibe",
               "Navy commandos nab 23 Somali pirates", "Indian warship rescues Ethiopian vessel",
               "23 pirates held after Gulf of Aden attack", "Destroyer Mysore repels pirates"],
    "sukanya": ["INS Sukanya foils piracy attempt", "Indian Navy arrests 26 Somali pirates",
                "Navy thwarts attack on five merchant vessels", "26 pirates handed to Mumbai police",
                "Western Naval Command foils pirate raid", "Sukanya intercepts three skiffs"],
}
# Every report states the core facts up front, in its own words, as news reports do.
LEADS = {
    "mysore": [
        "INS Mysore captured 23 pirates trying to board the MV Gibe on Saturday.",
        "On Saturday the destroyer INS Mysore stopped 23 pirates from hijacking MV Gibe.",
        "Twenty-three pirates were caught by INS Mysore as they attacked MV Gibe.",
        "The MV Gibe was saved by INS Mysore, whose commandos held 23 attackers on Saturday.",
        "23 sea bandits who fired on MV Gibe are in the custody of INS Mysore.",
        "Saturday's rescue of MV Gibe by INS Mysore ended with 23 pirates arrested.",
    ],
    "sukanya": [
        "INS Sukanya captured 26 pirates who attacked five merchant ships on Thursday.",
        "On Thursday the patrol ship INS Sukanya stopped 26 pirates raiding a convoy.",
        "Twenty-six pirates were caught by INS Sukanya as they closed in on five vessels.",
        "Five merchant ships were saved by INS Sukanya, which held 26 attackers on Thursday.",
        "26 sea bandits who chased a convoy are in the custody of INS Sukanya.",
        "Thursday's defence of five vessels by INS Sukanya ended with 26 pirates arrested.",
    ],
}
# Which two further sentences each report tells: any two reports share at most one sentence, so
# they are different write-ups rather than near-duplicate copies.
PAIRS = [(0, 1), (2, 3), (4, 5), (0, 2), (1, 4), (3, 5)]
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)


def _report(event: str, k: int) -> tuple[str, str]:
    """Report ``k`` of an event: its own headline and lead, then two of the event's sentences."""
    sentences = MYSORE if event == "mysore" else SUKANYA
    return TITLES[event][k], "\n".join([LEADS[event][k], *(sentences[i] for i in PAIRS[k])])


def _interleaved(n: int = 6) -> list[tuple[str, str, str]]:
    """(event, title, text): reports of the two events alternating, as a wire desk sees them."""
    out = []
    for k in range(n):
        for event in ("mysore", "sukanya"):
            out.append((event, *_report(event, k)))
    return out


def _docs(reports: list[tuple[str, str, str]]) -> list[Doc]:
    return [Doc(id=i, title=t, text=x, published=START + timedelta(minutes=10 * i), source=f"s{i}")
            for i, (_, t, x) in enumerate(reports, start=1)]


# Every report joins the best existing cluster, so the two events are merged at first and
# only a split can separate them.
ALWAYS_JOIN = ClusterParams(threshold=0.0, short_threshold=0.0)


def _final_clusters(docs: list[Doc], params: ClusterParams) -> tuple[dict[int, int], list[Assignment]]:
    c = Clusterer(params)
    labels = Labels()
    assignments = []
    for d in docs:
        a = c.decide(d)
        c.add(d, a)
        assignments.append(a)
        labels.record(d.id, a)
    where = labels.cluster_of
    assert where == {d.id: c.cluster_of(d.id) for d in docs}
    return where, assignments


def test_two_merged_events_are_split_apart() -> None:
    reports = _interleaved()
    where, assignments = _final_clusters(_docs(reports), ALWAYS_JOIN)
    by_event: dict[str, set[int]] = {}
    for (event, _, _), doc_id in zip(reports, sorted(where), strict=True):
        by_event.setdefault(event, set()).add(where[doc_id])
    assert len(by_event["mysore"]) == 1 and len(by_event["sukanya"]) == 1
    assert by_event["mysore"] != by_event["sukanya"]
    splits = [a.split for a in assignments if a.split is not None]
    assert splits, "the events were never merged, so the test proves nothing"
    first = splits[0]
    assert first.ratio <= ALWAYS_JOIN.split_ratio
    # The new cluster is named after the first article that moved into it.
    assert first.new_cluster_id == min(first.moved)


def test_split_checks_off_keeps_the_merge() -> None:
    where, assignments = _final_clusters(_docs(_interleaved()), ALWAYS_JOIN.model_copy(update={"split_ratio": 0.0}))
    assert set(where.values()) == {1}
    assert all(a.split is None for a in assignments)


def test_one_event_is_not_split() -> None:
    reports = [("mysore", *_report("mysore", k)) for k in range(6)]
    where, assignments = _final_clusters(_docs(reports), ALWAYS_JOIN)
    assert all(a.split is None for a in assignments)
    assert set(where.values()) == {1}


def test_headlines_alone_are_never_split() -> None:
    """A headline is too short for a split check to see structure: only full reports take part."""
    reports = [(e, t, t) for e, t, _ in _interleaved()]
    _, assignments = _final_clusters(_docs(reports), ALWAYS_JOIN)
    assert all(a.split is None for a in assignments)


def _article(i: int, title: str, text: str) -> Article:
    when = START + timedelta(minutes=10 * i)
    return Article(url=f"https://example.org/{i}", title=title, text=text, source=f"outlet{i % 3}",
                   guid=f"g{i}", published=when, fetched_at=when, extraction="text-file")


def test_split_is_stored_with_both_clusters_recomputed(tmp_path: Path) -> None:
    reports = _interleaved()
    store = Store.open(tmp_path / "news.sqlite")
    clusterer = Clusterer(ALWAYS_JOIN)
    outcomes = [ingest_article(store, clusterer, _article(i, t, x), keywords=("Sukanya",))
                for i, (_, t, x) in enumerate(reports, start=1)]
    assert all(isinstance(o, Stored) for o in outcomes)
    splits = [o.split for o in outcomes if isinstance(o, Stored) and o.split is not None]
    assert splits

    rows = {r["id"]: r["cluster_id"] for r in store.db.query("SELECT id, cluster_id FROM articles")}
    mysore = {rows[i] for i, (e, _, _) in enumerate(reports, start=1) if e == "mysore"}
    sukanya = {rows[i] for i, (e, _, _) in enumerate(reports, start=1) if e == "sukanya"}
    assert len(mysore) == 1 and len(sukanya) == 1 and mysore != sukanya
    clusters = {r["id"]: r for r in store.db.query("SELECT * FROM clusters")}
    for cid in (*mysore, *sukanya):
        members = [i for i, c in rows.items() if c == cid]
        assert clusters[cid]["size"] == len(members) == 6
        first = min(members)
        assert clusters[cid]["title"] == reports[first - 1][1]
        assert clusters[cid]["first_seen"] <= clusters[cid]["last_seen"]
    # Tracked keywords follow the articles that carry them.
    assert clusters[next(iter(sukanya))]["keywords"] == '["Sukanya"]'
    assert clusters[next(iter(mysore))]["keywords"] == "[]"
    # Moved articles say where from, and their score and terms are re-checked against the
    # cluster they moved to: they name their own ship, not the other event's.
    assert store.db.execute("SELECT COUNT(*) FROM articles WHERE cluster_score IS NULL").fetchone()[0] == 1
    stored = {r["id"]: r for r in store.db.query("SELECT * FROM articles")}
    assert {i for i, r in stored.items() if r["split_from"] is not None} == {i for s in splits for i in s.moved}
    assert all(stored[i]["split_from"] == splits[-1].cluster_id for i in splits[-1].moved)
    reasons = {r.doc_id: r for s in splits for r in s.reasons}
    assert set(reasons) == {i for i, r in stored.items() if r["rescored_at"] is not None} == set(splits[-1].moved)
    for i, reason in reasons.items():
        terms = json.loads(stored[i]["cluster_terms"])
        assert stored[i]["cluster_score"] == reason.score > ALWAYS_JOIN.threshold
        assert terms == list(reason.shared_terms) and "sukanya" in terms and "gibe" not in terms

    # A restart replays the stored (split) clusters, and a new report finds its event.
    restored = build_clusterer(store, ALWAYS_JOIN)
    assert {i: restored.cluster_of(i) for i in rows} == rows
    title, text = _report("sukanya", 0)
    again = ingest_article(store, restored, _article(99, title + " again", text + "\nMore to follow."))
    assert isinstance(again, Stored) and again.cluster_id in sukanya
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


# Three later reports of the Mysore rescue from another angle (the crew's homecoming): alike
# among themselves, naming the same ship, navy and sea as the first reports.
_WELCOME = ("Relatives of the MV Gibe crew gathered at Bole airport in Addis Ababa to welcome the "
            "sailors home on Monday.")
HOMECOMING = [
    ("MV Gibe crew flies home", "The 25 sailors thanked INS Mysore, whose commandos captured 23 pirates in "
     "the Gulf of Aden on Saturday.\n" + _WELCOME + "\nThe shipping line Ethiopian Shipping Lines paid for "
     "the flights."),
    ("Sailors of MV Gibe back home", "Several sailors wept as they walked into the arrivals hall after the "
     "flight from Djibouti.\n" + _WELCOME + "\nThe captain praised the Indian Navy destroyer INS Mysore for "
     "stopping the 23 pirates."),
    ("Homecoming for MV Gibe sailors", "A brass band played as the sailors stepped off the plane, days after "
     "INS Mysore foiled the pirate attack in the Gulf of Aden.\n" + _WELCOME + "\nEthiopian Shipping Lines "
     "said the ship would sail again next month."),
]


def test_two_angles_on_one_story_are_not_split() -> None:
    """Each angle is close-knit, so the ratio test alone cuts them apart; they still read alike
    and name the same ship, navy and sea, which the one-story test recognises."""
    reports = [("mysore", *_report("mysore", k)) for k in range(3)] + [("mysore", t, x) for t, x in HOMECOMING]
    docs = _docs(reports)
    where, assignments = _final_clusters(docs, ALWAYS_JOIN.model_copy(update={"one_story_cross": 1.0}))
    assert len(set(where.values())) == 2 and any(a.split for a in assignments)
    where, assignments = _final_clusters(docs, ALWAYS_JOIN)
    assert set(where.values()) == {1} and not any(a.split for a in assignments)


def _two_clusters(first: list[Doc], second: list[Doc], params: ClusterParams) -> Clusterer:
    """A clusterer holding ``first`` and ``second`` as two clusters, as a restart replays them."""
    c = Clusterer(params)
    for group in (first, second):
        for d in group:
            c.add(d, Assignment(group[0].id, d is group[0], None, None, None, ()))
    return c


def test_a_report_matching_both_halves_of_one_story_merges_them() -> None:
    docs = _docs([("mysore", *_report("mysore", k)) for k in range(6)])
    c = _two_clusters(docs[:3], docs[3:5], ClusterParams())
    a = c.decide(docs[5])
    assert a.merge is not None and {a.cluster_id, a.merge.absorbed} == {1, 4}
    assert set(a.merge.moved) == ({1, 2, 3} if a.merge.absorbed == 1 else {4, 5})
    assert a.merge.cross >= ClusterParams().one_story_cross
    c.add(docs[5], a)
    assert {c.cluster_of(d.id) for d in docs} == {a.cluster_id}
    # The merged cluster decides like one built whole: a further report joins it.
    title, text = _report("mysore", 1)
    more = Doc(50, title + " (update)", text + "\nMore to follow.", docs[-1].published, "s50")
    assert c.decide(more).cluster_id == a.cluster_id

    off = _two_clusters(docs[:3], docs[3:5], ClusterParams(one_story_cross=1.0))
    assert off.decide(docs[5]).merge is None


def test_same_kind_events_are_not_merged() -> None:
    mysore = _docs([("mysore", *_report("mysore", k)) for k in range(4)])
    sukanya = [Doc(10 + i, t, x, mysore[0].published, f"t{i}")
               for i, (t, x) in enumerate(_report("sukanya", k) for k in range(3))]
    # A report that joins at any score, so the Sukanya cluster is a runner-up above the bar.
    c = _two_clusters(mysore[:3], sukanya, ALWAYS_JOIN)
    assert c.decide(mysore[3]).merge is None
    # The runner-up is there: only the one-story test keeps the two events apart.
    lax = _two_clusters(mysore[:3], sukanya, ALWAYS_JOIN.model_copy(update={"one_story_cross": 0.0,
                                                                           "one_story_names": 0.0}))
    assert lax.decide(mysore[3]).merge is not None


def test_merge_is_stored_and_replayed(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "news.sqlite")
    reports = [_report("mysore", k) for k in range(4)]
    # Stored apart first (as a stricter clusterer did), then the daemon restarts with defaults.
    apart = Clusterer(ClusterParams(threshold=0.99))
    for i, (t, x) in enumerate(reports[:3], start=1):
        assert ingest_article(store, apart, _article(i, t, x), keywords=("Gibe",)).is_new_cluster
    restored = build_clusterer(store, ClusterParams())
    out = ingest_article(store, restored, _article(4, *reports[3]), keywords=("Gibe",))
    assert isinstance(out, Stored) and out.merge is not None
    into, gone = out.cluster_id, out.merge.absorbed

    rows = {r["id"]: r for r in store.db.query("SELECT id, cluster_id, merged_from, cluster_score, rescored_at "
                                               "FROM articles")}
    assert {i for i, r in rows.items() if r["merged_from"] == gone} == set(out.merge.moved)
    # The absorbed articles are re-scored against the merged story, its founder included
    # (it had no score: it joined nothing).
    assert {r.doc_id for r in out.merge.reasons} == set(out.merge.moved)
    assert all(rows[i]["rescored_at"] is not None and rows[i]["cluster_score"] > 0.2 for i in out.merge.moved)
    assert all(rows[i]["cluster_id"] == into for i in (*out.merge.moved, 4))
    clusters = {r["id"]: r for r in store.db.query("SELECT * FROM clusters")}
    assert clusters[gone]["merged_into"] == into and clusters[gone]["articles"] == 0
    members = [i for i, r in rows.items() if r["cluster_id"] == into]
    assert clusters[into]["size"] == len(members) and clusters[into]["merged_into"] is None
    assert clusters[into]["keywords"] == '["Gibe"]'
    with ReadOnlyStore(store.path) as reader:
        assert gone not in {c["id"] for c in reader.latest_clusters()}
    assert gone not in {c["id"] for c in store.clusters_since(None)}
    assert store.count_live_clusters() == store.count("clusters") - 1
    # An alert sent for the cluster merged away counts for the cluster that absorbed it.
    store.record_alerts([{"rule": "navy", "cluster_id": gone, "step": 0, "sources_at_alert": 2,
                          "reason": "new story", "created": "2024-05-01T08:00:00+00:00"}], watermark=None)
    assert store.latest_alert_steps([into]) == {("navy", into): (0, 2)}

    again = build_clusterer(store, ClusterParams())
    assert {i: again.cluster_of(i) for i in rows} == {i: r["cluster_id"] for i, r in rows.items()}
    # A later split may name a new part after an article whose first cluster was merged away.
    store.ensure_cluster(gone, title="")
    assert store.db.execute("SELECT merged_into FROM clusters WHERE id = ?", [gone]).fetchone()[0] is None
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_leave_one_out_matches_the_group_built_without_the_doc() -> None:
    """Re-scoring subtracts a doc from its group's centroid instead of rebuilding it: the
    result must be the cluster the other docs alone would make."""
    docs = _docs(_interleaved())
    clusterer = Clusterer(ALWAYS_JOIN.model_copy(update={"split_ratio": 0.0}))
    for doc in docs:
        clusterer.add(doc, clusterer.decide(doc))
    (cid,) = {clusterer.cluster_of(d.id) for d in docs}
    states = {d.id: clusterer.window.docs[d.id] for d in docs}
    group = clusterer.window.assemble(cid, list(states.values()))
    for doc_id, state in states.items():
        rest = leave_out(group, *kept_vectors(state, clusterer.vocabulary), state.years)
        alone = clusterer.window.assemble(cid, [s for d, s in states.items() if d != doc_id])
        assert set(rest.centroid) == set(alone.centroid) and rest.years == alone.years
        for sig, cen in alone.centroid.items():
            assert rest.centroid[sig].keys() == cen.keys()
            assert abs(rest.norm_sq[sig] - alone.norm_sq[sig]) < 1e-6 * alone.norm_sq[sig]


def test_the_two_way_cut_looks_past_a_lone_outlier() -> None:
    """Two events of 4 reports each plus one odd report: average link sets the odd one apart
    first, so the top cut is '1 vs 8'; one level down are the two events."""
    n = 9
    sim = np.full((n, n), 0.2)
    sim[:4, :4] = sim[4:8, 4:8] = 0.6
    sim[8, :] = sim[:, 8] = 0.05
    sim[8, :4] = sim[:4, 8] = 0.1  # the odd report is a little closer to the first event
    np.fill_diagonal(sim, 1.0)
    merges = linkage((1.0 - sim)[np.triu_indices(n, 1)], "average")
    assert two_way_cut(sim, merges, n, min_part=3, depth=0) is None
    cut = two_way_cut(sim, merges, n, min_part=3, depth=2)
    assert cut is not None
    side, core_a, core_b = cut
    cores = {frozenset(np.flatnonzero(core_a)), frozenset(np.flatnonzero(core_b))}
    assert cores == {frozenset(range(4)), frozenset(range(4, 8))}
    first_event_side = side if side[0] else ~side
    assert set(np.flatnonzero(first_event_side)) == {0, 1, 2, 3, 8}


def test_a_rebuilt_cluster_does_not_depend_on_the_ids_its_reports_were_given() -> None:
    """Ids follow the order pages happened to arrive in; a cluster rebuilt by a revision sums its
    reports in date order, so the same reports placed in the same order give the same floats."""
    day = datetime(2026, 3, 4, 8, tzinfo=UTC)
    extra = ["rain", "gauges", "bridges", "roads", "schools", "shelters", "pumps", "farms", "trains", "power", "mud",
             "barriers"]
    texts = [f"Flood waters rose in Carlisle on day {n} as the River Eden burst its banks; {n * 37} homes were "
             f"evacuated and volunteers from Penrith and Keswick filled sandbags, officials said. Flood "
             f"{' '.join(extra[:n])} {'flood ' * (n % 4)}" for n in range(1, 13)]

    def centroid_after_a_split(ids: list[int]) -> dict[str, dict[str, float]]:
        clusterer = Clusterer(ClusterParams())
        for doc_id, (n, text) in zip(ids, enumerate(texts), strict=True):
            doc = Doc(doc_id, f"Carlisle flood, day {n}", text, day + timedelta(hours=n), f"s{n}.example")
            clusterer.add(doc, clusterer.decide(doc))
        (cluster,) = clusterer.window.clusters.values()
        last = max(cluster.members, key=lambda d: clusterer.window.docs[d].ts)
        clusterer.window.apply_split(Split(cluster.id, 999, (last,), 0.0))
        return clusterer.window.clusters[cluster.id].centroid

    assert centroid_after_a_split(list(range(1, 13))) == centroid_after_a_split(list(range(120, 0, -10)))


FOOTBALL = ("Rovers win the derby", "Rovers beat City 3-1 in the derby on Sunday, with two goals from their "
            "captain and a late penalty; the manager praised the fans and the young goalkeeper.")


def _held(params: ClusterParams, placed: list[tuple[Doc, int]]) -> Clusterer:
    """A clusterer holding each doc in the cluster given (its own id: it opens that cluster), as
    earlier decisions left them."""
    c = Clusterer(params)
    for d, cid in placed:
        c.add(d, Assignment.new(d.id) if cid == d.id else Assignment.join(cid, None, ()))
    return c


def _mixed_story() -> tuple[list[Doc], list[Doc], Doc]:
    """Five Mysore reports and two Sukanya reports (too few to split off), and an unrelated report."""
    mysore = _docs([("mysore", *_report("mysore", k)) for k in range(5)])
    sukanya = [Doc(10 + k, *_report("sukanya", k), mysore[0].published, f"t{k}") for k in range(3)]
    return mysore, sukanya, Doc(20, *FOOTBALL, mysore[0].published, "sport")


def test_a_report_read_again_into_a_story_gets_the_split_check_a_join_gets() -> None:
    """A story of one event holding two reports of a sibling event is not split (two are too few to
    stand apart); a third report of the sibling, read again out of an unrelated story it had joined,
    moves in, and the split check its arrival makes sets the three apart, as a join would."""
    mysore, sukanya, football = _mixed_story()
    placed = [(d, 1) for d in mysore] + [(d, 1) for d in sukanya[:2]] + [(football, 20), (sukanya[2], 20)]
    c = _held(ALWAYS_JOIN, placed)
    a = c.reconsider(sukanya[2])
    assert a is not None and a.cluster_id == 1
    assert a.split is not None and set(a.split.moved) == {10, 11, 12} and a.split.new_cluster_id == 10
    assert {r.doc_id for r in a.split.reasons} == {10, 11, 12}
    c.shift(12, a)
    assert {c.cluster_of(d.id) for d in mysore} == {1} and {c.cluster_of(d.id) for d in sukanya} == {10}
    assert c.cluster_of(20) == 20
    # Without split checks the move is the same and the story stays mixed.
    off = _held(ALWAYS_JOIN.model_copy(update={"split_ratio": 0.0}), placed)
    moved = off.reconsider(sukanya[2])
    assert moved is not None and moved.cluster_id == 1 and moved.split is None


def test_a_split_never_names_its_new_part_after_a_story_that_lives_on() -> None:
    """The first Sukanya report opened a story and was later read again out of it, into the mixed one;
    the story it opened lives on under its number. The split names its new part after the next report,
    and after none if every moved report's number is a story's (in memory, or the store's: ``taken``)."""
    mysore, sukanya, football = _mixed_story()
    placed = [(d, 1) for d in mysore] + [(sukanya[0], 10), (football, 10), (sukanya[1], 1),
                                         (sukanya[2], 1)]
    for taken, expected in ((set(), 11), ({11}, 12), ({11, 12, 13}, None)):
        c = _held(ALWAYS_JOIN, placed)
        c.reviser.taken = lambda ids, taken=taken: taken & set(ids)
        c.shift(10, Assignment.join(1, None, ()))  # the move that left story 10 to the football report
        assert c.cluster_of(20) == 10
        late = Doc(13, *_report("sukanya", 3), mysore[0].published, "t3")
        a = c.decide(late)
        assert a.cluster_id == 1
        if expected is None:
            assert a.split is None
        else:
            assert a.split is not None and set(a.split.moved) == {10, 11, 12, 13}
            assert a.split.new_cluster_id == expected
