"""The alert query language: parsed once at start-up, evaluated against many clusters.

Loading the settings parses every rule (a malformed one stops start-up); :func:`parse_query`
keeps what it parsed by query text, so evaluating a rule on every pass reuses that parse.

Grammar (operators are upper-case, everything else is case-insensitive)::

    query    := or_expr
    or_expr  := and_expr ("OR" and_expr)*
    and_expr := not_expr (["AND"] not_expr)*      # juxtaposition means AND
    not_expr := "NOT" not_expr | primary
    primary  := "(" or_expr ")" | ["title:"] ("\\"a phrase\\"" | word | prefix*)

Why our own small language rather than SQLite FTS5 syntax: FTS5's porter
stemmer and its tokenizer make "ICE" match "iced" and reject some user input
with an opaque "fts5: syntax error"; alert rules need whole-word matching and
an error that points at the offending character of the rule in the YAML.

Matching is on words: text is split into ``\\w+`` runs and case-folded, so
"ICE" matches "ICE," and "(ICE)" but never "police", and a phrase matches the
same words in a row. A term like ``e-mail`` is the phrase "e mail".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from monitor.errors import QueryError

_WORD = re.compile(r"\w+")
FIELDS = ("title",)
# Positions skipped between the parts of a document, so that a phrase never spans two articles.
_GAP = 2


def words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


# -- the document side ------------------------------------------------------------------------


@dataclass
class _Index:
    positions: dict[str, list[int]] = field(default_factory=dict)
    length: int = 0

    def add(self, text: str) -> None:
        found = words(text)
        for offset, word in enumerate(found):
            self.positions.setdefault(word, []).append(self.length + offset)
        self.length += len(found) + _GAP


class Document:
    """A searchable bag of texts (a cluster: every article's title and text), indexed once.

    ``all`` holds every part, ``title`` only the titles, so ``title:`` scoping is a look-up.
    """

    def __init__(self) -> None:
        self._fields = {"all": _Index(), "title": _Index()}

    @classmethod
    def of(cls, items: Iterable[tuple[str, str]]) -> Document:
        """From ``(title, text)`` pairs."""
        doc = cls()
        for title, text in items:
            doc.add(title=title, text=text)
        return doc

    def add(self, *, title: str = "", text: str = "") -> None:
        self._fields["title"].add(title)
        self._fields["all"].add(title)
        self._fields["all"].add(text)

    def index(self, field_name: str | None) -> _Index:
        return self._fields[field_name or "all"]


# -- the query side ---------------------------------------------------------------------------


class Node:
    def matches(self, doc: Document) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def positive_leaves(self) -> Iterator[Leaf]:
        """Leaves whose presence counts *for* a match (not under an odd number of NOTs)."""
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True)
class Leaf(Node):
    """A word, a phrase (several words in a row) or a prefix, optionally scoped to a field."""

    words: tuple[str, ...]
    prefix: bool = False
    field: str | None = None
    source: str = ""

    def matches(self, doc: Document) -> bool:
        index = doc.index(self.field)
        if self.prefix and len(self.words) == 1:
            stem = self.words[0]
            return any(word.startswith(stem) for word in index.positions)
        starts = self._positions(index, 0)
        for i in range(1, len(self.words)):
            if not starts:
                return False
            following = set(self._positions(index, i))
            starts = [p for p in starts if p in following]
        return bool(starts)

    def _positions(self, index: _Index, i: int) -> list[int]:
        word = self.words[i]
        if self.prefix and i == len(self.words) - 1:
            return [p - i for w, ps in index.positions.items() if w.startswith(word) for p in ps]
        return [p - i for p in index.positions.get(word, ())]

    def positive_leaves(self) -> Iterator[Leaf]:
        yield self

    def __str__(self) -> str:
        return self.source


@dataclass(frozen=True)
class Not(Node):
    child: Node

    def matches(self, doc: Document) -> bool:
        return not self.child.matches(doc)

    def positive_leaves(self) -> Iterator[Leaf]:
        return iter(())


@dataclass(frozen=True)
class And(Node):
    children: tuple[Node, ...]

    def matches(self, doc: Document) -> bool:
        return all(child.matches(doc) for child in self.children)

    def positive_leaves(self) -> Iterator[Leaf]:
        for child in self.children:
            yield from child.positive_leaves()


@dataclass(frozen=True)
class Or(Node):
    children: tuple[Node, ...]

    def matches(self, doc: Document) -> bool:
        return any(child.matches(doc) for child in self.children)

    def positive_leaves(self) -> Iterator[Leaf]:
        for child in self.children:
            yield from child.positive_leaves()


@dataclass(frozen=True)
class Query:
    """A parsed query: ``match(doc)`` returns the matched terms, or None when it does not match."""

    text: str
    root: Node

    def matches(self, doc: Document) -> bool:
        return self.root.matches(doc)

    def match(self, doc: Document) -> tuple[str, ...] | None:
        if not self.root.matches(doc):
            return None
        seen: dict[str, None] = {}
        for leaf in self.root.positive_leaves():
            if leaf.matches(doc):
                seen.setdefault(str(leaf), None)
        return tuple(seen)


# -- lexer and parser -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "(", ")", "AND", "OR", "NOT", "PHRASE", "WORD", "END"
    value: str
    position: int  # 0-based offset into the query
    field: str | None = None


_OPERATORS = {"AND", "OR", "NOT"}
_SPECIAL = set('()"')


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char in "()":
            tokens.append(_Token(char, char, i))
            i += 1
            continue
        start = i
        scope = None
        match = re.match(r"([A-Za-z_]+):", text[i:])
        if match and match.group(1).lower() in FIELDS:
            scope = match.group(1).lower()
            i += match.end()
            if i >= len(text) or text[i].isspace() or text[i] in "()":
                raise _error(f"'{match.group(0)}' must be followed by a word or a quoted phrase", i)
        elif match and i + match.end() < len(text) and not text[i + match.end()].isspace():
            raise _error(f"unknown field '{match.group(1)}:' (known: {', '.join(f + ':' for f in FIELDS)})", i)
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise _error("unterminated quoted phrase", i)
            tokens.append(_Token("PHRASE", text[i + 1:end], start, scope))
            i = end + 1
            continue
        j = i
        while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
            j += 1
        value = text[i:j]
        kind = value if value in _OPERATORS and scope is None else "WORD"
        tokens.append(_Token(kind, value, start, scope))
        i = j
    tokens.append(_Token("END", "", len(text)))
    return tokens


def _error(message: str, position: int) -> QueryError:
    return QueryError(message, position=position)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.at = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def parse(self) -> Node:
        if self.token.kind == "END":
            raise _error("empty query", 0)
        node = self.or_expr()
        if self.token.kind != "END":
            raise _error(f"unexpected {self._describe(self.token)}", self.token.position)
        return node

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while self.token.kind == "OR":
            self.take()
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self) -> Node:
        children = [self.not_expr()]
        while self.token.kind not in ("OR", ")", "END"):
            if self.token.kind == "AND":
                self.take()
            children.append(self.not_expr())
        return children[0] if len(children) == 1 else And(tuple(children))

    def not_expr(self) -> Node:
        if self.token.kind == "NOT":
            self.take()
            return Not(self.not_expr())
        return self.primary()

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "(":
            node = self.or_expr()
            if self.token.kind != ")":
                raise _error(f"expected ')' to close the '(' at position {token.position + 1}, "
                             f"found {self._describe(self.token)}", self.token.position)
            self.take()
            return node
        if token.kind in ("PHRASE", "WORD"):
            return self._leaf(token)
        raise _error(f"expected a word, a quoted phrase or '(', found {self._describe(token)}", token.position)

    def _leaf(self, token: _Token) -> Leaf:
        value = token.value
        prefix = value.endswith("*")
        if prefix:
            value = value[:-1]
        if "*" in value:
            opening = 1 if token.kind == "PHRASE" else 0
            raise _error("'*' is only allowed at the end of a word or phrase",
                         token.position + opening + token.value.index("*"))
        parts = tuple(words(value))
        if not parts:
            what = "empty phrase" if token.kind == "PHRASE" else f"'{token.value}' contains no letters or digits"
            raise _error(what, token.position)
        source = self.text[token.position:self.token.position].rstrip()
        return Leaf(parts, prefix=prefix, field=token.field, source=source)

    @staticmethod
    def _describe(token: _Token) -> str:
        return "the end of the query" if token.kind == "END" else f"'{token.value}'"


def lowercase_operators(text: str) -> list[str]:
    """Warnings for ``and``/``or``/``not`` written in lower case: they are searched as words, not operators.

    'ICE or weather' finds stories with all three words, which is rarely what was meant. A quoted
    "or" is a deliberate word and is not warned about; a malformed query gets its own error instead.
    """
    try:
        tokens = _lex(text)
    except QueryError:
        return []
    return [f"{token.value!r} at position {token.position + 1} is searched as a word; for the operator write "
            f"{token.value.upper()} (upper-case); to search the word, quote it: \"{token.value}\""
            for token in tokens
            if token.kind == "WORD" and token.field is None and token.value.upper() in _OPERATORS
            and token.value != token.value.upper()]


def parse_query(text: str, *, rule: str | None = None) -> Query:
    """Parse ``text``; a malformed query raises :class:`~monitor.errors.QueryError` naming ``rule`` and the position.

    Parsed once per text: a :class:`Query` is immutable, so later calls return the same one.
    """
    try:
        return _parsed(text)
    except QueryError as exc:
        raise exc.for_rule(rule, text) from None


@lru_cache(maxsize=1024)
def _parsed(text: str) -> Query:
    return Query(text, _Parser(text).parse())
