"""Edit the feed list in the YAML config, and translate it to and from OPML.

The YAML file is the one source of truth for which feeds exist, so ``feeds
add`` and ``feeds import`` write to it with ruamel.yaml's round-trip mode,
which keeps the user's comments and layout.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from monitor.errors import FeedsFileError
from monitor.settings import FeedConfig


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    name: str | None
    tags: tuple[str, ...] = ()


def _round_trip() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def add_feeds(config_path: Path, feeds: Sequence[FeedConfig]) -> list[FeedConfig]:
    """Append feeds not yet listed (by URL) to the config file; returns those added."""
    yaml = _round_trip()
    try:
        document = yaml.load(config_path.read_text(encoding="utf-8")) or CommentedMap()
    except (OSError, YAMLError) as exc:
        raise FeedsFileError(f"{config_path}: cannot read the config to edit it: {exc}") from None
    except RecursionError:
        raise FeedsFileError(f"{config_path}: cannot read the config to edit it: nested too deeply") from None
    listed = document.get("feeds")
    if listed is None:
        listed = CommentedSeq()
        document["feeds"] = listed
    present = {str(item.get("url")) for item in listed if hasattr(item, "get")}
    added = []
    for feed in feeds:
        if feed.url in present:
            continue
        entry = CommentedMap(url=feed.url)
        if feed.name:
            entry["name"] = feed.name
        if feed.tags:
            entry["tags"] = list(feed.tags)
        if feed.interval != FeedConfig.model_fields["interval"].default:
            entry["interval"] = feed.interval
        listed.append(entry)
        present.add(feed.url)
        added.append(feed)
    if added:
        buffer = io.StringIO()
        yaml.dump(document, buffer)
        _write_atomically(config_path, buffer.getvalue())
    return added


def _write_atomically(path: Path, text: str) -> None:
    """Write beside, then rename: a full disk or a crash never leaves half a config."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise FeedsFileError(f"{path}: cannot write the config: {exc}") from None


MAX_OPML_DEPTH = 50  # folders within folders; real exports nest two or three


def read_opml(path: Path) -> list[OpmlFeed]:
    """Every outline with an ``xmlUrl``; enclosing outlines' titles become tags (OPML categories).

    Walked with a stack, not recursion: a 3,000-deep outline printed a
    RecursionError traceback; deeper than :data:`MAX_OPML_DEPTH` is now one error line.
    """
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise FeedsFileError(f"{path}: not a readable OPML file: {exc}") from None
    body = root.find("body")
    if body is None:
        raise FeedsFileError(f"{path}: not an OPML file (no <body>)")
    feeds: list[OpmlFeed] = []
    stack: list[tuple[Iterator[ElementTree.Element], tuple[str, ...]]] = [(iter(body.findall("outline")), ())]
    while stack:  # depth first, in document order, as the recursive walk went
        outlines, tags = stack[-1]
        outline = next(outlines, None)
        if outline is None:
            stack.pop()
            continue
        label = outline.get("title") or outline.get("text")
        url = outline.get("xmlUrl")
        if url:
            feeds.append(OpmlFeed(url.strip(), label, tags))
        elif len(stack) >= MAX_OPML_DEPTH:
            raise FeedsFileError(f"{path}: outlines nested more than {MAX_OPML_DEPTH} deep; not an OPML feed list")
        else:
            stack.append((iter(outline.findall("outline")), tags + ((label,) if label else ())))
    return feeds


def write_opml(feeds: Sequence[FeedConfig], title: str = "newsmonitor feeds") -> str:
    opml = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(opml, "head")
    ElementTree.SubElement(head, "title").text = title
    body = ElementTree.SubElement(opml, "body")
    for feed in feeds:
        attributes = {"type": "rss", "text": feed.display_name, "title": feed.display_name, "xmlUrl": feed.url}
        if feed.tags:
            attributes["category"] = ",".join(feed.tags)
        ElementTree.SubElement(body, "outline", attributes)
    ElementTree.indent(opml)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(opml, encoding="unicode") + "\n"
