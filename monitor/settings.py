"""One settings object, built once from the YAML config, validated, frozen, passed explicitly.

Why pydantic: every key gets a type, a default and a description in one place,
and a wrong key or value becomes one readable line (see :func:`load_settings`)
instead of a traceback deep inside a stage.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from monitor.cluster_params import ClusterParams
from monitor.config_errors import describe_validation_error
from monitor.errors import ConfigError, QueryError
from monitor.query import parse_query
from monitor.redact import register, register_apprise_url, url_secrets

DEFAULT_CONFIG = Path("config/monitor.yaml")
DEFAULT_USER_AGENT = "newsmonitor/0.1 (+https://github.com/newsmonitor/newsmonitor)"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"2h"`` or ``"1d"``: config files read better with units."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 900, '15m' or '2h'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 900, '15m' or '2h', got {value!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def format_duration(seconds: float) -> str | float:
    """The shortest of '2d', '3h', '15m' or plain seconds that says ``seconds`` exactly (config files and OPML)."""
    for unit in ("d", "h", "m"):
        if seconds >= _UNIT_SECONDS[unit] and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{int(seconds // _UNIT_SECONDS[unit])}{unit}"
    return int(seconds) if float(seconds).is_integer() else seconds


def default_feed_name(url: str) -> str:
    """What a feed without a name is called: its host."""
    return re.sub(r"^https?://([^/:]+).*$", r"\1", url)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedConfig(_Frozen):
    url: str = Field(description="The feed's URL (http or https).")
    name: str | None = Field(None, description="A display name; defaults to the feed's host.")
    interval: float = Field(1800, description="Seconds between polls (or '15m', '2h').")
    tags: tuple[str, ...] = Field((), description="Free labels, e.g. politics, used by alert rules.")
    adaptive: bool | None = Field(None, description="true: server hints and quiet spells may lengthen the interval "
                                                    "(up to schedule.max_interval); default: schedule.adaptive.")
    enabled: bool = Field(True, description="false: kept in the config but not polled (feeds disable / enable).")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/:?#]+(:\d+)?([/?#]\S*)?$", value.strip()):
            raise ValueError(f"not a valid http(s) URL: {value!r}")
        register(url_secrets(value.strip()))  # its password and tokens are masked in every output from now on
        return value.strip()

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @property
    def display_name(self) -> str:
        return self.name or default_feed_name(self.url)


class FetchSettings(_Frozen):
    user_agent: str = Field(DEFAULT_USER_AGENT, description="User-Agent sent with every request.")
    timeout: float = Field(20.0, gt=0, description="Seconds one connect or one read may wait.")
    deadline: float = Field(60.0, description="Seconds the whole request may take, connect to last byte, redirects "
                                              "included (or '2m'): a page that drips a byte a second is abandoned.")
    max_bytes: int = Field(10_000_000, gt=0, description="Larger bodies are refused, not truncated.")
    max_redirects: int = Field(5, ge=0, description="Redirects followed before giving up.")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once, over all hosts.")
    per_host: int = Field(2, ge=1, description="Requests in flight at once to one host.")
    per_host_delay: float = Field(1.0, ge=0, description="Minimum seconds between requests to one host.")
    fetch_pages: bool = Field(True, description="Fetch each entry's page; if false use feed content.")
    respect_robots: bool = Field(True, description="Skip article pages that robots.txt disallows.")
    max_pages_per_poll: int = Field(50, ge=1, description="Page fetches per feed poll; newer entries first, the "
                                                          "rest on later polls. Each link is fetched once per poll.")
    backlog_polls: int = Field(4, ge=0, description="Polls of a feed that follow at once, in the same pass, one that "
                                                    "left entries over max_pages_per_poll: a feed's history is read "
                                                    "in one go, and its stories built in publication order. 0: the "
                                                    "rest waits for the feed's next scheduled poll.")
    extract_workers: int | None = Field(None, ge=0, description="Processes that parse and extract pages (null: one "
                                                               "per core; 0: in the fetch threads, one core).")
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = Field(
        (), description="Networks (CIDRs) fetched although not public, e.g. a lab's 192.168.10.0/24; "
                        "empty: loopback, private, link-local and other non-public addresses are refused.")

    @field_validator("deadline", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        """Each bad CIDR named in one line; a host part (10.1.2.3/8) is an error, not silently widened."""
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value  # pydantic says what is wrong with it
        networks = []
        for item in value:
            try:
                networks.append(ipaddress.ip_network(str(item).strip()))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a network such as 192.168.10.0/24 or fd00::/8 ({exc})") from None
        return tuple(networks)


class ScheduleSettings(_Frozen):
    seeds_interval: float = Field(300, description="Seconds between rescans of seeds_dir.")
    jitter: float = Field(30, ge=0, description="Random seconds added to each poll, to spread load.")
    max_backoff: float = Field(86400, description="Longest wait after repeated failures of a feed.")
    max_interval: float = Field(21600, description="Longest poll interval that adaptive scheduling may reach.")
    disable_after: float | None = Field(604800, description="Disable a feed failing this long; null: never.")
    retention_days: int | None = Field(None, ge=1, description="Drop article text older than this; null: keep.")
    adaptive: bool = Field(False, description="Default of feeds' adaptive: true lets server hints and quiet spells "
                                              "lengthen a feed's interval, up to max_interval; false keeps it.")
    settle_every: float = Field(60, gt=0, description="In the daemon, articles stored while polls are in flight "
                                "wait at most this many seconds for their cluster (they are placed together, in "
                                "publication order, when no poll is in flight).")
    config_check: float | None = Field(5, gt=0, description="Seconds between the daemon's checks of the config "
                                                           "file for changes (reloaded live); null: SIGHUP only.")

    @field_validator("seeds_interval", "max_backoff", "max_interval", "settle_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("disable_after", "config_check", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)


class AlertRule(_Frozen):
    """One tracked query; its ``query`` is parsed here so a typo stops start-up, not the first pass."""

    name: str = Field(min_length=1, description="Unique name, shown in messages and `alerts list`.")
    query: str = Field(description='e.g. \'"sanctuary city" AND (ICE OR "border patrol")\'; see README.')
    min_sources: int = Field(1, ge=1, description="Distinct outlets in the cluster before it fires.")
    languages: tuple[str, ...] = Field((), description="Only articles in these languages count; empty: all.")
    feeds: tuple[str, ...] = Field((), description="Only articles of these feeds (names or 'tag:x'); empty: all.")
    notify: tuple[str, ...] = Field(("default",), description="Channel names (keys of `channels`).")
    realert_on_growth: int | None = Field(None, ge=1, description="Fire again after this many new outlets.")

    @model_validator(mode="after")
    def _parse(self) -> AlertRule:
        try:
            parse_query(self.query, rule=self.name)
        except QueryError as exc:
            raise PydanticCustomError("query_syntax", "{error}", {"error": str(exc)}) from None
        return self


class DigestSettings(_Frozen):
    mode: str = Field("immediate", pattern="^(immediate|hourly|daily)$",
                      description="immediate: one message per alert; hourly/daily: one message listing them.")


class WebSettings(_Frozen):
    """Limits for ``newsmonitor serve`` (Datasette), which may be reached by others than its operator."""

    allow_sql: bool = Field(True, description="Allow arbitrary SQL (?sql=, the query box); false: 403, only the "
                                              "tables, canned queries and the cluster page remain.")
    max_returned_rows: int = Field(1000, ge=1, description="Rows one table page, query or JSON response returns.")
    sql_time_limit_ms: int = Field(3000, ge=1, description="Milliseconds one query may run before it is stopped.")
    max_csv_mb: int = Field(10, ge=1, description="Size cap of a streamed CSV download, MB.")
    max_value_bytes: int = Field(2_000_000, ge=1000, description="Longest string or blob one query may make or read "
                                                                 "(SQLite's SQLITE_LIMIT_LENGTH).")
    max_result_mb: int = Field(50, ge=1, description="Total size of the values one query may return, MB.")
    base_url: str | None = Field(None, description="Where readers reach the web interface, e.g. "
                                                   "https://news.example.org: alert messages and digests link "
                                                   "each story's page <base_url>/-/cluster/<id>; null: no link.")

    @field_validator("base_url")
    @classmethod
    def _http_base(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", value.strip()):
            raise ValueError(f"expected an http(s) address such as https://news.example.org, got {value!r}")
        return None if value is None else value.strip().rstrip("/")


class DistributedSettings(_Frozen):
    """Parse and extract on worker processes of other machines (``newsmonitor worker``), through a Redis broker."""

    broker_url: str | None = Field(None, description="Redis URL of the task broker, e.g. redis://10.0.0.5:6379/0; "
                                                     "null: parse and extract on this machine, no broker.")
    result_timeout: float = Field(300, description="Seconds the daemon waits for a job's result before sending it "
                                                   "again (its message was lost with a broker's unsaved data).")
    heartbeat_timeout: float = Field(60, description="Seconds of silence after which a worker counts as dead and "
                                                     "its unfinished jobs go to the other workers.")

    @field_validator("result_timeout", "heartbeat_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("broker_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError(f"expected a Redis URL such as redis://127.0.0.1:6379/0, got {value.split('://')[0]!r}")
        register(url_secrets(value, host_may_be_secret=False))  # a password in the URL never reaches a log
        return value


def _check_apprise_url(channel: str, url: str) -> None:
    """Apprise is imported only when channels are configured (it takes half a second)."""
    import apprise

    register_apprise_url(url)  # before Apprise logs it: its tokens are masked in every output from now on
    if apprise.Apprise.instantiate(url) is None:
        raise PydanticCustomError("apprise_url", "channel {channel}: Apprise does not understand {url}",
                                  {"channel": repr(channel), "url": repr(url.split("://")[0] + "://...")})


class Settings(_Frozen):
    database: Path = Field(Path("monitor.db"), description="SQLite file, relative to the config file.")
    seeds_dir: Path | None = Field(Path("seeds"), description="Folder of *.txt / *.html articles.")
    feeds: tuple[FeedConfig, ...] = Field((), description="The feeds to poll.")
    keywords: tuple[str, ...] = Field((), description="Tracked terms; matching clusters are flagged.")
    fetch: FetchSettings = FetchSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    cluster: ClusterParams = ClusterParams()
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    channels: dict[str, tuple[str, ...]] = Field({}, description="Named lists of Apprise URLs.")
    alerts: tuple[AlertRule, ...] = Field((), description="Alert rules, matched against clusters after each pass.")
    digest: DigestSettings = DigestSettings()
    web: WebSettings = WebSettings()
    distributed: DistributedSettings = DistributedSettings()
    log_format: str = Field("text", pattern="^(text|json)$", description="text (key=value) or json lines.")
    config_path: Path | None = Field(None, exclude=True, description="Where this was read from.")

    @field_validator("feeds", "keywords", "alerts", mode="before")
    @classmethod
    def _empty_list(cls, value: Any) -> Any:
        """``feeds:`` with every entry commented out is an empty list, not an error."""
        return () if value is None else value

    @field_validator("channels", mode="before")
    @classmethod
    def _channel_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else ([] if v is None else v) for k, v in value.items()}
        return {} if value is None else value

    @field_validator("channels")
    @classmethod
    def _apprise_urls(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, urls in value.items():
            for url in urls:
                _check_apprise_url(name, url)
        return value

    @field_validator("alerts")
    @classmethod
    def _rules_reference_channels(cls, rules: tuple[AlertRule, ...], info: ValidationInfo) -> tuple[AlertRule, ...]:
        channels = info.data.get("channels")
        names = [rule.name for rule in rules]
        for rule in rules:
            if names.count(rule.name) > 1:
                raise PydanticCustomError("rule_name", "alert rule name {name} is used twice",
                                          {"name": repr(rule.name)})
            # With no channel at all (a fresh install), alerts are recorded and listed, not sent.
            missing = [c for c in rule.notify if channels and c not in channels]
            if missing:
                raise PydanticCustomError(
                    "unknown_channel", "alert rule {rule} notifies unknown channel {channel} (channels: {known})",
                    {"rule": repr(rule.name), "channel": repr(missing[0]), "known": ", ".join(channels) or "none"})
        return rules

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {value!r}")
        return level


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning every I/O or syntax problem into a ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", file=str(path)) from None
    try:
        return YAML(typ="safe", pure=True).load(text)
    except RecursionError:  # the pure-Python parser recurses per level: a 5,000-deep list is a traceback
        raise ConfigError("invalid YAML: nested too deeply (a config is a few levels deep)",
                          file=str(path)) from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML{where}: {problem}", file=str(path)) from None


def settings_from_mapping(data: Any, *, path: Path | None = None) -> Settings:
    """Validate a parsed config mapping; resolve its paths relative to the config file."""
    file = str(path) if path else None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping of keys to values", file=file)
    try:
        settings = Settings.model_validate(data)
    except RecursionError:
        raise ConfigError("a value is nested too deeply (a config is a few levels deep)",
                          file=file) from None
    except ValidationError as exc:
        key, message = describe_validation_error(exc)
        raise ConfigError(message, file=file, key=None if message.startswith(key) else key) from None
    base = path.parent if path else Path.cwd()
    updates: dict[str, Any] = {"config_path": path, "database": base / settings.database}
    if settings.seeds_dir is not None:
        updates["seeds_dir"] = base / settings.seeds_dir
    return settings.model_copy(update=updates)


def load_settings(path: Path = DEFAULT_CONFIG) -> Settings:
    """Build the Settings once at start-up; every error names the key and the file."""
    path = Path(path)
    return settings_from_mapping(read_yaml(path), path=path.resolve())
