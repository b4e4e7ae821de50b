"""A real HTTP server on 127.0.0.1 that misbehaves on request, for tests and ``bench/feeds_load.py``.

Each path is given a :class:`Route` (``server.feed(...)``, ``server.status(...)``, ``server.slow(...)``...),
and the server counts every request by path and status, so a test can assert both what newsmonitor
recorded and what it actually asked for (a 304, a robots.txt fetched once, a disallowed page never
requested). Threaded, so a deliberately slow route does not hold up the others. Bodies that are
large are generated while streaming, never held in memory.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterator[bytes] = b""


Route = Callable[["Request"], Response]


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Entry:
    slug: str
    title: str
    text: str
    published: datetime | None = None


def article_html(title: str, text: str, *, charset: str = "utf-8", meta: bool = True) -> str:
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in text.split("\n\n"))
    head = f'<meta charset="{charset}">' if meta else ""
    return (f"<html><head>{head}<title>{escape(title)}</title></head><body><nav>Home | World | Sport</nav>"
            f"<article><h1>{escape(title)}</h1>{paragraphs}</article><footer>Contact us</footer></body></html>")


def rss(base: str, entries: Sequence[Entry], *, title: str = "Test feed", ttl: int | None = None,
        extra_channel: str = "") -> str:
    items = []
    for entry in entries:
        date = f"<pubDate>{format_datetime(entry.published)}</pubDate>" if entry.published else ""
        items.append(f"<item><title>{escape(entry.title)}</title><link>{base}/articles/{entry.slug}</link>"
                     f"<guid>{base}/articles/{entry.slug}</guid>{date}"
                     f"<description>{escape(entry.text[:400])}</description></item>")
    ttl_element = f"<ttl>{ttl}</ttl>" if ttl else ""
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
            'xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"><channel>'
            f"<title>{escape(title)}</title><link>{base}/</link><description>d</description>{ttl_element}"
            f"{extra_channel}{''.join(items)}</channel></rss>")


def story(topic: str, n: int) -> str:
    """A few paragraphs about ``topic`` that extract cleanly and differ from every other story."""
    return "\n\n".join(
        f"Reporters covering {topic} confirmed on day {n} that the {topic} situation developed further, "
        f"with officials describing event number {n} in detail and residents reacting to the news ({i})."
        for i in range(3))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        return

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        route = self.server.owner.route_for(path)
        response = route(Request(path, {k.lower(): v for k, v in self.headers.items()}))
        self.server.owner.record(path, response.status)
        try:
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if isinstance(response.body, bytes):
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if isinstance(response.body, bytes):
                self.wfile.write(response.body)
            else:
                for chunk in response.body:
                    self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout, byte cap): exactly what some routes test


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FeedServer


class FeedServer:
    """``with FeedServer() as server: server.feed("/rss", entries); url = server.url("/rss")``."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True,
                                        name="feedserver")
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def route_for(self, path: str) -> Route:
        with self._lock:
            return self._routes.get(path) or self._routes.get("*") or _not_found

    def record(self, path: str, status: int) -> None:
        with self._lock:
            self.hits[path] += 1
            self.statuses[(path, status)] += 1

    def set(self, path: str, route: Route) -> None:
        with self._lock:
            self._routes[path] = route

    # -- the cases ------------------------------------------------------------------------------

    def feed(self, path: str, entries: Sequence[Entry], *, pages: bool = True, ttl: int | None = None,
             headers: dict[str, str] | None = None, extra_channel: str = "") -> None:
        """An RSS feed with an ETag (so a repeat answers 304), and an article page per entry."""
        body = rss(self.base, entries, ttl=ttl, extra_channel=extra_channel).encode()
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        fixed = {"Content-Type": "application/rss+xml; charset=utf-8", "ETag": etag, **(headers or {})}

        def route(request: Request) -> Response:
            if request.headers.get("if-none-match") == etag:
                return Response(304, {"ETag": etag, **(headers or {})})
            return Response(200, fixed, body)

        self.set(path, route)
        if pages:
            for entry in entries:
                self.page(f"/articles/{entry.slug}", article_html(entry.title, entry.text))

    def page(self, path: str, html: str, *, charset: str = "utf-8", declare: str | None = "header",
             delay: float = 0.0) -> None:
        """An HTML page encoded in ``charset``, declared in the header, a meta tag, or nowhere."""
        body = html.encode(charset)
        content_type = f"text/html; charset={charset}" if declare == "header" else "text/html"

        def route(request: Request) -> Response:
            if delay:
                time.sleep(delay)
            return Response(200, {"Content-Type": content_type}, body)

        self.set(path, route)

    def status(self, path: str, code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.set(path, lambda request: Response(code, dict(headers or {}), body))

    def redirect(self, path: str, to: str, code: int = 301) -> None:
        self.status(path, code, {"Location": to if to.startswith("http") else self.url(to)})

    def slow(self, path: str, delay: float, then: Route | None = None) -> None:
        """Sleep ``delay`` before answering (past the client's timeout, for the timeout case)."""
        def route(request: Request) -> Response:
            time.sleep(delay)
            return then(request) if then else Response(200, {"Content-Type": "text/plain"}, b"late")

        self.set(path, route)

    def drip(self, path: str, *, every: float = 0.1, count: int = 600,
             content_type: str = "application/rss+xml") -> None:
        """A 200 whose body comes a byte every ``every`` seconds: no single read ever waits long enough to time out."""
        def body() -> Iterator[bytes]:
            for _ in range(count):
                time.sleep(every)
                yield b" "

        self.set(path, lambda request: Response(200, {"Content-Type": content_type}, body()))

    def huge(self, path: str, size: int = 60_000_000, chunk: int = 64 * 1024) -> None:
        """``size`` bytes generated while streaming, with no Content-Length (so only a streaming cap stops it)."""
        def body() -> Iterator[bytes]:
            block = (b"<item>" + b"x" * (chunk - 13) + b"</item>")[:chunk]
            sent = 0
            while sent < size:
                yield block
                sent += len(block)

        self.set(path, lambda request: Response(200, {"Content-Type": "application/rss+xml"}, body()))

    def robots(self, text: str) -> None:
        self.set("/robots.txt", lambda request: Response(200, {"Content-Type": "text/plain"}, text.encode()))


def _not_found(request: Request) -> Response:
    return Response(404, {"Content-Type": "text/plain"}, b"not found")


def recent(n: int, *, hours: float = 1.0) -> datetime:
    """A publication time ``n`` steps of ``hours`` ago (entries with realistic, distinct dates)."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours * n)
