"""Which addresses newsmonitor may connect to, enforced where the connection is made.

Feeds and pages are written by strangers: an entry link or a redirect to
``http://127.0.0.1:…``, ``http://169.254.169.254/`` (cloud metadata) or a 10.x
service would otherwise be fetched and its text stored and served. So every
connection (feed, page, robots.txt, each redirect hop) goes through
:class:`GuardedBackend`, which resolves the host once, refuses addresses that are
not public (:func:`classify`), and connects to the address it checked. Checking a
name and then letting the socket layer resolve it again would let DNS rebinding
swap a public answer for a private one between the two look-ups; here there is
only one look-up. ``fetch.allow_networks`` lets an operator allow a lab network.

Hosts are read the way the OS resolver reads them: ``2130706433``, ``0x7f.1``,
``0177.0.0.1`` and ``127.1`` are all 127.0.0.1 (``inet_aton``), names go through
``getaddrinfo``, and an IPv6 address that embeds an IPv4 one (mapped
``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is judged by the
address it embeds.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_HINT = "fetch.allow_networks to allow"

# Checked in order; the first match names the reason. Anything else not globally routable is refused too.
_NAMED: tuple[tuple[IPNetwork, str], ...] = tuple((ipaddress.ip_network(net), what) for net, what in (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("169.254.0.0/16", "a link-local address"),
    ("192.0.0.0/24", "an IETF protocol assignment"),
    ("192.0.2.0/24", "a documentation address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible (deprecated) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local (deprecated) address"),
    ("fc00::/7", "a private (unique local) address"),
    ("ff00::/8", "a multicast address"),
    ("2001:db8::/32", "a documentation address"),
    ("2001::/32", "a Teredo address"),
    ("100::/64", "a discard-only address"),
))
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_V4 = re.compile(r"[0-9a-fA-FxX.]+")  # what inet_aton may read as an IPv4 address


class AddressRefused(httpx.ConnectError):
    """A connection the policy refused; an httpx error, so callers record it like any failed request."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason} ({ALLOW_HINT})")
        self.reason = reason


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one routes to: mapped, NAT64 well-known prefix, or 6to4."""
    if address in _MAPPED:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def classify(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address ("a loopback address"), or None if it is.

    ``ipaddress.is_global`` alone is not enough: it calls multicast global, and
    on Python 3.11 it calls IPv4-compatible ``::7f00:1`` global too; so the named
    ranges come first, then ``is_multicast``, ``is_reserved`` and ``is_global``.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = classify(embedded)
            return f"an address embedding {embedded}, {inner}" if inner else None
    for network, what in _NAMED:
        if address.version == network.version and address in network:
            return what
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one, in any notation the OS resolver accepts; None for a name.

    ``inet_aton`` reads ``2130706433``, ``0x7f.1``, ``0177.0.0.1`` and ``127.1``
    as glibc's ``getaddrinfo`` does. It is only asked about strings of digits,
    hex letters and dots: on its own it would also take ``"1.2.3.4 anything"``.
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if _NUMERIC_V4.fullmatch(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` stands for, in the resolver's order, without duplicates."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True)
class AddressPolicy:
    """Public unicast addresses only, plus the operator's ``allow`` networks."""

    allow: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to ``address`` is refused ("a loopback address"), or None if it is allowed."""
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)  # allowing 127.0.0.0/8 allows ::ffff:127.0.0.1
        if any(c.version == net.version and c in net for c in candidates for net in self.allow):
            return None
        return classify(address)

    def permitted(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host`` that may be connected to; AddressRefused if there are none.

        A name that resolves to public and private addresses keeps the public
        ones: the connection goes only to an address that was checked.
        """
        addresses = resolve(host, port)
        allowed = [a for a in addresses if self.refusal(a) is None]
        if allowed or not addresses:
            return allowed
        first = addresses[0]
        what = self.refusal(first)
        if literal_address(host) is None:
            raise AddressRefused(f"{host} resolves to {first}, {what}")
        bare = host.strip("[]")
        try:
            plain = ipaddress.ip_address(bare) == first  # written as usual, not 2130706433 or 127.1
        except ValueError:
            plain = False
        raise AddressRefused(f"{bare} is {what}" if plain else f"{host} is {first}, {what}")


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy permits.

    httpcore calls ``connect_tcp`` with the URL's host for every new connection
    (each redirect hop to another origin opens one); the socket is opened to
    the checked IP literal, so nothing resolves the name a second time. TLS is
    started afterwards by httpcore with ``server_hostname`` set to the URL's
    host, so SNI and certificate checks, like the Host header, still use the name.
    """

    def __init__(self, policy: AddressPolicy, inner: httpcore.NetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            addresses = self._policy.permitted(host, port)
        except OSError as exc:  # the name does not resolve: the error the plain backend would give
            raise httpcore.ConnectError(str(exc)) from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        error: Exception | None = None
        for address in addresses:  # like socket.create_connection: the next address if one fails
            try:
                return self._inner.connect_tcp(str(address), port, timeout=timeout, local_address=local_address,
                                               socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport (request conversion, error mapping) over a pool that uses :class:`GuardedBackend`.

    httpx 0.28 takes no network backend (encode/httpx#3749 is open), so the pool
    it builds is replaced by one built the same way with ours. Passing a
    transport also turns off httpx's proxies from the environment, which would
    resolve the target themselves, past the policy.
    """

    def __init__(self, policy: AddressPolicy, *, limits: httpx.Limits,
                 wrap: Callable[[httpcore.NetworkBackend], httpcore.NetworkBackend] | None = None) -> None:
        """``wrap`` layers another backend over the guarded one (``monitor.deadline`` clocks its sockets)."""
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise RuntimeError("this httpx version builds its transport differently; the address policy needs "
                               "monitor/netpolicy.py updated")
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=wrap(GuardedBackend(policy)) if wrap else GuardedBackend(policy))

