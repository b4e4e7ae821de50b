"""Distributed mode for real: redis-server on a free loopback port, ``newsmonitor worker`` processes.

What the issue asks of it: the same articles as the embedded engine, a worker
killed mid-task has its job done by another, a broker restart loses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.distributed import QUEUE, Broker, RemoteExtractor
from monitor.models import Article
from monitor.settings import DistributedSettings
from monitor.tasks import PageJob, PageResult, extract_page
from tests.conftest import write_config
from tests.feedserver import FeedServer, article_html
from tests.helpers_broker import RedisServer, WorkerProcess, newsmonitor_worker
from tests.helpers_daemon import config, good_feed, one_pass, query, wait_for

HEARTBEAT = 1.0  # seconds: a killed worker's job is back in the queue within about two of these


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder).start()
    yield server
    server.stop()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def settings_for(server: RedisServer) -> DistributedSettings:
    return DistributedSettings(broker_url=server.url, heartbeat_timeout=HEARTBEAT)


def worker_config(folder: Path, server: RedisServer) -> Path:
    folder.mkdir(exist_ok=True)
    return write_config(folder, seeds_dir=None, log_level="INFO",
                        distributed={"broker_url": server.url, "heartbeat_timeout": HEARTBEAT})


def start_worker(tmp_path: Path, server: RedisServer, workers: list[WorkerProcess], name: str) -> WorkerProcess:
    worker = newsmonitor_worker(worker_config(tmp_path / name, server), tmp_path / f"{name}.log")
    workers.append(worker)
    worker.wait_ready()
    return worker


def page_job(title: str) -> PageJob:
    html = article_html(title, f"{title} was reported today by the harbour authority. " * 12)
    return PageJob(f"http://127.0.0.1/{title}", f"http://127.0.0.1/{title}", html.encode(), "utf-8",
                   datetime.now(UTC))


def in_thread(call: Any, *args: Any) -> Future[Any]:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(call, *args)
    pool.shutdown(wait=False)
    return future


def stored(database: Path) -> tuple[set[tuple[str, str, str]], set[frozenset[str]]]:
    """Articles (url, title, text), and clusters as sets of article URLs: what must not depend on where it ran."""
    articles = {(r["url"], r["title"], r["text"]) for r in query(database, "SELECT url, title, text FROM articles")}
    clusters: dict[int, set[str]] = {}
    for row in query(database, "SELECT cluster_id, url FROM articles"):
        clusters.setdefault(row["cluster_id"], set()).add(row["url"])
    return articles, {frozenset(urls) for urls in clusters.values()}


def test_a_pass_through_a_worker_stores_what_the_embedded_pass_stores(
        tmp_path: Path, broker: RedisServer, workers: list[WorkerProcess]) -> None:
    start_worker(tmp_path, broker, workers, "worker")
    with FeedServer() as server:
        good_feed(server, "/harbour.xml", "harbour bridge", count=3)
        good_feed(server, "/budget.xml", "school budget", count=3)
        feeds = [{"url": server.url("/harbour.xml")}, {"url": server.url("/budget.xml")}]
        (tmp_path / "embedded").mkdir()
        (tmp_path / "remote").mkdir()
        embedded = one_pass(config(tmp_path / "embedded", feeds))
        remote = one_pass(config(tmp_path / "remote", feeds,
                                 distributed={"broker_url": broker.url, "heartbeat_timeout": HEARTBEAT}))
    assert embedded.feeds.added == remote.feeds.added == 6
    expected = stored(tmp_path / "embedded" / "monitor.db")
    assert stored(tmp_path / "remote" / "monitor.db") == expected
    assert all("harbour" in text or "budget" in text for _, _, text in expected[0])  # pages, not feed summaries


def test_a_worker_killed_mid_task_has_its_job_done_by_another(
        tmp_path: Path, broker: RedisServer, workers: list[WorkerProcess]) -> None:
    marker = tmp_path / "held"
    held = WorkerProcess(["-m", "tests.held_worker", broker.url, str(HEARTBEAT), str(marker)], tmp_path / "held.log")
    workers.append(held)
    held.wait_ready()
    extractor = RemoteExtractor(settings_for(broker))
    try:
        result = in_thread(extractor.run, extract_page, page_job("Harbour bridge reopens"))
        assert wait_for(marker.exists, timeout=30), "the held worker never took the job"
        held.kill()  # mid-task: the job was taken, not acknowledged
        assert not result.done()
        start_worker(tmp_path, broker, workers, "rescuer")
        page: PageResult = result.result(timeout=60)
    finally:
        extractor.close()
    assert isinstance(page.extracted, Article) and page.extracted.title == "Harbour bridge reopens"
    left = Broker(settings_for(broker), maintain=False)
    try:  # the rescuer acknowledges the job just after storing its result: then nothing is left to run again
        assert wait_for(lambda: left.broker.do_qsize(QUEUE) == 0, timeout=30)
    finally:
        left.close()


def test_a_broker_restart_loses_no_job(tmp_path: Path, broker: RedisServer, workers: list[WorkerProcess]) -> None:
    extractor = RemoteExtractor(settings_for(broker))
    queued = Broker(settings_for(broker), maintain=False)
    try:
        waiting = in_thread(extractor.run, extract_page, page_job("School budget approved"))
        assert wait_for(lambda: queued.broker.do_qsize(QUEUE) == 1, timeout=30)
        broker.restart()  # no worker yet: the job is only in Redis, and the daemon's wait is cut
        start_worker(tmp_path, broker, workers, "worker")
        first: PageResult = waiting.result(timeout=60)
        broker.restart()  # a worker is connected now: it reconnects by itself
        second: PageResult = in_thread(extractor.run, extract_page, page_job("Ferry timetable changes")).result(
            timeout=60)
    finally:
        extractor.close()
        queued.close()
    assert isinstance(first.extracted, Article) and first.extracted.title == "School budget approved"
    assert isinstance(second.extracted, Article) and second.extracted.title == "Ferry timetable changes"


def test_a_job_lost_with_an_unsaved_broker_is_sent_again(tmp_path: Path, workers: list[WorkerProcess]) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", persist=False).start()
    extractor = RemoteExtractor(DistributedSettings(broker_url=server.url, heartbeat_timeout=HEARTBEAT,
                                                    result_timeout=3))
    queued = Broker(settings_for(server), maintain=False)
    try:
        waiting = in_thread(extractor.run, extract_page, page_job("Tram line extended"))
        assert wait_for(lambda: queued.broker.do_qsize(QUEUE) == 1, timeout=30)
        server.restart()  # no append-only file: the queued job is gone
        assert queued.broker.do_qsize(QUEUE) == 0
        start_worker(tmp_path, server, workers, "worker")
        page: PageResult = waiting.result(timeout=60)
    finally:
        extractor.close()
        queued.close()
        server.stop()
    assert isinstance(page.extracted, Article) and page.extracted.title == "Tram line extended"


def test_forked_worker_processes_replace_one_that_dies(
        tmp_path: Path, broker: RedisServer, workers: list[WorkerProcess]) -> None:
    worker = WorkerProcess(["-m", "monitor", "--config", str(worker_config(tmp_path / "w", broker)), "worker",
                            "--processes", "2"], tmp_path / "worker.log")
    workers.append(worker)
    assert wait_for(lambda: worker.text().count("event=worker.ready") == 2, timeout=60), worker.text()
    pid = worker.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 2
    os.kill(int(children[0]), signal.SIGKILL)
    assert wait_for(lambda: worker.text().count("event=worker.ready") == 3, timeout=60), worker.text()
    assert "event=worker.died" in worker.text()
    extractor = RemoteExtractor(settings_for(broker))
    try:
        page: PageResult = extractor.run(extract_page, page_job("Lighthouse restored"))
    finally:
        extractor.close()
    assert isinstance(page.extracted, Article) and page.extracted.title == "Lighthouse restored"
    worker.stop()
    assert worker.text().count("event=worker.stopped") == 2  # both children finished their jobs and left


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_forked_workers_stop_when_their_parent_is_killed(
        tmp_path: Path, broker: RedisServer, workers: list[WorkerProcess]) -> None:
    """Killed outright (the OOM killer, ``kill -9``), the parent cannot stop its children: each
    watches it and stops as on SIGTERM, instead of taking jobs unsupervised for good."""
    worker = WorkerProcess(["-m", "monitor", "--config", str(worker_config(tmp_path / "w", broker)), "worker",
                            "--processes", "2"], tmp_path / "worker.log")
    workers.append(worker)
    assert wait_for(lambda: worker.text().count("event=worker.ready") == 2, timeout=60), worker.text()
    pid = worker.process.pid
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    assert len(children) == 2
    worker.kill()
    assert wait_for(lambda: not any(_running(c) for c in children), timeout=60), worker.text()
    assert worker.text().count("event=worker.stopped") == 2  # each left as on SIGTERM, its job finished


def test_worker_says_what_is_missing(tmp_path: Path) -> None:
    path = write_config(tmp_path, seeds_dir=None)
    result = CliRunner().invoke(cli, ["--config", str(path), "worker"])
    assert result.exit_code == 1 and "set distributed.broker_url" in result.output
    result = CliRunner().invoke(cli, ["--config", str(path), "worker", "--broker", "http://127.0.0.1:6379"])
    assert result.exit_code == 1 and "expected a Redis URL" in result.output


def test_a_wrong_broker_url_is_one_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, seeds_dir=None, distributed={"broker_url": "amqp://127.0.0.1"})
    result = CliRunner().invoke(cli, ["--config", str(path), "run", "--once"])
    assert result.exit_code == 1 and "distributed.broker_url" in result.output and "Traceback" not in result.output


def test_no_thread_is_left_behind(broker: RedisServer) -> None:
    before = threading.active_count()
    RemoteExtractor(settings_for(broker)).close()
    assert threading.active_count() == before


def test_a_broker_without_the_distributed_extra_is_one_clear_line(tmp_path: Path) -> None:
    """``make run`` installs no Dramatiq: a config asking for a broker says what to install, no traceback."""
    path = write_config(tmp_path, seeds_dir=None, distributed={"broker_url": "redis://127.0.0.1:1/0"})
    code = ("import sys; sys.modules['dramatiq'] = None; from monitor.cli import main; "
            f"sys.argv = ['newsmonitor', '--config', {str(path)!r}, 'run', '--once']; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "distributed.broker_url: needs dramatiq: pip install 'newsmonitor[distributed]'" in done.stderr
    assert "Traceback" not in done.stderr
