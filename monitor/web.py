"""Browse the database with Datasette: its metadata, the cluster page's data, and ``serve``.

Datasette is imported only inside :func:`serve`, so the ingest stages and the
CLI's other commands never pay for it (nor depend on it being importable).

Read-only by design, but *not* immutable: Datasette opens a mutable database
file with ``?mode=ro`` for every read connection and never opens a write
connection unless a plugin asks for one (ours do not). So the daemon can keep
writing while ``serve`` runs, and each page sees the latest committed data
(WAL). ``-i``/immutable mode would instead cache table counts and assume the
file never changes, which is wrong for a database the daemon is filling.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from monitor.errors import StoreError
from monitor.settings import WebSettings

DATASETTE_DIR = Path(__file__).resolve().parent / "datasette"
METADATA_FILE = DATASETTE_DIR / "metadata.yml"
TEMPLATES_DIR = DATASETTE_DIR / "templates"
PLUGINS_DIR = DATASETTE_DIR / "plugins"
#: The database key used in metadata.yml: the stem of the shipped ``data/monitor.db``.
METADATA_DB_NAME = "monitor"
#: Datasette settings for ``serve``: article texts are long, so table cells are cut short.
SETTINGS = {"truncate_cells_html": 300, "sql_time_limit_ms": 3000}
#: The plugin's name in Datasette's metadata ``plugins`` block (the module's name in plugins/).
PLUGIN_NAME = "newsmonitor_web"


def datasette_settings(web: WebSettings | None = None) -> dict[str, Any]:
    """SETTINGS plus the limits of the config's ``web`` section (rows, time, CSV size, arbitrary SQL)."""
    web = web or WebSettings()
    return SETTINGS | {"sql_time_limit_ms": web.sql_time_limit_ms, "max_returned_rows": web.max_returned_rows,
                       "max_csv_mb": web.max_csv_mb, "default_allow_sql": web.allow_sql}


def plugin_config(web: WebSettings | None = None) -> dict[str, Any]:
    """What the plugin reads with ``datasette.plugin_config``: the per-value and per-result size bounds."""
    web = web or WebSettings()
    return {"max_value_bytes": web.max_value_bytes, "max_result_bytes": web.max_result_mb * 1_000_000}


def database_name(database: Path) -> str:
    """The name Datasette gives a database file (its stem), which is also its URL path."""
    return Path(database).stem


def load_metadata(database: Path, metadata_file: Path = METADATA_FILE,
                  web: WebSettings | None = None) -> dict[str, Any]:
    """metadata.yml with its database section (and the home page's links) re-keyed to ``database``'s name.

    The shipped file is written for ``monitor.db``; a config may name its database differently.
    With ``web``, the plugin's size bounds come from it (else the file's, else the defaults).
    """
    metadata: dict[str, Any] = YAML(typ="safe", pure=True).load(Path(metadata_file).read_text(encoding="utf-8"))
    if web is not None:
        metadata = copy.deepcopy(metadata)
        metadata.setdefault("plugins", {})[PLUGIN_NAME] = plugin_config(web)
    name = database_name(database)
    if name == METADATA_DB_NAME:
        return metadata
    metadata = copy.deepcopy(metadata)
    metadata["databases"] = {name: metadata["databases"].pop(METADATA_DB_NAME)}
    if "description_html" in metadata:
        metadata["description_html"] = metadata["description_html"].replace(
            f'"/{METADATA_DB_NAME}/', f'"/{name}/')
    return metadata


def datasette_command(database: Path, *, host: str = "127.0.0.1", port: int = 8001,
                      web: WebSettings | None = None) -> list[str]:
    """The equivalent plain ``datasette`` command line (for the README and for debugging).

    The size bounds then come from metadata.yml's ``plugins`` block (the defaults when it has none).
    """
    command = ["datasette", "serve", str(database), "--host", host, "--port", str(port),
               "--metadata", str(METADATA_FILE), "--template-dir", str(TEMPLATES_DIR),
               "--plugins-dir", str(PLUGINS_DIR)]
    for key, value in datasette_settings(web).items():
        command += ["--setting", key, str(value).lower() if isinstance(value, bool) else str(value)]
    return command


def serve(database: Path, *, host: str = "127.0.0.1", port: int = 8001, web: WebSettings | None = None) -> None:
    """Run Datasette on ``database`` until interrupted (what ``datasette serve`` does, with our files).

    ``web`` (the config's section) sets the limits: rows, query time, CSV size, the longest value and the
    largest result one query may produce (enforced on each connection by the plugin), arbitrary SQL on/off.
    """
    database = Path(database)
    if not database.is_file():
        raise StoreError(f"{database}: no database yet; run `newsmonitor run --once` first")
    import uvicorn
    from datasette.app import Datasette
    from datasette.utils import StartupError

    try:
        ds = Datasette([str(database)], metadata=load_metadata(database, web=web or WebSettings()),
                       template_dir=str(TEMPLATES_DIR), plugins_dir=str(PLUGINS_DIR),
                       settings=datasette_settings(web))
    except StartupError as exc:
        raise StoreError(f"{database}: Datasette cannot start: {exc}") from None
    _run_sync(ds.invoke_startup)
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning", lifespan="on")


def _run_sync(coroutine_function: Any) -> None:
    import asyncio

    asyncio.run(coroutine_function())


# -- the cluster page's data (plain sqlite3, so it is testable and usable without Datasette) -----------

_CLUSTER_SQL = ("SELECT id, title, first_seen, last_seen, size, articles, sources, keywords, updated_at, "
                "merged_into FROM clusters WHERE id = ?")
_ARTICLES_SQL = """
SELECT a.id, a.url, a.title, substr(a.text, 1, 420) AS excerpt, length(a.text) AS text_length,
       coalesce(f.name, a.source) AS outlet, a.feed_id, a.published, a.fetched_at,
       coalesce(a.published, a.fetched_at) AS time, a.language, a.duplicate_of, a.duplicate_similarity,
       a.cluster_score, a.cluster_terms, a.author, a.split_from, a.merged_from, a.rescored_at
FROM articles a LEFT JOIN feeds f ON f.id = a.feed_id
WHERE a.cluster_id = ?
ORDER BY time, a.id
"""


def _rows(conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _json_list(value: str | None) -> list[str]:
    try:
        parsed = json.loads(value or "[]")
    except ValueError:
        return []
    return [str(item) for item in parsed] if isinstance(parsed, list) else []


def _parse_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def display_time(value: str | None) -> str:
    """``2024-05-01T08:30:00+00:00`` -> ``2024-05-01 08:30 UTC`` (times are stored in UTC)."""
    parsed = _parse_time(value)
    return parsed.strftime("%Y-%m-%d %H:%M UTC") if parsed else (value or "")


def offset_text(start: datetime | None, when: datetime | None) -> str:
    """How long after the first report an article appeared: ``+2h 05m``, ``+3d 4h``, or ``first``."""
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


def cluster_view(conn: sqlite3.Connection, cluster_id: int) -> dict[str, Any] | None:
    """Everything the cluster page shows, or None if there is no such cluster.

    The timeline is the cluster's articles in publication order; the first one
    is "first report". ``shared_terms`` counts, per term, how many articles were
    attached to the story because of it (``articles.cluster_terms``): that is
    the answer to "why are these one story".
    """
    clusters = _rows(conn, _CLUSTER_SQL, [cluster_id])
    if not clusters:
        return None
    cluster = clusters[0]
    cluster["keywords"] = _json_list(cluster["keywords"])
    articles = _rows(conn, _ARTICLES_SQL, [cluster_id])
    by_id = {a["id"]: a for a in articles}
    start = _parse_time(articles[0]["time"]) if articles else None
    terms: Counter[str] = Counter()
    for position, article in enumerate(articles):
        article["terms"] = _json_list(article.pop("cluster_terms"))
        terms.update(article["terms"])
        article["first"] = position == 0
        article["time_display"] = display_time(article["time"])
        article["offset"] = "first report" if position == 0 else offset_text(start, _parse_time(article["time"]))
        original = by_id.get(article["duplicate_of"])
        article["duplicate_of_title"] = original["title"] if original else None
        article["duplicate_of_outlet"] = original["outlet"] if original else None
        article["copies"] = [a["id"] for a in articles if a["duplicate_of"] == article["id"]]
    outlets: dict[str, dict[str, Any]] = {}
    for article in articles:
        entry = outlets.setdefault(article["outlet"], {"outlet": article["outlet"], "first_time":
                                                       article["time_display"], "articles": 0})
        entry["articles"] += 1
    return {
        "cluster": cluster,
        "first_seen_display": display_time(cluster["first_seen"]),
        "last_seen_display": display_time(cluster["last_seen"]),
        "articles": articles,
        "first_report": articles[0] if articles else None,
        "outlets": list(outlets.values()),
        "shared_terms": [{"term": t, "articles": n} for t, n in sorted(terms.items(), key=lambda kv: (-kv[1], kv[0]))],
        "duplicates": [a for a in articles if a["duplicate_of"] is not None],
    }
