"""Structured logging: one line per event, ``key=value`` (default) or JSON, level from the config.

Callers log a short message and put the facts in ``extra`` (``feed``, ``url``,
``status``, ``duration``...), so a line is greppable by a human and parseable
by a log shipper alike::

    log.info("feed polled", extra={"event": "feed.poll", "feed": "BBC", "url": url, "status": "ok",
                                   "duration": 0.41})

renders as ``ts=2026-11-23T18:00:00Z level=INFO logger=monitor.pipeline event=feed.poll msg="feed polled"
feed=BBC url=https://... status=ok duration=0.41``. Under systemd, journald adds its own timestamp and
the line stays the same.

Every message, field and traceback is passed through :func:`monitor.redact.redact` first, so a feed URL's
password, a secret query value or a registered channel token never reaches a log.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from monitor.redact import redact

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_OURS = "_newsmonitor_handler"
# Chatty libraries: one line per HTTP request (httpx) and per job run (apscheduler) would drown our events.
_QUIET = ("httpx", "httpcore", "apscheduler", "trafilatura", "charset_normalizer", "urllib3")


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's ``extra`` fields, secrets masked (a feed URL's password, a token; see monitor.redact)."""
    return {k: _redacted(v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple | dict):  # kept as it is unless it holds a secret
        text = json.dumps(value, default=str, ensure_ascii=False)
        masked = redact(text)
        return value if masked == text else masked
    return value


def _message(record: logging.LogRecord) -> str:
    return redact(record.getMessage())


def _base(record: logging.LogRecord) -> dict[str, Any]:
    when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"ts": when, "level": record.levelname, "logger": record.name}


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class KeyValueFormatter(logging.Formatter):
    """``key=value`` pairs on one line; values with spaces are JSON-quoted, newlines never leak."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _base(record)
        extra = event_fields(record)
        if "event" in extra:
            fields["event"] = extra.pop("event")
        fields["msg"] = _message(record)
        fields |= extra
        if record.exc_info:
            fields["exc"] = redact(self.formatException(record.exc_info))
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items() if v is not None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _base(record) | {"msg": _message(record)} | event_fields(record)
        if record.exc_info:
            fields["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(fields, default=str, ensure_ascii=False)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (click's test runner swaps it per invocation)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Install our one handler on the root logger (replacing one a previous call installed).

    Called once per command; calling again (tests, several CLI invocations in
    one process) swaps the handler instead of stacking duplicates.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
