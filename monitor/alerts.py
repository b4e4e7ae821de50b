"""Alert stage: match rules against clusters, record alerts, deliver them through Apprise.

Two steps, both run by the writer thread after an ingest pass:

1. :func:`evaluate_and_record` matches every rule against the clusters that
   changed since the last evaluation (a watermark in ``alert_state``) and
   *writes* the alerts it finds, with their rendered message, in one
   transaction. Nothing is sent yet, so a process killed now loses nothing.
2. :func:`deliver` sends every undelivered alert that is due, one message per
   alert or, in digest mode, one message per target listing them all. A
   failure is recorded with a growing back-off and retried on a later pass; a
   success is recorded per target, so the targets already served are not sent
   the same alert again.

Delivery is therefore *at least once*: only a crash between a successful send
and its ``UPDATE`` (milliseconds) can repeat a message. "Once per (rule,
cluster)" is a unique key in the table, not a check in Python; a cluster that
gains ``realert_on_growth`` new outlets gets the next growth step.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.errors import MonitorError
from monitor.query import Document, Query, parse_query
from monitor.redact import redact, register_apprise_url
from monitor.settings import AlertRule, Settings, parse_duration
from monitor.store import Store, iso

log = logging.getLogger(__name__)

RETRY_FIRST = 60.0  # seconds before the first retry of a failed delivery; doubles each time
RETRY_MAX = 6 * 3600.0
DIGEST_PERIOD = {"immediate": 0.0, "hourly": 3600.0, "daily": 86400.0}
MAX_LINKS = 10
NEW_RULE_LOOKBACK = timedelta(days=7)  # a new rule, or a first evaluation, looks at stories active this recently
CHUNK = 200  # clusters whose articles are read and indexed at once: memory is bounded whatever the backlog


class UnknownRule(MonitorError):
    """``alerts test NAME``: NAME looks like a rule's name but no rule has it."""


#: Sends one message to one Apprise URL; returns None on success, else why it failed.
Sender = Callable[[str, str, str], str | None]


@dataclass(frozen=True)
class Match:
    """A rule firing on a cluster: what :func:`evaluate` finds and what an ``alerts`` row records."""

    rule: str
    cluster_id: int
    step: int
    reason: str
    matched_terms: tuple[str, ...]
    sources: int
    articles: int
    title: str
    message: str


@dataclass
class AlertReport:
    """What one alert pass did, for the log line and the CLI summary."""

    evaluated: int = 0
    recorded: int = 0
    unrouted: int = 0  # alerts kept undelivered because their rule has no channel URL
    messages_sent: int = 0
    alerts_delivered: int = 0
    failures: int = 0
    pending: int = 0
    evaluation_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"alerts: {self.recorded} new, {self.alerts_delivered} delivered in {self.messages_sent} messages, "
                f"{self.failures} failed deliveries, {self.pending} pending")
        if self.unrouted:
            text += (f", {self.unrouted} with no channel to send to (add one under `channels:`; "
                     "`newsmonitor alerts list` shows them)")
        return text + (f" (last error: {self.errors[-1]})" if self.errors else "")


# -- evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """A cluster as one rule sees it: only the articles the rule's language and feed filters allow."""

    cluster: dict[str, Any]
    articles: list[dict[str, Any]]
    document: Document

    @property
    def sources(self) -> int:
        return len({a["source"] for a in self.articles})


def _language_ok(rule: AlertRule, article: dict[str, Any]) -> bool:
    if not rule.languages:
        return True
    language = (article["language"] or "").split("-")[0].casefold()
    return language in {code.split("-")[0].casefold() for code in rule.languages}


def _feed_ok(rule: AlertRule, article: dict[str, Any]) -> bool:
    """``feeds: [BBC World, tag:politics]``: seed files belong to no feed, so a feed filter excludes them."""
    if not rule.feeds:
        return True
    if article["feed_name"] is None:
        return False
    tags = json.loads(article["feed_tags"] or "[]")
    return article["feed_name"] in rule.feeds or any(f"tag:{tag}" in rule.feeds for tag in tags)


def _filter_key(rule: AlertRule) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return rule.languages, rule.feeds


def _candidates(rules: Sequence[AlertRule], clusters: Sequence[dict[str, Any]],
                articles: dict[int, list[dict[str, Any]]]) -> dict[tuple, list[_Candidate]]:
    """Per distinct filter, the clusters' documents, so rules sharing a filter tokenize each cluster once."""
    out: dict[tuple, list[_Candidate]] = {}
    for rule in rules:
        key = _filter_key(rule)
        if key in out:
            continue
        out[key] = []
        for cluster in clusters:
            kept = [a for a in articles.get(cluster["id"], []) if _language_ok(rule, a) and _feed_ok(rule, a)]
            if kept:
                doc = Document.of((a["title"] or "", a["text"] or "") for a in kept)
                out[key].append(_Candidate(cluster, kept, doc))
    return out


def _decide(rule: AlertRule, query: Query, candidate: _Candidate,
            previous: tuple[int, int] | None) -> tuple[int, str, tuple[str, ...]] | None:
    """(step, reason, matched terms) when ``rule`` fires on this cluster now, else None."""
    sources = candidate.sources
    if sources < rule.min_sources:
        return None
    if previous is not None and not (rule.realert_on_growth and sources >= previous[1] + rule.realert_on_growth):
        return None
    terms = query.match(candidate.document)
    if terms is None:
        return None
    if previous is None:
        return 0, f"new story in {sources} outlet{'s' * (sources != 1)}", terms
    return previous[0] + 1, f"story grew from {previous[1]} to {sources} outlets", terms


def evaluate(settings: Settings, store: Store, clusters: Sequence[dict[str, Any]], *,
             rules: Sequence[AlertRule] | None = None, ignore_previous: bool = False) -> list[Match]:
    """The alerts ``rules`` would fire on ``clusters`` now (reads only; nothing is written or sent).

    The clusters' articles are read :data:`CHUNK` clusters at a time and dropped after matching,
    so a backlog of thousands of stories never has all its texts in memory at once.
    """
    rules = settings.alerts if rules is None else rules
    matches: list[Match] = []
    for start in range(0, len(clusters) if rules else 0, CHUNK):
        chunk = clusters[start:start + CHUNK]
        ids = [c["id"] for c in chunk]
        previous = {} if ignore_previous else store.latest_alert_steps(ids)
        candidates = _candidates(rules, chunk, store.cluster_articles(ids))
        for rule in rules:
            query = parse_query(rule.query, rule=rule.name)  # the parse made at start-up (cached by text)
            for candidate in candidates[_filter_key(rule)]:
                decided = _decide(rule, query, candidate, previous.get((rule.name, candidate.cluster["id"])))
                if decided is not None:
                    matches.append(_match(rule, candidate, *decided, base_url=settings.web.base_url))
    return matches


def _match(rule: AlertRule, candidate: _Candidate, step: int, reason: str, terms: tuple[str, ...], *,
           base_url: str | None = None) -> Match:
    cluster = candidate.cluster
    title = f"[{rule.name}] {cluster['title'] or 'untitled story'}"
    return Match(rule.name, cluster["id"], step, reason, terms, candidate.sources, len(candidate.articles),
                 title, format_message(rule.name, reason, cluster, candidate.articles, terms, base_url=base_url))


def story_url(base_url: str | None, cluster_id: int) -> str | None:
    """The story's page in the web interface (``web.base_url``), or None when no base URL is configured."""
    return f"{base_url.rstrip('/')}/-/cluster/{cluster_id}" if base_url else None


def format_message(rule: str, reason: str, cluster: dict[str, Any], articles: Sequence[dict[str, Any]],
                   terms: Iterable[str], *, base_url: str | None = None) -> str:
    """Plain text that reads well in mail, chat and JSON alike: what matched, why, and where to read it."""
    outlets = len({a["source"] for a in articles})
    lines = [
        f"Rule {rule!r} matched: {reason}.",
        f"Story: {cluster['title'] or 'untitled'}",
        f"{len(articles)} article{'s' * (len(articles) != 1)} from {outlets} outlet{'s' * (outlets != 1)}; "
        f"first seen {cluster['first_seen'] or 'unknown'}, last seen {cluster['last_seen'] or 'unknown'}",
        f"Matched terms: {', '.join(terms)}",
        f"Cluster: #{cluster['id']}",
        *([f"Story page: {story_url(base_url, cluster['id'])}"] if base_url else []),
        "Links:",
    ]
    for article in articles[:MAX_LINKS]:
        lines.append(f"- {article['title'] or 'untitled'} ({article['source']}): {article['url'] or 'no link'}")
    if len(articles) > MAX_LINKS:
        lines.append(f"- ... and {len(articles) - MAX_LINKS} more")
    return "\n".join(lines)


def evaluate_and_record(settings: Settings, store: Store, *, now: datetime | None = None) -> tuple[int, int]:
    """Match rules against clusters changed since the watermark and write the alerts (not send them).

    Returns (clusters evaluated, alerts recorded). The watermark is the newest
    ``updated_at`` seen, compared with ``>=``: the boundary cluster is looked at
    again next time, which the unique key makes harmless. A rule seen for the
    first time also looks at stories active in the last ``NEW_RULE_LOOKBACK``,
    so adding a rule catches the story already running, not months of history.
    """
    now = now or datetime.now(UTC)
    since = store.alert_watermark()
    recent = iso(now - NEW_RULE_LOOKBACK)
    # The first evaluation of a database looks back NEW_RULE_LOOKBACK, as a new rule does, not at all history.
    # The watermark's own second is looked at again (``>=``), except stories last seen before the look-back:
    # those were looked at already, or left out on purpose by a first evaluation.
    if since:
        changed = [c for c in store.clusters_since(since)
                   if c["updated_at"] != since or (c["last_seen"] or "") >= recent]
    else:
        changed = store.clusters_since(recent, column="last_seen")
    known = store.known_alert_rules()
    new_rules = [r for r in settings.alerts if r.name not in known]
    matches = evaluate(settings, store, changed, rules=[r for r in settings.alerts if r.name in known])
    evaluated = {c["id"] for c in changed}
    if new_rules:
        active = {c["id"]: c for c in store.clusters_since(recent, column="last_seen")}
        active.update({c["id"]: c for c in changed})
        matches += evaluate(settings, store, list(active.values()), rules=new_rules)
        evaluated |= set(active)
    if not changed and not new_rules and since:
        return 0, 0
    watermark = max((c["updated_at"] or "" for c in changed), default="") or None
    if not since:
        watermark = store.newest_cluster_update() or watermark
    delay = timedelta(seconds=DIGEST_PERIOD[settings.digest.mode])
    rows = [{
        "rule": m.rule, "cluster_id": m.cluster_id, "step": m.step, "reason": m.reason,
        "matched_terms": json.dumps(list(m.matched_terms)), "sources_at_alert": m.sources,
        "articles_at_alert": m.articles, "created": iso(now), "title": m.title, "message": m.message,
        "next_attempt": iso(now + delay),
    } for m in matches]
    recorded = store.record_alerts(rows, watermark=watermark, rules=[r.name for r in new_rules])
    for match in matches:
        log.info("alert: rule %s fired on cluster %d (%s; matched %s)", match.rule, match.cluster_id, match.reason,
                 ", ".join(match.matched_terms))
    return len(evaluated), len(recorded)


# -- delivery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One Apprise URL of one channel; ``key`` (a hash) is what ``delivered_to`` stores, never the URL."""

    channel: str
    url: str

    @property
    def key(self) -> str:
        return f"{self.channel}:{hashlib.sha256(self.url.encode()).hexdigest()[:12]}"


def targets_for(settings: Settings, rule_name: str) -> list[Target]:
    """Where a rule's alerts go; empty when its channels have no URL (or none is configured yet)."""
    rule = next((r for r in settings.alerts if r.name == rule_name), None)
    if rule is None:
        return []
    return [Target(channel, url) for channel in rule.notify for url in settings.channels.get(channel, ())]


def apprise_send(url: str, title: str, body: str) -> str | None:
    """Send through Apprise; its own log lines become the error text recorded in ``last_error``.

    The URL's secret pieces (a topic, a path token, a password) are registered first, so the error
    text, the log lines and ``last_error`` mask them wherever Apprise quotes them.
    """
    import apprise  # half a second to import: only when something is to be sent

    register_apprise_url(url)
    notifier = apprise.Apprise()
    if not notifier.add(url):
        return "Apprise does not understand this URL"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        try:
            ok = notifier.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT)
        except Exception as exc:  # a plugin bug must not kill the writer thread: record it, retry later
            return redact(f"{type(exc).__name__}: {exc}")
    if ok:
        return None
    return redact(" ".join(captured.getvalue().split())) or "delivery failed"


TEST_TITLE = "newsmonitor: test message"


def send_test(channel: str, urls: Sequence[str], *, send: Sender = apprise_send) -> list[tuple[Target, str | None]]:
    """``alerts send-test``: one real delivery to each URL of a channel; (target, error or None) each."""
    body = (f"A test message from newsmonitor to channel {channel!r}, sent by `newsmonitor alerts send-test`. "
            "If you read this, alerts for rules that notify this channel reach you here.")
    results = []
    for url in urls:
        target = Target(channel, url)
        register_apprise_url(url)
        error = send(url, TEST_TITLE, body)
        results.append((target, None if error is None else redact(error)))
    return results


def _digest(rows: Sequence[dict[str, Any]], base_url: str | None = None) -> tuple[str, str]:
    if len(rows) == 1:
        return rows[0]["title"], rows[0]["message"]
    title = f"newsmonitor: {len(rows)} new matches"
    links = [story_url(base_url, r["cluster_id"]) for r in rows]
    parts = [f"{len(rows)} new matches:"] + [f"- {r['title']}" + (f": {link}" if link else "")
                                              for r, link in zip(rows, links, strict=True)]
    for row in rows:
        parts += ["", "=" * 60, row["title"], "", row["message"]]
    return title, "\n".join(parts)


def _retry_delay(attempts: int) -> float:
    return min(RETRY_FIRST * 2 ** max(attempts - 1, 0), RETRY_MAX)


def deliver(settings: Settings, store: Store, *, now: datetime | None = None, send: Sender = apprise_send,
            report: AlertReport | None = None) -> AlertReport:
    """Send what is due: each alert to each target of its rule's channels that has not had it yet."""
    now = now or datetime.now(UTC)
    report = report or AlertReport()
    pending = store.undelivered_alerts()
    state = {row["id"]: _DeliveryState(row, targets_for(settings, row["rule"])) for row in pending}
    by_target: dict[Target, list[dict[str, Any]]] = {}
    for row in pending:
        needed = state[row["id"]].remaining()
        if not state[row["id"]].targets:
            log.debug("alert %d: rule %s has no channel URLs (or is gone); kept undelivered", row["id"], row["rule"])
        for target in needed:
            by_target.setdefault(target, []).append(row)
    for target, rows in by_target.items():
        if not any((row["next_attempt"] or "") <= iso(now) for row in rows):
            continue
        if settings.digest.mode == "immediate":
            batches = [[row] for row in rows if (row["next_attempt"] or "") <= iso(now)]
        else:
            batches = [rows]
        for batch in batches:
            _send_batch(target, batch, state, send, now, report, base_url=settings.web.base_url)
    updates = [(s.row["id"], s.fields(now)) for s in state.values() if s.touched]
    if updates:
        store.update_alerts(updates)
    report.pending = sum(1 for s in state.values() if s.targets and not s.complete())
    report.unrouted = sum(1 for s in state.values() if not s.targets)
    return report


@dataclass
class _DeliveryState:
    """An alert's delivery progress during one pass; written back in one transaction at the end."""

    row: dict[str, Any]
    targets: list[Target]
    delivered_to: set[str] = field(default_factory=set)
    attempts: int = 0
    error: str | None = None
    touched: bool = False

    def __post_init__(self) -> None:
        self.delivered_to = set(json.loads(self.row["delivered_to"] or "[]"))
        self.attempts = self.row["attempts"] or 0
        self.error = self.row["last_error"]

    def remaining(self) -> list[Target]:
        return [t for t in self.targets if t.key not in self.delivered_to]

    def complete(self) -> bool:
        return bool(self.targets) and not self.remaining()

    def fields(self, now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {"delivered_to": json.dumps(sorted(self.delivered_to)), "attempts": self.attempts,
                               "last_error": self.error}
        if self.complete():
            out["delivered_at"] = iso(now)
        else:
            out["next_attempt"] = iso(now + timedelta(seconds=_retry_delay(self.attempts)))
        return out


def _send_batch(target: Target, batch: list[dict[str, Any]], state: dict[int, _DeliveryState], send: Sender,
                now: datetime, report: AlertReport, *, base_url: str | None = None) -> None:
    title, body = _digest(batch, base_url)
    register_apprise_url(target.url)
    started = time.monotonic()
    error = send(target.url, title, body)
    error = None if error is None else redact(error)  # whatever the sender, no secret reaches last_error or a log
    elapsed = time.monotonic() - started
    for row in batch:
        alert = state[row["id"]]
        alert.touched = True
        alert.attempts += 1
        if error is None:
            alert.delivered_to.add(target.key)
        else:
            alert.error = f"{target.channel}: {error}"
    if error is None:
        report.messages_sent += 1
        report.alerts_delivered += sum(1 for row in batch if state[row["id"]].complete())
        log.info("alert message sent to channel %s (%d alerts, %.3fs)", target.channel, len(batch), elapsed)
    else:
        report.failures += 1
        report.errors.append(f"{target.channel}: {error}")
        log.warning("alert delivery to channel %s failed (%s); retrying in %.0fs", target.channel, error,
                    _retry_delay(max(state[r["id"]].attempts for r in batch)))


# -- the one entry point the pipeline and the daemon call --------------------------------------


def run_alerts(settings: Settings, store: Store, *, now: datetime | None = None, send: Sender = apprise_send,
               should_stop: Callable[[], bool] = lambda: False) -> AlertReport:
    """Evaluate, record, then deliver (delivery is skipped when stopping: recorded alerts wait for the restart)."""
    report = AlertReport()
    started = time.monotonic()
    report.evaluated, report.recorded = evaluate_and_record(settings, store, now=now)
    report.evaluation_seconds = time.monotonic() - started
    if should_stop():
        report.pending = len(store.undelivered_alerts())  # counted, not sorted by channel: nothing is sent now
        return report
    return deliver(settings, store, now=now, send=send, report=report)


def parse_since(value: str) -> timedelta:
    """``7d``, ``12h``, ``30m``: how far back ``alerts test`` looks."""
    return timedelta(seconds=parse_duration(value))


# -- dry run (``newsmonitor alerts test``) ------------------------------------------------------


_RULE_NAME = re.compile(r"^[\w.]+(?:[-_][\w.]+)+$")  # sanctuary-cities, ice_raids: a slug, not words


def resolve_rule(settings: Settings, rule_or_query: str, *, as_query: bool = False) -> AlertRule:
    """A configured rule by name, else the argument as a query (a malformed one raises QueryError).

    An argument that looks like a rule's name (a slug, or close to a configured name) but names none
    is an error naming the closest rule: a mistyped name would otherwise run silently as a query
    and find nothing. ``as_query`` runs it as a query all the same.
    """
    names = [rule.name for rule in settings.alerts]
    if not as_query:
        for rule in settings.alerts:
            if rule.name == rule_or_query:
                return rule
        closest = difflib.get_close_matches(rule_or_query, names, n=1, cutoff=0.6)
        if " " not in rule_or_query.strip() and (_RULE_NAME.match(rule_or_query) or
                                                 difflib.get_close_matches(rule_or_query, names, n=1, cutoff=0.8)):
            hint = f"did you mean {closest[0]!r}?" if closest else (
                f"the rules are: {', '.join(names)}" if names else "no alert rules are configured")
            raise UnknownRule(f"no alert rule named {rule_or_query!r}; {hint} (--query runs it as a query)")
    parse_query(rule_or_query)
    return AlertRule(name="command-line query", query=rule_or_query, notify=())


def dry_run(settings: Settings, store: Store, rule: AlertRule, *, since: timedelta,
            now: datetime | None = None) -> list[Match]:
    """What ``rule`` fires on among clusters seen in the last ``since``, ignoring earlier alerts; writes nothing."""
    now = now or datetime.now(UTC)
    clusters = store.clusters_since(iso(now - since), column="last_seen")
    return evaluate(settings, store, clusters, rules=[rule], ignore_previous=True)
