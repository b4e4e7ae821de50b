"""Read queries for the web pages: the story list and its search, the alerts inbox, feed health, a story.

Plain ``sqlite3`` over the caller's connection (Datasette's read-only one in the plugin, a test's
own), so every page is testable without a server. Each page is a few bounded queries: the page's
stories are chosen by one indexed query, then their articles and alerts are read in one batch
each (never a query per row). Outlets are named one way everywhere: ``articles.source``, the host
an article was served from (a seed file's name for a seed), which is also what the outlet counts
(``clusters.sources``) and alert rules count; the feed that brought an article is shown beside it.

The search box speaks the alert query language, evaluated on stories (:mod:`monitor.story_search`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from monitor.errors import QueryError
from monitor.query import lowercase_operators, parse_query
from monitor.story_search import StorySearch, count_leaves

PAGE_SIZE = 25
#: Period choices of the story list: the key is what the URL carries.
PERIODS: dict[str, tuple[str, timedelta | None]] = {
    "": ("any time", None), "24h": ("last 24 hours", timedelta(hours=24)),
    "3d": ("last 3 days", timedelta(days=3)), "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
}
SORTS = {"latest": "latest activity", "biggest": "most outlets", "relevance": "relevance"}
CHART_BINS = 16
#: Words, phrases and prefixes one search may hold: each is one look-up in the full-text index.
MAX_SEARCH_TERMS = 30


# -- small helpers --------------------------------------------------------------------------------------


def rows(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]).fetchone() is not None


def json_list(value: str | None) -> list[str]:
    try:
        parsed = json.loads(value or "[]")
    except ValueError:
        return []
    return [str(item) for item in parsed] if isinstance(parsed, list) else []


def parse_time(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def display_time(value: str | None) -> str:
    """``2024-05-01T08:30:00+00:00`` -> ``2024-05-01 08:30 UTC`` (times are stored in UTC)."""
    parsed = parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if parsed else (value or "")


def relative_time(value: str | None, now: datetime) -> str:
    """How long ago, as a newsroom says it: ``just now``, ``12 min ago``, ``5 h ago``, ``yesterday``,
    ``4 days ago``, then the date (``12 Mar 2024``); a time ahead of ``now`` is ``in 3 h``."""
    when = parse_time(value)
    if when is None:
        return value or ""
    seconds = (now - when).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        text = f"{int(seconds // 60)} min"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)} h"
    elif seconds < 2 * 86400 and not future:
        return "yesterday"
    elif seconds < 14 * 86400:
        text = f"{int(seconds // 86400)} days"
    else:
        when = when.astimezone(UTC)
        return f"{when.day} {when:%b %Y}"
    return f"in {text}" if future else f"{text} ago"


def offset_text(start: datetime | None, when: datetime | None) -> str:
    """How long after the first report an article appeared: ``+2h 05m``, ``+3d 4h``, ``+0m``."""
    if start is None or when is None:
        return ""
    minutes = int((when - start).total_seconds() // 60)
    if minutes <= 0:
        return "+0m"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"+{days}d {hours}h"
    return f"+{hours}h {mins:02d}m" if hours else f"+{mins}m"


def _marks(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


# -- the story list's filters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoryFilters:
    """What the story list shows; built from a URL's query string and written back into one."""

    q: str = ""
    period: str = ""
    rule: str = ""
    keyword: str = ""
    min_outlets: int = 1
    language: str = ""
    feed: str = ""  # a feed's name, or "tag:x"
    sort: str = ""  # "" is relevance with a search, else latest
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> tuple[StoryFilters, list[str]]:
        """The filters and what was wrong with the arguments (each problem is dropped, not fatal)."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        for name in ("q", "rule", "keyword", "language", "feed"):
            values[name] = (args.get(name) or "").strip()[:500]
        period = (args.get("period") or "").strip()
        if period in PERIODS:
            values["period"] = period
        else:
            problems.append(f"unknown period {period!r} (choose one of {', '.join(p for p in PERIODS if p)})")
        sort = (args.get("sort") or "").strip()
        if sort and sort not in SORTS:
            problems.append(f"unknown order {sort!r} (choose one of {', '.join(SORTS)})")
        elif sort:
            values["sort"] = sort
        for name, low in (("min_outlets", 1), ("page", 1)):
            raw = (args.get(name) or "").strip()
            if not raw:
                continue
            if raw.isdigit() and low <= int(raw) <= 1_000_000:
                values[name] = int(raw)
            else:
                problems.append(f"{name.replace('_', ' ')} must be a whole number of at least {low}, not {raw!r}")
        return cls(**values), problems

    @property
    def order(self) -> str:
        if self.sort == "relevance" and not self.q:
            return "latest"
        return self.sort or ("relevance" if self.q else "latest")

    def args(self, **changes: Any) -> dict[str, str]:
        """The query-string arguments that differ from the defaults (``page`` back to 1 unless given)."""
        changed = replace(self, **({"page": 1} | changes))
        default = StoryFilters()
        return {f.name: str(getattr(changed, f.name)) for f in fields(self)
                if getattr(changed, f.name) != getattr(default, f.name)}

    def url(self, path: str = "/", **changes: Any) -> str:
        args = self.args(**changes)
        return path + ("?" + urlencode(args) if args else "")

    @property
    def active(self) -> bool:
        return bool(self.args(page=1))


# -- search: the alert query language over the full-text index -----------------------------------------


# -- the story list -------------------------------------------------------------------------------------


def _feed_ids(conn: sqlite3.Connection, feed: str) -> list[int]:
    if not has_table(conn, "feeds"):
        return []
    if feed.startswith("tag:"):
        tag = feed[4:].strip().casefold()
        return [r["id"] for r in rows(conn, "SELECT id, tags FROM feeds")
                if tag in {t.casefold() for t in json_list(r["tags"])}]
    return [r[0] for r in conn.execute("SELECT id FROM feeds WHERE name = ? COLLATE NOCASE OR url = ?", [feed, feed])]


def story_page(conn: sqlite3.Connection, filters: StoryFilters, *, now: datetime,
               page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """The stories matching ``filters``, one page of them with everything the list shows.

    Returns ``stories``, ``total``, ``pages``, ``warnings`` (``and``/``or``/``not`` written in lower case,
    searched as words as in alert rules) and, for a bad search query, ``error`` (a
    :class:`~monitor.errors.QueryError`'s text, with the position of the fault).
    """
    result: dict[str, Any] = {"stories": [], "total": 0, "pages": 0, "error": None, "order": filters.order,
                              "warnings": lowercase_operators(filters.q) if filters.q else []}
    where = _story_conditions(conn, filters, now)
    if where is None:
        return result
    search: StorySearch | None = None
    if filters.q:
        search = _story_search(conn, filters.q, result)
        found = search.stories() if search is not None else set()
        if not found:
            return result
        where.append(("c.id IN (SELECT value FROM json_each(?))", [json.dumps(sorted(found))]))
    total, page_ids = _page_of_ids(conn, where, filters, search, page_size)
    result.update(total=total, pages=max(1, math.ceil(total / page_size)))
    stories = stories_by_id(conn, page_ids, now=now)
    matching = search.matching_articles(page_ids) if search else {}
    for story_id in page_ids:
        if story_id in stories:
            stories[story_id]["matching_articles"] = matching.get(story_id)
            result["stories"].append(stories[story_id])
    return result


Condition = tuple[str, list[Any]]  # an SQL condition on clusters ``c`` and its parameters


def _story_conditions(conn: sqlite3.Connection, filters: StoryFilters, now: datetime) -> list[Condition] | None:
    """The conditions of ``filters`` other than the search; None when nothing can match (a rule with no
    alerts table, a feed that is not configured)."""
    where: list[Condition] = [("c.merged_into IS NULL", [])]
    period = PERIODS.get(filters.period, ("", None))[1]
    if period is not None:
        where.append(("c.last_seen >= ?", [(now - period).astimezone(UTC).isoformat(timespec="seconds")]))
    if filters.min_outlets > 1:
        where.append(("c.sources >= ?", [filters.min_outlets]))
    if filters.keyword:
        escaped = json.dumps(filters.keyword).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(("c.keywords LIKE ? ESCAPE '\\'", [f"%{escaped}%"]))
    if filters.rule:
        if not has_table(conn, "alerts"):
            return None
        where.append(("c.id IN (SELECT coalesce(m.merged_into, al.cluster_id) FROM alerts al "
                      "LEFT JOIN clusters m ON m.id = al.cluster_id WHERE al.rule = ?)", [filters.rule]))
    if filters.language:
        where.append(("c.id IN (SELECT cluster_id FROM articles WHERE language = ?)", [filters.language]))
    if filters.feed:
        ids = _feed_ids(conn, filters.feed)
        if not ids:
            return None
        where.append((f"c.id IN (SELECT cluster_id FROM articles WHERE feed_id IN ({_marks(ids)}))", ids))
    return where


def _story_search(conn: sqlite3.Connection, q: str, result: dict[str, Any]) -> StorySearch | None:
    """The search for ``q``; None, with ``result["error"]`` saying why, if it cannot be run."""
    try:
        query = parse_query(q)
    except QueryError as exc:
        result["error"] = {"reason": exc.reason, "position": exc.position, "query": q,
                           "text": f"position {exc.position + 1}: {exc.reason}"}
        return None
    if (terms := count_leaves(query.root)) > MAX_SEARCH_TERMS:
        result["error"] = {"reason": "too many terms", "position": 0, "query": q,
                           "text": f"{terms} terms; a search takes at most {MAX_SEARCH_TERMS}"}
        return None
    return StorySearch(conn, query)


def _page_of_ids(conn: sqlite3.Connection, where: list[Condition], filters: StoryFilters,
                 search: StorySearch | None, page_size: int) -> tuple[int, list[int]]:
    """How many stories meet ``where``, and the ids of the requested page of them in the requested order."""
    condition = " AND ".join(sql for sql, _ in where)
    params = [value for _, values in where for value in values]
    offset = (filters.page - 1) * page_size
    if filters.order == "relevance" and search is not None:
        # Best match first; equally good matches by latest activity.
        ids = [r[0] for r in conn.execute(
            f"SELECT c.id FROM clusters c WHERE {condition} ORDER BY c.last_seen DESC, c.id DESC", params)]
        scores = search.scores(ids)
        ids.sort(key=lambda i: -round(scores[i], 9))
        return len(ids), ids[offset:offset + page_size]
    total = conn.execute(f"SELECT COUNT(*) FROM clusters c WHERE {condition}", params).fetchone()[0]
    by = "c.last_seen DESC, c.id DESC" if filters.order == "latest" else "c.sources DESC, c.size DESC, c.last_seen DESC"
    page_ids = [r[0] for r in conn.execute(
        f"SELECT c.id FROM clusters c WHERE {condition} ORDER BY {by} LIMIT ? OFFSET ?", [*params, page_size, offset])]
    return total, page_ids


def stories_by_id(conn: sqlite3.Connection, ids: list[int], *, now: datetime) -> dict[int, dict[str, Any]]:
    """Each story with its outlets, languages, feeds, rules matched and its reports-over-time chart."""
    if not ids:
        return {}
    stories = {r["id"]: r for r in rows(
        conn, f"SELECT id, title, first_seen, last_seen, size, articles, sources, keywords FROM clusters "
              f"WHERE id IN ({_marks(ids)})", ids)}
    times: dict[int, list[datetime]] = {i: [] for i in stories}
    outlets: dict[int, dict[str, str | None]] = {i: {} for i in stories}
    languages: dict[int, Counter[str]] = {i: Counter() for i in stories}
    feeds_sql = "f.name" if has_table(conn, "feeds") else "NULL"
    join = " LEFT JOIN feeds f ON f.id = a.feed_id" if has_table(conn, "feeds") else ""
    for cluster_id, source, feed, language, when in conn.execute(
            f"SELECT a.cluster_id, a.source, {feeds_sql}, a.language, coalesce(a.published, a.fetched_at) AS time "
            f"FROM articles a{join} WHERE a.cluster_id IN ({_marks(ids)}) ORDER BY time, a.id", ids):
        outlets[cluster_id].setdefault(source or "unknown", feed)
        if language:
            languages[cluster_id][language] += 1
        if parsed := parse_time(when):
            times[cluster_id].append(parsed)
    rules = story_rules(conn, ids)
    for story_id, story in stories.items():
        story["keywords"] = json_list(story["keywords"])
        story["outlet_names"] = list(outlets[story_id])
        story["feeds"] = sorted({f for f in outlets[story_id].values() if f})
        story["languages"] = [lang for lang, _ in languages[story_id].most_common()]
        story["rules"] = rules.get(story_id, [])
        story["first_seen_relative"] = relative_time(story["first_seen"], now)
        story["last_seen_relative"] = relative_time(story["last_seen"], now)
        story["first_seen_display"] = display_time(story["first_seen"])
        story["last_seen_display"] = display_time(story["last_seen"])
        story["chart"] = time_chart(times[story_id])
    return stories


def story_rules(conn: sqlite3.Connection, ids: list[int]) -> dict[int, list[str]]:
    """The alert rules each story matched, its own alerts and those of stories merged into it."""
    if not ids or not has_table(conn, "alerts"):
        return {}
    found: dict[int, set[str]] = {}
    for story, rule in conn.execute(
            f"SELECT coalesce(c.merged_into, al.cluster_id), al.rule FROM alerts al "
            f"LEFT JOIN clusters c ON c.id = al.cluster_id "
            f"WHERE al.cluster_id IN ({_marks(ids)}) "
            f"OR al.cluster_id IN (SELECT id FROM clusters WHERE merged_into IN ({_marks(ids)}))", [*ids, *ids]):
        found.setdefault(story, set()).add(rule)
    return {story: sorted(names) for story, names in found.items()}


def time_chart(times: list[datetime], bins: int = CHART_BINS,
               span: tuple[datetime, datetime] | None = None) -> dict[str, Any]:
    """Reports per time slice over a story's life (or ``span``): the bars of a small inline chart."""
    if not times:
        return {"counts": [0] * bins, "peak": 0, "start": None, "end": None, "step": ""}
    start, end = span or (min(times), max(times))
    end = max(end, start + timedelta(hours=1))
    width = (end - start) / bins
    counts = [0] * bins
    for when in times:
        counts[min(bins - 1, max(0, int((when - start) / width)))] += 1
    return {"counts": counts, "peak": max(counts), "start": display_time(start.isoformat()),
            "end": display_time(end.isoformat()), "step": _duration_text(width)}


def _duration_text(width: timedelta) -> str:
    minutes = width.total_seconds() / 60
    if minutes < 90:
        return f"{max(1, round(minutes))} min"
    if minutes < 48 * 60:
        return f"{round(minutes / 60)} h"
    return f"{round(minutes / 1440)} days"


def filter_choices(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """The values the filter form offers: rules that fired, tracked keywords, languages, feeds and tags.

    Bounded reads: the alerts' distinct rules (their unique index), the keywords of the newest 500
    stories, the languages of the newest 2,000 articles, and the (small) feeds table."""
    choices: dict[str, list[str]] = {"rules": [], "keywords": [], "languages": [], "feeds": [], "tags": []}
    if has_table(conn, "alerts"):
        choices["rules"] = [r[0] for r in conn.execute("SELECT DISTINCT rule FROM alerts ORDER BY rule")]
    keywords: set[str] = set()
    for (value,) in conn.execute("SELECT keywords FROM clusters WHERE merged_into IS NULL "
                                 "ORDER BY last_seen DESC LIMIT 500"):
        keywords.update(json_list(value))
    choices["keywords"] = sorted(keywords, key=str.casefold)
    choices["languages"] = sorted({r[0] for r in conn.execute(
        "SELECT language FROM (SELECT language FROM articles ORDER BY id DESC LIMIT 2000) "
        "WHERE language IS NOT NULL AND language <> ''")})
    if has_table(conn, "feeds"):
        tags: set[str] = set()
        for name, tag_list in conn.execute("SELECT name, tags FROM feeds ORDER BY name COLLATE NOCASE"):
            if name:
                choices["feeds"].append(name)
            tags.update(json_list(tag_list))
        choices["tags"] = sorted(tags, key=str.casefold)
    return choices


# -- the alerts inbox -----------------------------------------------------------------------------------

ALERT_STATES = {"": "all", "pending": "pending", "failing": "failing, will retry", "delivered": "delivered"}
_ALERT_STATE_SQL = {
    "pending": "al.delivered_at IS NULL AND coalesce(al.attempts, 0) = 0",
    "failing": "al.delivered_at IS NULL AND al.attempts > 0",
    "delivered": "al.delivered_at IS NOT NULL",
}


def alerts_page(conn: sqlite3.Connection, *, state: str = "", rule: str = "", page: int = 1,
                now: datetime, page_size: int = 50) -> dict[str, Any]:
    """Alerts newest first: what fired, when, delivered or pending with the last error, and the story."""
    if not has_table(conn, "alerts"):
        return {"alerts": [], "total": 0, "pages": 1, "counts": {}, "rules": []}
    where, params = [], []
    if state in _ALERT_STATE_SQL:
        where.append(_ALERT_STATE_SQL[state])
    if rule:
        where.append("al.rule = ?")
        params.append(rule)
    condition = ("WHERE " + " AND ".join(where)) if where else ""
    counts = dict(zip(("", "pending", "failing", "delivered"), conn.execute(
        "SELECT COUNT(*), " + ", ".join(f"coalesce(SUM({sql}), 0)" for sql in _ALERT_STATE_SQL.values())
        + " FROM alerts al").fetchone(), strict=True))
    total = conn.execute(f"SELECT COUNT(*) FROM alerts al {condition}", params).fetchone()[0]
    found = rows(conn, f"SELECT al.*, c.title AS story_title, c.merged_into AS story_merged_into "
                       f"FROM alerts al LEFT JOIN clusters c ON c.id = al.cluster_id {condition} "
                       f"ORDER BY al.id DESC LIMIT ? OFFSET ?", [*params, page_size, (page - 1) * page_size])
    for alert in found:
        alert["matched_terms"] = json_list(alert.get("matched_terms"))
        alert["state"] = ("delivered" if alert.get("delivered_at") else
                          "failing" if (alert.get("attempts") or 0) > 0 else "pending")
        alert["story_id"] = alert.get("story_merged_into") or alert.get("cluster_id")
        alert["created_relative"] = relative_time(alert.get("created"), now)
        alert["created_display"] = display_time(alert.get("created"))
        alert["delivered_relative"] = relative_time(alert.get("delivered_at"), now)
        alert["next_attempt_relative"] = relative_time(alert.get("next_attempt"), now)
    rules = [r[0] for r in conn.execute("SELECT DISTINCT rule FROM alerts ORDER BY rule")]
    return {"alerts": found, "total": total, "pages": max(1, math.ceil(total / page_size)), "counts": counts,
            "rules": rules}


# -- feed health ----------------------------------------------------------------------------------------


def feed_health(conn: sqlite3.Connection, *, now: datetime) -> dict[str, Any]:
    """Configured feeds, failing first (disabled, then by failed polls in a row), then by name.

    Works on every schema version: the columns a feed lacks read as empty."""
    if not has_table(conn, "feeds"):
        return {"feeds": [], "failing": 0, "disabled": 0, "removed": 0}
    everything = rows(conn, "SELECT * FROM feeds")
    removed = sum(1 for f in everything if f.get("in_config") == 0)
    feeds = [f for f in everything if f.get("in_config") != 0]
    for feed in feeds:
        feed["tags"] = json_list(feed.get("tags"))
        feed["state"] = ("disabled" if feed.get("disabled") else
                         "failing" if (feed.get("consecutive_errors") or 0) > 0 else
                         "never polled" if not feed.get("last_fetched") else "ok")
        for column in ("last_success", "last_fetched", "next_due", "failing_since", "disabled_at", "last_new_entry"):
            feed[f"{column}_relative"] = relative_time(feed.get(column), now) if feed.get(column) else ""
            feed[f"{column}_display"] = display_time(feed.get(column))
        if feed.get("disabled"):
            feed["next_due_relative"] = "not polled (disabled)"
    rank = {"disabled": 0, "failing": 1, "never polled": 2, "ok": 3}
    feeds.sort(key=lambda f: (rank[f["state"]], -(f.get("consecutive_errors") or 0), (f.get("name") or "").casefold()))
    return {"feeds": feeds, "failing": sum(f["state"] == "failing" for f in feeds),
            "disabled": sum(f["state"] == "disabled" for f in feeds), "removed": removed}


# -- one story ------------------------------------------------------------------------------------------

_CLUSTER_SQL = ("SELECT id, title, first_seen, last_seen, size, articles, sources, keywords, updated_at, "
                "merged_into FROM clusters WHERE id = ?")
_ARTICLES_SQL = """
SELECT a.id, a.url, a.title, substr(a.text, 1, 420) AS excerpt, length(a.text) AS text_length,
       a.source AS outlet, {feed} AS feed, a.feed_id, a.published, a.fetched_at,
       coalesce(a.published, a.fetched_at) AS time, a.language, a.duplicate_of, a.duplicate_similarity,
       a.cluster_score, a.cluster_terms, a.author, a.split_from, a.merged_from, a.rescored_at
FROM articles a{join}
WHERE a.cluster_id = ?
ORDER BY time, a.id
"""
#: The columns of a story's articles export (CSV and JSON), in order.
EXPORT_COLUMNS = ("id", "time", "outlet", "feed", "title", "url", "language", "author", "published", "fetched_at",
                  "duplicate_of", "duplicate_similarity", "cluster_score", "shared_terms")


def _articles_sql(conn: sqlite3.Connection) -> str:
    if has_table(conn, "feeds"):
        return _ARTICLES_SQL.format(feed="f.name", join=" LEFT JOIN feeds f ON f.id = a.feed_id")
    return _ARTICLES_SQL.format(feed="NULL", join="")


def story_articles(conn: sqlite3.Connection, cluster_id: int) -> list[dict[str, Any]]:
    """A story's articles for export: one row each in time order, the columns of :data:`EXPORT_COLUMNS`."""
    found = rows(conn, _articles_sql(conn), [cluster_id])
    for article in found:
        article["shared_terms"] = ", ".join(json_list(article.get("cluster_terms")))
    return [{column: article.get(column) for column in EXPORT_COLUMNS} for article in found]


def cluster_view(conn: sqlite3.Connection, cluster_id: int, *, now: datetime | None = None) -> dict[str, Any] | None:
    """Everything the story page shows, or None if there is no such cluster.

    The timeline is the cluster's articles in publication order; the first one is "first report".
    ``shared_terms`` counts, per term, how many articles were attached to the story because of it
    (``articles.cluster_terms``): the answer to "why are these one story". ``outlet_chart`` is the
    reports over time, one row per outlet.
    """
    now = now or datetime.now(UTC)
    clusters = rows(conn, _CLUSTER_SQL, [cluster_id])
    if not clusters:
        return None
    cluster = clusters[0]
    cluster["keywords"] = json_list(cluster["keywords"])
    articles = rows(conn, _articles_sql(conn), [cluster_id])
    by_id = {a["id"]: a for a in articles}
    copies: dict[int, list[int]] = {}
    for article in articles:
        if article["duplicate_of"] is not None:
            copies.setdefault(article["duplicate_of"], []).append(article["id"])
    start = parse_time(articles[0]["time"]) if articles else None
    terms: Counter[str] = Counter()
    for position, article in enumerate(articles):
        article["terms"] = json_list(article.pop("cluster_terms"))
        terms.update(article["terms"])
        article["first"] = position == 0
        article["time_display"] = display_time(article["time"])
        article["offset"] = "first report" if position == 0 else offset_text(start, parse_time(article["time"]))
        original = by_id.get(article["duplicate_of"])
        article["duplicate_of_title"] = original["title"] if original else None
        article["duplicate_of_outlet"] = original["outlet"] if original else None
        article["copies"] = copies.get(article["id"], [])
    outlets: dict[str, dict[str, Any]] = {}
    for article in articles:
        entry = outlets.setdefault(article["outlet"], {"outlet": article["outlet"], "first_time":
                                                       article["time_display"], "articles": 0, "feeds": []})
        entry["articles"] += 1
        if article["feed"] and article["feed"] not in entry["feeds"]:
            entry["feeds"].append(article["feed"])
    return {
        "cluster": cluster,
        "first_seen_display": display_time(cluster["first_seen"]),
        "last_seen_display": display_time(cluster["last_seen"]),
        "first_seen_relative": relative_time(cluster["first_seen"], now),
        "last_seen_relative": relative_time(cluster["last_seen"], now),
        "articles": articles,
        "first_report": articles[0] if articles else None,
        "outlets": list(outlets.values()),
        "outlet_chart": outlet_chart(articles),
        "rules": story_rules(conn, [cluster_id]).get(cluster_id, []),
        "shared_terms": [{"term": t, "articles": n} for t, n in sorted(terms.items(), key=lambda kv: (-kv[1], kv[0]))],
        "duplicates": [a for a in articles if a["duplicate_of"] is not None],
    }


def outlet_chart(articles: list[dict[str, Any]], bins: int = 24, max_rows: int = 15) -> dict[str, Any]:
    """Reports over time by outlet: one row per outlet (in order of first report), the same time slices
    and one scale, so bars compare across rows; past ``max_rows`` outlets the rest share one row."""
    dated = [(a["outlet"], t) for a in articles if (t := parse_time(a["time"])) is not None]
    if not dated:
        return {"rows": [], "start": None, "end": None, "step": "", "bins": bins, "peak": 0, "total": []}
    span = (min(t for _, t in dated), max(t for _, t in dated))
    by_outlet: dict[str, list[datetime]] = {}
    for outlet, when in dated:
        by_outlet.setdefault(outlet, []).append(when)
    named = list(by_outlet.items())[:max_rows]
    rest = [t for _, times in list(by_outlet.items())[max_rows:] for t in times]
    if rest:
        named.append((f"{len(by_outlet) - max_rows} more outlets", rest))
    chart_rows = [{"outlet": outlet, **time_chart(times, bins, span)} for outlet, times in named]
    peak = max(r["peak"] for r in chart_rows)
    for row in chart_rows:
        row["peak"] = peak
    total = time_chart([t for _, t in dated], bins, span)
    return {"rows": chart_rows, "start": total["start"], "end": total["end"], "step": total["step"], "bins": bins,
            "peak": peak, "total": total["counts"]}
