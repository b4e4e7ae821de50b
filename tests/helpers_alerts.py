"""Real receivers for alert delivery tests: an SMTP server (aiosmtpd) and helpers to build stored clusters."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from pytest_httpserver import HTTPServer

from monitor.settings import Settings, settings_from_mapping
from monitor.store import Store

SANCTUARY = '("sanctuary city" OR "sanctuary cities" OR "protection cities") AND (ICE OR "border patrol")'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class _Inbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls this hook by name
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[int, _Inbox]]:
    """A plain SMTP server on 127.0.0.1 (no TLS, no auth), as Apprise's ``mailto://host:port`` reaches it."""
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def mail_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def json_url(server: HTTPServer, path: str = "/hook") -> str:
    return f"json://127.0.0.1:{server.port}{path}"


def posted(server: HTTPServer, path: str = "/hook") -> list[dict[str, Any]]:
    """The JSON bodies Apprise POSTed to ``path`` that the server answered with 2xx."""
    return [json.loads(request.get_data()) for request, response in server.log
            if request.path == path and response.status_code < 300]


def attempts(server: HTTPServer, path: str = "/hook") -> int:
    return sum(1 for request, _ in server.log if request.path == path)


def make_settings(tmp_path: Any, *, rules: list[dict[str, Any]], channels: dict[str, Any] | None,
                  digest: str = "immediate", **extra: Any) -> Settings:
    """``channels=None`` leaves the key out: no channel configured at all."""
    return settings_from_mapping({
        "database": "monitor.db", "seeds_dir": None, "alerts": rules, "digest": {"mode": digest},
        **({} if channels is None else {"channels": channels}), **extra,
    }, path=tmp_path / "monitor.yaml")


class StoryWriter:
    """Builds clusters through the Store's own write methods, so tests control which articles share a story."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.next_id = 1

    def add(self, cluster_id: int, *, source: str, title: str, text: str, language: str = "en",
            feed_id: int | None = None, when: str = "2024-02-14T12:00:00+00:00") -> int:
        article_id = self.next_id
        self.next_id += 1
        with self.store.transaction():
            self.store.insert_article({
                "id": article_id, "url": f"https://{source}/story/{article_id}", "source": source, "title": title,
                "text": text, "language": language, "feed_id": feed_id, "published": when, "fetched_at": when,
                "content_hash": f"hash-{article_id}",
            })
            self.store.ensure_cluster(cluster_id, title=title)
            self.store.set_article_cluster(article_id, cluster_id=cluster_id)
            self.store.refresh_cluster(cluster_id)
        return article_id
