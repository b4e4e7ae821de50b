"""Seeds stage: the article files in ``seeds_dir`` (``*.txt`` plain text, ``*.html`` pages).

Each file's URL is its ``file://`` URI, so every stored article can be traced
back to the file it came from, and a re-scan recognises what it already stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from monitor.extract import article_from_html, article_from_text
from monitor.models import Article, Skipped

log = logging.getLogger(__name__)

SEED_SUFFIXES = (".txt", ".html", ".htm")


def seed_files(folder: Path) -> list[Path]:
    """Seed files in name order, so a pass is deterministic."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SEED_SUFFIXES)


def _decode(raw: bytes, path: Path) -> str | Skipped:
    """UTF-8 (with or without BOM), else cp1252 with a warning: a stray encoding loses no article."""
    if b"\x00" in raw[:8192]:
        return Skipped(str(path), "binary file (NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        log.warning("seed %s is not UTF-8 (%s); decoded as cp1252", path, exc.reason)
        return raw.decode("cp1252", errors="replace")


def read_seed(path: Path, *, max_bytes: int) -> Article | Skipped:
    """One seed file as an article, or the reason it is not one."""
    try:
        size = path.stat().st_size
        if size == 0:
            return Skipped(str(path), "empty file")
        if size > max_bytes:
            return Skipped(str(path), f"larger than the {max_bytes}-byte cap ({size} bytes)")
        raw = path.read_bytes()
    except OSError as exc:
        return Skipped(str(path), f"cannot read: {exc}")
    url = path.resolve().as_uri()
    fetched_at = datetime.now(UTC)
    if path.suffix.lower() in (".html", ".htm"):
        article = article_from_html(raw, url=url, fetched_at=fetched_at)
        if isinstance(article, Article) and not article.canonical_url:
            # A saved page without <link rel=canonical> has no outlet but its file.
            article = replace(article, source=path.name)
        return article
    text = _decode(raw, path)
    if isinstance(text, Skipped):
        return text
    return article_from_text(text, url=url, source=path.name, fetched_at=fetched_at)


def read_seeds(
    folder: Path, *, max_bytes: int, is_stored: Callable[[str], bool] = lambda url: False
) -> Iterator[Article | Skipped | str]:
    """New seed files as articles; files already stored (by URL) are yielded as their URL, unread.

    The daemon rescans the folder every few minutes: checking the URL first
    keeps a rescan of thousands of stored files cheap.
    """
    for path in seed_files(folder):
        url = path.resolve().as_uri()
        yield url if is_stored(url) else read_seed(path, max_bytes=max_bytes)
