"""The one exception root of newsmonitor.

Tree::

    MonitorError
    ├── ConfigError        the YAML config is missing, unreadable or invalid (names key and file)
    │   └── QueryError     an alert query is malformed (names the rule and the position)
    ├── StoreError         the SQLite database cannot be opened, migrated or locked
    └── FeedsFileError     the feeds list cannot be edited (OPML import, feeds add)

Ordinary outcomes (a 304, a failed fetch, a skipped file) are *not* exceptions:
they are the return values in :mod:`monitor.models`. Exceptions are for the
cases where the program cannot go on, and the CLI turns each into one clear line.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Root of every error newsmonitor raises on purpose."""


class ConfigError(MonitorError):
    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = f"{file}: " if file else ""
        what = f"{key}: " if key else ""
        super().__init__(f"{where}{what}{message}")


class QueryError(ConfigError):
    """A malformed alert query; ``position`` is the 0-based offset of the offending character."""

    def __init__(self, message: str, *, position: int, query: str = "", rule: str | None = None) -> None:
        self.reason, self.position, self.query, self.rule = message, position, query, rule
        where = f"alert rule {rule!r}: " if rule else ""
        pointer = f"\n    {query}\n    {' ' * position}^" if query else ""
        super().__init__(f"{where}query error at position {position + 1}: {message}{pointer}")

    def for_rule(self, rule: str | None, query: str) -> QueryError:
        return QueryError(self.reason, position=self.position, query=query, rule=rule)


class StoreError(MonitorError):
    """The database is unusable (cannot open, not a database, locked by another instance)."""


class FeedsFileError(MonitorError):
    """The feeds list in the config file could not be read or written."""
