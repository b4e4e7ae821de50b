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
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from monitor.errors import StoreError
from monitor.settings import WebSettings
from monitor.store_views import cluster_view, display_time, offset_text  # re-exported: the pages' data

__all__ = ["cluster_view", "datasette_command", "datasette_settings", "display_time", "load_metadata",
           "offset_text", "plugin_config", "serve"]

DATASETTE_DIR = Path(__file__).resolve().parent / "datasette"
METADATA_FILE = DATASETTE_DIR / "metadata.yml"
TEMPLATES_DIR = DATASETTE_DIR / "templates"
PLUGINS_DIR = DATASETTE_DIR / "plugins"
#: The database key used in metadata.yml: the stem of the shipped ``data/monitor.db``.
METADATA_DB_NAME = "monitor"
#: Datasette settings for ``serve``: article texts are long, so table cells are cut short; facet
#: suggestions are off (each one scans a whole table: 1.7 s of a 2.2 s articles page at 50,000 articles),
#: and a facet gets at most 100 ms (past it Datasette says it timed out).
SETTINGS = {"truncate_cells_html": 300, "sql_time_limit_ms": 3000, "suggest_facets": False,
            "facet_time_limit_ms": 100}
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
