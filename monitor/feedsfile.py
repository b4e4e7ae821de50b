"""Edit the feed list in the YAML config, and translate it to and from OPML.

The YAML file is the one source of truth for which feeds exist. ``feeds add``, ``remove``,
``disable``, ``enable`` and ``import`` edit its *text*: ruamel.yaml's composer gives the
position of every node, and only the lines of the entry being added, removed or changed
are written. Every other byte stays as it was: comments, blank lines, quoting, long lines,
``null``, line endings. Which comments belong to an entry:

* comment lines directly above an entry, indented at least like its ``-``, describe it
  (they go when it is removed);
* comment lines right below it, indented deeper than its ``-``, are part of it
  (a commented-out key);
* anything else (a comment at a lesser indentation, or after a blank line) belongs to
  what follows, and a new entry is written before it.

The edited text is validated as a whole config before it replaces the file, atomically.
"""

from __future__ import annotations

import difflib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor.errors import ConfigError, FeedsFileError
from monitor.settings import FeedConfig, default_feed_name, format_duration, parse_duration, settings_from_mapping

DEFAULT_INTERVAL = FeedConfig.model_fields["interval"].default


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    name: str | None
    tags: tuple[str, ...] = ()
    interval: float | None = None
    adaptive: bool | None = None
    enabled: bool = True


def feed_entry(feed: FeedConfig | OpmlFeed) -> dict[str, Any]:
    """The keys a config entry needs for ``feed``: defaults are left out, the interval is written as '15m'."""
    entry: dict[str, Any] = {"url": feed.url}
    if feed.name:
        entry["name"] = feed.name
    if feed.tags:
        entry["tags"] = list(feed.tags)
    if feed.interval is not None and feed.interval != DEFAULT_INTERVAL:
        entry["interval"] = format_duration(feed.interval)
    if feed.adaptive is not None:
        entry["adaptive"] = feed.adaptive
    if not feed.enabled:
        entry["enabled"] = False
    return entry


def find_feed(feeds: Sequence[FeedConfig], which: str) -> FeedConfig:
    """A configured feed by URL, or by name (any case); an unknown one names the closest there is."""
    which = which.strip()
    for feed in feeds:
        if feed.url == which:
            return feed
    named = [feed for feed in feeds if feed.display_name.casefold() == which.casefold()]
    if len(named) > 1:
        raise FeedsFileError(f"{len(named)} feeds are named {which!r}; name it by its URL")
    if named:
        return named[0]
    close = difflib.get_close_matches(which, [f.url for f in feeds] + [f.display_name for f in feeds], n=1)
    hint = f"; did you mean {close[0]}?" if close else ("" if feeds else "; no feeds are configured")
    raise FeedsFileError(f"no such feed in the config: {which}{hint}")


# -- rendering YAML values ----------------------------------------------------------------------


def _dump(data: Any, *, flow: bool) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = flow
    yaml.width = 1_000_000  # never wrap a long URL or name
    yaml.sort_base_mapping_type_on_output = False
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue().strip()


def _value(value: Any, *, flow: bool = False) -> str:
    """A value as YAML text for a block mapping, or inside a flow collection (where a comma must be quoted).

    Lists are written in flow style, ``[world, politics]``, as the shipped config writes tags.
    """
    if flow or isinstance(value, list):
        return _dump({"k": value}, flow=True)[len("{k: "):-1]
    return _dump({"k": value}, flow=False)[len("k: "):]


def _flow_entry(entry: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{key}: {_value(value, flow=True)}" for key, value in entry.items()) + "}"


def _block_entry(entry: dict[str, Any], dash: int, offset: int, newline: str) -> str:
    """``- url: ...`` with the dash at column ``dash`` and the keys ``offset`` columns after it."""
    lines = [f"{key}: {_value(value)}" for key, value in entry.items()]
    first = " " * dash + "-" + " " * (offset - 1) + lines[0]
    return newline.join([first, *(" " * (dash + offset) + line for line in lines[1:])]) + newline


# -- the config as text ---------------------------------------------------------------------------


def _content_end(node: Node) -> int:
    """Index just past the node's last character (a block collection's own end mark lies at the next token)."""
    if isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        if isinstance(node, MappingNode):
            key, value = last
            return key.end_mark.index if _empty(value) else _content_end(value)
        return _content_end(last)
    return node.end_mark.index


def _empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.start_mark.index == node.end_mark.index


@dataclass(frozen=True)
class _Entry:
    """One item of the feed list, located in the text."""

    node: Node
    url: str
    start: int  # where its text starts: its own comment lines above it, else its line (block) or the node (flow)
    dash: int  # index of its "-" (block), or of the node (flow)
    end: int  # just past its last line, commented-out keys below it included (block), or past the node (flow)


class _ConfigText:
    """The config file's text and where its feed list sits in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_bytes().decode("utf-8")
            root = YAML().compose(self.text)
        except (OSError, UnicodeDecodeError, YAMLError) as exc:
            raise FeedsFileError(f"{path}: cannot read the config to edit it: {exc}") from None
        except RecursionError:
            raise FeedsFileError(f"{path}: cannot read the config to edit it: nested too deeply") from None
        self.newline = "\r\n" if "\r\n" in self.text else "\n"
        if root is not None and not isinstance(root, MappingNode):
            raise FeedsFileError(f"{path}: the config is not a mapping of keys to values")
        self.key: ScalarNode | None = None
        self.list: Node | None = None
        for key, value in root.value if root is not None else ():
            if isinstance(key, ScalarNode) and key.value == "feeds":
                self.key, self.list = key, value
        if self.list is not None and not isinstance(self.list, SequenceNode) and not self._null(self.list):
            raise FeedsFileError(f"{path}: feeds: is not a list; cannot edit it")
        self.entries = list(self._entries())

    # line arithmetic on character indexes (marks count characters, so this never drifts)
    def line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def line_after(self, end: int) -> int:
        """Index just past the line holding the character before ``end``."""
        found = self.text.find("\n", max(end - 1, 0))
        return len(self.text) if found < 0 else found + 1

    def _lines_from(self, index: int) -> Iterator[tuple[int, int, str]]:
        while index < len(self.text):
            after = self.line_after(index + 1)
            yield index, after, self.text[index:after]
            index = after

    @staticmethod
    def _null(node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag.endswith(":null")

    def _entries(self) -> Iterator[_Entry]:
        if not isinstance(self.list, SequenceNode):
            return
        previous_end = self.line_after(self.key.end_mark.index + 1) if self.key is not None else 0
        for node in self.list.value:
            url = self._url(node)
            if self.list.flow_style:
                yield _Entry(node, url, node.start_mark.index, node.start_mark.index, node.end_mark.index)
                continue
            dash = self.text.rfind("-", 0, node.start_mark.index)
            column = dash - self.line_start(dash)
            start = self._comments_above(self.line_start(dash), column, previous_end)
            end = self._comments_below(self.line_after(_content_end(node)), column)
            previous_end = end
            yield _Entry(node, url, start, dash, end)

    def _comments_above(self, start: int, column: int, floor: int) -> int:
        while start > floor:
            above = self.line_start(start - 1)
            line = self.text[above:start]
            if not line.lstrip().startswith("#") or len(line) - len(line.lstrip()) < column:
                break
            start = above
        return start

    def _comments_below(self, end: int, column: int) -> int:
        for start, after, line in self._lines_from(end):
            if not line.lstrip().startswith("#") or len(line) - len(line.lstrip()) <= column:
                return start
            end = after
        return end

    @staticmethod
    def _url(node: Node) -> str:
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == "url" and isinstance(value, ScalarNode):
                    return str(value.value).strip()
        return ""

    def find(self, url: str) -> _Entry:
        for entry in self.entries:
            if entry.url == url:
                return entry
        raise FeedsFileError(f"{self.path}: no feed {url} in feeds:")

    def layout(self) -> tuple[int, int]:
        """(column of the dash, columns from dash to key) that new entries copy from the first block entry."""
        if self.entries and not self.list.flow_style:
            first = self.entries[0]
            return first.dash - self.line_start(first.dash), max(first.node.start_mark.index - first.dash, 2)
        return (self.key.start_mark.column if self.key is not None else 0) + 2, 2

    def loaded(self) -> list[Any]:
        return YAML(typ="safe", pure=True).load(self.text).get("feeds") or []

    def colon_after_key(self) -> int:
        return self.text.index(":", self.key.end_mark.index) + 1

    def save(self, text: str) -> None:
        """Validate the edited text as a config, then replace the file with it."""
        try:
            data = YAML(typ="safe", pure=True).load(text)
            settings_from_mapping(data, path=self.path)
        except (YAMLError, ConfigError) as exc:
            raise FeedsFileError(f"{self.path}: the edit would leave an invalid config, not written: {exc}") from None
        _write_atomically(self.path, text)


def _splice(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


# -- edits ---------------------------------------------------------------------------------------


def add_feeds(config_path: Path, feeds: Sequence[FeedConfig | OpmlFeed]) -> list[FeedConfig | OpmlFeed]:
    """Append the feeds not yet listed (by URL) to the config file; returns those added."""
    config = _ConfigText(config_path)
    present = {entry.url for entry in config.entries}
    added = []
    for feed in feeds:
        if feed.url not in present:
            present.add(feed.url)
            added.append(feed)
    if not added:
        return []
    entries = [feed_entry(feed) for feed in added]
    text, newline = config.text, config.newline
    dash, offset = config.layout()
    block = "".join(_block_entry(entry, dash, offset, newline) for entry in entries)
    if config.key is None:  # no feeds: key at all: a new one at the end of the file
        lead = newline if text and not text.endswith("\n") else ""
        text = text + lead + "feeds:" + newline + block
    elif isinstance(config.list, SequenceNode) and config.list.flow_style and config.list.value:
        closing = config.list.end_mark.index - 1  # the "]"
        text = _splice(text, closing, closing, "".join(", " + _flow_entry(entry) for entry in entries))
    elif config.entries:  # a block list: after the last entry, before whatever follows it
        at = config.entries[-1].end
        text = _splice(text, at, at, ("" if text[at - 1:at] in ("\n", "") else newline) + block)
    else:  # feeds: [] or feeds: null or feeds: with nothing: the value goes, the list follows the key's line
        value = config.list
        colon = config.colon_after_key()
        if value is not None and not _empty(value):
            text = _splice(text, colon, value.end_mark.index, "")
        found = text.find("\n", colon)
        line_end = len(text) if found < 0 else found + 1
        if not text[colon:line_end].strip():  # nothing left on the line but spaces: drop them too
            text = _splice(text, colon, line_end, newline)
            line_end = colon + len(newline)
        text = _splice(text, line_end, line_end, ("" if text[line_end - 1:line_end] == "\n" else newline) + block)
    config.save(text)
    return added


def remove_feed(config_path: Path, url: str) -> None:
    """Delete the feed's entry, and the comment lines that describe it."""
    config = _ConfigText(config_path)
    entry = config.find(url)
    text = config.text
    if config.list.flow_style:
        index = config.entries.index(entry)
        if index > 0:
            text = _splice(text, config.entries[index - 1].end, entry.end, "")
        elif len(config.entries) > 1:
            text = _splice(text, entry.start, config.entries[1].start, "")
        else:
            text = _splice(text, entry.start, entry.end, "")
    else:
        text = _splice(text, entry.start, entry.end, "")
        if len(config.entries) == 1:  # the list is now empty: an empty list, not a null
            colon = config.colon_after_key()
            text = _splice(text, colon, colon, " []")
    config.save(text)


def set_feed_option(config_path: Path, url: str, key: str, value: Any) -> bool:
    """Set ``key`` of the feed's entry (``value`` None removes it); False if it already was so."""
    config = _ConfigText(config_path)
    entry = config.find(url)
    node = entry.node
    if not isinstance(node, MappingNode):
        raise FeedsFileError(f"{config_path}: the entry of {url} is not a mapping")
    current = {str(k.value): (k, v) for k, v in node.value if isinstance(k, ScalarNode)}
    loaded = next(item for item in config.loaded() if str(item.get("url", "")).strip() == url)
    if (key not in loaded) if value is None else (key in loaded and loaded[key] == value):
        return False
    text = config.text
    found = current.get(key)
    if found is not None and value is not None:  # change the value in place, whatever the style
        _, old = found
        if _empty(old):
            colon = config.text.index(":", found[0].end_mark.index) + 1
            text = _splice(text, colon, colon, " " + _value(value))
        else:
            flow = bool(node.flow_style or config.list.flow_style)
            text = _splice(text, old.start_mark.index, _content_end(old), _value(value, flow=flow))
    elif node.flow_style or config.list.flow_style or (found is not None and config.line_start(
            found[0].start_mark.index) == config.line_start(entry.dash)):
        # a flow entry, or the key shares the dash's line: the entry is written again, as it was otherwise
        fields = {k: v for k, v in loaded.items() if k != key} | ({key: value} if value is not None else {})
        if node.flow_style or config.list.flow_style:
            text = _splice(text, node.start_mark.index, node.end_mark.index, _flow_entry(fields))
        else:
            dash, offset = config.layout()
            start = config.line_start(entry.dash)
            text = _splice(text, start, config.line_after(_content_end(node)),
                           _block_entry(fields, dash, offset, config.newline))
    elif found is not None:  # remove the key's lines
        key_node, old = found
        end = config.line_after(key_node.end_mark.index if _empty(old) else _content_end(old))
        text = _splice(text, config.line_start(key_node.start_mark.index), end, "")
    else:  # a new key, on its own line after the entry's last one
        at = config.line_after(_content_end(node))
        column = node.start_mark.index - config.line_start(node.start_mark.index)
        lead = "" if text[at - 1:at] == "\n" else config.newline
        text = _splice(text, at, at, f"{lead}{' ' * column}{key}: {_value(value)}{config.newline}")
    config.save(text)
    return True


def _write_atomically(path: Path, text: str) -> None:
    """Write beside, then rename: a full disk or a crash never leaves half a config. The file's mode is kept."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else None
        temporary.write_bytes(text.encode("utf-8"))
        if mode is not None:
            os.chmod(temporary, mode)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise FeedsFileError(f"{path}: cannot write the config: {exc}") from None


# -- OPML -----------------------------------------------------------------------------------------

MAX_OPML_DEPTH = 50  # folders within folders; real exports nest two or three


def _categories(value: str | None) -> tuple[str, ...]:
    """OPML's ``category``: comma-separated, each a tag or a ``/path/like/this`` (its parts become tags)."""
    tags: list[str] = []
    for item in (value or "").split(","):
        tags += [part.strip() for part in item.split("/") if part.strip()] if item.strip().startswith("/") \
            else ([item.strip()] if item.strip() else [])
    return tuple(tags)


def _outline_feed(outline: ElementTree.Element, url: str, folders: tuple[str, ...]) -> OpmlFeed:
    """A feed outline: folders and ``category`` become tags; ``interval``/``adaptive``/``enabled`` are ours."""
    label = outline.get("title") or outline.get("text")
    if label == default_feed_name(url.strip()):
        label = None  # the host, as a nameless feed is exported: it stays nameless
    tags = tuple(dict.fromkeys(folders + _categories(outline.get("category"))))
    interval = outline.get("interval")
    adaptive = outline.get("adaptive")
    try:
        seconds = parse_duration(interval) if interval else None
    except ValueError:
        seconds = None  # another program's attribute of the same name: the default interval
    return OpmlFeed(url.strip(), label, tags, seconds,
                    None if adaptive is None else adaptive.strip().lower() == "true",
                    (outline.get("enabled") or "true").strip().lower() != "false")


def read_opml(path: Path) -> list[OpmlFeed]:
    """Every outline with an ``xmlUrl``; enclosing outlines' titles and ``category`` become tags.

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
            feeds.append(_outline_feed(outline, url, tags))
        elif len(stack) >= MAX_OPML_DEPTH:
            raise FeedsFileError(f"{path}: outlines nested more than {MAX_OPML_DEPTH} deep; not an OPML feed list")
        else:
            stack.append((iter(outline.findall("outline")), tags + ((label,) if label else ())))
    return feeds


def write_opml(feeds: Sequence[FeedConfig], title: str = "newsmonitor feeds") -> str:
    """Flat outlines: tags as ``category`` (comma-separated), and our ``interval``, ``adaptive``, ``enabled``."""
    opml = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(opml, "head")
    ElementTree.SubElement(head, "title").text = title
    body = ElementTree.SubElement(opml, "body")
    for feed in feeds:
        attributes = {"type": "rss", "text": feed.display_name, "xmlUrl": feed.url}
        if feed.name:
            attributes["title"] = feed.name
        if feed.tags:
            attributes["category"] = ",".join(feed.tags)
        attributes["interval"] = str(format_duration(feed.interval))
        if feed.adaptive is not None:
            attributes["adaptive"] = str(feed.adaptive).lower()
        if not feed.enabled:
            attributes["enabled"] = "false"
        ElementTree.SubElement(body, "outline", attributes)
    ElementTree.indent(opml)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(opml, encoding="unicode") + "\n"
