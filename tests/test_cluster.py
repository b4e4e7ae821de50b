"""Online event clustering: seeds, same-kind events, determinism, purity, memory bound."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from monitor.cluster import Assignment, Clusterer, ClusterParams, Doc
from monitor.cluster.features import case_usage, head
from monitor.seeds import read_seed

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
DATA = REPO.parent / "shared" / "data"
DAY = datetime(2020, 2, 14, 12, 0, tzinfo=UTC)
SEED_A = SEEDS / "000_19088d47ecff5c57.txt"
SEED_B = SEEDS / "004_0b04817afffe1035.txt"

_CHROME = re.compile(
    r"^(news\s*/.*|share this article|.*website can also be accessed.*|www\.\S+|press tv.*)$",
    re.IGNORECASE,
)


def _light_clean(text: str) -> str:
    """Drop obvious site-chrome lines (what the extract stage removes before clustering)."""
    return "\n".join(ln for ln in text.splitlines() if not _CHROME.match(ln.strip()))


def _seed_docs(clean: bool) -> tuple[Doc, Doc]:
    if not (SEED_A.is_file() and SEED_B.is_file()):
        pytest.skip(f"seed articles not present in {SEEDS}")
    texts = [p.read_text(encoding="utf-8") for p in (SEED_A, SEED_B)]
    if clean:
        texts = [_light_clean(t) for t in texts]
    if not clean:  # just the texts, chrome and all, no title
        return tuple(  # type: ignore[return-value]
            Doc(id=i, title="", text=t, published=DAY, source=f"seed{i}")
            for i, t in enumerate(texts, start=1)
        )
    docs = []
    for i, t in enumerate(texts, start=1):
        lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
        docs.append(Doc(id=i, title=lines[0], text="\n\n".join(lines[1:]), published=DAY,
                        source=f"seed{i}"))
    return docs[0], docs[1]


def test_seed_articles_cluster_together_through_the_seed_reader() -> None:
    """As the daemon feeds them: the lead's seed reader cleans chrome and picks titles."""
    if not (SEED_A.is_file() and SEED_B.is_file()):
        pytest.skip(f"seed articles not present in {SEEDS}")
    arts = [read_seed(p, max_bytes=10**6) for p in (SEED_A, SEED_B)]
    docs = [Doc(id=i, title=a.title, text=a.text, published=None, source=a.source)
            for i, a in enumerate(arts, start=1)]
    res = _run(Clusterer(ClusterParams()), docs)
    assert res[1].cluster_id == 1


def _run(clusterer: Clusterer, docs: list[Doc]) -> list[Assignment]:
    out = []
    for d in docs:
        a = clusterer.decide(d)
        clusterer.add(d, a)
        out.append(a)
    return out


@pytest.mark.parametrize("clean", [True, False])
def test_seed_articles_cluster_together_on_cold_start(clean: bool) -> None:
    a, b = _seed_docs(clean)
    res = _run(Clusterer(ClusterParams()), [a, b])
    assert res[0].is_new_cluster and res[0].cluster_id == 1
    assert res[1].cluster_id == 1 and not res[1].is_new_cluster
    assert res[1].duplicate_of is None  # same event, different words: not a copy
    assert res[1].score is not None and res[1].shared_terms


def _web_page_docs(limit: int = 60) -> list[tuple[str, str]]:
    trafilatura = pytest.importorskip("trafilatura")
    pages = DATA / "web-pages"
    if not pages.is_dir():
        pytest.skip(f"shared web pages not present at {pages}")
    out = []
    for path in sorted(pages.glob("*.html"))[:limit]:
        text = trafilatura.extract(path.read_text(encoding="utf-8", errors="replace"))
        if text and len(text.split()) > 30:
            out.append((path.stem, text))
    return out


def test_unrelated_pages_do_not_join_seed_cluster() -> None:
    a, b = _seed_docs(clean=True)
    c = Clusterer(ClusterParams())
    _run(c, [a, b])
    for i, (name, text) in enumerate(_web_page_docs(), start=10):
        d = Doc(id=i, title=name, text=text, published=DAY, source=name)
        res = c.decide(d)
        assert res.cluster_id != 1, f"{name} joined the seed cluster: {res}"
        c.add(d, res)


def _ecb_doc(topic: int, name: str, doc_id: int) -> Doc:
    import xml.etree.ElementTree as ET

    path = DATA / "ecb-plus" / "ECB+" / str(topic) / name
    if not path.is_file():
        pytest.skip(f"ECB+ data not present at {path}")
    sents: dict[int, list[str]] = {}
    for tok in ET.parse(path).getroot().iter("token"):
        sents.setdefault(int(tok.get("sentence", "0")), []).append(tok.text or "")
    keys = sorted(sents)
    if name.endswith("ecbplus.xml"):
        keys = keys[1:]  # sentence 0 is the source URL
    lines = [" ".join(sents[k]) for k in keys]
    return Doc(id=doc_id, title=lines[0], text="\n".join(lines[1:]), published=DAY, source=name)


def test_two_events_of_the_same_kind_stay_apart() -> None:
    # Topic 1: Tara Reid enters rehab (ecb) vs. Lindsay Lohan enters rehab (ecbplus).
    docs = [
        _ecb_doc(1, "1_1ecb.xml", 1),
        _ecb_doc(1, "1_2ecb.xml", 2),
        _ecb_doc(1, "1_1ecbplus.xml", 3),
        _ecb_doc(1, "1_2ecbplus.xml", 4),
    ]
    res = _run(Clusterer(ClusterParams()), docs)
    assert res[1].cluster_id == res[0].cluster_id
    assert res[2].cluster_id != res[0].cluster_id
    assert res[3].cluster_id != res[0].cluster_id


def _synthetic_stream(n: int) -> list[Doc]:
    events = [
        ("Flood in Valparaiso", "Heavy rain flooded Valparaiso on Monday, said mayor Jorge Sharp."),
        ("Strike at Renault plant", "Workers at the Renault plant in Flins walked out over pay."),
        ("Senate passes budget", "The Senate passed the 2021 budget by 51 votes to 49 on Friday."),
    ]
    docs = []
    for i in range(n):
        title, body = events[i % 3]
        extra = f" Report number {i // 3} from correspondent {chr(65 + i % 7)}."
        docs.append(Doc(id=i + 1, title=title, text=body + extra,
                        published=DAY + timedelta(hours=i), source=f"s{i % 5}"))
    return docs


def test_deterministic() -> None:
    docs = _synthetic_stream(30)
    first = _run(Clusterer(ClusterParams()), docs)
    second = _run(Clusterer(ClusterParams()), docs)
    assert first == second


def test_decide_is_pure() -> None:
    docs = _synthetic_stream(12)
    c = Clusterer(ClusterParams())
    _run(c, docs[:-1])
    before = (c.live_docs, c.live_clusters, dict(c.vocabulary.df["body"]), len(c.duplicates))
    a1 = c.decide(docs[-1])
    a2 = c.decide(docs[-1])
    assert a1 == a2
    assert before == (c.live_docs, c.live_clusters, dict(c.vocabulary.df["body"]), len(c.duplicates))


def test_restore_by_replaying_add_gives_same_decisions() -> None:
    docs = _synthetic_stream(20)
    live = Clusterer(ClusterParams())
    assignments = _run(live, docs[:-1])
    restored = Clusterer(ClusterParams())
    for d, a in zip(docs[:-1], assignments, strict=True):
        restored.add(d, a)
    assert restored.decide(docs[-1]) == live.decide(docs[-1])


def test_memory_is_bounded_by_the_time_window() -> None:
    params = ClusterParams(window_days=1.0, hot_docs=4)
    c = Clusterer(params)
    docs = [Doc(id=i, title=f"Event {i}", text=f"Unique story {i} about place Xq{i}.",
                published=DAY + timedelta(hours=6 * i), source="s") for i in range(1, 41)]
    _run(c, docs)
    assert c.live_docs <= 6
    assert c.live_clusters <= 6


def test_stories_scored_against_are_kept_only_while_in_memory() -> None:
    """Placed one at a time with no settle to ask for them, the stories docs were scored against are
    remembered only while they are in memory: otherwise a caller that never settles (the benches,
    ``ingest_article``) grows that set with every story it ever scored, in memory and in time."""
    c = Clusterer(ClusterParams(window_days=1.0, hot_docs=4))
    docs = []
    for day in range(1, 21):  # each day its own story in words of its own, told twice
        words = ["".join("bcdfghklmnprstvz"[n % 16] + "aeiou"[n // 16 % 5] for n in (day, j // 16, j % 16, 7))
                 for j in range(60)]
        docs += [Doc(2 * day + k, " ".join(words[:3]), " ".join(words[:30] + words[30 + 15 * k:45 + 15 * k]),
                     DAY + timedelta(days=day, hours=6 * k), f"s{k}") for k in range(2)]
    assignments = _run(c, docs)
    assert sum(a.duplicate_of is None and not a.is_new_cluster for a in assignments) >= 5  # second ones joined
    assert c._considered and c._considered <= c.window.clusters.keys()


def test_params_are_frozen_and_strict() -> None:
    p = ClusterParams()
    with pytest.raises(ValidationError):
        ClusterParams(no_such_knob=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        p.threshold = 0.9  # type: ignore[misc]
    for name, info in ClusterParams.model_fields.items():
        assert info.description, f"{name} lacks a description"


def test_missing_published_uses_latest_time_seen() -> None:
    c = Clusterer(ClusterParams())
    d1, d2 = _synthetic_stream(2)
    _run(c, [d1, d2])
    late = Doc(id=3, title="Flood in Valparaiso", text="Heavy rain flooded Valparaiso on Monday.",
               published=None, source="x")
    assert c.decide(late).cluster_id == 1


def test_head_keeps_the_first_words_and_line_breaks() -> None:
    text = "\n".join(f"line{i} word{i}" for i in range(500))
    first = head(text, 400)
    assert len(first.split()) == 400
    assert first.startswith("line0 word0\nline1 word1\n")
    assert head("short text", 400) == "short text"
    assert head(text, 0) == text


def test_features_ignore_text_beyond_max_words() -> None:
    """Long pages cost no more than their first ``max_words`` words, and a tail differs nothing."""
    lead = "Flood in Valparaiso. Heavy rain flooded Valparaiso on Monday, said mayor Jorge Sharp. " * 20
    a = Doc(1, "Flood in Valparaiso", lead + " Unrelated tail about Renault Flins strikes. " * 200, DAY, "a")
    b = Doc(2, "Flood in Valparaiso", lead + " Other tail about Senate budget votes. " * 200, DAY, "b")
    c = Clusterer(ClusterParams(max_words=200))
    fa, fb = c.read(a).features, c.read(b).features
    assert fa.body == fb.body and fa.ents == fb.ents
    assert "renault" not in fa.ents


def test_case_usage_skips_sentence_starts() -> None:
    lower, cap = case_usage("Police said the Navy's ship left. The police chief met Tara Reid.\nNavy sources agreed.")
    assert lower == {"police", "ship", "left", "chief", "met", "sources", "agreed"}  # no stop words
    assert cap == {"navy", "tara", "reid"}  # 'Police', 'The', second 'Navy' start a sentence or line


def test_capitalised_common_words_stop_counting_as_names() -> None:
    """Once the stream writes 'police' in lowercase, a sentence-initial 'Police' is no name;
    'Reid', never written in lowercase, stays one, and so does the phrase 'Indian Navy'."""
    doc = Doc(99, "Reid case", "Police arrested Tara Reid. Indian Navy ships watched. " * 5, DAY, "x")
    for ratio, dropped in ((0.0, False), (0.5, True)):
        c = Clusterer(ClusterParams(entity_lowercase_ratio=ratio))
        for i in range(4):
            d = Doc(i + 1, f"Story {i}", f"The police said a navy patrol was out on day {i}. " * 5, DAY, "y")
            c.add(d, c.decide(d))
        ents = c.read(doc).features.ents
        assert ("police" not in ents) is dropped and ("navy" not in ents) is dropped
        assert {"reid", "tara reid", "indian navy"} <= set(ents)


def test_add_after_decide_equals_add_alone() -> None:
    """``add`` reuses the IDF computed by ``decide``; the state must be what a replay builds."""
    docs = _synthetic_stream(24)
    live = Clusterer(ClusterParams())
    assignments = _run(live, docs)
    replay = Clusterer(ClusterParams())
    for d, a in zip(docs, assignments, strict=True):
        replay.add(d, a)
    for cid, cl in live.window.clusters.items():
        other = replay.window.clusters[cid]
        assert cl.centroid == other.centroid
        assert cl.norm_sq == pytest.approx(other.norm_sq)


def test_index_keys_of_a_running_story_stay_bounded() -> None:
    """A story that keeps receiving reports must not grow its index keys without bound."""
    params = ClusterParams(centroid_terms=20, salient_terms=5, threshold=0.0)
    c = Clusterer(params)
    docs = [Doc(id=i, title="Flood in Valparaiso",
                text=f"Heavy rain flooded Valparaiso, said mayor Jorge Sharp. Extra word{i}a word{i}b "
                     f"word{i}c Place{i}x Person{i}y.",
                published=DAY + timedelta(minutes=i), source="s") for i in range(1, 201)]
    res = _run(c, docs)
    assert {a.cluster_id for a in res} == {1}
    cl = c.window.clusters[1]
    assert len(cl.keys) <= 4 * params.centroid_terms + 2 * params.salient_terms
    assert sum(1 for p in c.window.postings.values() if 1 in p) == len(cl.keys)


def _templated(names: dict[str, str], doc_id: int) -> Doc:
    text = (
        "{mayor}, the mayor of {city}, said on Monday that firefighters had put out the blaze at the "
        "{firm} warehouse after six hours. Fire chief {chief} said two workers were taken to "
        "{hospital} with burns and that the cause of the fire was not yet known. The company's "
        "spokeswoman {spokes} said production would resume within a week, and residents near the "
        "river were told to keep their windows closed while the smoke cleared."
    ).format(**names)
    return Doc(id=doc_id, title=f"Fire at {names['firm']} warehouse in {names['city']}", text=text,
               published=DAY, source=f"s{doc_id}")


def test_same_text_with_other_names_is_another_event() -> None:
    """A report reused with other people and places (a templated story) must not join."""
    first = _templated({"mayor": "Anna Keller", "city": "Linz", "firm": "Voestalpine", "chief": "Peter Gruber",
                        "hospital": "Kepler University Hospital", "spokes": "Maria Huber"}, 1)
    other = _templated({"mayor": "John Marsh", "city": "Leeds", "firm": "Arla", "chief": "Tom Biggs",
                        "hospital": "St James's Hospital", "spokes": "Kate Rowe"}, 2)
    same = _templated({"mayor": "Anna Keller", "city": "Linz", "firm": "Voestalpine", "chief": "Peter Gruber",
                       "hospital": "Kepler University Hospital", "spokes": "Maria Huber"}, 3)
    c = Clusterer(ClusterParams())
    c.add(first, c.decide(first))
    assert c.decide(other).is_new_cluster
    assert c.decide(replace(same, text=same.text + " More updates will follow.")).cluster_id == 1
    # Without the conflict signal the shared wording alone would carry it.
    lenient = Clusterer(ClusterParams(entity_conflict_penalty=0.0))
    lenient.add(first, lenient.decide(first))
    assert not lenient.decide(other).is_new_cluster


def test_evicted_docs_no_longer_count_in_document_frequencies() -> None:
    """IDF is over the docs in memory: a doc that leaves it is uncounted, and a word only it used is dropped."""
    c = Clusterer(ClusterParams(window_days=1, hot_docs=3))
    docs = [Doc(id=i + 1, title=f"Bridge closure report {i}",
                text=f"The harbour bridge stays closed while engineers inspect cable zq{i}x, officials said.",
                published=DAY + timedelta(days=2 * i), source=f"s{i}") for i in range(8)]
    _run(c, docs)
    assert 0 < c.live_docs < len(docs)  # the early ones left memory
    df = c.vocabulary.df["body"]
    assert c.vocabulary.n_docs == c.live_docs
    assert max(df.values()) == c.live_docs  # "bridge" is in every doc, counted once per doc in memory
    assert "zq0x" not in df and f"zq{len(docs) - 1}x" in df
