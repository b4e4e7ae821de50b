"""The alert query language: words, phrases, operators, scoping, and errors that point at the mistake."""

from __future__ import annotations

import pytest

from monitor.errors import ConfigError, QueryError
from monitor.query import Document, parse_query

SANCTUARY = '("sanctuary city" OR "sanctuary cities" OR "protection cities") AND (ICE OR "border patrol")'


def doc(*articles: tuple[str, str]) -> Document:
    return Document.of(articles)


def matches(query: str, *articles: tuple[str, str]) -> bool:
    return parse_query(query).matches(doc(*articles))


def test_words_are_case_insensitive_and_whole() -> None:
    text = ("t", "The police said ICE agents, (ICE) and ice-cold officers were there.")
    assert matches("ice", text)
    assert matches("POLICE", text)
    assert not matches("ICE", ("t", "The police arrived; the office was iced over."))
    assert not matches("polic", text)


def test_phrases_need_the_words_in_a_row() -> None:
    text = ("t", "When sanctuary cities release people, the city is a sanctuary.")
    assert matches('"sanctuary cities"', text)
    assert matches('"SANCTUARY   Cities"', text)
    assert not matches('"sanctuary city"', text)
    assert not matches('"cities sanctuary"', text)


def test_a_phrase_never_spans_two_articles_or_title_and_text() -> None:
    two = (("About sanctuary", "cities are discussed"), ("x", "and sanctuary"), ("cities", "y"))
    assert not matches('"sanctuary cities"', *two)
    assert matches("sanctuary AND cities", *two)


def test_and_or_not_and_precedence() -> None:
    text = ("t", "border patrol agents in sanctuary cities")
    assert matches("border AND patrol", text)
    assert matches("border patrol", text)  # juxtaposition is AND
    assert not matches("border AND police", text)
    assert matches("police OR patrol", text)
    assert matches("police OR border AND cities", text)  # AND binds tighter: police OR (border AND cities)
    assert not matches("(police OR border) AND mayor", text)
    assert not matches("NOT border", text)
    assert matches("border NOT police", text)
    assert matches("NOT NOT border", text)
    assert matches("border and", ("t", "border and more"))  # lower-case "and" is a word, not an operator


def test_prefix_matches_the_start_of_a_word() -> None:
    text = ("t", "Immigration enforcement officers")
    assert matches("immigr*", text)
    assert matches("enforce*", text)
    assert not matches("migr*", text)
    assert matches('"immigration enforce*"', text)


def test_title_scoping() -> None:
    article = ("Trump sends border patrol", "Officers will go to sanctuary cities.")
    assert matches("title:border", article)
    assert matches('title:"border patrol"', article)
    assert not matches("title:sanctuary", article)
    assert matches("TITLE:trump*", article)


def test_hyphenated_terms_are_phrases() -> None:
    assert matches("e-mail", ("t", "send an E-Mail now"))
    assert matches("e-mail", ("t", "send an e mail now"))
    assert not matches("e-mail", ("t", "mail e"))


def test_matched_terms_name_what_was_found_not_what_was_excluded() -> None:
    query = parse_query(SANCTUARY + " NOT mayor")
    found = query.match(doc(("x", "When sanctuary cities release them, ICE must arrest them.")))
    assert found == ('"sanctuary cities"', "ICE")
    assert query.match(doc(("x", "sanctuary cities and ICE, said the mayor"))) is None


def test_the_issue_query_on_the_two_seed_texts() -> None:
    query = parse_query(SANCTUARY)
    assert query.match(doc(("Agents", "stationed in protection cities ... ICE will then have to arrest")))
    assert query.match(doc(("Border patrol officers", "When sanctuary cities release these criminals")))
    assert query.match(doc(("Police in sanctuary cities", "local police"))) is None


@pytest.mark.parametrize(("query", "position", "reason"), [
    ('("sanctuary city" OR ICE', 24, "expected ')'"),
    ("ICE AND", 7, "found the end of the query"),
    ('ICE AND "border patrol', 8, "unterminated quoted phrase"),
    ("ICE OR OR border", 7, "found 'OR'"),
    ("ICE ) border", 4, "unexpected ')'"),
    ("body:ICE", 0, "unknown field 'body:'"),
    ("title: ICE", 6, "must be followed by"),
    ("bor*der", 3, "'*' is only allowed at the end"),
    ('ICE OR ""', 7, "empty phrase"),
    ("   ", 0, "empty query"),
    ("()", 1, "expected a word"),
])
def test_errors_give_the_position(query: str, position: int, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(query, rule="my-rule")
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.position == position
    assert reason in str(error)
    assert f"position {position + 1}" in str(error)
    assert "alert rule 'my-rule'" in str(error)
    caret_line = str(error).splitlines()[-1]
    assert caret_line.index("^") - 4 == position


def test_lower_case_operators_are_warned_about_unless_quoted_or_scoped() -> None:
    from monitor.query import lowercase_operators

    [warning] = lowercase_operators("ICE or weather")
    assert warning.startswith("'or' at position 5 is searched as a word; for the operator write OR")
    assert [w.split(" at ")[0] for w in lowercase_operators("a and b Not c")] == ["'and'", "'Not'"]
    assert lowercase_operators('ICE OR "or" OR title:and') == []
    assert lowercase_operators("\"unterminated or") == []  # a malformed query gets its error, not a warning
