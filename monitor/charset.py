"""Page bytes to UTF-8: the charset that fits the bytes, the page's own declaration first.

Its own module, light to import: the extraction processes (:mod:`monitor.tasks`) need
it and nothing of the HTTP client.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

import charset_normalizer

_WESTERN = {"English", "French", "German", "Spanish", "Italian", "Portuguese", "Dutch", "Danish", "Swedish",
            "Norwegian", "Finnish"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


def _declared_charset(content: bytes, declared: str | None) -> str | None:
    """The charset the page names, as Python knows it: HTTP header first, then ``<meta charset>``."""
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
    return None


def _guessed_charset(content: bytes) -> str | None:
    """charset-normalizer's guess, with windows-1252 preferred for Western European text (as browsers do)."""
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


def _is_utf8(name: str) -> bool:
    return codecs.lookup(name).name in {"utf-8", "utf-8-sig"}


@dataclass(frozen=True)
class DecodedHtml:
    """A page's bytes as UTF-8, and a note when the charset it declared did not fit its bytes."""

    content: bytes
    note: str | None = None


def decode_html(content: bytes, declared: str | None = None) -> DecodedHtml:
    """HTML bytes re-encoded as UTF-8, decoded by what fits them, the page's own declaration first.

    Measured: trafilatura tries UTF-8 and then its own guess, ignoring both the
    HTTP charset and ``<meta charset>``, so a Latin-1 French page came out as
    "élčves"; decoding here fixes that. Bytes that are valid UTF-8 (and not
    ASCII) are UTF-8 whatever the page says: text in a single-byte charset is
    almost never valid UTF-8 by chance. A declaration the bytes contradict (koi8-r
    on UTF-8, UTF-8 on windows-1252) is overruled and said in ``note``.
    """
    named = _declared_charset(content, declared)
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if named and not _is_utf8(named) and not content.isascii():
            return DecodedHtml(content, f"charset: declared {named}, but the bytes are UTF-8; decoded as UTF-8")
        return DecodedHtml(content)
    if named and not _is_utf8(named):
        try:
            return DecodedHtml(content.decode(named).encode("utf-8"))
        except UnicodeDecodeError:
            pass
    guess = _guessed_charset(content)
    if not guess:
        return DecodedHtml(content, f"charset: declared {named}, but the bytes are not {named}" if named else None)
    note = f"charset: declared {named}, but the bytes are not {named}; decoded as {guess}" if named else None
    return DecodedHtml(content.decode(guess, errors="replace").encode("utf-8"), note)
