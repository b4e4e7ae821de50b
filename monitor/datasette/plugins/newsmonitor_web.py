"""Datasette plugin for newsmonitor: the newsroom pages, cluster links, and the alerts query.

Loaded with ``--plugins-dir monitor/datasette/plugins`` (``newsmonitor serve`` does this).
The pages' data comes from :mod:`monitor.store_views`, plain SQL over Datasette's read-only
connection; this module only wires it into Datasette (``register_routes``) and its templates.

- ``/``: the story list (filters, the alert-language search, paging); Datasette's own index of
  databases and tables is one click away (``/<database>``), and ``/.json`` still answers.
- ``/-/alerts``: the alerts inbox; ``/-/feeds``: feed health, failing feeds first.
- ``/-/cluster/<id>`` (and ``.json``): one story, readable; ``/-/cluster/<id>/articles.csv`` and
  ``.json`` export its articles. ``?db=`` picks the database when several are served, otherwise
  the first one with a ``clusters`` table.
- Every page's header links the story list, the inbox, feed health and the tables
  (``extra_template_vars`` gives the templates those links).
- Searches: Datasette's ``escape_fts()`` SQL function, through which the articles table's search box
  and the search queries pass their terms, takes the alert query language (:func:`monitor.story_search.fts_query`).
- Cells: a ``cluster`` column in a query, a ``cluster_id`` foreign key and ``clusters.title``
  link to the story page instead of to the raw row.
- The ``alerts`` canned query exists only while the database has an ``alerts`` table, so
  the same metadata serves databases made before and after alerts were added.
- Secrets are masked (:mod:`monitor.redact`): a feed URL's password or token in any cell of an
  HTML page, and in every JSON, CSV or HTML body as a last net; ``feeds.url`` keeps the real value.
- Size bounds on every connection: SQLite refuses a string or blob longer than ``max_value_bytes``
  (``SQLITE_LIMIT_LENGTH``: ``hex(randomblob(400000000))`` is an error, not 800 MB), and a query
  whose values add up to more than ``max_result_bytes`` is stopped while its rows are fetched.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import weakref
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import markupsafe
from datasette import hookimpl
from datasette.utils import escape_fts, sqlite_timelimit
from datasette.utils.asgi import BadRequest, NotFound, Response

from monitor import store_views, story_search
from monitor.errors import QueryError
from monitor.redact import redact
from monitor.store_views import ALERT_STATES, PERIODS, SORTS, StoryFilters
from monitor.web import PLUGIN_NAME, cluster_view, plugin_config

_DEFAULTS = plugin_config()
_MAX_ROWID = 2**63 - 1

_HAS_CLUSTERS: dict[str, bool] = {}
_MARK_START, _MARK_END = "\x02", "\x03"
#: The story page's timeline shows this many articles (``?all=1``: every one); the exports have them all.
TIMELINE_LIMIT = 200


async def _has_table(datasette: Any, database: str, table: str) -> bool:
    try:
        db = datasette.get_database(database)
    except KeyError:
        return False
    return await db.table_exists(table)


async def _is_newsmonitor_db(datasette: Any, database: str) -> bool:
    """Cached: a database has a clusters table or not for as long as it is served."""
    if database not in _HAS_CLUSTERS:
        _HAS_CLUSTERS[database] = await _has_table(datasette, database, "clusters")
    return _HAS_CLUSTERS[database]


async def _cluster_database(datasette: Any, requested: str | None) -> Any:
    if requested:
        if await _has_table(datasette, requested, "clusters"):
            return datasette.get_database(requested)
        raise NotFound(f"No newsmonitor database called {requested!r}")
    for name in datasette.databases:
        if await _has_table(datasette, name, "clusters"):
            return datasette.get_database(name)
    raise NotFound("No database with a clusters table is being served")


def cluster_url(datasette: Any, cluster_id: int) -> str:
    return datasette.urls.path(f"/-/cluster/{int(cluster_id)}")


async def _read(datasette: Any, db: Any, read: Any) -> Any:
    """``read(conn)`` on a read connection, stopped after ``sql_time_limit_ms`` like any Datasette query."""
    limit = datasette.setting("sql_time_limit_ms")

    def bounded(conn: sqlite3.Connection) -> Any:
        with sqlite_timelimit(conn, limit):
            return read(conn)

    try:
        return await db.execute_fn(bounded)
    except sqlite3.OperationalError as exc:
        if "interrupt" not in str(exc):
            raise
        raise BadRequest(f"This page took longer than {limit} ms (web.sql_time_limit_ms) and was stopped: "
                         "narrow the search or the filters.") from None


def _now() -> datetime:
    return datetime.now(UTC)


def _args(request: Any) -> dict[str, str]:
    return {key: request.args.get(key) for key in request.args}


def _without_empty(request: Any) -> Response | None:
    """A GET form sends every field, most of them empty: redirect to the short, shareable URL."""
    args = _args(request)
    if not any(value == "" for value in args.values()):
        return None
    kept = {key: value for key, value in args.items() if value != ""}
    return Response.redirect(request.path + ("?" + urlencode(kept) if kept else ""))


async def _render(datasette: Any, request: Any, template: str, context: dict[str, Any]) -> Response:
    return Response.html(await datasette.render_template(template, context, request=request))


def _page_number(request: Any) -> int:
    raw = request.args.get("page") or "1"
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 1_000_000 else 1


async def front_page(datasette: Any, request: Any) -> Response:
    """The story list: the latest and biggest stories, filtered, searched, paged."""
    if redirect := _without_empty(request):
        return redirect
    db = await _cluster_database(datasette, request.args.get("db"))
    filters, problems = StoryFilters.from_args(_args(request))
    now = _now()

    def read(conn: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, list[str]]]:
        return store_views.story_page(conn, filters, now=now), store_views.filter_choices(conn)

    data, choices = await _read(datasette, db, read)
    pages = [{"number": n, "url": datasette.urls.path(filters.url(page=n)), "current": n == filters.page}
             for n in _page_window(filters.page, data["pages"])]
    return await _render(datasette, request, "stories.html", {
        "filters": filters, "problems": problems, "data": data, "choices": choices, "periods": PERIODS,
        "sorts": SORTS, "pages": pages, "database": db.name, "now_display": store_views.display_time(
            now.isoformat(timespec="seconds")),
        "previous_url": datasette.urls.path(filters.url(page=filters.page - 1)) if filters.page > 1 else None,
        "next_url": datasette.urls.path(filters.url(page=filters.page + 1)) if filters.page < data["pages"] else None,
        "clear_url": datasette.urls.path("/"),
        "story_url": lambda story_id: cluster_url(datasette, story_id),
        "filter_url": lambda **changes: datasette.urls.path(filters.url(**changes)),
    })


def _page_window(current: int, last: int) -> list[int]:
    """Page numbers to link: the first, the last, and two either side of the current one."""
    return sorted({1, last, *range(max(1, current - 2), min(last, current + 2) + 1)})


async def alerts_page(datasette: Any, request: Any) -> Response:
    if redirect := _without_empty(request):
        return redirect
    db = await _cluster_database(datasette, request.args.get("db"))
    state = request.args.get("state") or ""
    state = state if state in ALERT_STATES else ""
    rule = (request.args.get("rule") or "").strip()
    page = _page_number(request)
    now = _now()
    data = await _read(datasette, db, lambda conn: store_views.alerts_page(conn, state=state, rule=rule, page=page,
                                                                           now=now))

    def url(**changes: Any) -> str:
        args = {"state": state, "rule": rule, "page": page if "page" in changes else 1} | changes
        kept = {k: v for k, v in args.items() if v and not (k == "page" and v == 1)}
        return datasette.urls.path("/-/alerts") + ("?" + urlencode(kept) if kept else "")

    return await _render(datasette, request, "alerts_inbox.html", {
        "data": data, "state": state, "rule": rule, "page": page, "states": ALERT_STATES, "url": url,
        "story_url": lambda story_id: cluster_url(datasette, story_id), "database": db.name,
        "table_url": datasette.urls.table(db.name, "alerts")})


async def feeds_page(datasette: Any, request: Any) -> Response:
    db = await _cluster_database(datasette, request.args.get("db"))
    now = _now()
    data = await _read(datasette, db, lambda conn: store_views.feed_health(conn, now=now))
    for feed in data["feeds"]:  # a feed URL's password or token is never shown
        for key in ("url", "url_effective", "last_error"):
            if isinstance(feed.get(key), str):
                feed[key] = redact(feed[key])
    return await _render(datasette, request, "feed_health.html", {
        "data": data, "database": db.name, "table_url": datasette.urls.table(db.name, "feeds"),
        "filter_url": lambda feed: datasette.urls.path(StoryFilters(feed=feed).url())})


async def cluster_page(datasette: Any, request: Any) -> Response:
    cluster_id = _cluster_id(request)
    db = await _cluster_database(datasette, request.args.get("db"))
    view = await _read(datasette, db, lambda conn: cluster_view(conn, cluster_id, now=_now()))
    if view is None:
        raise NotFound(f"No cluster #{cluster_id}")
    if request.url_vars.get("as_json"):
        return Response.json(view, default=str)
    path = cluster_url(datasette, cluster_id)
    shown = len(view["articles"]) if request.args.get("all") else TIMELINE_LIMIT
    view.update(timeline=view["articles"][:shown], timeline_hidden=max(0, len(view["articles"]) - shown),
                all_url=path + "?all=1")
    view.update(database=db.name, database_url=datasette.urls.database(db.name),
                table_url=datasette.urls.table(db.name, "articles") + f"?cluster_id={cluster_id}",
                query_url=datasette.urls.database(db.name) + f"/cluster_articles?cluster_id={cluster_id}",
                json_url=path + ".json", csv_export_url=path + "/articles.csv",
                json_export_url=path + "/articles.json", permalink=datasette.absolute_url(request, path),
                rule_url=lambda rule: datasette.urls.path(StoryFilters(rule=rule).url()))
    return await _render(datasette, request, "cluster.html", view)


def _cluster_id(request: Any) -> int:
    cluster_id = int(request.url_vars["cluster_id"])
    if cluster_id > _MAX_ROWID:  # no row can have it, and SQLite cannot even bind it
        raise NotFound(f"No cluster #{cluster_id}")
    return cluster_id


async def cluster_export(datasette: Any, request: Any) -> Response:
    """A story's articles as CSV or JSON, one row each in time order (a download)."""
    cluster_id = _cluster_id(request)
    db = await _cluster_database(datasette, request.args.get("db"))

    def read(conn: sqlite3.Connection) -> list[dict[str, Any]] | None:
        if conn.execute("SELECT 1 FROM clusters WHERE id = ?", [cluster_id]).fetchone() is None:
            return None
        return store_views.story_articles(conn, cluster_id)

    articles = await _read(datasette, db, read)
    if articles is None:
        raise NotFound(f"No cluster #{cluster_id}")
    name = f"story-{cluster_id}-articles"
    if request.url_vars["format"] == "json":
        response = Response.json({"story": cluster_id, "articles": articles}, default=str)
        response.headers["content-disposition"] = f'attachment; filename="{name}.json"'
        return response
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=store_views.EXPORT_COLUMNS)
    writer.writeheader()
    writer.writerows(articles)
    return Response(buffer.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{name}.csv"'})


@hookimpl
def register_routes(datasette: Any) -> list[tuple[str, Any]]:
    return [
        (r"^/$", front_page),
        (r"^/-/alerts$", alerts_page),
        (r"^/-/feeds$", feeds_page),
        (r"^/-/cluster/(?P<cluster_id>\d+)(?P<as_json>\.json)?$", cluster_page),
        (r"^/-/cluster/(?P<cluster_id>\d+)/articles\.(?P<format>csv|json)$", cluster_export),
    ]


@hookimpl
def extra_template_vars(datasette: Any, request: Any) -> dict[str, Any]:
    """The header's links on every page: stories, alerts, feeds, and the tables (the first newsmonitor database)."""
    async def inner() -> dict[str, Any]:
        tables = datasette.urls.instance()
        for name in datasette.databases:
            if name != "_internal" and await _is_newsmonitor_db(datasette, name):
                tables = datasette.urls.database(name)
                break
        current = request.path if request is not None else ""
        links = [("Stories", datasette.urls.path("/")), ("Alerts", datasette.urls.path("/-/alerts")),
                 ("Feeds", datasette.urls.path("/-/feeds")), ("Tables & SQL", tables)]
        return {"nm_links": [{"label": label, "href": href, "current": href == current} for label, href in links]}

    return inner()


_CLUSTER_COLUMNS = ((None, "cluster"), ("articles", "split_from"), ("articles", "merged_from"),
                    ("clusters", "merged_into"))


def _link(href: str, text: str, extra: str = "") -> markupsafe.Markup:
    return markupsafe.Markup('<a href="{}">{}</a>{}').format(href, text, extra)


@hookimpl
def render_cell(row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any) -> Any:
    if isinstance(value, str):
        masked = redact(value)
        if masked != value:  # a feed URL's password, a token: shown masked, and not as a link
            return markupsafe.escape(masked)

    if table is None and column == "excerpt" and isinstance(value, str) and _MARK_START in value:
        # search_articles' snippet(): the matching words, marked by control characters no text contains.
        return markupsafe.Markup(str(markupsafe.escape(value)).replace(_MARK_START, "<mark>")
                                 .replace(_MARK_END, "</mark>"))

    # A canned query's cluster column, and the columns naming where a revision moved things:
    # a cluster id opens its page. Every other cell is left to Datasette at once (a table page
    # renders thousands of cells; most need no database look-up).
    links_cluster = (table, column) in _CLUSTER_COLUMNS
    if not (links_cluster or (table and column == "cluster_id") or (table == "clusters" and column == "title")):
        return None

    async def inner() -> Any:
        if not await _is_newsmonitor_db(datasette, database):
            return None
        if links_cluster and isinstance(value, int):
            return _link(cluster_url(datasette, value), f"#{value}")
        if table and column == "cluster_id" and isinstance(value, dict) and value.get("value"):
            # articles.cluster_id, alerts.cluster_id: the label (the cluster's title) opens the cluster page.
            label = value.get("label") or f"#{value['value']}"
            return _link(cluster_url(datasette, value["value"]), label,
                         markupsafe.Markup(" <em>{}</em>").format(value["value"]))
        if table == "clusters" and column == "title" and isinstance(value, str):
            # The title opens the cluster page; the id column still opens the raw row.
            return _link(cluster_url(datasette, row["id"]), value)
        return None

    return inner()


def _pick(columns: list[str], wanted: tuple[str, ...], alias: str) -> list[str]:
    return [f"{alias}.[{c}]" for c in wanted if c in columns]


_ALERT_COLUMNS = ("id", "rule", "reason", "matched_terms", "sources_at_alert", "created", "delivered_at",
                  "attempts", "last_error", "next_attempt")
_FEED_COLUMNS = ("id", "name", "url", "last_status", "last_http_status", "consecutive_errors", "last_error",
                 "failing_since", "last_success", "last_fetched", "next_due", "poll_interval", "disabled",
                 "disabled_reason", "articles_added")


def alerts_sql(columns: list[str]) -> str:
    """Alerts newest first with their delivery status, from whichever columns the table has."""
    select = _pick(columns, _ALERT_COLUMNS, "al") or ["al.*"]
    join = ""
    if "cluster_id" in columns:
        select.insert(2 if len(select) > 1 else 0, "al.cluster_id as cluster")
        select.append("c.title as cluster_title")
        join = " left join clusters c on c.id = al.cluster_id"
    if "delivered_at" in columns:
        retrying = " when al.attempts > 0 then 'retrying'" if "attempts" in columns else ""
        select.append(f"case when al.delivered_at is not null then 'delivered'{retrying} "
                      "else 'pending' end as delivery")
    order = "al.id desc" if "id" in columns else "al.rowid desc"
    return f"select {', '.join(select)} from alerts al{join} order by {order} limit 100"


def feed_health_sql(columns: list[str]) -> str:
    """Configured feeds, failing and disabled ones first, from whichever columns the table has."""
    select = ", ".join(_pick(columns, _FEED_COLUMNS, "f")) or "f.*"
    where = " where f.in_config = 1" if "in_config" in columns else ""
    order = [f"f.{c} desc" for c in ("disabled", "consecutive_errors") if c in columns] + ["f.name"]
    return f"select {select} from feeds f{where} order by {', '.join(order)}"


@hookimpl
def canned_queries(datasette: Any, database: str) -> Any:
    async def inner() -> dict[str, Any]:
        queries: dict[str, Any] = {}
        db = datasette.get_database(database)
        if await db.table_exists("feeds"):
            queries["feed_health"] = {
                "title": "Feed health",
                "description": "Each configured feed's latest poll, errors and next poll; failing feeds first.",
                "sql": feed_health_sql(await db.table_columns("feeds")),
                "hide_sql": True,
            }
        if await db.table_exists("alerts"):
            queries["alerts"] = {
                "title": "Alerts and their delivery",
                "description": "The 100 newest alerts fired by the rules in the config: delivered, retrying or "
                               "pending (the inbox at /-/alerts pages through them all).",
                "sql": alerts_sql(await db.table_columns("alerts")),
                "hide_sql": True,
            }
        return queries

    return inner()


# -- size bounds and secrets ----------------------------------------------------------------------


class ResultTooLarge(sqlite3.DataError):
    """A DatabaseError, so Datasette reports it as a query error, not a crash."""


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else 8


def _bounded_rows(max_result_bytes: int) -> Any:
    """A row factory that is ``sqlite3.Row`` but counts each cursor's bytes and stops past the bound."""
    spent: weakref.WeakKeyDictionary[sqlite3.Cursor, int] = weakref.WeakKeyDictionary()

    def factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> sqlite3.Row:
        total = spent.get(cursor, 0) + sum(_size(v) for v in row)
        spent[cursor] = total
        if total > max_result_bytes:
            raise ResultTooLarge(f"query result larger than {max_result_bytes // 1_000_000} MB "
                                 "(web.max_result_mb): select fewer rows or shorter values")
        return sqlite3.Row(cursor, row)

    return factory


def _alert_language_fts(text: str | None) -> str:
    """Datasette's ``escape_fts``, speaking the alert query language (``earthquake OR Norway``, ``cret*``,
    ``title:storm``, phrases); what the language cannot read is searched as plain words, as before."""
    try:
        return story_search.fts_query(text or "")
    except QueryError:
        return escape_fts(text or "")


@hookimpl(trylast=True)  # after Datasette's own, whose escape_fts this replaces
def prepare_connection(conn: sqlite3.Connection, database: str, datasette: Any) -> None:
    # The articles table's search box and the search canned queries pass their terms through escape_fts().
    conn.create_function("escape_fts", 1, _alert_language_fts, deterministic=True)
    config = _DEFAULTS | (datasette.plugin_config(PLUGIN_NAME) or {})
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, int(config["max_value_bytes"]))
    conn.row_factory = _bounded_rows(int(config["max_result_bytes"]))


_TEXT_TYPES = (b"text/", b"application/json", b"application/javascript")


@hookimpl
def asgi_wrapper(datasette: Any) -> Any:
    """Mask secrets in every text body (JSON, CSV, HTML) on its way out, chunk by chunk (streams stay streams)."""

    def wrap(app: Any) -> Any:
        async def masked_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope.get("type") != "http":
                await app(scope, receive, send)
                return
            textual = False

            async def masking_send(message: dict[str, Any]) -> None:
                nonlocal textual
                if message["type"] == "http.response.start":
                    headers = message.get("headers") or []
                    kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                    textual = kind.startswith(_TEXT_TYPES)
                    if textual:  # the length changes when something is masked
                        message = message | {"headers": [(k, v) for k, v in headers
                                                          if k.lower() != b"content-length"]}
                elif message["type"] == "http.response.body" and textual and message.get("body"):
                    body = message["body"]
                    text = body.decode("utf-8", "surrogateescape")
                    masked = redact(text)
                    if masked != text:
                        message = message | {"body": masked.encode("utf-8", "surrogateescape")}
                await send(message)

            await app(scope, receive, masking_send)

        return masked_app

    return wrap
