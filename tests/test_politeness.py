"""Poll timing (adaptive intervals, backoff, Retry-After, disabling) and robots.txt, on real values and servers."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import brotli
import httpx
import pytest

import monitor.fetch
from monitor.fetch import HostLimiter, fetch_url, html_as_utf8, make_client
from monitor.models import Fetched, FetchFailed
from monitor.politeness import (
    PollHints,
    PollPolicy,
    RobotsCache,
    hints_from_response,
    median_gap,
    parse_max_age,
    parse_retry_after,
    syndication_period,
)
from monitor.settings import FetchSettings
from tests.conftest import LOOPBACK
from tests.feedserver import FeedServer, Request, Response, Route
from tests.helpers_daemon import config, good_feed, one_pass

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = PollPolicy(max_interval=6 * 3600, max_backoff=86400, disable_after=7 * 86400)


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Thu, 01 Jan 2026 13:00:00 GMT", NOW) == 3600
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", NOW) == 0  # in the past: no wait
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_cache_control_max_age() -> None:
    assert parse_max_age("public, max-age=1800") == 1800
    assert parse_max_age("s-maxage=600, no-transform") == 600  # shared caches' max-age, spelled without a dash
    assert parse_max_age("max-age=60, s-maxage=600") == 600  # both: the longer wins (never sooner than asked)
    assert parse_max_age("s-maxage=60, MAX-AGE=\"900\"") == 900
    assert parse_max_age("s-max-age=600, x-max-age=5") is None  # not directives
    assert parse_max_age("no-cache") is None


def test_syndication_module_update_period() -> None:
    channel = b"<channel><sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>4</sy:updateFrequency>"
    assert syndication_period(channel) == 86400 / 4
    assert syndication_period(b"<sy:updatePeriod>hourly</sy:updatePeriod>") == 3600
    assert syndication_period(b"<sy:updatePeriod>whenever</sy:updatePeriod>") is None


def test_median_gap_needs_three_dated_entries() -> None:
    daily = [NOW - timedelta(days=i) for i in range(5)]
    assert median_gap(daily) == 86400
    assert median_gap([NOW, None, NOW - timedelta(hours=1)]) is None


def test_adaptive_interval_only_lengthens_and_stays_in_bounds() -> None:
    assert POLICY.interval(900) == 900
    # The server asks for an hour (RSS ttl); we do not come back sooner.
    assert POLICY.interval(900, PollHints(ttl=3600)) == 3600
    # A feed posting once a day is polled every 12 hours at most... capped by max_interval (6 h).
    assert POLICY.interval(900, PollHints(entry_gap=86400)) == 6 * 3600
    # A feed quiet for 2 hours: every 30 minutes.
    assert POLICY.interval(900, quiet_for=7200) == 1800
    # A busy feed never goes below the configured interval.
    assert POLICY.interval(900, PollHints(entry_gap=60, max_age=10), quiet_for=0) == 900
    # The configured interval wins over max_interval if it is longer.
    assert POLICY.interval(86400, PollHints(entry_gap=10 * 86400)) == 86400


def test_errors_back_off_exponentially_capped_and_honour_retry_after() -> None:
    delays = [POLICY.error_delay(600, n) for n in range(1, 10)]
    assert delays[:3] == [1200, 2400, 4800]
    assert delays[-1] == 86400 and delays == sorted(delays)
    assert POLICY.error_delay(600, 1, retry_after=7200) == 7200
    assert POLICY.error_delay(600, 1, retry_after=10 * 86400) == 86400  # a silly Retry-After is capped


def test_410_disables_at_once_and_long_failures_disable_after_the_limit() -> None:
    gone = POLICY.failure(900, 1, status=410, reason="HTTP 410 Gone", retry_after=None, failing_since=NOW, now=NOW)
    assert gone.disable_reason and "410" in gone.disable_reason
    recent = POLICY.failure(900, 5, status=500, reason="HTTP 500", retry_after=None,
                            failing_since=NOW - timedelta(days=6), now=NOW)
    assert recent.disable_reason is None and recent.next_due > NOW
    old = POLICY.failure(900, 40, status=500, reason="HTTP 500", retry_after=None,
                         failing_since=NOW - timedelta(days=7, seconds=1), now=NOW)
    assert old.disable_reason and "40 errors" in old.disable_reason and "HTTP 500" in old.disable_reason
    never = PollPolicy(disable_after=None).failure(900, 40, status=500, reason="x", retry_after=None,
                                                   failing_since=NOW - timedelta(days=365), now=NOW)
    assert never.disable_reason is None


def test_hints_from_a_response() -> None:
    hints = hints_from_response({"cache-control": "max-age=600", "retry-after": "30"}, ttl_minutes=20,
                                content=b"<sy:updatePeriod>hourly</sy:updatePeriod>",
                                published=[NOW - timedelta(hours=2 * i) for i in range(4)])
    assert hints == PollHints(ttl=1200, update_period=3600, max_age=600, retry_after=30, entry_gap=7200)
    assert hints.server_interval == 3600


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_client(FetchSettings(timeout=1.0, allow_networks=LOOPBACK)) as made:
        yield made


def test_robots_txt_is_fetched_once_per_site_and_obeyed(server: FeedServer, client: httpx.Client) -> None:
    server.robots("User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n\nUser-agent: otherbot\nDisallow: /\n")
    robots = RobotsCache(client, user_agent="newsmonitor/0.1 (+https://example.org)", limiter=HostLimiter(2, 0))
    assert robots.allowed(server.url("/news/1"))
    assert not robots.allowed(server.url("/private/secret"))
    assert robots.allowed(server.url("/news/2"))
    assert robots.crawl_delay(server.url("/")) == 2
    assert server.hits["/robots.txt"] == 1


def test_robots_rules_for_our_agent_by_name(server: FeedServer, client: httpx.Client) -> None:
    server.robots("User-agent: newsmonitor\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
    robots = RobotsCache(client, user_agent="newsmonitor/0.1 (+https://example.org)")
    assert not robots.allowed(server.url("/news/1"))


@pytest.mark.parametrize("code", [404, 500])
def test_missing_or_broken_robots_txt_allows_everything(server: FeedServer, client: httpx.Client,
                                                        code: int) -> None:
    server.status("/robots.txt", code)
    robots = RobotsCache(client, user_agent="newsmonitor/0.1")
    assert robots.allowed(server.url("/anything"))
    assert robots.allowed(server.url("/other"))
    assert server.hits["/robots.txt"] == 1


@pytest.mark.parametrize("declare", ["header", "meta", None])
def test_non_utf8_pages_are_decoded_with_their_charset(declare: str | None) -> None:
    text = "Les élèves ont été très heureux à la fête où le maïs était servi près du château, déjà célèbre. " * 4
    head = '<meta charset="windows-1252">' if declare == "meta" else ""
    body = f"<html><head>{head}</head><body><p>{text}</p></body></html>".encode("cp1252")
    page = Fetched(url="u", final_url="u", status=200, content=body,
                   encoding="windows-1252" if declare == "header" else None)
    decoded = html_as_utf8(page).content.decode("utf-8")
    assert "élèves" in decoded and "château" in decoded
    utf8 = Fetched(url="u", final_url="u", status=200, content="déjà".encode())
    assert html_as_utf8(utf8) is utf8


def test_crawl_delay_slows_every_request_to_that_host(server: FeedServer, client: httpx.Client,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    server.robots("User-agent: *\nCrawl-delay: 1\n")  # robotparser reads whole seconds only
    limiter = HostLimiter(4, 0)
    robots = RobotsCache(client, user_agent="newsmonitor/0.1", limiter=limiter)
    assert robots.allowed(server.url("/news/1"))
    starts = []
    for _ in range(2):
        with limiter.slot(server.url("/feed.xml")):
            starts.append(time.monotonic())
    gaps = [b - a for a, b in pairwise(starts)]
    assert gaps and all(gap >= 0.99 for gap in gaps), gaps
    waits: list[float] = []
    monkeypatch.setattr(monitor.fetch, "pause", waits.append)
    with limiter.slot(server.url("/feed.xml")):
        pass
    assert len(waits) == 1 and 0 < waits[0] <= 1  # the same host waits out its delay...
    with limiter.slot("http://other.example/x"):
        pass
    assert len(waits) == 1  # ... other hosts are not held back


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_compressed_bodies_are_decoded_and_capped_after_decoding(server: FeedServer, encoding: str) -> None:
    compress = {"gzip": lambda b: gzip.compress(b, compresslevel=1), "deflate": lambda b: zlib.compress(b, 1),
                "br": lambda b: brotli.compress(b, quality=1)}[encoding]
    seen: list[Request] = []

    def route(body: bytes):
        wire = compress(body)

        def answer(request: Request) -> Response:
            seen.append(request)
            return Response(200, {"Content-Type": "text/html; charset=utf-8", "Content-Encoding": encoding}, wire)
        return answer

    server.set("/page", route(b"<p>" + "d\u00e9j\u00e0 vu ".encode() * 100 + b"</p>"))
    server.set("/bomb", route(b"\0" * 60_000_000))  # 60 MB once decoded, a few kB on the wire
    settings = FetchSettings(timeout=5.0, user_agent="newsmonitor-test/9 (+mailto:ops@example.org)",
                             allow_networks=LOOPBACK)
    with make_client(settings) as client:
        page = fetch_url(client, server.url("/page"), max_bytes=1_000_000)
        bomb = fetch_url(client, server.url("/bomb"), max_bytes=1_000_000)
    assert isinstance(page, Fetched) and page.content.decode().count("déjà vu") == 100
    assert isinstance(bomb, FetchFailed) and bomb.reason == f"body larger than 1000000 bytes once decoded ({encoding})"
    assert encoding in seen[0].headers["accept-encoding"]
    assert seen[0].headers["user-agent"] == "newsmonitor-test/9 (+mailto:ops@example.org)"


class _InFlight:
    """Counts the requests a route is answering at once; each waits until ``cap`` are in flight (or a breach)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.now = 0
        self.most = 0
        self._changed = threading.Condition()

    def hold(self, answer: Route) -> Route:
        def route(request: Request) -> Response:
            with self._changed:
                self.now += 1
                self.most = max(self.most, self.now)
                self._changed.notify_all()
                # Wait for a full set of ``cap`` (they always come: the feeds are due together), then a
                # little longer so that a request beyond the cap, if the client sent one, is seen here.
                self._changed.wait_for(lambda: self.now >= self.cap, timeout=10)
                self._changed.wait_for(lambda: self.now > self.cap, timeout=0.2)
            try:
                return answer(request)
            finally:
                with self._changed:
                    self.now -= 1
                    self._changed.notify_all()
        return route


def test_at_most_per_host_requests_are_in_flight_to_one_host(tmp_path: Path, server: FeedServer) -> None:
    """fetch.per_host: six feeds of one site due at once, eight workers, at most two requests at a time."""
    for i in range(6):
        good_feed(server, f"/feed-{i}.xml", f"desk {i}", count=1)
    counter = _InFlight(cap=2)
    for i in range(6):
        server.set(f"/feed-{i}.xml", counter.hold(server.route_for(f"/feed-{i}.xml")))
    feeds = [{"url": server.url(f"/feed-{i}.xml")} for i in range(6)]
    path = config(tmp_path, feeds, fetch={"per_host": 2, "concurrency": 8, "respect_robots": False})
    report = one_pass(path)
    assert report.feeds_ok == 6 and report.feeds.added == 6
    assert counter.most == 2  # the cap was reached, never passed
