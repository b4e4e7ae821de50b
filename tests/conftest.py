"""Shared fixtures: a real threaded HTTP server on 127.0.0.1, the seed files, and config files on disk."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEEDS = ROOT / "seeds"
SHARED_DATA = ROOT.parent / "shared" / "data"
# The test servers listen on loopback, which the address policy refuses unless allowed (all of 127/8 is loopback).
LOOPBACK = ["127.0.0.0/8"]


@pytest.fixture
def web() -> Iterator[HTTPServer]:
    """A threaded server, so a deliberately slow feed does not hold up the others."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def seeds_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "seeds"
    shutil.copytree(SEEDS, folder)
    return folder


def write_config(folder: Path, **overrides: Any) -> Path:
    """A config file in ``folder``, small timeouts and no politeness delay so tests stay fast.

    Loopback is allowed (``fetch.allow_networks``) unless ``fetch`` says otherwise: the servers are on 127.0.0.1.
    """
    config: dict[str, Any] = {
        "database": "monitor.db",
        "seeds_dir": "seeds",
        "feeds": [],
        "fetch": {"timeout": 1.0, "per_host_delay": 0, "per_host": 4},
        "log_level": "DEBUG",
    }
    config.update(overrides)
    config["fetch"] = {"allow_networks": LOOPBACK} | dict(config["fetch"] or {})
    path = folder / "monitor.yaml"
    YAML(typ="safe", pure=True).dump(config, path)
    return path


def fixture_text(name: str, base: str = "") -> str:
    return (FIXTURES / name).read_text(encoding="utf-8").replace("{base}", base)
