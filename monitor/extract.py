"""Extract stage: clean text and metadata from an HTML page, a plain-text file or a feed entry.

HTML goes through trafilatura (boilerplate removal, title, author, date,
canonical URL); plain text has no markup to guide it, so :func:`clean_lines`
removes the site chrome that text dumps of news pages carry. Both paths end in
the same cleaning, so an article reads the same whichever way it came in.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from configparser import ConfigParser
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import lxml.html
import trafilatura
from htmldate import find_date
from lxml.etree import ParserError
from py3langid.langid import MODEL_FILE, LanguageIdentifier
from trafilatura.metadata import examine_meta, extract_author, extract_meta_json, extract_title, extract_url
from trafilatura.settings import Extractor, set_date_params, use_config
from trafilatura.utils import load_html

from monitor.dedup import same_outlet
from monitor.models import Article, FeedEntry, Skipped

MIN_TEXT_CHARS = 80
MAX_TITLE_CHARS = 200

# Lines that are site furniture, not reporting. Matched on a whole (stripped) line.
_CHROME = re.compile(
    r"""(?ix)^(
        share\ (this|on)(\ (article|story|page|post))?:? |
        .*\bcan\ also\ be\ accessed\ at\ the\ following\ alternate\ address(es)?\b.* |
        (follow|like|join)\ us\ on\b.{0,60} |
        (sign\ up|subscribe)\b.{0,80}\b(newsletter|updates|alerts)\b.{0,40} |
        (read\ more|related(\ (articles|stories|content))?|advertisement|sponsored(\ content)?|
         most\ (read|popular)|trending(\ now)?|comments?)\s*:? |
        .*\ball\ rights\ reserved\b.* |
        (copyright\ )?(©|\(c\))\ ?\d{4}.* |
        (photo|image|picture|credit)s?\ ?:.{0,120} |
        .{0,200}\((file\ )?(photo|image|picture)[^)]{0,60}\)
    )$"""
)
_DOMAIN = re.compile(r"(?i)^(https?://)?(www\.)?[a-z0-9-]+(\.[a-z0-9-]+)+/?$")
_BREADCRUMB = re.compile(r"^\s*[\w&'’-]+(\s[\w&'’-]+){0,2}(\s*[/>|»]\s*[\w&'’-]+(\s[\w&'’-]+){0,2})+\s*$")
# A footer starts at a "share"/"alternate addresses" line when only a few short lines follow it.
_FOOTER_START = re.compile(r"(?i)^(share\ this|.*alternate address)", re.X)
_DATELINE = re.compile(r"^[A-Z][A-Z.,'’ -]{1,40}(\([^)]{1,40}\))?\s*[–—-]{1,2}\s+")
_SENTENCE_END = re.compile(r"[.!?][\"”’']?(\s|$)")


def _is_chrome(line: str) -> bool:
    return bool(_CHROME.match(line) or _DOMAIN.match(line) or _BREADCRUMB.match(line))


def _cut_footer(lines: list[str]) -> list[str]:
    """Drop a trailing footer block: a share/alternate-address line followed only by short lines."""
    for index, line in enumerate(lines):
        if _FOOTER_START.match(line):
            tail = lines[index + 1 :]
            if len(tail) <= 4 and all(len(t) < 80 for t in tail):
                return lines[:index]
    return lines


def clean_lines(text: str) -> list[str]:
    """Paragraphs of ``text`` without site chrome; whitespace normalised, empty lines gone."""
    lines = [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]
    lines = _cut_footer([line for line in lines if line])
    return [line for line in lines if not _is_chrome(line)]


def _looks_like_headline(line: str) -> bool:
    words = line.split()
    return 3 <= len(words) <= 25 and len(line) <= MAX_TITLE_CHARS and not re.search(r"[.!?:;,\"”]$", line)


def _shorten(text: str) -> str:
    if len(text) <= MAX_TITLE_CHARS:
        return text
    return text[:MAX_TITLE_CHARS].rsplit(" ", 1)[0] + "…"


def first_sentence(paragraph: str) -> str:
    """The opening sentence without a dateline ("WASHINGTON –"), as a stand-in title."""
    body = _DATELINE.sub("", paragraph, count=1)
    match = _SENTENCE_END.search(body, 20)
    sentence = body[: match.end()].strip() if match else body
    return _shorten(sentence)


def title_and_body(lines: list[str]) -> tuple[str, list[str]]:
    """A headline line if the text opens with one (it is then not repeated in the body), else the first sentence."""
    if len(lines) > 1 and _looks_like_headline(lines[0]) and len(lines[1]) > len(lines[0]):
        return lines[0], lines[1:]
    return (first_sentence(lines[0]) if lines else ""), lines


_LANGUAGE_MODEL_LOCK = threading.Lock()


@functools.cache
def _language_identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code from py3langid (its model ships inside the package: nothing downloaded).

    py3langid loads its ~100 MB model lazily without a lock, so 16 fetch
    threads starting together each loaded their own copy (peak RSS 1 GB in
    bench/feeds_load.py). Here one thread loads it, once; the others wait.
    """
    if len(text) < 20:
        return None
    with _LANGUAGE_MODEL_LOCK:
        identifier = _language_identifier()
    return identifier.classify(text[:3000])[0]


def source_of(url: str) -> str:
    """The outlet an article belongs to: its host without ``www.``."""
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.") or url


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def article_from_text(text: str, *, url: str, source: str, fetched_at: datetime) -> Article | Skipped:
    """A plain-text article: cleaned, titled, language detected."""
    title, body = title_and_body(clean_lines(text))
    body_text = "\n\n".join(body)
    if len(body_text) < MIN_TEXT_CHARS:
        return Skipped(url, f"too little text after cleaning ({len(body_text)} characters)")
    return Article(
        url=url, title=title, text=body_text, source=source, fetched_at=fetched_at,
        language=detect_language(body_text), extraction="text-file",
    )


# Measured on 110 saved news pages: trafilatura without its fallback extractors (``fast``) gives the same text
# for 103 of them at 1.3x the speed; each page it cut short gave under 1,000 characters, so below that (18 of
# the 110) the full extraction runs again and its fallbacks rescue the article.
FAST_ENOUGH_CHARS = 1000
_HTML_LANG = re.compile(rb"<html\b[^>]*?\blang\s*=\s*[\"']?([a-zA-Z]{2})(?![a-zA-Z])", re.IGNORECASE)


def declared_language(content: bytes | str) -> str | None:
    """The two-letter language the page declares on ``<html lang>`` (``de-DE`` gives ``de``), if any."""
    head = content[:20_000]
    match = _HTML_LANG.search(head.encode("utf-8", "replace") if isinstance(head, str) else head)
    return match.group(1).decode("ascii").lower() if match else None


def _date_params() -> dict[str, Any]:
    """trafilatura's own date settings, asking for the time of day too, and reading a date in the URL
    (``/2026/11/11/``, a day only) only when the page states none in full: by default htmldate keeps
    only the day, and the undated feed item of a page saying ``article:published_time`` 14:25 was
    placed at midnight, hours away from its story's other reports (measured on the realistic stream:
    B-cubed F1 of the clusterer 0.939 with those dates, 0.947 with the pages' own)."""
    return set_date_params(extensive=True) | {"outputformat": "%Y-%m-%dT%H:%M:%S%z", "deferred_url_extractor": True}


_DEFAULTS = Extractor()  # trafilatura's own defaults: the largest file it parses


def _brief_config() -> ConfigParser:
    """trafilatura's settings with its "too short" bar at our own minimum, for briefs (see :func:`_read_brief`)."""
    config = use_config()
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", str(MIN_TEXT_CHARS))
    return config


_BRIEF = _brief_config()


def _metadata(tree: Any, url: str, *, date: bool = True) -> Any:
    """trafilatura's ``extract_metadata`` for the fields an article keeps: title, author, canonical URL, and
    the date unless ``date`` is False (the feed entry gives one, which wins: htmldate's search, extensive as
    set here, is about 2.7 ms of a page's 22, a ninth of the extraction processes' time on 110 real pages).

    Its steps for those, in its order, and none of the rest (site name, categories, tags,
    licence: 9% of an extraction): the same values on all 110 saved pages, and
    ``tests/test_extract.py`` holds them to trafilatura's own on a page that needs each step.
    """
    meta = examine_meta(tree)
    if meta.author and " " not in meta.author:
        meta.author = None
    with contextlib.suppress(Exception):  # as trafilatura does: a bug in its JSON-LD reader costs that step only
        meta = extract_meta_json(tree, meta)
    meta.title = meta.title or extract_title(tree)
    meta.author = meta.author or extract_author(tree)
    meta.url = meta.url or extract_url(tree, url)
    meta.date = find_date(tree, **{**_date_params(), "url": meta.url}) if date else None
    meta.clean_and_trim()
    return meta


def _trafilatura(content: bytes | str, url: str, *, date: bool = True) -> Any:
    """trafilatura's reading of the page: fast first, the full extraction when that found little text.

    The page is parsed once, its metadata read once (:func:`_metadata`, before the text, as
    trafilatura does), and each extraction runs on a copy of the tree.
    """
    try:
        tree = load_html(content, _DEFAULTS.max_file_size)
        if tree is None:
            return None
        meta = _metadata(tree, url, date=date)
    except (TypeError, ValueError):  # what bare_extraction turns into "no document"
        return None
    doc = trafilatura.bare_extraction(tree, url=url, include_comments=False, fast=True)
    if doc is None or len(doc.text or "") < FAST_ENOUGH_CHARS:
        doc = trafilatura.bare_extraction(tree, url=url, include_comments=False)
    if doc is None:
        return None
    meta.text = doc.text or ""
    if "\n" not in meta.text:  # one block: perhaps trafilatura's rescue of a brief (see _read_brief)
        meta.text = _read_brief(tree, url) or meta.text
    return meta


def _read_brief(tree: Any, url: str) -> str | None:
    """A brief's text as trafilatura's own extractor reads it, or None if that finds too little.

    When its own extraction finds under 250 characters, trafilatura takes its "baseline rescue"
    if that is longer: the ``<article>`` element's whole text as one block, byline, date and
    share buttons included, which line cleaning cannot split. On the realistic stream 19 of 535
    one-sentence reports were stored so, and two of them from one outlet joined one story on the
    byline and share labels alone. Its own extractor, asked to accept a short text, reads
    headline and paragraphs only: 2 such pages are left in that stream (their own text is under
    ``MIN_TEXT_CHARS``, and a page is better kept with chrome than lost). On the 110 saved real
    pages this changes nothing (two give one block, and read the same)."""
    own = trafilatura.bare_extraction(tree, url=url, include_comments=False, fast=True, config=_BRIEF)
    text = own.text if own is not None else None
    return text if text and len(text) >= MIN_TEXT_CHARS else None


def article_from_html(content: bytes | str, *, url: str, fetched_at: datetime,
                      date: bool = True) -> Article | Skipped:
    """A web page through trafilatura, then the same line cleaning as plain text.

    The language is the page's own (trafilatura's, else ``<html lang>``); only a page that
    declares none is identified by py3langid, so most pages never load its model.
    """
    try:
        doc = _trafilatura(content, url, date=date)
    except (ValueError, TypeError, ParserError) as exc:
        return Skipped(url, f"trafilatura could not parse the page: {exc}")
    if doc is None or not doc.text:
        return Skipped(url, "trafilatura found no article text")
    lines = clean_lines(doc.text)
    text = "\n\n".join(lines)
    if len(text) < MIN_TEXT_CHARS:
        return Skipped(url, f"too little text after cleaning ({len(text)} characters)")
    title = (doc.title or "").strip() or title_and_body(lines)[0]
    canonical, extraction = _trusted_canonical(doc.url, url)
    return Article(
        url=url, title=_shorten(title), text=text, source=source_of(canonical or url),
        author=doc.author or None, published=_parse_date(doc.date), fetched_at=fetched_at,
        language=doc.language or declared_language(content) or detect_language(text), canonical_url=canonical,
        extraction=extraction,
    )


def _trusted_canonical(claimed: str | None, url: str) -> tuple[str | None, str]:
    """The page's canonical URL if the page may vouch for it, and the ``extraction`` note saying so.

    A page speaks only for its own outlet: a canonical URL on another registrable domain than the
    host that served the page (``url``, the final URL after redirects) is ignored, so that neither
    the page's identity nor its outlet can be another outlet's. A saved page read from the seeds
    folder (a ``file:`` URL, put there by the operator) is believed.
    """
    if not (claimed and claimed.startswith(("http://", "https://"))):
        return None, "trafilatura"
    if not url.startswith(("http://", "https://")) or same_outlet(claimed, url):
        return claimed, "trafilatura"
    shown = claimed if len(claimed) <= 120 else claimed[:119] + "…"
    return None, f"trafilatura (rel=canonical on another outlet ignored: {shown})"


def html_fragment_to_text(fragment: str) -> str:
    """Feed content is an HTML fragment: keep its text, one paragraph per block element."""
    try:
        root = lxml.html.fromstring(f"<div>{fragment}</div>")
    except (ParserError, ValueError):
        return fragment
    for block in root.iter("p", "br", "div", "li", "h1", "h2", "h3", "h4", "blockquote"):
        block.tail = "\n" + (block.tail or "")
    return root.text_content()


def article_from_entry(
    entry: FeedEntry, extracted: Article | Skipped | None, *, feed_id: int | None, feed_name: str,
    fetched_at: datetime, feed_url: str | None = None,
) -> Article | Skipped:
    """The entry's page as :func:`article_from_html` extracted it (entries sharing one link share one
    extraction); failing that, the entry's own content or summary.

    The fallback is recorded in ``extraction`` so a feed whose pages never
    extract is visible. An entry without link or title is still stored from what it has.
    ``feed_url``: where the feed was served from (after redirects). Text from the feed itself belongs
    to the feed's outlet: an entry linking to another outlet is stored under the feed's host.
    """
    link = entry.link or ""
    source, note = (source_of(link) if link else feed_name), ""
    if link and feed_url and feed_url.startswith(("http://", "https://")) and not same_outlet(link, feed_url):
        source, note = source_of(feed_url), " (link on another outlet: the feed's outlet kept)"
    if isinstance(extracted, Article):
        return _with_entry_fields(extracted, entry, link, feed_id)
    for kind, fragment in (("feed-content", entry.content), ("feed-summary", entry.summary)):
        if not fragment:
            continue
        lines = clean_lines(html_fragment_to_text(fragment))
        text = "\n\n".join(lines)
        if not text:
            continue
        title = entry.title or title_and_body(lines)[0]
        return Article(
            url=link, title=_shorten(title), text=text, source=source,
            guid=entry.guid, feed_id=feed_id, author=entry.author, published=entry.published,
            fetched_at=fetched_at, language=detect_language(text), extraction=kind + note,
        )
    if entry.title:
        return Article(
            url=link, title=_shorten(entry.title), text=entry.title, source=source,
            guid=entry.guid, feed_id=feed_id, author=entry.author, published=entry.published,
            fetched_at=fetched_at, language=detect_language(entry.title), extraction="feed-title" + note,
        )
    reason = extracted.reason if isinstance(extracted, Skipped) else "entry has no title, content or summary"
    return Skipped(link or "(entry without link)", reason)


def _with_entry_fields(article: Article, entry: FeedEntry, link: str, feed_id: int | None) -> Article:
    """The feed knows the entry's GUID, and often its date and author better than the page does."""
    return replace(
        article,
        url=link or article.url,
        guid=entry.guid,
        feed_id=feed_id,
        title=entry.title or article.title,
        author=article.author or entry.author,
        published=entry.published or article.published,
    )
