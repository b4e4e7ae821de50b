"""The story list's search: the alert query language (:mod:`monitor.query`) evaluated on stories.

Each word, phrase or prefix is looked up once in the full-text index (whole words since migration
11), and the boolean structure is evaluated on *stories*, as a rule is: ``earthquake AND Norway``
finds a story one of whose articles says earthquake and another Norway. Stories are ranked by
relevance (bm25 of their best article per term, then how many of their articles match). The
articles table's search box takes the same language, matched one article at a time (``fts_query``).
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.errors import QueryError
from monitor.query import And, Leaf, Node, Not, Or, Query, parse_query

#: A search term found in more articles than this is ranked by how many it is in, not by bm25.
BM25_MAX_ARTICLES = 20_000


def fts_expression(leaf: Leaf) -> str:
    """One leaf of a parsed query as an FTS5 expression: a quoted phrase, ``*`` for a prefix, ``title:``."""
    phrase = '"' + " ".join(word.replace('"', '""') for word in leaf.words) + '"'
    if leaf.prefix:
        phrase += " *"
    return f"title : {phrase}" if leaf.field == "title" else phrase


def fts_query(text: str) -> str:
    """An alert-language query as one FTS5 query over single articles (the articles table's search box).

    Raises :class:`~monitor.errors.QueryError` for what the language refuses, and for a NOT with no
    word beside it (``NOT sport``, ``a OR NOT b``): FTS5 only subtracts from what something matched.
    """
    return _fts_node(parse_query(text).root, text)


def _fts_node(node: Node, text: str) -> str:
    if isinstance(node, Leaf):
        return fts_expression(node)
    if isinstance(node, Or):
        return "(" + " OR ".join(_fts_node(child, text) for child in node.children) + ")"
    if isinstance(node, And):
        positive = [_fts_node(c, text) for c in node.children if not isinstance(c, Not)]
        negative = [_fts_node(c.child, text) for c in node.children if isinstance(c, Not)]
        if positive:
            matched = "(" + " AND ".join(positive) + ")"
            return matched + "".join(f" NOT {n}" for n in negative)
    raise QueryError("NOT needs a word beside it to subtract from (e.g. storm NOT sport)", position=0, query=text)


@dataclass
class _Hits:
    """Per story: the best bm25 score (lower is better) and how many of its articles match a leaf."""

    best: dict[int, float]
    count: dict[int, int]


class StorySearch:
    """Evaluates a parsed query on stories: each leaf once through the full-text index, then sets."""

    def __init__(self, conn: sqlite3.Connection, query: Query) -> None:
        self.conn = conn
        self.query = query
        self.leaves: dict[str, _Hits] = {}
        self._universe: set[int] | None = None

    def leaf_hits(self, leaf: Leaf) -> _Hits:
        expression = fts_expression(leaf)
        if expression not in self.leaves:
            best: dict[int, float] = {}
            count: Counter[int] = Counter()
            # bm25 of a word in most articles says little and costs most of the search (0.35 of 0.6 s for a
            # word in 92,000 of 100,000 articles): past BM25_MAX_ARTICLES the word ranks by its count alone.
            (matches,) = self.conn.execute("SELECT count(*) FROM articles_fts WHERE articles_fts MATCH ?",
                                           [expression]).fetchone()
            score = "bm25(articles_fts)" if matches <= BM25_MAX_ARTICLES else "0.0"
            cursor = self.conn.execute(
                f"SELECT a.cluster_id, {score} FROM articles_fts "
                "JOIN articles a ON a.id = articles_fts.rowid "
                "WHERE articles_fts MATCH ? AND a.cluster_id IS NOT NULL", [expression])
            for cluster_id, score in cursor:
                count[cluster_id] += 1
                if score < best.get(cluster_id, math.inf):
                    best[cluster_id] = score
            self.leaves[expression] = _Hits(best, dict(count))
        return self.leaves[expression]

    def universe(self) -> set[int]:
        if self._universe is None:
            self._universe = {r[0] for r in self.conn.execute("SELECT id FROM clusters WHERE merged_into IS NULL")}
        return self._universe

    def stories(self, node: Node | None = None) -> set[int]:
        node = node or self.query.root
        if isinstance(node, Leaf):
            return set(self.leaf_hits(node).best)
        if isinstance(node, Or):
            found: set[int] = set()
            for child in node.children:
                found |= self.stories(child)
            return found
        if isinstance(node, And):
            positive = [c for c in node.children if not isinstance(c, Not)]
            negative = [c.child for c in node.children if isinstance(c, Not)]
            found = self.stories(positive[0]) if positive else set(self.universe())
            for child in positive[1:]:
                if not found:
                    return found
                found &= self.stories(child)
            for child in negative:
                if not found:
                    return found
                found -= self.stories(child)
            return found
        if isinstance(node, Not):
            return self.universe() - self.stories(node.child)
        raise TypeError(node)  # pragma: no cover

    def scores(self, stories: Iterable[int]) -> dict[int, float]:
        """Relevance of each found story: per positive term, its best article's bm25 (negated, so higher
        is better) plus a little for each further matching article."""
        leaves = [self.leaf_hits(leaf) for leaf in self.query.root.positive_leaves()]
        result = {}
        for story in stories:
            score = 0.0
            for hits in leaves:
                if story in hits.best:
                    score += -hits.best[story] + 0.5 * math.log1p(hits.count[story] - 1)
            result[story] = score
        return result

    def matching_articles(self, stories: Iterable[int]) -> dict[int, int]:
        """How many articles of each story match any positive term (at most; an article is counted once
        per term it matches, so this is shown as "up to")."""
        leaves = [self.leaf_hits(leaf) for leaf in self.query.root.positive_leaves()]
        return {story: max((hits.count.get(story, 0) for hits in leaves), default=0) for story in stories}


def count_leaves(node: Node) -> int:
    """Words, phrases and prefixes in a parsed query: each is one look-up in the full-text index."""
    if isinstance(node, Leaf):
        return 1
    if isinstance(node, Not):
        return count_leaves(node.child)
    return sum(count_leaves(child) for child in node.children)  # And, Or
