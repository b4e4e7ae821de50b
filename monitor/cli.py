"""The ``newsmonitor`` command: thin click commands over the stages.

Each command loads the settings once, opens what it needs, and turns our own
errors (:class:`~monitor.errors.MonitorError`) into one ``Error:`` line and
exit code 1, never a traceback.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click
from pydantic import ValidationError

from monitor import __version__
from monitor.alerts import dry_run, parse_since, resolve_rule, send_test, story_url, targets_for
from monitor.control import Applied, FeedRow, ask_enable, feed_rows, reload_daemon
from monitor.errors import MonitorError, StoreError
from monitor.feedsfile import OpmlFeed, add_feeds, find_feed, read_opml, remove_feed, set_feed_option, write_opml
from monitor.intervals import PollInterval, poll_interval
from monitor.lock import InstanceLock, running_pid
from monitor.logs import configure_logging
from monitor.query import lowercase_operators
from monitor.redact import redact, register_settings
from monitor.settings import DEFAULT_CONFIG, FeedConfig, Settings, describe_validation_error, load_settings
from monitor.status import StatusReport, configured_feeds, status_report
from monitor.store import Store, iso
from monitor.store_read import ReadOnlyStore
from monitor.web import datasette_command
from monitor.web import serve as serve_datasette

if TYPE_CHECKING:
    from monitor.pipeline import PassReport


def _fail_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MonitorError as exc:
            raise click.ClickException(redact(str(exc))) from None

    return wrapper


def _settings(ctx: click.Context) -> Settings:
    settings = load_settings(ctx.obj["config"])
    register_settings(settings)  # from now on its channel tokens and feed passwords are masked in every output
    ctx.obj["log_handler"] = configure_logging(settings.log_level, settings.log_format)
    return settings


class _PassProgress:
    """``run --once`` progress on stderr, drawn only on a terminal (never into a daemon's or cron's logs).

    While the bar is shown, per-feed INFO lines are held back (warnings still print);
    the same facts are in ``newsmonitor status``.
    """

    def __init__(self, handler: logging.Handler | None) -> None:
        self._handler = handler
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if self._handler is not None:
                self._handler.setLevel(max(self._handler.level, logging.WARNING))
            self._bar = click.progressbar(length=total, label="feeds", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._bar.pos)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def _progress_over(items: list[Any], label: str) -> Iterator[Iterable[Any]]:
    """Iterate ``items`` with a progress bar on stderr if it is a terminal and there are many of them."""
    if _on_terminal() and len(items) > 50:
        with click.progressbar(items, label=label, file=sys.stderr) as bar:
            yield bar
    else:
        with nullcontext(items) as plain:
            yield plain


json_option = click.option("--json", "as_json", is_flag=True, help="Output JSON.")


@click.group()
@click.version_option(__version__, prog_name="newsmonitor")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CONFIG,
              show_default=True, help="The YAML config; paths inside it are relative to it.")
@click.pass_context
def cli(ctx: click.Context, config: Path) -> None:
    """newsmonitor: ingest news feeds, cluster stories into events, store them in SQLite."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def _stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT set an event; the work loop checks it between articles."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _summary(report: PassReport, store: Store) -> str:
    added = report.seeds.added + report.feeds.added
    splits, merges = report.seeds.splits + report.feeds.splits, report.seeds.merges + report.feeds.merges
    moves = report.seeds.moves + report.feeds.moves
    done = [f"{n} {what}" for n, what in ((splits, "split"), (merges, "merged"), (moves, "moved")) if n]
    revised = f" ({', '.join(done)} in this pass)" if done else ""
    return (f"pass finished in {report.duration:.1f}s: {added} new articles "
            f"({report.seeds.added} from seeds), {report.feeds_ok} feeds ok, {report.feeds_failed} failed; "
            f"{store.count('articles')} articles in {store.count_live_clusters()} clusters{revised}")


@cli.command()
@click.option("--once", is_flag=True, help="One full pass over seeds and every feed, then exit.")
@click.option("--due", "due_only", is_flag=True,
              help="With --once: only feeds that are due (honours backoff, Retry-After, adaptive intervals; for cron).")
@click.pass_context
@_fail_cleanly
def run(ctx: click.Context, once: bool, due_only: bool) -> None:
    """Run the monitor: a daemon until SIGTERM/SIGINT, or a single pass with --once."""
    settings = _settings(ctx)
    _warn_about_rules(settings)
    stop = _stop_on_signals()
    if not once:
        from monitor.scheduler import run_daemon  # the stages load only for the commands that run them

        run_daemon(settings, stop)
        return
    with InstanceLock(settings.database):
        _run_once(ctx, settings, stop, due_only=due_only)


def _warn_about_rules(settings: Settings) -> None:
    """A rule with a lower-case 'or' is valid but rarely meant: say so where the daemon's log shows it."""
    for rule in settings.alerts:
        for warning in lowercase_operators(rule.query):
            logging.getLogger("monitor.alerts").warning("alert rule %r: %s", rule.name, warning)


def _run_once(ctx: click.Context, settings: Settings, stop: threading.Event, *, due_only: bool = False) -> None:
    from monitor.engine import open_runtime, run_pass

    progress = _PassProgress(ctx.obj.get("log_handler")) if _on_terminal() else None
    with open_runtime(settings) as runtime:
        try:
            report = run_pass(runtime, stop=stop, progress=progress, due_only=due_only)
        finally:
            if progress:
                progress.close()
        click.echo(_summary(report, runtime.store))
        if settings.alerts or report.alerts.pending:
            click.echo(redact(report.alerts.summary()))


@cli.group()
def feeds() -> None:
    """List, add, remove, disable, enable, import and export feeds (the YAML config is the source of truth)."""


@feeds.command("list")
@json_option
@click.pass_context
@_fail_cleanly
def feeds_list(ctx: click.Context, as_json: bool) -> None:
    """The configured feeds: last poll's outcome, and how often each is polled and why."""
    settings = _settings(ctx)
    configured = {feed.url: feed for feed in settings.feeds}
    with ReadOnlyStore(settings.database) as reader:
        rows = [{k: redact(v) for k, v in r.items()} | {"tags": json.loads(r["tags"] or "[]")}
                | poll_interval(configured[r["url"]], settings.schedule, r["poll_interval"]).as_dict()
                for r in configured_feeds(reader, list(settings.feeds))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no feeds configured: add one with `newsmonitor feeds add URL`")
    for row in rows:
        status = row["last_status"] or "never polled"
        errors = f", {row['consecutive_errors']} errors in a row" if row["consecutive_errors"] else ""
        moved = f", moved to {row['url_effective']}" if row.get("url_effective") else ""
        disabled = f", DISABLED: {row['disabled_reason']}" if row.get("disabled") else ""
        click.echo(f"{row['name']}\t{row['url']}\t{status}{errors}{moved}{disabled}\t{row['every_text']}")


@feeds.command("add")
@click.argument("url")
@click.option("--name", help="Display name (default: the host).")
@click.option("--tag", "tags", multiple=True, help="A tag; repeat for several.")
@click.option("--interval", help="Time between polls: seconds, or '15m', '2h' (default: 30m).")
@click.option("--adaptive/--fixed", default=None,
              help="Let server hints and quiet spells lengthen the interval, or not (default: schedule.adaptive).")
@click.pass_context
@_fail_cleanly
def feeds_add(ctx: click.Context, url: str, name: str | None, tags: tuple[str, ...], interval: str | None,
              adaptive: bool | None) -> None:
    """Add a feed to the config file; every other line of it stays as it was."""
    settings = _settings(ctx)
    feed = _validated_feed(url, name=name, tags=tags, adaptive=adaptive,
                           **({"interval": interval} if interval else {}))
    shown = redact(feed.url)
    if not add_feeds(settings.config_path, [feed]):
        click.echo(f"already configured: {shown}")
        return
    click.echo(f"added {shown}; {_reloaded(settings, [feed.url], lambda row: row is not None and row[0])}")


@feeds.command("remove")
@click.argument("feed")
@click.pass_context
@_fail_cleanly
def feeds_remove(ctx: click.Context, feed: str) -> None:
    """Remove a feed (URL or name) and the comments above it from the config; its articles stay."""
    settings = _settings(ctx)
    found = find_feed(settings.feeds, feed)
    remove_feed(settings.config_path, found.url)
    click.echo(f"removed {redact(found.url)}; "
               f"{_reloaded(settings, [found.url], lambda row: row is None or not row[0])}")


@feeds.command("disable")
@click.argument("feed")
@click.pass_context
@_fail_cleanly
def feeds_disable(ctx: click.Context, feed: str) -> None:
    """Stop polling a feed (URL or name) but keep it in the config: writes `enabled: false` to its entry."""
    settings = _settings(ctx)
    found = find_feed(settings.feeds, feed)
    if not set_feed_option(settings.config_path, found.url, "enabled", False):
        click.echo(f"already disabled in the config: {redact(found.url)}")
        return
    click.echo(f"disabled {redact(found.url)}; "
               f"{_reloaded(settings, [found.url], lambda row: row is not None and row[1])}")


@feeds.command("enable")
@click.argument("feed")
@click.pass_context
@_fail_cleanly
def feeds_enable(ctx: click.Context, feed: str) -> None:
    """Poll a feed again: one disabled in the config, or by the daemon (410 Gone, failing too long)."""
    settings = _settings(ctx)
    found = find_feed(settings.feeds, feed)
    edited = not found.enabled and set_feed_option(settings.config_path, found.url, "enabled", None)
    shown = redact(found.url)
    if running_pid(settings.database) is None:
        try:
            with InstanceLock(settings.database), Store.open(settings.database) as store:  # the one writer now
                store.sync_feeds(load_settings(settings.config_path).feeds)
                state = store.feed_state(found.url)
                cleared = bool(state and state.disabled) and store.enable_feed(found.url)
            click.echo(f"enabled {shown}; {Applied(None).describe(None)}" if edited or cleared
                       else f"already enabled: {shown}")
            return
        except StoreError:
            pass  # a daemon started meanwhile: it is asked, below
    row = feed_rows(settings.database, [found.url])[found.url]
    if not edited and not (row and row[1]):
        click.echo(f"already enabled: {shown}")
        return
    if not edited:
        ask_enable(settings.database, [found.url])
    click.echo(f"enabled {shown}; {_reloaded(settings, [found.url], lambda row: row is not None and not row[1])}")


def _reloaded(settings: Settings, urls: list[str], done: Callable[[FeedRow], bool]) -> str:
    """After a config edit: ask a running daemon to reload, and say whether it applied it."""
    applied = reload_daemon(settings.database, urls, lambda rows: all(done(rows[url]) for url in urls))
    return applied.describe(settings.schedule.config_check)


def _validated_feed(url: str, **fields: Any) -> FeedConfig:
    try:
        return FeedConfig(url=url, **{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise click.ClickException(redact(f"{url}: {describe_validation_error(exc)[1]}")) from None


@feeds.command("import")
@click.argument("opml_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@_fail_cleanly
def feeds_import(ctx: click.Context, opml_file: Path) -> None:
    """Add every feed of an OPML file to the config (folders and categories become tags)."""
    settings = _settings(ctx)
    candidates, invalid = [], []
    with _progress_over(list(read_opml(opml_file)), "reading OPML") as items:
        for item in items:
            _collect_feed(item, candidates, invalid)
    added = add_feeds(settings.config_path, candidates)
    for url in invalid:
        click.echo(f"skipped invalid URL: {redact(url)}", err=True)
    urls = [feed.url for feed in added]
    daemon = f"; {_reloaded(settings, urls, lambda row: row is not None and row[0])}" if added else ""
    click.echo(f"imported {len(added)} new feeds ({len(candidates) - len(added)} already configured){daemon}")


def _collect_feed(item: OpmlFeed, candidates: list[FeedConfig], invalid: list[str]) -> None:
    try:
        candidates.append(FeedConfig(url=item.url, name=item.name, tags=item.tags, adaptive=item.adaptive,
                                     enabled=item.enabled, **({"interval": item.interval} if item.interval else {})))
    except ValidationError:
        invalid.append(item.url)


@feeds.command("export")
@click.pass_context
@_fail_cleanly
def feeds_export(ctx: click.Context) -> None:
    """Print the configured feeds as OPML (names, tags as categories, intervals)."""
    click.echo(write_opml(_settings(ctx).feeds), nl=False)


CLUSTER_COLUMNS = ("id", "title", "size", "articles", "sources", "first_seen", "last_seen", "keywords", "url")


@cli.command()
@click.option("--limit", default=20, show_default=True, help="How many clusters.")
@click.option("--since", help="Only clusters last seen this recently: 90m, 12h, 7d.")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Output CSV (a header row, then one row per cluster).")
@click.pass_context
@_fail_cleanly
def clusters(ctx: click.Context, limit: int, since: str | None, as_json: bool, as_csv: bool) -> None:
    """The latest clusters (stories) with their sizes and titles, last seen first."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one")
    settings = _settings(ctx)
    cutoff = iso(datetime.now(UTC) - _since(since)) if since else None
    base_url = settings.web.base_url
    with ReadOnlyStore(settings.database) as reader:
        rows = [row | {"keywords": json.loads(row["keywords"] or "[]"), "url": story_url(base_url, row["id"])}
                for row in reader.latest_clusters(limit, since=cutoff)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if as_csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, CLUSTER_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row | {"keywords": "; ".join(row["keywords"])} for row in rows)
        click.echo(buffer.getvalue(), nl=False)
        return
    if not rows:
        click.echo(f"no clusters seen in the last {since}" if since
                   else "no clusters yet: run `newsmonitor run --once`")
    for row in rows:
        flag = f"  [tracked: {', '.join(row['keywords'])}]" if row["keywords"] else ""
        click.echo(f"#{row['id']}  {row['size']} articles, {row['sources']} sources, "
                   f"last seen {row['last_seen']}: {row['title']}{flag}")


@cli.command()
@click.option("--since", help="Only articles published this recently (90m, 12h, 7d); earlier stories stay.")
@click.pass_context
@_fail_cleanly
def recluster(ctx: click.Context, since: str | None) -> None:
    """Place every stored article again, in publication order, with the config's cluster settings."""
    from monitor.recluster import readable_articles
    from monitor.recluster import recluster as place_again

    settings = _settings(ctx)
    began = time.process_time()
    start = datetime.now(UTC) - _since(since) if since else None
    with InstanceLock(settings.database), Store.open(settings.database) as store:
        total = readable_articles(store, start)
        bar = click.progressbar(length=total, label="placing again", file=sys.stderr) if _on_terminal() else None
        with bar or nullcontext():
            done = place_again(store, settings.cluster, since=start, keywords=settings.keywords,
                               on_placed=(lambda: bar.update(1)) if bar else (lambda: None))
    counts, cpu = done.counts, time.process_time() - began
    click.echo(f"placed {done.articles} articles again: {done.stories_before} stories before, "
               f"{done.stories_after} now ({done.kept_numbers} kept their number); "
               f"{counts.duplicates} near-duplicates, {counts.splits} splits, {counts.merges} merges; "
               f"{cpu:.1f} CPU-s ({1000 * cpu / max(done.placed, 1):.1f} ms an article)")


def _since(value: str) -> timedelta:
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


@cli.command()
@json_option
@click.pass_context
@_fail_cleanly
def status(ctx: click.Context, as_json: bool) -> None:
    """Feed health (last success, errors, next due, disabled), totals, last pass, is the daemon running."""
    settings = _settings(ctx)
    with ReadOnlyStore(settings.database) as reader:
        report = status_report(reader, settings)
    configured = {redact(feed.url): feed for feed in settings.feeds}
    every = {f.url: poll_interval(configured[f.url], settings.schedule, f.poll_interval) for f in report.feeds}
    if as_json:
        data = report.to_dict()
        for row in data["feeds"]:
            row |= every[row["url"]].as_dict()
        click.echo(json.dumps(data, indent=2))
        return
    for line in _status_lines(report, every):
        click.echo(redact(line))


def _status_lines(report: StatusReport, every: dict[str, PollInterval]) -> Iterator[str]:
    daemon = f"running (pid {report.daemon_pid})" if report.daemon_pid else "not running"
    yield f"database: {report.database}  daemon: {daemon}"
    waiting = f", {report.unplaced} waiting for their cluster" if report.unplaced else ""
    yield (f"articles: {report.articles} ({report.articles - report.articles_with_text} with text dropped "
           f"by retention{waiting})  clusters: {report.clusters}  last poll: {report.last_poll or 'never'}")
    if report.last_pass:
        run = report.last_pass
        by = " (daemon)" if run.get("kind") == "daemon" else ""
        yield (f"last pass{by}: {run['finished']}, {run['duration']:.1f}s, {run['feeds_ok']} feeds ok, "
               f"{run['feeds_failed']} failed, {run['articles_added']} new articles")
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts.items() if n)
    yield f"feeds: {counts or 'none configured'}"
    for feed in report.feeds:
        yield f"  [{feed.health}] {feed.name}  {feed.url}"
        details = [f"last success {feed.last_success or 'never'}", f"next due {feed.next_due or 'now'}",
                   every[feed.url].text]
        if feed.consecutive_errors:
            details.append(f"{feed.consecutive_errors} errors in a row since {feed.failing_since}: {feed.last_error}")
        if feed.url_effective:
            details.append(f"moved to {feed.url_effective}")
        if feed.disabled:
            details.append(f"disabled {feed.disabled_at}: {feed.disabled_reason} (newsmonitor feeds enable URL)")
        yield "      " + "; ".join(details)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8001, show_default=True, type=int, help="Port to listen on.")
@click.pass_context
@_fail_cleanly
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Browse and query the database with Datasette (read-only; sees what the daemon writes)."""
    settings = _settings(ctx)
    click.echo(f"serving {settings.database} on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    logging.getLogger(__name__).debug("equivalent: %s", " ".join(datasette_command(
        settings.database, host=host, port=port, web=settings.web)))
    serve_datasette(settings.database, host=host, port=port, web=settings.web)


@cli.command()
@click.option("--broker", help="Redis URL of the broker (default: distributed.broker_url of the config).")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1),
              help="Worker processes forked from this one once it has loaded the models (one per core).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="Jobs run at once in each process; the jobs are CPU-bound, so add processes rather than threads.")
@click.pass_context
@_fail_cleanly
def worker(ctx: click.Context, broker: str | None, processes: int, threads: int) -> None:
    """Parse and extract for a daemon on any machine, through its broker, until SIGTERM/SIGINT."""
    settings = _settings(ctx)
    distributed = settings.distributed
    if broker:
        try:
            distributed = distributed.model_copy(update={"broker_url": type(distributed)(broker_url=broker).broker_url})
        except ValidationError as exc:
            raise click.ClickException(f"--broker: {exc.errors()[0]['msg']}") from None
    if not distributed.broker_url:
        raise click.ClickException("no broker: set distributed.broker_url in the config, or pass --broker")
    try:
        from monitor.distributed import run_workers
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is missing: pip install 'newsmonitor[distributed]'") from None
    run_workers(distributed, _stop_on_signals(), processes=processes, threads=threads)


@cli.group()
def alerts() -> None:
    """Dry-run alert rules against stored history; list recent alerts."""


@alerts.command("test")
@click.argument("rule_or_query")
@click.option("--since", default="7d", show_default=True, help="How far back to look: 90m, 12h, 7d.")
@click.option("--query", "as_query", is_flag=True, help="Run the argument as a query even if it looks like a name.")
@click.pass_context
@_fail_cleanly
def alerts_test(ctx: click.Context, rule_or_query: str, since: str, as_query: bool) -> None:
    """What a configured rule (by name) or a query would have fired on; sends and writes nothing."""
    settings = _settings(ctx)
    window = _since(since)
    rule = resolve_rule(settings, rule_or_query, as_query=as_query)
    for warning in lowercase_operators(rule.query):
        click.echo(f"warning: {warning}", err=True)
    with Store.open_read_only(settings.database) as store:
        matches = dry_run(settings, store, rule, since=window)
    click.echo(f"{rule.name}: {len(matches)} matching clusters seen in the last {since}")
    for match in matches:
        click.echo(f"#{match.cluster_id}  {match.articles} articles, {match.sources} outlets: "
                   f"{match.title.split('] ', 1)[-1]}")
        click.echo(f"    matched: {', '.join(match.matched_terms)}")


@alerts.command("send-test")
@click.argument("channel")
@click.pass_context
@_fail_cleanly
def alerts_send_test(ctx: click.Context, channel: str) -> None:
    """Send a test message to every URL of a channel, now, and say how each delivery went."""
    settings = _settings(ctx)
    if channel not in settings.channels:
        close = difflib.get_close_matches(channel, list(settings.channels), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (
            f" (channels: {', '.join(settings.channels)})" if settings.channels else
            "; no channels are configured: add one under `channels:` in the config")
        raise click.ClickException(f"no channel named {channel!r}{hint}")
    urls = settings.channels[channel]
    if not urls:
        raise click.ClickException(f"channel {channel!r} has no URL")
    failed = 0
    for target, error in send_test(channel, urls):
        parts = urlsplit(target.url)
        shown = redact(f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}")
        click.echo(f"{channel}: {shown}: sent" if error is None else f"{channel}: {shown}: FAILED: {error}")
        failed += error is not None
    if failed:
        raise click.ClickException(f"{failed} of {len(urls)} deliveries failed")


@alerts.command("list")
@click.option("--limit", default=20, show_default=True, help="How many alerts, newest first.")
@json_option
@click.pass_context
@_fail_cleanly
def alerts_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Recent alerts with their delivery status (also those kept because no channel is configured)."""
    settings = _settings(ctx)
    with ReadOnlyStore(settings.database) as reader:
        rows = [{k: redact(v) for k, v in r.items()} for r in reader.recent_alerts(limit)]
    for row in rows:
        row["matched_terms"] = json.loads(row["matched_terms"] or "[]")
        row["delivered_to"] = json.loads(row["delivered_to"] or "[]")
        row["story_url"] = story_url(settings.web.base_url, row["cluster_id"])
        if row["delivered_at"]:
            row["status"] = f"delivered {row['delivered_at']} ({row['attempts']} attempts)"
        elif not targets_for(settings, row["rule"]):
            row["status"] = "not sent: no channel to send to (add one under `channels:`; it is sent then)"
        else:
            error = f", last error: {row['last_error']}" if row["last_error"] else ""
            row["status"] = f"pending, {row['attempts']} attempts, next {row['next_attempt']}{error}"
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no alerts yet")
    for row in rows:
        click.echo(f"#{row['id']}  {row['created']}  {row['rule']}  cluster #{row['cluster_id']} "
                   f"({row['reason']}): {row['status']}")
        click.echo(f"    {row['cluster_title']}  [matched: {', '.join(row['matched_terms'])}]"
                   + (f"  {row['story_url']}" if row["story_url"] else ""))


def main() -> None:
    cli(obj={})
