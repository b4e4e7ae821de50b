"""A deadline for the whole request and a stop signal, both enforced at the socket.

httpx's timeouts are per operation: a read that gets a byte a second never
times out, so a page that drips its body (or its headers) held a worker for as
long as its server liked, and SIGTERM waited for it. Here every socket
operation of a request (connect, TLS, each write and read, every redirect hop,
robots.txt too) is given at most what is left of the request's deadline,
``fetch.deadline`` seconds from its first hop; and a blocked read wakes every
:data:`POLL` seconds to look at the stop signal, so a stopping daemon or
``run --once`` cancels its fetches in flight within a fraction of a second.

The clock is per thread. :func:`request_clock` (opened by
:func:`~monitor.fetch.fetch_url` around one request, started by the transport
at the first hop) and :func:`cancel_when` (opened by the pipeline around a
worker's poll) set it; the streams of :class:`ClockedBackend` read it. httpx's
sync client does all of a request's I/O in the thread that asked, so a thread's
clock is its request's clock.

Not bounded: the DNS look-up (``getaddrinfo`` cannot be interrupted), and a
connect is bounded by the deadline but not woken by the stop signal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from monitor.netpolicy import AddressPolicy, GuardedTransport

POLL = 0.25  # longest a blocked read goes without looking at the stop signal


class DeadlinePassed(httpx.TimeoutException):
    """The whole request took longer than ``fetch.deadline``: a timeout, recorded with its own reason."""


class FetchCancelled(httpx.TransportError):
    """The stop signal (SIGTERM, SIGINT) came while the request was in flight."""


class _Clock(threading.local):
    """This thread's request: when it must end, and what says stop."""

    seconds: float | None = None  # the deadline this request runs under, once started
    ends: float | None = None  # time.monotonic() by which it must end
    armed: bool = False  # inside fetch_url: the first hop starts the clock
    should_stop: Callable[[], bool] | None = None


_clock = _Clock()


@contextmanager
def request_clock() -> Iterator[None]:
    """One request, redirects and body included: the transport starts its clock at the first hop."""
    saved = (_clock.seconds, _clock.ends, _clock.armed)
    _clock.seconds, _clock.ends, _clock.armed = None, None, True
    try:
        yield
    finally:
        _clock.seconds, _clock.ends, _clock.armed = saved


def _start(seconds: float | None) -> None:
    """Called for every hop; only the first of a request starts the clock, so redirects share it."""
    if _clock.armed and seconds is not None and _clock.ends is None:
        _clock.seconds, _clock.ends = seconds, time.monotonic() + seconds


@contextmanager
def cancel_when(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Requests made by this thread inside the block end soon after ``should_stop()`` turns true."""
    saved = _clock.should_stop
    _clock.should_stop = should_stop
    try:
        yield
    finally:
        _clock.should_stop = saved


def stopping() -> bool:
    """Whether this thread's stop signal is set (a worker stops starting new work)."""
    return _clock.should_stop is not None and _clock.should_stop()


def check() -> None:
    """Raise if this thread's request must end now: stopped, or past its deadline."""
    if stopping():
        raise FetchCancelled("cancelled: newsmonitor is stopping")
    if _clock.ends is not None and time.monotonic() >= _clock.ends:
        raise DeadlinePassed(f"deadline: the whole request took longer than fetch.deadline ({_clock.seconds:g}s)")


def _bounded(timeout: float | None, *, poll: bool) -> float | None:
    """``timeout`` cut to what is left of the deadline, and to :data:`POLL` if a stop signal is watched."""
    check()
    limits = [timeout]
    if _clock.ends is not None:
        limits.append(_clock.ends - time.monotonic())
    if poll and _clock.should_stop is not None:
        limits.append(POLL)
    known = [limit for limit in limits if limit is not None]
    return max(min(known), 0.001) if known else None


def pause(seconds: float) -> None:
    """``time.sleep`` that returns early when this thread's stop signal is set (politeness delays)."""
    ends = time.monotonic() + seconds
    while not stopping():
        left = ends - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, POLL) if _clock.should_stop is not None else left)


class ClockedStream(httpcore.NetworkStream):
    """A socket stream whose every operation answers to the thread's deadline and stop signal."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read in slices: between them the deadline and stop signal are looked at, the per-read timeout kept."""
        started = time.monotonic()
        while True:
            left = None if timeout is None else timeout - (time.monotonic() - started)
            try:
                return self._inner.read(max_bytes, _bounded(left, poll=True))
            except httpcore.ReadTimeout:
                check()
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._inner.write(buffer, _bounded(timeout, poll=False))
        except httpcore.WriteTimeout:
            check()
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        try:
            return ClockedStream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, poll=False)))
        except httpcore.ConnectTimeout:
            check()
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class ClockedBackend(httpcore.NetworkBackend):
    """Wraps a network backend so that its connections and streams keep the thread's clock."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            stream = self._inner.connect_tcp(host, port, timeout=_bounded(timeout, poll=False),
                                             local_address=local_address, socket_options=socket_options)
        except httpcore.ConnectTimeout:
            check()
            raise
        return ClockedStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class ClockedTransport(GuardedTransport):
    """The address-policy transport, its connections clocked, each request's clock started at its first hop."""

    def __init__(self, policy: AddressPolicy, *, limits: httpx.Limits, deadline: float | None) -> None:
        super().__init__(policy, limits=limits, wrap=ClockedBackend)
        self._deadline = deadline

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _start(self._deadline)
        return super().handle_request(request)
