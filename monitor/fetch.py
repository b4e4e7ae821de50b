"""Fetch stage: one polite HTTP GET, returned as an outcome value.

The httpx client is passed in (built by :func:`make_client` from the settings),
so tests point the same code at a real server on 127.0.0.1 and nothing here
needs patching. Every failure mode, HTTP status, timeout, byte cap, broken
connection, becomes a :class:`~monitor.models.FetchFailed` carrying a reason,
because one bad feed must never stop a pass.
"""

from __future__ import annotations

import codecs
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from itertools import pairwise
from urllib.parse import urlsplit

import charset_normalizer
import httpx

from monitor.models import Fetched, FetchFailed, FetchOutcome, NotModified
from monitor.settings import FetchSettings

_KEPT_HEADERS = ("cache-control", "retry-after", "expires", "location", "content-type")
_PERMANENT = {301, 308}
_WESTERN = {"English", "French", "German", "Spanish", "Italian", "Portuguese", "Dutch", "Danish", "Swedish",
            "Norwegian", "Finnish"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


def make_client(settings: FetchSettings) -> httpx.Client:
    """The one client of a run: connection pooling, redirects, timeouts and User-Agent in one place."""
    return httpx.Client(
        follow_redirects=True,
        max_redirects=settings.max_redirects,
        timeout=httpx.Timeout(settings.timeout),
        headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate, br"},
        limits=httpx.Limits(max_connections=settings.concurrency * 2),
    )


class HostLimiter:
    """At most ``per_host`` requests in flight per host, and ``delay`` seconds between their starts.

    Shared by the worker threads of a pass, so politeness holds however many
    feeds of one site are due at once.
    """

    def __init__(self, per_host: int, delay: float) -> None:
        self._per_host = per_host
        self._delay = delay
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.Semaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(self._per_host)
        )
        self._next_start: dict[str, float] = {}
        self._host_delay: dict[str, float] = {}

    def slow_down(self, url: str, delay: float) -> None:
        """A longer minimum delay for ``url``'s host (a robots.txt ``Crawl-delay``); never a shorter one."""
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            self._host_delay[host] = max(delay, self._host_delay.get(host, 0.0))

    @contextmanager
    def slot(self, url: str) -> Iterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            semaphore = self._semaphores[host]
        with semaphore:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next_start.get(host, now))
                self._next_start[host] = start + max(self._delay, self._host_delay.get(host, 0.0))
            if start > now:
                time.sleep(start - now)
            yield


def _kept_headers(response: httpx.Response) -> dict[str, str]:
    return {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers}


def permanent_target(response: httpx.Response) -> str | None:
    """The URL the request ended up at through 301/308 hops only (a temporary hop ends the chain).

    The writer then polls the new address; a 302/307 is temporary and changes nothing.
    """
    hops = [*response.history, response]
    target = None
    for hop, following in pairwise(hops):
        if hop.status_code not in _PERMANENT:
            break
        target = str(following.url)
    return target


def _charset_of(content: bytes, declared: str | None) -> str | None:
    """The page's encoding: HTTP header, then ``<meta charset>``, then charset-normalizer's guess."""
    candidates = [declared]
    meta = _META_CHARSET.search(content[:4096])
    if meta:
        candidates.append(meta.group(1).decode("ascii", "replace"))
    for name in candidates:
        if name:
            try:
                codecs.lookup(name)
            except LookupError:
                continue
            return name
    matches = charset_normalizer.from_bytes(content[:200_000])
    guess = matches.best()
    if guess is None:
        return None
    # Measured: on undeclared French/German pages charset-normalizer picks cp1257/cp1250 (it cannot tell
    # the Latin code pages apart), giving "élčves"; browsers default such pages to windows-1252 (WHATWG),
    # so it wins ties and Western European text.
    tie = any(m.encoding == "cp1252" and m.chaos <= guess.chaos for m in matches)
    if tie or (guess.language in _WESTERN and guess.encoding != "cp1252"):
        try:
            content.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            pass
    return guess.encoding


def html_as_utf8(page: Fetched) -> Fetched:
    """A page re-encoded as UTF-8 if it is not already.

    Measured: trafilatura tries UTF-8 and then its own guess, ignoring both the
    HTTP charset and ``<meta charset>``, so a Latin-1 French page came out as
    "élčves". Decoding here with the declared charset fixes that; the body is
    left as is when it already is valid UTF-8.
    """
    try:
        page.content.decode("utf-8")
        return page
    except UnicodeDecodeError:
        pass
    charset = _charset_of(page.content, page.encoding)
    if not charset:
        return page
    text = page.content.decode(charset, errors="replace")
    return replace(page, content=text.encode("utf-8"), encoding="utf-8")


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes | None:
    """Read the body, or None as soon as it exceeds the cap (a 50 MB page is refused, not buffered)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_url(
    client: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    etag: str | None = None,
    last_modified: str | None = None,
    limiter: HostLimiter | None = None,
) -> FetchOutcome:
    """GET ``url`` with conditional headers; a 304 costs one small request and nothing else."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    started = time.monotonic()
    try:
        with limiter.slot(url) if limiter else nullcontext(), client.stream("GET", url, headers=headers) as response:
            kept = _kept_headers(response)
            if response.status_code == 304:
                return NotModified(url, etag=response.headers.get("etag", etag),
                                   last_modified=response.headers.get("last-modified", last_modified),
                                   headers=kept, moved_to=permanent_target(response))
            if response.status_code >= 400:
                return FetchFailed(url, f"HTTP {response.status_code} {response.reason_phrase}",
                                   status=response.status_code, headers=kept)
            body = _read_capped(response, max_bytes)
            if body is None:
                return FetchFailed(url, f"body larger than {max_bytes} bytes",
                                   status=response.status_code, headers=kept)
            return Fetched(
                url=url,
                final_url=str(response.url),
                moved_to=permanent_target(response),
                status=response.status_code,
                content=body,
                content_type=response.headers.get("content-type"),
                encoding=response.charset_encoding,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                headers=kept,
                elapsed=time.monotonic() - started,
            )
    except httpx.TimeoutException:
        return FetchFailed(url, f"timed out after {time.monotonic() - started:.1f}s")
    except httpx.TooManyRedirects:
        return FetchFailed(url, "too many redirects")
    except httpx.HTTPError as exc:
        return FetchFailed(url, f"{type(exc).__name__}: {exc}")
    except (ValueError, UnicodeError) as exc:  # malformed URLs and headers from odd servers
        return FetchFailed(url, f"invalid request or response: {exc}")

