"""The clusterer's decisions on fixed streams are exactly the recorded ones (``bench/cluster_golden.py``).

A refactor of ``monitor.cluster`` must not change a single assignment, score or explaining
term; a deliberate change of behaviour re-records the files with
``bench/cluster_golden.py --write`` and says so in its commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cluster_golden as golden

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# The synthetic stream's first docs only: replaying all 3,000 would take most of the time
# budget, and a prefix of an online clusterer's decisions depends only on that prefix.
SYNTHETIC_PREFIX = 1500


@pytest.mark.parametrize("name", list(golden.STREAMS))
def test_replay_matches_the_golden_file(name: str) -> None:
    missing = golden.data_missing(DATA)
    if missing:
        pytest.skip(f"golden stream {name} needs the shared data: {missing}")
    diff = golden.first_difference(name, DATA, limit=SYNTHETIC_PREFIX if name == "synthetic" else None)
    assert diff is None, diff
