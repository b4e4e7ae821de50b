"""Hostile web input, first slice: the address policy and the decoded-bytes cap, against real loopback servers.

Every server here listens on loopback, which the policy refuses unless ``fetch.allow_networks`` allows it,
so the same servers show both sides. All of 127.0.0.0/8 is loopback on Linux: a server on 127.0.0.2 is
allowed (127.0.0.2/32) while its redirect to 127.0.0.1 is not.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import shutil
import ssl
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import brotli
import httpcore
import pytest
from pytest_httpserver import HTTPServer

from monitor.errors import ConfigError
from monitor.fetch import fetch_url, make_client
from monitor.models import Fetched, FetchFailed
from monitor.netpolicy import AddressPolicy, AddressRefused, GuardedBackend
from monitor.settings import FetchSettings, settings_from_mapping
from tests.conftest import LOOPBACK, ROOT
from tests.feedserver import Entry, FeedServer, Response, recent, rss, story
from tests.helpers_daemon import config, feed_row, one_pass, query

MB = 1_000_000


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


@pytest.fixture
def second() -> Iterator[HTTPServer]:
    """A server on 127.0.0.2: another loopback address, allowed on its own (127.0.0.2/32)."""
    running = HTTPServer(host="127.0.0.2", port=0, threaded=True)
    running.start()
    yield running
    running.clear()
    running.stop()


def settings(*allow: str, **overrides: object) -> FetchSettings:
    return FetchSettings(timeout=5.0, allow_networks=list(allow), **overrides)


# -- the address check ------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "reason"), [
    ("2130706433", "2130706433 is 127.0.0.1, a loopback address"),
    ("0x7f000001", "0x7f000001 is 127.0.0.1, a loopback address"),
    ("127.1", "127.1 is 127.0.0.1, a loopback address"),
    ("0177.0.0.1", "0177.0.0.1 is 127.0.0.1, a loopback address"),
    ("0x7f.1", "0x7f.1 is 127.0.0.1, a loopback address"),
    ("[::1]", "::1 is a loopback address"),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1 is an address embedding 127.0.0.1, a loopback address"),
    ("169.254.169.254", "169.254.169.254 is a link-local address"),
    ("10.0.0.1", "10.0.0.1 is a private address"),
    ("172.16.5.4", "172.16.5.4 is a private address"),
    ("192.168.1.1", "192.168.1.1 is a private address"),
    ("100.64.0.1", "100.64.0.1 is a shared (carrier-grade NAT) address"),
    ("224.0.0.1", "224.0.0.1 is a multicast address"),
    ("0.0.0.0", "0.0.0.0 is an unspecified ('this network') address"),
    ("255.255.255.255", "255.255.255.255 is the broadcast address"),
    ("240.0.0.1", "240.0.0.1 is a reserved address"),
    ("192.0.2.7", "192.0.2.7 is a documentation address"),
    ("198.18.0.1", "198.18.0.1 is a benchmarking address"),
    ("fe80::1", "fe80::1 is a link-local address"),
    ("fc00::1", "fc00::1 is a private (unique local) address"),
    ("fd12:3456::1", "fd12:3456::1 is a private (unique local) address"),
    ("ff02::1", "ff02::1 is a multicast address"),
    ("::", ":: is an unspecified address"),
    ("::7f00:1", "::7f00:1 is an IPv4-compatible (deprecated) address"),
    ("2001:db8::1", "2001:db8::1 is a documentation address"),
    ("64:ff9b::a00:1", "64:ff9b::a00:1 is an address embedding 10.0.0.1, a private address"),  # NAT64
    ("2002:7f00:1::1", "2002:7f00:1::1 is an address embedding 127.0.0.1, a loopback address"),  # 6to4
    ("localhost", "localhost resolves to "),
])
def test_non_public_addresses_are_refused_in_every_notation(host: str, reason: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        AddressPolicy().permitted(host, 80)
    assert refused.value.reason.startswith(reason)
    assert str(refused.value).endswith("(fetch.allow_networks to allow)")


@pytest.mark.parametrize("host", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "[2606:4700::1111]",
                                  "::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1"])
def test_public_addresses_pass(host: str) -> None:
    assert AddressPolicy().permitted(host, 443) == [ipaddress.ip_address(host.strip("[]"))]


def test_allowed_networks_open_only_themselves() -> None:
    policy = AddressPolicy((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")))
    assert policy.permitted("10.1.2.3", 80) == [ipaddress.ip_address("10.1.2.3")]
    assert policy.permitted("::ffff:10.1.2.3", 80)  # the mapped form of an allowed address
    assert policy.permitted("fd00::5", 80)
    for other in ("127.0.0.1", "192.168.0.1", "169.254.169.254", "fc00::1"):
        with pytest.raises(AddressRefused):
            policy.permitted(other, 80)


def test_a_bad_network_in_the_config_is_one_clear_line() -> None:
    with pytest.raises(ConfigError, match=r"fetch.allow_networks: .*'10.1.2.3/8' is not a network such as "
                                          r"192.168.10.0/24 or fd00::/8 \(10.1.2.3/8 has host bits set\)"):
        settings_from_mapping({"fetch": {"allow_networks": ["10.1.2.3/8"]}})
    with pytest.raises(ConfigError, match="'lab' is not a network"):
        settings_from_mapping({"fetch": {"allow_networks": ["lab"]}})
    assert settings_from_mapping({}).fetch.allow_networks == ()


# -- requests to real servers -----------------------------------------------------------------------


def test_loopback_is_refused_by_default_and_fetched_when_allowed(server: FeedServer) -> None:
    server.page("/secret", "<p>internal</p>")
    with make_client(FetchSettings(timeout=5.0)) as client:
        refused = fetch_url(client, server.url("/secret"), max_bytes=MB)
        by_name = fetch_url(client, server.url("/secret").replace("127.0.0.1", "localhost"), max_bytes=MB)
    assert isinstance(refused, FetchFailed) and refused.status is None
    assert refused.reason == "refused: 127.0.0.1 is a loopback address (fetch.allow_networks to allow)"
    assert isinstance(by_name, FetchFailed) and by_name.reason.startswith("refused: localhost resolves to ")
    assert server.hits["/secret"] == 0
    with make_client(settings(*LOOPBACK)) as client:
        allowed = fetch_url(client, server.url("/secret").replace("127.0.0.1", "localhost"), max_bytes=MB)
    assert isinstance(allowed, Fetched) and allowed.content == b"<p>internal</p>"


def test_a_redirect_to_a_refused_address_is_refused(server: FeedServer, second: HTTPServer) -> None:
    server.page("/secret", "<p>internal</p>")
    second.expect_request("/story").respond_with_data("", status=302, headers={"Location": server.url("/secret")})
    second.expect_request("/moved").respond_with_data("", status=302, headers={"Location": "/kept"})
    second.expect_request("/kept").respond_with_data("<p>public</p>", content_type="text/html")
    with make_client(settings("127.0.0.2/32")) as client:
        hop = fetch_url(client, second.url_for("/story"), max_bytes=MB)
        same_host = fetch_url(client, second.url_for("/moved"), max_bytes=MB)
    assert isinstance(hop, FetchFailed)
    assert hop.reason == (f"refused: redirect to {server.url('/secret')}: 127.0.0.1 is a loopback address "
                          "(fetch.allow_networks to allow)")
    assert server.hits["/secret"] == 0
    assert isinstance(same_host, Fetched) and same_host.content == b"<p>public</p>"


def test_the_connection_goes_to_the_address_that_was_checked(server: FeedServer) -> None:
    """The name is resolved once, by the check; the socket is opened to the checked IP, never to the name,
    so a second DNS answer (rebinding) has nothing to swap."""
    server.page("/x", "<p>x</p>")
    asked: list[str] = []

    class Recording(httpcore.SyncBackend):
        def connect_tcp(self, host: str, port: int, *args: object, **kwargs: object) -> httpcore.NetworkStream:
            asked.append(host)
            return super().connect_tcp(host, port, *args, **kwargs)

    backend = GuardedBackend(AddressPolicy(tuple(map(ipaddress.ip_network, LOOPBACK))), inner=Recording())
    stream = backend.connect_tcp("localhost", int(server.base.rsplit(":", 1)[1]), timeout=5.0)
    try:
        stream.write(b"GET /x HTTP/1.0\r\nHost: localhost\r\n\r\n", timeout=5.0)
        answer = stream.read(65536, timeout=5.0)
    finally:
        stream.close()
    assert asked == ["127.0.0.1"] and answer.startswith(b"HTTP/1.0 200")
    with pytest.raises(AddressRefused):
        GuardedBackend(AddressPolicy(), inner=Recording()).connect_tcp("localhost", 80)
    assert asked == ["127.0.0.1"]


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "10")
        self.end_headers()
        self.wfile.write(b"<p>tls</p>")

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_still_verifies_and_names_the_host_though_the_socket_goes_to_an_ip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A certificate for ``localhost`` only: it verifies for https://localhost (SNI and the check use the name,
    while the socket goes to 127.0.0.1), and not for https://127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # httpx trusts it from the environment
    try:
        with make_client(settings(*LOOPBACK)) as client:
            by_name = fetch_url(client, f"https://localhost:{httpd.server_port}/", max_bytes=MB)
            by_ip = fetch_url(client, f"https://127.0.0.1:{httpd.server_port}/", max_bytes=MB)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert isinstance(by_name, Fetched) and by_name.content == b"<p>tls</p>"
    assert names[0] == "localhost"
    assert isinstance(by_ip, FetchFailed) and "CERTIFICATE_VERIFY_FAILED" in by_ip.reason


def test_a_refused_feed_and_refused_links_do_not_stop_the_pass(tmp_path: Path, server: FeedServer,
                                                               second: HTTPServer) -> None:
    """A feed on an allowed host whose entries link to a refused one: no page and no robots.txt is requested
    there, the entries are stored from the feed's own text; a feed on a refused address fails alone."""
    entries = [Entry(f"story-{i}", f"Harbour report number {i}", story("harbour", i), recent(i)) for i in range(2)]
    server.feed("/inside.xml", entries)  # pages served on 127.0.0.1, which is refused
    second.expect_request("/feed.xml").respond_with_data(rss(server.base, entries),
                                                         content_type="application/rss+xml")
    path = config(tmp_path, [{"url": second.url_for("/feed.xml")}, {"url": server.url("/inside.xml")}],
                  fetch={"allow_networks": ["127.0.0.2/32"]})
    report = one_pass(path)
    assert (report.feeds_ok, report.feeds_failed) == (1, 1)
    assert feed_row(tmp_path / "monitor.db", server.url("/inside.xml"))["last_error"] == (
        "refused: 127.0.0.1 is a loopback address (fetch.allow_networks to allow)")
    stored = query(tmp_path / "monitor.db", "SELECT url FROM articles ORDER BY url")
    assert [row["url"] for row in stored] == [server.url(f"/articles/story-{i}") for i in range(2)]
    assert sum(server.hits.values()) == 0  # not the feed, not robots.txt, not a page


# -- compressed bodies ------------------------------------------------------------------------------


def _served(server: FeedServer, path: str, coding: str, body: bytes) -> str:
    server.set(path, lambda request: Response(200, {"Content-Type": "text/html; charset=utf-8",
                                                     "Content-Encoding": coding}, body))
    return server.url(path)


def test_codings_are_decoded_as_servers_send_them(server: FeedServer) -> None:
    text = "<p>" + "déjà vu, " * 5000 + "</p>"
    raw = text.encode()
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_deflate = deflater.compress(raw) + deflater.flush()
    half = len(raw) // 2
    urls = {
        "two gzip members": _served(server, "/members", "gzip", gzip.compress(raw[:half]) + gzip.compress(raw[half:])),
        "trailing garbage": _served(server, "/trailing", "gzip", gzip.compress(raw) + b"\r\n<!-- cache -->"),
        "raw deflate": _served(server, "/raw", "deflate", raw_deflate),
        "gzip then br": _served(server, "/stacked", "gzip, br", brotli.compress(gzip.compress(raw))),
        "unknown coding": _served(server, "/odd", "utf-8", raw),
    }
    with make_client(settings(*LOOPBACK)) as client:
        for name, url in urls.items():
            page = fetch_url(client, url, max_bytes=MB)
            assert isinstance(page, Fetched) and page.content == raw, name


@pytest.mark.parametrize(("coding", "body", "reason"), [
    ("zstd", b"(\xb5/\xfd", "unsupported Content-Encoding 'zstd'"),
    ("gzip, gzip, gzip, gzip", b"x", "too many content codings: gzip, gzip, gzip, gzip"),
    ("gzip", b"\x1f\x8b not gzip at all", "could not decode the gzip body: "),
    ("deflate", zlib.compress(b"\0" * 20 * MB, 9), "body larger than 1000000 bytes once decoded (deflate)"),
])
def test_bodies_that_cannot_be_read_safely_are_refused(server: FeedServer, coding: str, body: bytes,
                                                       reason: str) -> None:
    with make_client(settings(*LOOPBACK)) as client:
        outcome = fetch_url(client, _served(server, "/body", coding, body), max_bytes=MB)
    assert isinstance(outcome, FetchFailed) and outcome.reason.startswith(reason)


def _gzip_bomb(size: int) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(4 << 20)
    return b"".join([*(packer.compress(block) for _ in range(size // len(block))), packer.flush()])


def _brotli_bomb(size: int) -> bytes:
    packer = brotli.Compressor(quality=1)
    block = bytes(4 << 20)
    return b"".join([*(packer.process(block) for _ in range(size // len(block))), packer.finish()])


# The child's peak RSS is the kernel's high-water mark of its own memory (VmHWM, what ru_maxrss reports);
# ru_maxrss itself would start at the parent's size, as Linux carries it across fork and exec.
CHILD = """
import json, sys
from monitor.fetch import fetch_url, make_client
from monitor.settings import FetchSettings
def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
result = {}
with make_client(FetchSettings(timeout=10.0, allow_networks=["127.0.0.0/8"])) as client:
    warm = fetch_url(client, sys.argv[1], max_bytes=1_000_000)  # imports and buffers counted before
    base = peak()
    for url in sys.argv[2:]:
        outcome = fetch_url(client, url, max_bytes=1_000_000)
        result[url] = {"reason": getattr(outcome, "reason", None), "growth": peak() - base, "base": base}
print(json.dumps(result))
"""


def test_decompression_bombs_are_stopped_with_bounded_memory(server: FeedServer) -> None:
    """256 MB of gzip and 2 GiB of brotli, served by a real server, fetched with a 1 MB cap in a child process
    whose peak RSS is read from the kernel (ru_maxrss): the growth stays near the cap, not near the bomb."""
    warm = _served(server, "/warm", "gzip", gzip.compress(b"<p>warm</p>" * 20_000))
    bombs = {"gzip": (_served(server, "/gzip-bomb", "gzip", _gzip_bomb(256 << 20)), 256 << 20),
             "br": (_served(server, "/br-bomb", "br", _brotli_bomb(2 << 30)), 2 << 30)}
    child = subprocess.run([sys.executable, "-c", CHILD, warm, *(url for url, _ in bombs.values())], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(child.stdout)
    for coding, (url, inflated) in bombs.items():
        assert result[url]["reason"] == f"body larger than 1000000 bytes once decoded ({coding})"
        growth = result[url]["growth"]
        print(f"{coding} bomb inflating to {inflated >> 20} MiB: peak RSS grew {growth / 2**20:.1f} MiB")
        assert growth < 32 << 20, (coding, growth)
