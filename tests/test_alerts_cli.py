"""`run --once` on the seeds fires the sanctuary-cities rule exactly once; `alerts test` and `alerts list`."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from ruamel.yaml import YAML

from monitor.cli import cli
from monitor.store import Store
from tests.conftest import ROOT, write_config
from tests.helpers_alerts import SANCTUARY, attempts, json_url, posted

RULE = {"name": "sanctuary-cities", "query": SANCTUARY, "min_sources": 1, "languages": ["en"],
        "notify": ["default"], "realert_on_growth": 3}


@pytest.fixture
def hook(web: HTTPServer) -> HTTPServer:
    web.expect_request("/hook", method="POST").respond_with_data("ok")
    return web


@pytest.fixture
def config(tmp_path: Path, seeds_dir: Path, hook: HTTPServer) -> Path:
    return write_config(tmp_path, alerts=[RULE], channels={"default": [json_url(hook)]}, log_level="WARNING")


def invoke(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result.exit_code, result.output


def test_run_once_on_the_seeds_delivers_exactly_one_alert_and_a_second_run_none(config: Path,
                                                                                 hook: HTTPServer) -> None:
    code, output = invoke(config, "run", "--once")
    assert code == 0, output
    assert "alerts: 1 new, 1 delivered in 1 messages" in output
    [body] = posted(hook)
    assert body["title"].startswith("[sanctuary-cities] ")
    assert "2 articles from 2 outlets" in body["message"]
    assert "ICE" in body["message"] and '"sanctuary cities"' in body["message"]
    assert body["message"].count("file://") == 2  # a link to each seed article

    code, output = invoke(config, "run", "--once")
    assert code == 0, output
    assert "alerts: 0 new, 0 delivered in 0 messages" in output
    assert attempts(hook) == 1

    code, output = invoke(config, "alerts", "list")
    assert code == 0, output
    assert "sanctuary-cities  cluster #" in output and "delivered" in output and "pending" not in output


def test_alerts_test_dry_runs_a_rule_or_a_query_and_sends_nothing(config: Path, hook: HTTPServer) -> None:
    rule = dict(RULE, notify=[])
    quiet = write_config(config.parent, alerts=[rule], channels={"default": []}, log_level="WARNING")
    assert invoke(quiet, "run", "--once")[0] == 0
    store = Store.open(config.parent / "monitor.db")
    alerts_before = store.count("alerts")
    store.close()

    code, output = invoke(config, "alerts", "test", "sanctuary-cities", "--since", "7d")
    assert code == 0, output
    assert "sanctuary-cities: 1 matching clusters seen in the last 7d" in output
    assert 'matched: "sanctuary city", "sanctuary cities", "protection cities", ICE, "border patrol"' in output

    code, output = invoke(config, "alerts", "test", "Albence AND NOT governor")
    assert code == 0, output
    assert "command-line query: 1 matching clusters" in output and "matched: Albence" in output
    code, output = invoke(config, "alerts", "test", "Albence AND NOT police")  # one seed says "police"
    assert code == 0 and "0 matching clusters" in output

    code, output = invoke(config, "alerts", "test", "title:Albence")
    assert code == 0 and "0 matching clusters" in output

    assert attempts(hook) == 0
    store = Store.open(config.parent / "monitor.db")
    assert store.count("alerts") == alerts_before
    store.close()


def test_alerts_test_reads_the_database_read_only_and_never_upgrades_it(config: Path) -> None:
    """A dry run beside the daemon writes nothing, not even a migration: a database at an older schema
    is refused with what to do, and left as it was."""
    assert invoke(config, "alerts", "test", "ICE")[0] != 0  # no database yet: nothing is created
    assert not (config.parent / "monitor.db").exists()
    assert invoke(config, "run", "--once")[0] == 0
    store = Store.open(config.parent / "monitor.db")
    newest = store.schema_version()
    store.db.execute("DELETE FROM _migrations WHERE id = ?", [newest])
    store.close()
    code, output = invoke(config, "alerts", "test", "ICE")
    assert code != 0 and f"schema {newest - 1}" in output and "run --once` upgrades it" in output
    conn = sqlite3.connect(config.parent / "monitor.db")
    assert conn.execute("SELECT MAX(id) FROM _migrations").fetchone()[0] == newest - 1
    conn.close()


def test_alerts_test_reports_a_malformed_query_with_its_position(config: Path) -> None:
    code, output = invoke(config, "alerts", "test", "ICE AND (border")
    assert code == 1
    assert "Error: query error at position 16: expected ')'" in output
    assert "Traceback" not in output
    code, output = invoke(config, "alerts", "test", "ICE", "--since", "lately")
    assert code == 2 and "--since" in output


def test_a_malformed_rule_stops_start_up_naming_rule_and_position(tmp_path: Path, seeds_dir: Path) -> None:
    bad = dict(RULE, query='("sanctuary city" OR ICE')
    path = write_config(tmp_path, alerts=[bad], channels={"default": []})
    code, output = invoke(path, "run", "--once")
    assert code == 1
    assert "alert rule 'sanctuary-cities': query error at position 25" in output
    assert not (tmp_path / "monitor.db").exists()


def test_the_shipped_config_records_the_seed_alert_without_a_channel_and_sends_it_once_one_is_added(
        tmp_path: Path, hook: HTTPServer) -> None:
    """Out of the box no channel is configured (no fixed local port): the alert is recorded and listed;
    `alerts send-test` reaches a channel once it is added, and the waiting alert is sent then."""
    shipped_text = (ROOT / "config" / "monitor.yaml").read_text(encoding="utf-8")
    shipped = YAML(typ="safe", pure=True).load(shipped_text)
    assert "channels" not in shipped and "127.0.0.1" not in shipped_text.split("# channels:")[0]
    assert [r["name"] for r in shipped["alerts"]] == ["sanctuary-cities"] and shipped["alerts"][0]["query"] == SANCTUARY
    shutil.copytree(ROOT / "seeds", tmp_path / "seeds")
    path = tmp_path / "monitor.yaml"
    path.write_text(shipped_text.replace("../data/monitor.db", "monitor.db").replace("../seeds", "seeds"),
                    encoding="utf-8")
    code, output = invoke(path, "run", "--once")
    assert code == 0, output
    assert ("alerts: 1 new, 0 delivered in 0 messages, 0 failed deliveries, 0 pending, 1 with no channel to send "
            "to (add one under `channels:`") in output
    code, output = invoke(path, "alerts", "list")
    assert "sanctuary-cities  cluster #1" in output and "not sent: no channel to send to" in output
    code, output = invoke(path, "alerts", "send-test", "default")
    assert code == 1 and "no channels are configured: add one under `channels:`" in output

    with path.open("a", encoding="utf-8") as config:
        config.write(f"channels:\n  default: [{json_url(hook)}]\n")
    code, output = invoke(path, "alerts", "send-test", "default")
    assert code == 0 and f"default: json://127.0.0.1:{hook.port}: sent" in output, output
    [test_message] = posted(hook)
    assert test_message["title"] == "newsmonitor: test message" and "'default'" in test_message["message"]
    code, output = invoke(path, "run", "--once")
    assert "alerts: 0 new, 1 delivered in 1 messages" in output
    assert posted(hook)[1]["title"].startswith("[sanctuary-cities] ")


def test_send_test_reports_a_failed_delivery_and_an_unknown_channel(config: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: the connection is refused
        closed.bind(("127.0.0.1", 0))
        refused = f"json://127.0.0.1:{closed.getsockname()[1]}/hook"
        path = write_config(config.parent, alerts=[RULE], channels={"default": [refused], "team": []},
                            log_level="WARNING")
        code, output = invoke(path, "alerts", "send-test", "default")
    assert code == 1 and f"default: {refused.removesuffix('/hook')}: FAILED:" in output
    assert "1 of 1 deliveries failed" in output
    code, output = invoke(path, "alerts", "send-test", "defualt")
    assert code == 1 and "no channel named 'defualt'; did you mean 'default'?" in output
    code, output = invoke(path, "alerts", "send-test", "team")
    assert code == 1 and "channel 'team' has no URL" in output


def test_alerts_test_guards_against_lower_case_operators_and_mistyped_rule_names(config: Path) -> None:
    assert invoke(config, "run", "--once")[0] == 0
    result = CliRunner().invoke(cli, ["--config", str(config), "alerts", "test", "Albence or weather"])
    assert result.exit_code == 0
    assert ("warning: 'or' at position 9 is searched as a word; for the operator write OR (upper-case); "
            'to search the word, quote it: "or"') in result.stderr
    assert "command-line query: 0 matching clusters" in result.stdout
    assert "1 matching clusters" in invoke(config, "alerts", "test", "Albence OR weather")[1]

    code, output = invoke(config, "alerts", "test", "sanctuary-citys")
    assert code == 1
    assert "no alert rule named 'sanctuary-citys'; did you mean 'sanctuary-cities'? (--query runs it" in output
    code, output = invoke(config, "alerts", "test", "sanctuary-citys", "--query")
    assert code == 0 and "command-line query: 0 matching clusters" in output


def test_run_warns_about_a_rule_with_a_lower_case_operator(tmp_path: Path, seeds_dir: Path) -> None:
    path = write_config(tmp_path, alerts=[dict(RULE, query="ICE or weather")], log_level="WARNING")
    result = CliRunner().invoke(cli, ["--config", str(path), "run", "--once"])
    assert result.exit_code == 0, result.output
    assert "alert rule 'sanctuary-cities': 'or' at position 5 is searched as a word" in result.stderr


def test_a_rule_is_dry_run_with_no_channel_configured(tmp_path: Path, seeds_dir: Path) -> None:
    path = write_config(tmp_path, alerts=[RULE], log_level="WARNING")  # notify: [default], no channels at all
    assert invoke(path, "run", "--once")[0] == 0
    code, output = invoke(path, "alerts", "test", "sanctuary-cities")
    assert code == 0 and "sanctuary-cities: 1 matching clusters seen in the last 7d" in output


def test_the_daemon_sends_the_seed_alert_right_after_ingesting(config: Path, hook: HTTPServer) -> None:
    process = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "run"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 40
        while not posted(hook) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert len(posted(hook)) == 1
        assert posted(hook)[0]["title"].startswith("[sanctuary-cities] ")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert attempts(hook) == 1


def test_alerts_list_json(config: Path, hook: HTTPServer) -> None:
    assert invoke(config, "run", "--once")[0] == 0
    code, output = invoke(config, "alerts", "list", "--json")
    assert code == 0, output
    [row] = json.loads(output)
    assert row["rule"] == "sanctuary-cities" and row["delivered_at"] and row["attempts"] == 1
    assert "ICE" in row["matched_terms"] and len(row["delivered_to"]) == 1
    assert "127.0.0.1" not in json.dumps(row["delivered_to"])  # targets are hashed, URLs (and secrets) not stored
