"""Evaluation harness: metrics, and a smoke run on a few ECB+ topics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cluster_eval import (  # noqa: E402
    DEFAULT_DATA,
    _ordered,
    bcubed,
    evaluate,
    event_losses,
    load_ecb,
    pairwise,
    reference_kmeans,
)
from monitor.cluster import ClusterParams  # noqa: E402


def test_event_losses_add_up_to_what_bcubed_loses() -> None:
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = [1, 1, 2, 2, 2, 3]  # event a split in two, one of its reports joined to b
    losses = event_losses(pred, gold)
    p, r, _ = bcubed(pred, gold)
    assert sum(lp for lp, _ in losses.values()) == pytest.approx(1 - p)
    assert sum(lr for _, lr in losses.values()) == pytest.approx(1 - r)
    assert losses["c"] == (0.0, 0.0)
    assert losses["a"][1] > 0 and losses["b"][1] == 0.0  # only a is split
    assert losses["b"][0] > 0  # b's reports share their cluster with one of a's


def test_bcubed_and_pairwise() -> None:
    gold = ["a", "a", "b", "b"]
    assert bcubed([1, 1, 2, 2], gold) == (1.0, 1.0, 1.0)
    p, r, _ = bcubed([1, 1, 1, 1], gold)
    assert p == pytest.approx(0.5) and r == pytest.approx(1.0)
    p, r, _ = bcubed([1, 2, 3, 4], gold)
    assert p == pytest.approx(1.0) and r == pytest.approx(0.5)
    assert pairwise([1, 1, 2, 3], gold) == (1.0, 0.5)


def test_smoke_ecb_topics_online() -> None:
    if not (DEFAULT_DATA / "ecb-plus" / "ECB+").is_dir():
        pytest.skip(f"ECB+ data not present under {DEFAULT_DATA}")
    items = load_ecb(DEFAULT_DATA, topics=[1, 3, 4, 6, 8])
    assert len({it.gold for it in items}) == 10
    res = evaluate("ecb", items, ClusterParams(), direct=True, verbose=False)
    # Measured 0.9147 (P 1.00, R 0.84, 16 clusters vs 10) on these topics in sorted order;
    # 0.8963 before one-story merges, 0.9147 before the stream-learned case filter on
    # entities (which gains on shuffled orders of the same topics, mean of 8: 0.922 ->
    # 0.926, and on the whole dev split), and 0.9475 before split checks.  Floor just below.
    assert res["f1"] >= 0.90
    assert res["precision"] >= 0.99


def test_smoke_ecb_topics_as_one_settled_batch() -> None:
    """The same topics through the store as the daemon places a first poll: one label per item, in order."""
    if not (DEFAULT_DATA / "ecb-plus" / "ECB+").is_dir():
        pytest.skip(f"ECB+ data not present under {DEFAULT_DATA}")
    items = _ordered(load_ecb(DEFAULT_DATA, topics=[1, 3, 4, 6, 8]), "shuffle", 0)
    res = evaluate("ecb", items, ClusterParams(), direct=False, verbose=False, batch=True)
    online = evaluate("ecb", items, ClusterParams(), direct=False, verbose=False)
    assert res["docs"] == len(items) and res["clusters"] >= res["gold_clusters"] - 2
    assert res["f1"] >= online["f1"] - 0.01 and res["f1"] >= 0.90


def test_full_dev_split_shuffled_floor() -> None:
    """All 25 dev topics in shuffled order 0 (the hardest of the first four orders)."""
    if not (DEFAULT_DATA / "ecb-plus" / "ECB+").is_dir():
        pytest.skip(f"ECB+ data not present under {DEFAULT_DATA}")
    items = _ordered(load_ecb(DEFAULT_DATA), "shuffle", 0)
    res = evaluate("ecb", items, ClusterParams(), direct=True, verbose=False)
    # Measured 0.9224 (P 0.944, R 0.902, 55 clusters vs 46 gold); 0.9171 (P 0.930) with the
    # split check's top cut only, 0.9026 (P 0.963, R 0.849, 62 clusters) before groups that
    # read as one story were kept and merged whole as well, 0.8531 before split checks.
    # Floors just below.
    assert res["f1"] >= 0.91
    assert res["precision"] >= 0.935


def test_reference_kmeans_is_told_the_true_k() -> None:
    """The batch reference runs on the same items and scores like a real clustering."""
    if not (DEFAULT_DATA / "ecb-plus" / "ECB+").is_dir():
        pytest.skip(f"ECB+ data not present under {DEFAULT_DATA}")
    items = load_ecb(DEFAULT_DATA, topics=[1, 3, 4])
    f1s = reference_kmeans(items, seeds=2)
    assert len(f1s) == 2
    # Three topics, six events: measured 1.0 and 1.0 (0.87 with a third seed); lumping each
    # topic's two events together would score 0.67.
    assert all(0.8 <= f <= 1.0 for f in f1s)


def test_fifths_run_each_fifth_of_the_topics_on_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    """``--fifths`` scores topics 1-5, 6-10, ... each as a stream of its own, not the first N docs of all."""
    if not (DEFAULT_DATA / "ecb-plus" / "ECB+").is_dir():
        pytest.skip(f"ECB+ data not present under {DEFAULT_DATA}")
    from bench.cluster_eval import main

    main(["--dataset", "ecb", "--direct", "--fifths", "--topics", "1,2,6,7", "--seeds", "1"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "alone" in line]
    assert [line.split()[2] for line in lines] == ["1-5", "6-10"]
    assert all(0.5 < float(line.split("mean=")[1].split()[0]) <= 1.0 for line in lines)
