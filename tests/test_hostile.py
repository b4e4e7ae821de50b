"""Hostile web input, second slice: the request deadline, stopping mid-fetch, per-poll bounds, seeds that point
out of seeds_dir, and charsets that lie (deep nesting: tests/test_nesting.py).

Every server listens on loopback, allowed by the test configs (``fetch.allow_networks``). Outcomes are asserted
on what newsmonitor recorded and on what the server was asked, never on wall-clock time.
"""

from __future__ import annotations

import signal
import socketserver
import threading
from collections.abc import Iterator
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from monitor.deadline import cancel_when
from monitor.fetch import decode_html, fetch_url, make_client
from monitor.models import FetchFailed
from monitor.settings import FetchSettings
from tests.conftest import LOOPBACK, write_config
from tests.feedserver import Entry, FeedServer, Response, article_html, recent, story
from tests.helpers_daemon import config, feed_row, good_feed, newsmonitor, one_pass, query, wait_for

RUSSIAN = "\n\n".join(
    f"Москва сообщила сегодня, что переговоры о поставках зерна продолжатся на следующей неделе в Женеве, "
    f"говорят источники, знакомые с ходом обсуждения ({i})." for i in range(3))


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


# -- fetch.deadline and stopping ---------------------------------------------------------------------


def test_a_dripping_feed_is_abandoned_at_the_deadline(tmp_path: Path, server: FeedServer) -> None:
    """A byte every 0.1 s never trips the 1 s per-read timeout; the 1.5 s deadline for the whole request does."""
    server.drip("/drip.xml", every=0.1)
    good_feed(server, "/good.xml", "harbour strike")
    path = config(tmp_path, [{"url": server.url("/drip.xml")}, {"url": server.url("/good.xml")}],
                  fetch={"timeout": 1.0, "deadline": 1.5})
    report = one_pass(path)
    assert (report.feeds_ok, report.feeds_failed) == (1, 1)
    row = feed_row(tmp_path / "monitor.db", server.url("/drip.xml"))
    assert row["last_error"] == "deadline: the whole request took longer than fetch.deadline (1.5s)"
    assert server.hits["/drip.xml"] == 1  # given up, not retried


class _HeaderDrip(socketserver.BaseRequestHandler):
    """Answers with a status line, then a header line a byte at a time: httpx waits inside its header parser."""

    def handle(self) -> None:
        self.request.recv(65536)
        try:
            self.request.sendall(b"HTTP/1.1 200 OK\r\n")
            for _ in range(300):
                self.server.dripped.wait(0.1)  # type: ignore[attr-defined]
                self.request.sendall(b"X")
        except OSError:
            pass  # the client gave up


def test_dripping_headers_are_abandoned_at_the_deadline_and_a_stop_cancels_a_fetch() -> None:
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HeaderDrip)
    httpd.daemon_threads = True
    httpd.dripped = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/page"
    stop = threading.Event()
    try:
        with make_client(FetchSettings(timeout=1.0, deadline=1.0, allow_networks=LOOPBACK)) as client:
            late = fetch_url(client, url, max_bytes=100_000)
        with make_client(FetchSettings(timeout=30.0, deadline=60.0, allow_networks=LOOPBACK)) as client:
            threading.Timer(0.5, stop.set).start()
            with cancel_when(stop.is_set):
                cancelled = fetch_url(client, url, max_bytes=100_000)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert isinstance(late, FetchFailed) and late.reason.startswith("deadline: ")
    assert isinstance(cancelled, FetchFailed) and cancelled.reason == "cancelled: newsmonitor is stopping"


def test_sigterm_during_a_slow_fetch_ends_run_once_promptly(tmp_path: Path, server: FeedServer) -> None:
    """The feed drips for a minute under a 60 s deadline and a 30 s read timeout; SIGTERM ends the pass at once,
    and the cancelled poll is not recorded as the feed's failure."""
    server.drip("/drip.xml", every=0.1)
    path = config(tmp_path, [{"url": server.url("/drip.xml")}], fetch={"timeout": 30.0, "deadline": 60.0})
    process = newsmonitor(path, "run", "--once")
    try:
        assert wait_for(lambda: server.hits["/drip.xml"] == 1, timeout=30), "the feed was never requested"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "0 feeds ok, 0 failed" in stdout
    row = feed_row(tmp_path / "monitor.db", server.url("/drip.xml"))
    assert (row["last_status"], row["last_error"], row["consecutive_errors"]) == (None, None, 0)


# -- per-poll bounds ------------------------------------------------------------------------------------


def _article_hits(server: FeedServer) -> dict[str, int]:
    return {path: n for path, n in server.hits.items() if path.startswith("/articles/")}


def test_a_poll_fetches_at_most_max_pages_newest_first_and_later_polls_fetch_the_rest(
        tmp_path: Path, server: FeedServer) -> None:
    entries = good_feed(server, "/big.xml", "grain harvest", count=120)  # entry i is i hours old
    path = config(tmp_path, [{"url": server.url("/big.xml")}], fetch={"respect_robots": False, "backlog_polls": 0})
    database = tmp_path / "monitor.db"
    pages = [f"/articles/{entry.slug}" for entry in entries]
    stored = []
    for expected in (50, 100, 120):
        one_pass(path)
        assert sum(_article_hits(server).values()) == expected
        stored.append({row["url"] for row in query(database, "SELECT url FROM articles")})
    assert set(_article_hits(server)) == set(pages) and set(_article_hits(server).values()) == {1}
    assert stored[0] == {server.url(page) for page in pages[:50]}  # the newest 50 first
    assert stored[1] == {server.url(page) for page in pages[:100]}
    assert len(stored[2]) == 120
    assert server.statuses[("/big.xml", 200)] == 3  # the validators were kept while entries waited
    one_pass(path)
    assert server.statuses[("/big.xml", 304)] == 1  # and used once nothing was left


def test_a_feed_with_entries_waiting_is_polled_again_at_its_configured_interval(
        tmp_path: Path, server: FeedServer) -> None:
    """Adaptive scheduling lengthens the interval of a feed whose entries are hours apart; a
    feed with entries left over the per-poll cap is due again at its configured interval."""
    good_feed(server, "/big.xml", "grain harvest", count=120)  # entries an hour apart
    path = config(tmp_path, [{"url": server.url("/big.xml"), "interval": 60, "adaptive": True}],
                  fetch={"respect_robots": False, "backlog_polls": 0})
    database = tmp_path / "monitor.db"
    due = []
    for _ in range(3):
        one_pass(path)
        row = query(database, "SELECT last_fetched, next_due FROM feeds")[0]
        wait = datetime.fromisoformat(row["next_due"]) - datetime.fromisoformat(row["last_fetched"])
        due.append(wait.total_seconds())
    assert due[0] <= 61 and due[1] <= 61  # 70 and 20 entries were waiting
    assert due[2] >= 600  # nothing waits: the entries' hourly rhythm lengthens the interval


def test_a_poll_that_left_entries_is_followed_at_once_until_the_backlog_is_read(
        tmp_path: Path, server: FeedServer) -> None:
    """The page budget bounds each poll, and ``fetch.backlog_polls`` how many follow it at once in the same pass."""
    entries = good_feed(server, "/big.xml", "grain harvest", count=120)
    pages = [f"/articles/{entry.slug}" for entry in entries]
    (tmp_path / "whole").mkdir()
    (tmp_path / "one").mkdir()
    whole = config(tmp_path / "whole", [{"url": server.url("/big.xml")}], fetch={"respect_robots": False})
    report = one_pass(whole)  # the default: four polls may follow
    assert server.statuses[("/big.xml", 200)] == 3  # 50 + 50 + 20 pages
    assert _article_hits(server) == dict.fromkeys(pages, 1)
    assert len(query(tmp_path / "whole" / "monitor.db", "SELECT id FROM articles")) == 120
    assert (report.feeds_ok, report.feeds_failed) == (1, 0)  # one feed, read in three polls

    server.hits.clear()
    one = config(tmp_path / "one", [{"url": server.url("/big.xml")}],
                 fetch={"respect_robots": False, "backlog_polls": 1})
    one_pass(one)
    assert sum(_article_hits(server).values()) == 100  # one poll followed; the oldest 20 wait
    one_pass(one)
    assert _article_hits(server) == dict.fromkeys(pages, 1)


def test_a_backlog_read_in_one_go_is_placed_oldest_first(tmp_path: Path, server: FeedServer) -> None:
    """Sixty reports of one story, newest first: the oldest ten are over the page budget. Read on at once, the
    oldest report opens the story, as it would have for a daemon that polled the feed all along; left to the
    next pass, the story was opened by the oldest report of the first poll, and the older ones joined it."""
    entries = good_feed(server, "/story.xml", "harbour strike", count=60)
    path = config(tmp_path, [{"url": server.url("/story.xml")}], fetch={"respect_robots": False})
    one_pass(path)
    rows = query(tmp_path / "monitor.db", "SELECT id, url, cluster_id FROM articles")
    oldest = next(r for r in rows if r["url"] == server.url(f"/articles/{entries[-1].slug}"))
    assert {r["cluster_id"] for r in rows} == {oldest["id"]}


def test_300_entries_sharing_one_link_make_one_request(tmp_path: Path, server: FeedServer) -> None:
    when = format_datetime(recent(1))
    items = "".join(f"<item><title>Copy {i} of the flood report</title><link>{server.url('/articles/same')}</link>"
                    f"<guid isPermaLink='false'>copy-{i}</guid><pubDate>{when}</pubDate></item>" for i in range(300))
    feed = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Copies</title>'
            f"<link>{server.base}/</link><description>d</description>{items}</channel></rss>")
    server.set("/copies.xml", lambda request: Response(200, {"Content-Type": "application/rss+xml"}, feed.encode()))
    server.page("/articles/same", article_html("Flood report", story("river flood", 1)))
    path = config(tmp_path, [{"url": server.url("/copies.xml")}], fetch={"respect_robots": False})
    one_pass(path)
    assert server.hits["/articles/same"] == 1
    assert feed_row(tmp_path / "monitor.db", server.url("/copies.xml"))["entries_seen"] == 300


# -- seeds ---------------------------------------------------------------------------------------------------


def test_a_seed_symlinked_out_of_seeds_dir_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("Internal memo\n\n" + story("payroll", 1), encoding="utf-8")
    (seeds / "memo.txt").symlink_to(secret)
    (seeds / "passwd.txt").symlink_to("/etc/passwd")
    (seeds / "real.txt").write_text("Harbour strike ends\n\n" + story("harbour strike", 2), encoding="utf-8")
    (seeds / "alias.txt").symlink_to(seeds / "real.txt")  # inside seeds_dir: fine, stored once
    report = one_pass(write_config(tmp_path, seeds_dir="seeds"))
    urls = [row["url"] for row in query(tmp_path / "monitor.db", "SELECT url FROM articles")]
    assert urls == [(seeds / "real.txt").as_uri()]
    assert report.seeds.skipped == 2
    refused = [r.getMessage() for r in caplog.records if "outside seeds_dir" in r.getMessage()]
    assert refused == [f"seed {seeds / 'memo.txt'} skipped: resolves to {secret}, outside seeds_dir {seeds}: "
                       "refused, not read",
                       f"seed {seeds / 'passwd.txt'} skipped: resolves to /etc/passwd, outside seeds_dir {seeds}: "
                       "refused, not read"]


FRENCH = "\n\n".join(["Les élèves ont été très heureux à la fête où le maïs était servi près du château, "
                      "déjà célèbre dans toute la région."] * 3)


@pytest.mark.parametrize(("head", "text", "charset", "extraction"), [
    ('<meta charset="windows-1252">', FRENCH, "cp1252", "trafilatura"),
    ("", FRENCH, "cp1252", "trafilatura"),  # undeclared: trafilatura alone read "élčves"
    ('<meta charset="koi8-r">', RUSSIAN, "utf-8",
     "trafilatura (charset: declared koi8-r, but the bytes are UTF-8; decoded as UTF-8)"),
])
def test_html_seeds_get_the_charset_detection_fetched_pages_get(tmp_path: Path, head: str, text: str, charset: str,
                                                                 extraction: str) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    body = "".join(f"<p>{paragraph}</p>" for paragraph in text.split("\n\n")).encode(charset)
    page = article_html("Village news", "PLACEHOLDER", meta=False).replace("<head>", f"<head>{head}")
    before, after = page.encode("ascii").split(b"<p>PLACEHOLDER</p>")
    (seeds / "page.html").write_bytes(before + body + after)
    one_pass(write_config(tmp_path, seeds_dir="seeds"))
    [row] = query(tmp_path / "monitor.db", "SELECT text, extraction FROM articles")
    assert text.split("\n\n")[0] in row["text"]
    assert row["extraction"] == extraction


# -- charsets that lie ------------------------------------------------------------------------------------


def test_a_koi8r_declared_utf8_page_is_read_as_utf8_with_a_note(tmp_path: Path, server: FeedServer) -> None:
    server.feed("/ru.xml", [Entry("moscow", "Переговоры продолжатся", RUSSIAN, recent(1))])
    body = article_html("Переговоры продолжатся", RUSSIAN, charset="koi8-r").encode("utf-8")
    server.set("/articles/moscow", lambda request: Response(200, {"Content-Type": "text/html; charset=koi8-r"}, body))
    one_pass(config(tmp_path, [{"url": server.url("/ru.xml")}], fetch={"respect_robots": False}))
    [row] = query(tmp_path / "monitor.db", "SELECT text, extraction FROM articles")
    assert "Москва сообщила сегодня" in row["text"]
    assert row["extraction"] == "trafilatura (charset: declared koi8-r, but the bytes are UTF-8; decoded as UTF-8)"


def test_declared_charsets_that_do_not_fit_the_bytes_are_overruled_and_said() -> None:
    cp1252 = FRENCH.encode("cp1252")
    wrong = decode_html(cp1252, "utf-8")
    assert wrong.content.decode("utf-8") == FRENCH
    assert wrong.note == "charset: declared utf-8, but the bytes are not utf-8; decoded as cp1252"
    right = decode_html(cp1252, "windows-1252")
    assert (right.content.decode("utf-8"), right.note) == (FRENCH, None)
    ascii_only = b"<p>plain</p>"
    assert decode_html(ascii_only, "koi8-r").note is None  # ASCII fits every declaration
