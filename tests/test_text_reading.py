"""A text read in the extraction processes gives the clusterer the very features it would read itself."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from monitor.cluster import ClusterParams, Doc
from monitor.cluster.features import (
    _YEAR,
    _entities,
    _name_in,
    _name_test,
    _numbers,
    _sublinear,
    _title_is_caps,
    _words,
    case_usage,
    extract,
    fold_accents,
    head,
    read_text,
)
from monitor.dedup import NearDuplicateIndex, content_hash
from monitor.tasks import PageJob, ReadFor, extract_page

PARAMS = ClusterParams()
LONG = ("Officials in Lisbon said on Tuesday that the harbour bridge would close for three weeks while engineers "
        "from Ponte Norte replace its worn expansion joints. Maria Costa, the city's transport chief, said buses "
        "would divert through the tunnel in March 2026, adding ten minutes. ") * 3
CASES = [
    ("Bridge closes after storm in March", "5 people were hurt, police said on Monday. " + LONG),
    ("Harbour Bridge Closes For Three Weeks Of Repairs", LONG),
    ("Harbour Bridge Closes For Three Weeks Of Repairs", ""),
    ("Lisbon's bridge: what we know", "Short text, 2026, in May 4 words."),
    ("", LONG),
    ("Mayor of Porto in 2025", " \tJoão Silva, de Almeida Group's head, spoke. " + LONG),
    ("Strike on Friday", "— 2024-05-01: Unions at Ponte Norte walked out in protest.\n" + LONG),
    ("Dr Ana Lima at Mt Cook", "Police Inspector Dave Gaskin met Dr Ana Lima at Mt Cook, near Vendôme. " + LONG),
]


def reference(doc: Doc, written_lower: dict[str, int], written_cap: dict[str, int],
              index: NearDuplicateIndex) -> tuple:
    """The features as read from title and text together, the way the clusterer read them before."""
    title, text = doc.title or "", head(doc.text or "", PARAMS.max_words)
    full = f"{title}\n{text}" if text else title
    ent_src = fold_accents(text if _title_is_caps(title) else full)
    n_words = len(text.split())
    lower, cap = case_usage(ent_src)
    ents = _entities(ent_src)
    if n_words >= PARAMS.long_text_words:  # each entity tested on its own, as the names were kept before
        is_name = _name_test(lower, cap, PARAMS.entity_lowercase_ratio, written_lower, written_cap)
        ents = [kept for e in ents if (kept := _name_in(e, is_name)) is not None]
    sig = index.signature(text if n_words >= 20 else full)
    return (list(_sublinear(_words(full)).items()), list(_sublinear(_words(title)).items()),
            list(_sublinear(ents).items()), list(_sublinear(_numbers(full)).items()),
            frozenset(_YEAR.findall(full)), lower, cap, n_words, None if sig is None else list(sig.hashvalues))


def features(doc: Doc, written_lower: dict[str, int], written_cap: dict[str, int],
             index: NearDuplicateIndex) -> tuple:
    f = extract(doc, PARAMS, written_lower, written_cap, index)
    return (list(f.body.items()), list(f.title.items()), list(f.ents.items()), list(f.nums.items()), f.years,
            f.lower, f.cap, f.words, None if f.sig is None else list(f.sig.hashvalues))


@pytest.mark.parametrize(("title", "text"), CASES)
def test_a_text_read_apart_from_its_title_gives_the_features_of_both_read_together(title: str, text: str) -> None:
    index = NearDuplicateIndex(PARAMS.near_dup_threshold, PARAMS.num_perm, PARAMS.shingle_size)
    written_lower, written_cap = {"police": 9, "officials": 7, "bridge": 5}, {"bridge": 1}
    when = datetime(2026, 3, 4, tzinfo=UTC)
    expected = reference(Doc(1, title, text, when, "a.example"), written_lower, written_cap, index)

    by_writer = features(Doc(1, title, text, when, "a.example"), written_lower, written_cap, index)
    reading = pickle.loads(pickle.dumps(read_text(text, PARAMS.max_words, PARAMS.shingle_size)))
    by_worker = features(Doc(1, title, text, when, "a.example", reading), written_lower, written_cap, index)
    signed = pickle.loads(pickle.dumps(read_text(text, PARAMS.max_words, PARAMS.shingle_size, PARAMS.num_perm)))
    signed_by_worker = features(Doc(1, title, text, when, "a.example", signed), written_lower, written_cap, index)

    assert by_writer == expected
    assert by_worker == expected
    assert signed_by_worker == expected
    assert (signed.minhash is not None) == (signed.words >= 20)  # where the writer signs the text alone


def test_a_reading_of_another_text_or_other_parameters_is_not_used() -> None:
    index = NearDuplicateIndex(PARAMS.near_dup_threshold, PARAMS.num_perm, PARAMS.shingle_size)
    title, text = CASES[0]
    when = datetime(2026, 3, 4, tzinfo=UTC)
    expected = reference(Doc(1, title, text, when, "a.example"), {}, {}, index)

    other_text = read_text(CASES[6][1], PARAMS.max_words, PARAMS.shingle_size)
    other_params = read_text(text, 12, PARAMS.shingle_size)

    signed_otherwise = read_text(text, PARAMS.max_words, PARAMS.shingle_size, PARAMS.num_perm // 2)

    assert features(Doc(1, title, text, when, "a.example", other_text), {}, {}, index) == expected
    assert features(Doc(1, title, text, when, "a.example", other_params), {}, {}, index) == expected
    assert signed_otherwise.minhash is not None
    assert features(Doc(1, title, text, when, "a.example", signed_otherwise), {}, {}, index) == expected


def test_the_extraction_task_reads_the_text_it_extracted_when_asked() -> None:
    page = (f"<html lang='en'><head><title>Harbour bridge closes</title></head><body><article><h1>Harbour bridge "
            f"closes</h1><p>{LONG}</p></article></body></html>").encode()
    fetched = datetime(2026, 3, 4, 9, tzinfo=UTC)
    url = "http://127.0.0.2/news/bridge"

    asked = extract_page(PageJob(url, url, page, "utf-8", fetched, ReadFor(PARAMS.max_words, PARAMS.shingle_size)))
    not_asked = extract_page(PageJob(url, url, page, "utf-8", fetched))

    assert asked.extracted == not_asked.extracted  # the reading rides along; the article is the same
    assert not_asked.extracted.reading is None
    reading = asked.extracted.reading
    assert reading == read_text(asked.extracted.text, PARAMS.max_words, PARAMS.shingle_size, PARAMS.num_perm,
                                digest=True)
    assert reading.minhash is not None
    # The writer's exact-duplicate key of that text, and of no other.
    assert reading.digest_of(asked.extracted.text) == content_hash(asked.extracted.text)
    assert reading.digest_of(asked.extracted.text + " Updated.") is None
