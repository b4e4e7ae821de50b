"""Seeds stage: the article files in ``seeds_dir`` (``*.txt`` plain text, ``*.html`` pages).

Each file's URL is its ``file://`` URI, so every stored article can be traced
back to the file it came from, and a re-scan recognises what it already stored.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from monitor.charset import decode_html
from monitor.extract import article_from_html, article_from_text
from monitor.models import Article, Skipped

log = logging.getLogger(__name__)

SEED_SUFFIXES = (".txt", ".html", ".htm")


@dataclass(frozen=True)
class SeedStored:
    """A seed file whose article is already stored (by its ``file:`` URL): not read again."""

    url: str


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


def _read_inside(path: Path, folder: Path | None, max_bytes: int) -> bytes | Skipped:
    """The file's bytes, if it is a regular file that resolves inside ``folder`` and is not over the cap.

    A symlink in seeds/ to /etc/passwd was stored as an article: whoever can
    drop a link there could publish any file the daemon can read. The path is
    resolved, must stay inside ``seeds_dir``, and is opened with O_NOFOLLOW so
    a link swapped in after the check is not followed either.
    """
    resolved = path.resolve()
    if folder is not None and not resolved.is_relative_to(folder.resolve()):
        return Skipped(str(path), f"resolves to {resolved}, outside seeds_dir {folder}: refused, not read")
    try:
        descriptor = os.open(resolved, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return Skipped(str(path), f"cannot read: {exc}")
    with os.fdopen(descriptor, "rb") as file:
        size = os.fstat(file.fileno())
        if not stat.S_ISREG(size.st_mode):
            return Skipped(str(path), "not a regular file")
        if size.st_size == 0:
            return Skipped(str(path), "empty file")
        if size.st_size > max_bytes:
            return Skipped(str(path), f"larger than the {max_bytes}-byte cap ({size.st_size} bytes)")
        try:
            return file.read(max_bytes + 1)[:max_bytes]
        except OSError as exc:
            return Skipped(str(path), f"cannot read: {exc}")


def _html_article(raw: bytes, path: Path, url: str, fetched_at: datetime) -> Article | Skipped:
    """A saved page, decoded as fetched pages are (:func:`~monitor.charset.decode_html`), through trafilatura."""
    decoded = decode_html(raw)
    article = article_from_html(decoded.content, url=url, fetched_at=fetched_at)
    if not isinstance(article, Article):
        return article
    if decoded.note:
        log.info("seed %s: %s", path, decoded.note)
        article = replace(article, extraction=f"{article.extraction} ({decoded.note})")
    if not article.canonical_url:
        # A saved page without <link rel=canonical> has no outlet but its file.
        article = replace(article, source=path.name)
    return article


def read_seed(path: Path, *, max_bytes: int, folder: Path | None = None) -> Article | Skipped:
    """One seed file as an article, or the reason it is not one; with ``folder``, only a file inside it."""
    raw = _read_inside(path, folder, max_bytes)
    if isinstance(raw, Skipped):
        return raw
    url = path.resolve().as_uri()
    fetched_at = datetime.now(UTC)
    if path.suffix.lower() in (".html", ".htm"):
        return _html_article(raw, path, url, fetched_at)
    text = _decode(raw, path)
    if isinstance(text, Skipped):
        return text
    return article_from_text(text, url=url, source=path.name, fetched_at=fetched_at)


def read_seeds(
    folder: Path, *, max_bytes: int, is_stored: Callable[[str], bool] = lambda url: False
) -> Iterator[Article | Skipped | SeedStored]:
    """New seed files as articles; files already stored (by URL) are yielded as :class:`SeedStored`, unread.

    The daemon rescans the folder every few minutes: checking the URL first
    keeps a rescan of thousands of stored files cheap. A file resolving outside
    ``folder`` is refused before anything else, so its target is never named as stored.
    """
    for path in seed_files(folder):
        url = path.resolve().as_uri()
        if path.resolve().is_relative_to(folder.resolve()) and is_stored(url):
            yield SeedStored(url)
        else:
            yield read_seed(path, max_bytes=max_bytes, folder=folder)
