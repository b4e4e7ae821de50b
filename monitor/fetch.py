"""Fetch stage: one polite HTTP GET, returned as an outcome value.

The httpx client is passed in (built by :func:`make_client` from the settings),
so tests point the same code at a real server on 127.0.0.1 (allowed by
``fetch.allow_networks``) and nothing here needs patching. Every failure mode,
HTTP status, timeout, byte cap, refused address, broken connection, becomes a
:class:`~monitor.models.FetchFailed` carrying a reason, because one bad feed
must never stop a pass.

Bodies are decoded here, not by httpx: httpx inflates a whole network chunk
before anyone can count it, so 64 KB of brotli could become gigabytes in one
step. :func:`_read_capped` reads the raw bytes and inflates them in steps of at
most ``_STEP`` bytes, counting as it goes, so a body never costs more than the
cap plus a step (and the final join).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from itertools import chain, pairwise
from urllib.parse import urlsplit

import httpx

from monitor.charset import decode_html
from monitor.deadline import ClockedTransport, DeadlinePassed, FetchCancelled, pause, request_clock
from monitor.models import Fetched, FetchFailed, FetchOutcome, NotModified
from monitor.netpolicy import AddressPolicy, AddressRefused
from monitor.settings import FetchSettings

try:  # httpx[brotli] installs one of the two
    import brotli
except ImportError:  # pragma: no cover
    try:
        import brotlicffi as brotli  # type: ignore[no-redef]
    except ImportError:
        brotli = None

_KEPT_HEADERS = ("cache-control", "retry-after", "expires", "location", "content-type")
_PERMANENT = {301, 308}
_STEP = 64 * 1024  # most bytes one decoding step may produce
_MAX_CODINGS = 3  # "gzip, gzip, gzip, ..." nests bombs; real servers apply one


def _bounded_brotli() -> bool:
    """Whether the installed brotli can stop at an output size (brotli >= 1.2, brotlicffi >= 1.2)."""
    return brotli is not None and hasattr(brotli.Decompressor(), "can_accept_more_data")


_BROTLI = _bounded_brotli()
ACCEPT_ENCODING = "gzip, deflate, br" if _BROTLI else "gzip, deflate"
_DECODE_ERRORS: tuple[type[Exception], ...] = (zlib.error, brotli.error) if brotli is not None else (zlib.error,)


def make_client(settings: FetchSettings) -> httpx.Client:
    """The one client of a run: connection pooling, redirects, timeouts, User-Agent and the address policy.

    Every connection, redirect hops included, goes through
    :class:`~monitor.netpolicy.GuardedTransport`: non-public addresses are
    refused unless ``fetch.allow_networks`` holds them. ``fetch.timeout`` bounds
    each socket operation, ``fetch.deadline`` the whole request
    (:mod:`monitor.deadline`): a page that drips a byte a second is abandoned at
    the deadline, not when its server tires.
    """
    limits = httpx.Limits(max_connections=settings.concurrency * 2)
    return httpx.Client(
        follow_redirects=True,
        max_redirects=settings.max_redirects,
        timeout=httpx.Timeout(settings.timeout),
        headers={"User-Agent": settings.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        transport=ClockedTransport(AddressPolicy(settings.allow_networks), limits=limits,
                                   deadline=settings.deadline),
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
                pause(start - now)  # returns early on stop; the request then ends at once, cancelled
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


def html_as_utf8(page: Fetched) -> Fetched:
    """A page re-encoded as UTF-8 if it is not already (:func:`decode_html`, its note dropped)."""
    decoded = decode_html(page.content, page.encoding)
    if decoded.content is page.content:
        return page
    return replace(page, content=decoded.content, encoding="utf-8")


class _Unreadable(Exception):
    """A body given up while reading: too large (on the wire or once decoded), or not decodable."""


def _inflated(chunks: Iterable[bytes], wbits: int, *, members: bool) -> Iterator[bytes]:
    """zlib output in steps of at most ``_STEP`` bytes, however much one input chunk inflates to.

    ``members``: gzip bodies may hold several members one after another (RFC 1952);
    bytes after a deflate stream's end, or after a gzip member that are not
    another member, are ignored, as zlib, browsers and urllib3 do.
    """
    decoder = zlib.decompressobj(wbits)
    later_member = False
    for chunk in chunks:
        data = chunk
        while data:
            if decoder.eof:
                if not members:
                    return
                decoder, later_member = zlib.decompressobj(wbits), True
            try:
                out = decoder.decompress(data, _STEP)
            except zlib.error:
                if later_member:
                    return  # trailing garbage
                raise
            data = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
            yield out
            while not data and len(out) == _STEP and not decoder.eof:  # output still held inside zlib
                out = decoder.decompress(b"", _STEP)
                yield out


def _deflated(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``deflate`` is zlib-wrapped (RFC 9110) but servers also send it raw; the first two bytes tell."""
    iterator = iter(chunks)
    head = b""
    for chunk in iterator:
        head += chunk
        if len(head) >= 2:
            break
    wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
    yield from _inflated(chain([head], iterator), zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS, members=False)


def _unbrotli(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """brotli output in steps of about ``_STEP`` bytes (brotli's output_buffer_limit), input buffered inside."""
    decoder = brotli.Decompressor()
    for chunk in chunks:
        yield decoder.process(chunk, output_buffer_limit=_STEP)
        while not decoder.can_accept_more_data():
            yield decoder.process(b"", output_buffer_limit=_STEP)


_DECODERS: dict[str, Callable[[Iterable[bytes]], Iterator[bytes]]] = {
    "gzip": lambda chunks: _inflated(chunks, 16 + zlib.MAX_WBITS, members=True),
    "x-gzip": lambda chunks: _inflated(chunks, 16 + zlib.MAX_WBITS, members=True),
    "deflate": _deflated,
}
if _BROTLI:
    _DECODERS["br"] = _unbrotli
_UNDECODABLE = {"br", "zstd", "compress", "x-compress"} - set(_DECODERS)  # never asked for, cannot be capped


def _codings(response: httpx.Response) -> list[str]:
    """The Content-Encoding codings in the order they were applied; identity left out."""
    header = response.headers.get("content-encoding", "")
    return [c for c in (part.strip().lower() for part in header.split(",")) if c and c != "identity"]


def _decoded(raw: Iterable[bytes], codings: list[str]) -> Iterable[bytes]:
    """The body decoded, last coding first. Unknown codings pass through unchanged, as httpx does."""
    if len(codings) > _MAX_CODINGS:
        raise _Unreadable(f"too many content codings: {', '.join(codings)}")
    stream = raw
    for coding in reversed(codings):
        if coding in _UNDECODABLE:
            raise _Unreadable(f"unsupported Content-Encoding {coding!r}")
        decoder = _DECODERS.get(coding)
        stream = decoder(stream) if decoder else stream
    return stream


def _raw_capped(response: httpx.Response, max_bytes: int) -> Iterator[bytes]:
    """The bytes as sent, capped too: a body that inflates to nothing (endless empty gzip members) costs no
    memory, but would hold a worker for as long as the server keeps sending."""
    size = 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > max_bytes:
            raise _Unreadable(f"body larger than {max_bytes} bytes")
        yield chunk


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The decoded body, or _Unreadable as soon as it exceeds the cap (a 50 MB page is refused, not buffered).

    The cap counts decoded bytes, in steps of at most ``_STEP``: a brotli bomb
    is stopped after ``max_bytes`` of output whatever its ratio.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _Unreadable(f"body larger than {max_bytes} bytes")
    codings = _codings(response)
    decoded = ", ".join(c for c in codings if c in _DECODERS)
    too_large = f"body larger than {max_bytes} bytes" + (f" once decoded ({decoded})" if decoded else "")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in _decoded(_raw_capped(response, max_bytes), codings):
            size += len(chunk)
            if size > max_bytes:
                raise _Unreadable(too_large)
            chunks.append(chunk)
    except _DECODE_ERRORS as exc:
        raise _Unreadable(f"could not decode the {decoded} body: {exc}") from None
    return b"".join(chunks)


def _refused(url: str, exc: AddressRefused) -> str:
    """The reason recorded for a refused address, naming the redirect hop that led there if any."""
    try:
        hop = str(exc.request.url)
    except RuntimeError:  # raised outside a request
        hop = url
    where = "" if hop == url else f"redirect to {hop}: "
    return f"refused: {where}{exc}"


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
        with (limiter.slot(url) if limiter else nullcontext(), request_clock(),
              client.stream("GET", url, headers=headers) as response):
            kept = _kept_headers(response)
            if response.status_code == 304:
                return NotModified(url, etag=response.headers.get("etag", etag),
                                   last_modified=response.headers.get("last-modified", last_modified),
                                   headers=kept, moved_to=permanent_target(response))
            if response.status_code >= 400:
                return FetchFailed(url, f"HTTP {response.status_code} {response.reason_phrase}",
                                   status=response.status_code, headers=kept)
            try:
                body = _read_capped(response, max_bytes)
            except _Unreadable as exc:
                return FetchFailed(url, str(exc), status=response.status_code, headers=kept)
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
    except AddressRefused as exc:
        return FetchFailed(url, _refused(url, exc))
    except (DeadlinePassed, FetchCancelled) as exc:
        return FetchFailed(url, str(exc))
    except httpx.TimeoutException:
        return FetchFailed(url, f"timed out after {time.monotonic() - started:.1f}s")
    except httpx.TooManyRedirects:
        return FetchFailed(url, "too many redirects")
    except httpx.HTTPError as exc:
        return FetchFailed(url, f"{type(exc).__name__}: {exc}")
    except (ValueError, UnicodeError) as exc:  # malformed URLs and headers from odd servers
        return FetchFailed(url, f"invalid request or response: {exc}")

