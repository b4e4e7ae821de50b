"""Mask secrets in every string that leaves the process: log lines, stored errors, CLI output, Datasette.

Two kinds of secrets are masked, by two means:

- **Patterns**, wherever they appear: the password of a URL's userinfo
  (``https://user:pass@host`` -> ``https://user:***@host``) and the value of a
  query parameter whose name says it is a secret (``?token=``, ``?key=``,
  ``?apikey=``, ``?access_token=``, ``?password=``, ``?sig=``...).
- **Known secrets**, registered from the config at start-up
  (:func:`register_settings`): the pieces of each Apprise URL that are not a
  plain host name or port (an ntfy topic, a token in a webhook path, a user, a
  password, query values) and the password and secret query values of each feed
  URL. Apprise's own ``url(privacy=True)`` masks passwords but not an ntfy topic
  or a path token, and its log lines (which become ``alerts.last_error``) may
  name either, so the pieces are masked as plain strings wherever they occur.

Pieces shorter than :data:`MIN_SECRET` characters are not registered: masking
``hook`` or ``alerts`` in every log line would hide more than it protects.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
MIN_SECRET = 6

#: Query parameter names whose values are secrets (matched case-insensitively, as whole names or name parts).
SECRET_PARAMS = ("token", "key", "apikey", "api_key", "api-key", "access_token", "auth", "secret", "password",
                 "passwd", "pwd", "pass", "sig", "signature", "sessionid", "credential", "credentials",
                 "client_secret", "private_token", "x-amz-signature")
_PARAM_NAME = re.compile(r"(?:^|[_.-])(?:" + "|".join(re.escape(p) for p in SECRET_PARAMS) + r")$|"
                         r"(?:token|secret|passw|apikey|api_key)", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^\s/?#@:'\"<>]*):)(?P<pw>[^\s/?#@'\"<>]+)@")
_QUERY = re.compile(r"(?P<head>[?&;](?P<name>[A-Za-z0-9_.\-\[\]]+)=)(?P<value>[^&#\s'\"<>;]+)")

_lock = threading.Lock()
_known: tuple[str, ...] = ()


def _mask_query(match: re.Match[str]) -> str:
    name = match.group("name").strip("[]")
    if _PARAM_NAME.search(name):
        return match.group("head") + MASK
    return match.group(0)


def redact(text: Any) -> Any:
    """``text`` with every known secret and every URL password or secret query value replaced by ``***``.

    Anything that is not a string is returned unchanged (so it can wrap log fields and table cells).
    """
    if not isinstance(text, str) or not text:
        return text
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
    if "@" in text:
        text = _USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
    if "=" in text:
        text = _QUERY.sub(_mask_query, text)
    return text


def _is_hostname(host: str) -> bool:
    """A real host name or address (kept visible), not a token standing where a host would (``ntfy://topic``)."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return "." in host and all(part.isalnum() or "-" in part for part in host.split("."))


def url_secrets(url: str, *, host_may_be_secret: bool = False) -> list[str]:
    """The secret pieces of ``url``: userinfo, secret query values and, for an Apprise URL, path and host tokens."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return [url]
    pieces = [parts.password or ""]
    if host_may_be_secret:
        pieces += [parts.username or ""]
        pieces += [] if _is_hostname(host) else [host, parts.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[0]]
        pieces += [segment for segment in parts.path.split("/") if segment]
        pieces += [pair.split("=", 1)[1] for pair in parts.query.split("&") if "=" in pair]
    else:
        pieces += [pair.split("=", 1)[1] for pair in re.split(r"[&;]", parts.query)
                   if "=" in pair and _PARAM_NAME.search(pair.split("=", 1)[0])]
    out = []
    for piece in pieces:
        for form in (piece, unquote(piece)):
            if len(form) >= MIN_SECRET and form not in out:
                out.append(form)
    return out


def register(secrets: Iterable[str]) -> None:
    """Add strings to mask from now on (longest first, so a secret containing another is masked whole)."""
    global _known
    with _lock:
        merged = set(_known) | {s for s in secrets if s and len(s) >= MIN_SECRET}
        _known = tuple(sorted(merged, key=len, reverse=True))


def register_apprise_url(url: str) -> None:
    register([url, *url_secrets(url, host_may_be_secret=True)])


def register_settings(settings: Any) -> None:
    """Register every secret the config holds: its channels' Apprise URLs and its feed URLs' credentials."""
    for urls in settings.channels.values():
        for url in urls:
            register_apprise_url(url)
    register(secret for feed in settings.feeds for secret in url_secrets(feed.url))


def forget_all() -> None:
    """Tests only: drop the registered secrets."""
    global _known
    with _lock:
        _known = ()


def apprise_display(url: str) -> str:
    """An Apprise URL as it may be shown: its scheme and host name, everything else masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    shown = f"{host}{port}" if _is_hostname(host) else MASK
    rest = "/" + MASK if (parts.path.strip("/") or parts.query or parts.username) else ""
    return f"{parts.scheme}://{shown}{rest}"
