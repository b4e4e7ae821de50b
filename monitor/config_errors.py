"""Config errors in plain words: each names the key, the value given and what is allowed.

pydantic says "Input should be a valid tuple" or "String should match pattern
'^(immediate|hourly|daily)$'"; a person editing a YAML file needs "keywords: expected a
list, e.g. [a, b] or one '- item' per line, got 5" and "digest.mode: 'weekly' is not
allowed; use one of immediate, hourly, daily". Our own validators already write such
sentences (a bad URL, a duration, a query's position); they pass through, with the given
value added where they leave it out. An unknown key names the closest known one.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from monitor.redact import redact

_LIST = "a list, e.g. [a, b] or one '- item' per line"
_MAPPING = "a mapping of keys to values (key: value lines)"
_EXPECTED = {
    "string_type": "text", "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "tuple_type": _LIST, "list_type": _LIST,
    "set_type": _LIST, "iterable_type": _LIST, "dict_type": _MAPPING, "model_type": _MAPPING,
    "model_attributes_type": _MAPPING, "path_type": "a file or folder path", "none_required": "null",
}
_BOUNDS = {"greater_than": "more than {gt}", "greater_than_equal": "at least {ge}", "less_than": "less than {lt}",
           "less_than_equal": "at most {le}"}


def shown(value: Any) -> str:
    """The value as the user wrote it (YAML-ish), shortened, secrets masked."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value) if isinstance(value, str) else str(value)
    return redact(text if len(text) <= 80 else text[:77] + "...")


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds: FeedConfig in tuple[FeedConfig, ...], WebSettings, ..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def _model_at(root: type[BaseModel], location: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in location:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        found = _models(field.annotation) if field is not None else []
        model = found[0] if found else None
    return model


def _unknown_key(root: type[BaseModel], location: tuple[Any, ...]) -> str:
    model = _model_at(root, location[:-1])
    if model is None:
        return "unknown key"
    known = [name for name, field in model.model_fields.items() if not field.exclude]
    close = difflib.get_close_matches(str(location[-1]), known, n=1)
    return f"unknown key; did you mean {close[0]}?" if close else f"unknown key; allowed here: {', '.join(known)}"


def _allowed_values(error: dict[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    if error["type"] == "literal_error":
        return ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
    alternatives = re.fullmatch(r"\^\(([\w|]+)\)\$", str(ctx.get("pattern", "")))
    return ", ".join(alternatives.group(1).split("|")) if alternatives else f"text matching {ctx.get('pattern')}"


def plain_message(error: dict[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error as a sentence: what is wrong with the value given, and what is allowed."""
    kind, given = error["type"], shown(error.get("input"))
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key(root, tuple(error["loc"]))
    if kind == "missing":
        return "missing: this key is required here"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {given}"
    if kind in _BOUNDS:
        bounds = {name: f"{value:g}" if isinstance(value, float) else value for name, value in ctx.items()}
        return f"must be {_BOUNDS[kind].format(**bounds)}, got {given}"
    if kind in ("literal_error", "string_pattern_mismatch"):
        return f"{given} is not allowed; use one of {_allowed_values(error)}"
    if kind in ("string_too_short", "too_short"):
        return f"must not be empty, got {given}"
    if kind == "value_error":
        message = str(ctx.get("error") or error["msg"]).removeprefix("Value error, ")
        return message if given in message or "'" in message or "got " in message else f"{message}, got {given}"
    return str(error["msg"])  # our own PydanticCustomError sentences (query syntax, channels, rule names)


def _key(location: tuple[Any, ...]) -> str:
    """``feeds.0.url``: pydantic's location, without the names it gives union members and validators."""
    parts = [str(part) for part in location if isinstance(part, int) or not re.search(r"[\[\]-]", str(part))]
    return ".".join(parts) or "(top level)"


def describe_validation_error(exc: ValidationError, root: type[BaseModel] | None = None) -> tuple[str, str]:
    """The first offending key (dotted, with list indexes) and a message covering all errors."""
    root = root or _root_model(exc)
    parts: dict[str, None] = {}
    first_key = ""
    for error in exc.errors():
        key = _key(tuple(error["loc"]))
        first_key = first_key or key
        parts.setdefault(f"{key}: {plain_message(error, root)}", None)
    return first_key, "; ".join(parts)


def _root_model(exc: ValidationError) -> type[BaseModel]:
    from monitor import settings  # the models live there; imported late, settings imports this module

    found = getattr(settings, exc.title, None)
    return found if isinstance(found, type) and issubclass(found, BaseModel) else settings.Settings

