"""Simulated news outlets for ``bench/stream_eval.py``: dated reports, HTML pages with chrome, RSS feeds.

ECB+ documents carry no dates and no web pages, so this module publishes them the way
the daemon meets news in the wild: each gold event gets a day within a month, each
report a time a few days after it and an outlet. Every outlet is a real HTTP server on
its own loopback address (127.0.0.2, 127.0.0.3, ...), so ``source`` and the per-host
limits see distinct sites, and serves

- article pages with site chrome: navigation, a masthead, a byline with the date
  (``<time>`` and ``article:published_time``), share buttons, a related-stories box
  naming *other* events' headlines (sometimes the same-kind sibling event's), a
  newsletter promo and a footer. The chrome varies by outlet, because extraction that
  only copes with one template would look better here than on the web;
- ``/rss.xml``: RSS 2.0, newest first, a first-sentence description, about 5% of items
  without ``pubDate`` (their page still carries the date);
- ``/robots.txt`` allowing the articles.

What a feed lists is set by :meth:`Newsroom.expose`: only items published up to a
horizon (a daemon polling through the month), and newest first or shuffled.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cluster_eval import Item

SITE_NAMES = ("The Harbour Herald", "Daily Ledger", "Metro Courier", "Northern Gazette", "Capital Wire",
              "Valley Tribune", "Coastal Chronicle", "The Morning Sentinel", "Lakeside Observer", "Union Standard",
              "Pacific Record", "The Evening Mail")
SECTIONS = ("World", "U.S.", "Politics", "Business", "Tech", "Science", "Health", "Sports", "Entertainment",
            "Opinion", "Local", "Weather", "Culture", "Travel")
# Some of these the extractor's chrome filter knows by name, some it does not: both kinds exist on the web.
RELATED_HEADINGS = ("Related stories", "You may also like", "More on this story", "Read more", "Elsewhere on the site",
                    "Most popular")
SHARE_LABELS = ("Share on Facebook", "Tweet", "Email", "Share on LinkedIn", "WhatsApp", "Copy link")
REPORTERS = ("Maria Lopez", "James Whitfield", "Priya Raman", "Tom Okafor", "Hannah Berg", "Luis Ortega",
             "Staff Reporter", "Agency staff")
MISSING_DATE_SHARE = 0.05


@dataclass(frozen=True)
class Report:
    """One ECB+ document as published: when, by which outlet, at which path, dated in the feed or not."""

    item: Item
    outlet: int
    published: datetime
    path: str
    dated: bool


@dataclass(frozen=True)
class Style:
    """An outlet's template choices; drawn per outlet so no single page layout is all the extractor sees."""

    name: str
    sections: tuple[str, ...]
    share: tuple[str, ...]
    share_top: bool
    related_heading: str
    related_first: bool
    promo: bool
    reporters: tuple[str, ...]
    date_format: str


def _event_days(events: Sequence[str], days: int, rng: random.Random) -> dict[str, int]:
    """A day per event, uniform over the month; half the sibling events of a topic fall within a week.

    Siblings are the same kind of event (two rehab stays, two earthquakes): when they are
    close in time, the date alone cannot keep them apart and the clusterer must.
    """
    last = days - 4  # reports come up to 3 days after their event's day
    by_topic: dict[str, list[str]] = defaultdict(list)
    for event in events:
        by_topic[event.split("/")[0]].append(event)
    day_of: dict[str, int] = {}
    for topic in sorted(by_topic, key=lambda t: int(t) if t.isdigit() else 0):
        first, *siblings = by_topic[topic]
        day_of[first] = rng.randint(0, last)
        for sibling in siblings:
            near = rng.random() < 0.5
            day_of[sibling] = (min(last, max(0, day_of[first] + rng.randint(-6, 6))) if near
                               else rng.randint(0, last))
    return day_of


def month_start(days: int, now: datetime | None = None) -> datetime:
    """Midnight UTC ``days`` days before the span's end, which is midnight two days before ``now``.

    Dates stay in the past: the pipeline clamps future ones, and a month of history is what
    a newly added feed with a long item list hands over."""
    now = now or datetime.now(UTC)
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    return end - timedelta(days=days)


def slugify(text: str, words: int = 8) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:words]) or "story"


def plan_reports(items: Sequence[Item], *, outlets: int, days: int, seed: int,
                 now: datetime | None = None) -> list[Report]:
    """Dates, outlets and paths for ``items``: deterministic for a seed, relative to ``now``."""
    if days < 5:
        raise ValueError("--days must be at least 5 (reports come up to 3 days after their event)")
    rng = random.Random(seed)
    start = month_start(days, now)
    day_of = _event_days(sorted({it.gold for it in items}), days, rng)
    reports = []
    for item in items:
        offset = rng.choices((0, 1, 2, 3), weights=(4, 3, 2, 1))[0]
        published = start + timedelta(days=day_of[item.gold] + offset, hours=rng.randrange(24),
                                      minutes=rng.randrange(60))
        path = f"/{published:%Y/%m/%d}/{slugify(item.title)}-{item.key.replace('_', '-')}.html"
        reports.append(Report(item, rng.randrange(outlets), published, path,
                              dated=rng.random() >= MISSING_DATE_SHARE))
    return reports


def outlet_style(index: int, seed: int) -> Style:
    rng = random.Random(f"{seed}-outlet-{index}")
    name = SITE_NAMES[index % len(SITE_NAMES)] + (f" {index // len(SITE_NAMES) + 1}" if index >= len(SITE_NAMES)
                                                   else "")
    share = ["Share on Facebook", "Tweet", "Email", *rng.sample(SHARE_LABELS[3:], rng.randint(0, 3))]
    rng.shuffle(share)
    return Style(
        name=name, sections=tuple(rng.sample(SECTIONS, rng.randint(5, 8))), share=tuple(share),
        share_top=rng.random() < 0.5, related_heading=rng.choice(RELATED_HEADINGS),
        related_first=rng.random() < 0.3, promo=rng.random() < 0.6,
        reporters=tuple(rng.sample(REPORTERS, 3)),
        date_format=rng.choice(("%B %d, %Y %H:%M UTC", "%d.%m.%Y %H:%M", "%a %d %b %Y %H.%M GMT")))


# --------------------------------------------------------------------------- rendering


def paragraphs(item: Item, rng: random.Random) -> list[str]:
    """The body without its headline line, one to three sentences per paragraph."""
    lines = item.text.split("\n")
    body = lines[1:] if len(lines) > 1 else lines
    out: list[str] = []
    while body:
        size = rng.randint(1, 3)
        out.append(" ".join(body[:size]))
        body = body[size:]
    return out


def first_sentence(item: Item) -> str:
    lines = item.text.split("\n")
    return (lines[1] if len(lines) > 1 else lines[0])[:300]


def _share(style: Style, url: str, title: str) -> str:
    targets = {"Share on Facebook": f"https://www.facebook.com/sharer/sharer.php?u={url}",
               "Tweet": f"https://twitter.com/intent/tweet?url={url}", "Email": f"mailto:?subject={title[:60]}",
               "Share on LinkedIn": f"https://www.linkedin.com/shareArticle?url={url}",
               "WhatsApp": f"https://wa.me/?text={url}", "Copy link": "#copy"}
    links = "".join(f"<li><a href={quoteattr(targets[label])} rel=\"nofollow\">{label}</a></li>"
                    for label in style.share)
    return f'<div class="share-tools"><span class="share-label">Share this article</span><ul>{links}</ul></div>'


def _related_box(style: Style, related: Sequence[tuple[str, str]]) -> str:
    links = "".join(f"<li><a href={quoteattr(url)}>{escape(title)}</a></li>" for url, title in related)
    return f'<aside class="related"><h2>{style.related_heading}</h2><ul>{links}</ul></aside>'


def _chrome(style: Style, base: str) -> tuple[str, str]:
    nav = "".join(f'<li><a href="{base}/{slugify(s)}/">{escape(s)}</a></li>' for s in style.sections)
    header = (f'<header class="masthead"><a class="logo" href="{base}/">{escape(style.name)}</a>'
              f'<nav class="sections"><ul><li><a href="{base}/">Home</a></li>{nav}</ul></nav>'
              '<form class="search" action="/search/"><input name="q" placeholder="Search"></form></header>')
    footer = (f'<footer><p>Sign up for the {escape(style.name)} newsletter to get the day\'s top stories.</p>'
              '<ul><li><a href="/about/">About us</a></li><li><a href="/contact/">Contact</a></li>'
              '<li><a href="/privacy/">Privacy policy</a></li></ul>'
              f"<p>© 2026 {escape(style.name)}. All rights reserved.</p></footer>")
    return header, footer


def render_page(report: Report, style: Style, url: str, related: Sequence[tuple[str, str]]) -> str:
    """An article page as a CMS would emit it: the report inside a page of chrome."""
    rng = random.Random(report.path)
    title, stamp = report.item.title, report.published.isoformat(timespec="seconds")
    author = rng.choice(style.reporters)
    body = [f"<p>{escape(p)}</p>" for p in paragraphs(report.item, rng)]
    if style.promo and len(body) > 2:
        body.insert(2, f'<div class="promo"><p>Sign up for the {escape(style.name)} Morning Briefing newsletter'
                       "</p><a href=\"/newsletters/\">Subscribe</a></div>")
    share = _share(style, url, title)
    article = (f"<article><h1>{escape(title)}</h1><p class=\"byline\">By <span class=\"author\">{author}</span> "
               f"<time datetime=\"{stamp}\">{report.published.strftime(style.date_format)}</time></p>"
               f"{share if style.share_top else ''}{''.join(body)}{'' if style.share_top else share}</article>")
    aside = _related_box(style, related)
    header, footer = _chrome(style, url.split("/", 3)[0] + "//" + url.split("/", 3)[2])
    main = aside + article if style.related_first else article + aside
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} | '
            f'{escape(style.name)}</title><link rel="canonical" href={quoteattr(url)}>'
            f'<meta property="og:site_name" content={quoteattr(style.name)}>'
            f'<meta property="og:title" content={quoteattr(title)}><meta property="og:type" content="article">'
            f'<meta property="article:published_time" content="{stamp}"><meta name="author" content="{author}">'
            f"</head><body>{header}<main>{main}</main>{footer}</body></html>")


def render_rss(style: Style, base: str, reports: Sequence[Report]) -> str:
    """RSS 2.0 in the order given; an undated report's item has no ``pubDate``."""
    items = []
    for report in reports:
        url = base + report.path
        date = f"<pubDate>{format_datetime(report.published)}</pubDate>" if report.dated else ""
        items.append(f"<item><title>{escape(report.item.title)}</title><link>{escape(url)}</link>"
                     f'<guid isPermaLink="true">{escape(url)}</guid>{date}'
                     f"<description>{escape(first_sentence(report.item))}</description></item>")
    return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
            'xmlns:atom="http://www.w3.org/2005/Atom"><channel>'
            f"<title>{escape(style.name)}</title><link>{base}/</link>"
            f"<description>Latest news from {escape(style.name)}</description><language>en</language>"
            f'<atom:link href="{base}/rss.xml" rel="self" type="application/rss+xml"/>'
            f"{''.join(items)}</channel></rss>")


ROBOTS = "User-agent: *\nDisallow: /search/\nAllow: /\n"


# --------------------------------------------------------------------------- serving


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    outlet: Outlet


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as real sites answer

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        status, headers, body = self.server.outlet.respond(self.path.split("?", 1)[0],
                                                           self.headers.get("If-None-Match"))
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class Outlet:
    """One site on its own loopback address: pages, robots.txt, and a feed of what :meth:`publish` lists."""

    def __init__(self, index: int, host: str, style: Style, reports: Sequence[Report]) -> None:
        self.index, self.style, self.reports = index, style, tuple(reports)
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.outlet = self
        self.base = f"http://{host}:{self._httpd.server_address[1]}"
        self.pages: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._feed, self._etag = b"", ""
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True,
                                        name=f"outlet-{index}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def publish(self, listed: Sequence[Report]) -> None:
        """What ``/rss.xml`` lists from now on, in this order; its ETag changes with it (304 otherwise)."""
        body = render_rss(self.style, self.base, listed).encode()
        with self._lock:
            self._feed, self._etag = body, '"' + hashlib.sha1(body).hexdigest()[:16] + '"'

    def respond(self, path: str, if_none_match: str | None) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.hits[path] += 1
            feed, etag = self._feed, self._etag
        if path == "/rss.xml":
            if if_none_match == etag:
                return 304, {"ETag": etag}, b""
            return 200, {"Content-Type": "application/rss+xml; charset=utf-8", "ETag": etag}, feed
        if path == "/robots.txt":
            return 200, {"Content-Type": "text/plain"}, ROBOTS.encode()
        page = self.pages.get(path)
        if page is None:
            return 404, {"Content-Type": "text/plain"}, b"not found"
        return 200, {"Content-Type": "text/html; charset=utf-8"}, page


def _related(report: Report, reports: Sequence[Report], rng: random.Random) -> list[Report]:
    """4-6 reports of other events, preferably the same outlet's; sometimes one of the sibling event."""
    topic = report.item.gold.split("/")[0]
    own = [r for r in reports if r.outlet == report.outlet and r.item.gold != report.item.gold]
    pool = own if len(own) >= 8 else [r for r in reports if r.item.gold != report.item.gold]
    siblings = [r for r in pool if r.item.gold.split("/")[0] == topic]
    others = [r for r in pool if r.item.gold.split("/")[0] != topic]
    count = rng.randint(4, 6)
    picked = [rng.choice(siblings)] if siblings and rng.random() < 0.4 else []
    picked += rng.sample(others, min(len(others), count - len(picked)))
    rng.shuffle(picked)
    return picked


class Newsroom:
    """Every outlet, serving: ``with Newsroom(reports, outlets=10) as room: room.feed_urls``.

    Outlet ``i`` listens on 127.0.0.(first_host + i), port chosen by the system.
    Feeds list everything, newest first, until :meth:`expose` says otherwise.
    """

    def __init__(self, reports: Sequence[Report], *, outlets: int, seed: int = 0, first_host: int = 2) -> None:
        if not 0 < outlets <= 250:
            raise ValueError("between 1 and 250 outlets")
        self.reports = tuple(reports)
        self.outlets = [Outlet(i, f"127.0.0.{first_host + i}", outlet_style(i, seed),
                               [r for r in self.reports if r.outlet == i]) for i in range(outlets)]
        self._seed = seed

    def __enter__(self) -> Newsroom:
        try:
            self._render()
            for outlet in self.outlets:
                outlet.start()
        except BaseException:
            self.__exit__()
            raise
        self.expose()
        return self

    def __exit__(self, *exc: object) -> None:
        for outlet in self.outlets:
            outlet.stop()

    def url(self, report: Report) -> str:
        return self.outlets[report.outlet].base + report.path

    @property
    def feed_urls(self) -> list[str]:
        return [outlet.base + "/rss.xml" for outlet in self.outlets]

    @property
    def names(self) -> list[str]:
        return [outlet.style.name for outlet in self.outlets]

    def related_titles(self, report: Report) -> list[str]:
        """The other events' headlines on ``report``'s page (to measure chrome leaking into stored text)."""
        return [r.item.title for r in _related(report, self.reports, random.Random(f"{self._seed}{report.path}"))]

    def _render(self) -> None:
        for report in self.reports:
            related = [(self.url(r), r.item.title) for r in
                       _related(report, self.reports, random.Random(f"{self._seed}{report.path}"))]
            outlet = self.outlets[report.outlet]
            outlet.pages[report.path] = render_page(report, outlet.style, self.url(report), related).encode()

    def expose(self, until: datetime | None = None, *, shuffle_seed: int | None = None) -> int:
        """Feeds list the reports published up to ``until`` (all if None), newest first or shuffled.

        Returns how many items the feeds list in all."""
        listed = 0
        for outlet in self.outlets:
            visible = sorted((r for r in outlet.reports if until is None or r.published <= until),
                             key=lambda r: r.published, reverse=True)
            if shuffle_seed is not None:
                random.Random(f"{shuffle_seed}-feed-{outlet.index}").shuffle(visible)
            outlet.publish(visible)
            listed += len(visible)
        return listed
