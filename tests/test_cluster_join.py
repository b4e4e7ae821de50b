"""The learned join-or-new decision: where it applies, its guards, and what it gains on ECB+."""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cluster_eval import DEFAULT_DATA, bcubed, load_ecb, run_direct  # noqa: E402
from monitor.cluster import Clusterer, ClusterParams, Doc  # noqa: E402
from monitor.cluster.joining import FEATURES, FITTED, JoinModel  # noqa: E402
from tests.test_cluster import DAY, _templated  # noqa: E402

ALWAYS = JoinModel(intercept=50.0, weights=())  # joins whatever the evidence
NEVER = JoinModel(intercept=-50.0, weights=())
EAGER = ClusterParams(learned_after_docs=0, learned_min_words=0)

BASE = ("Rescue teams searched through the night for survivors after the ferry Sea Lark capsized near "
        "Port Elin on Tuesday, the coast guard said. Forty passengers were pulled from the water and "
        "twelve remain missing, according to harbour master Ruth Okafor. The ferry was carrying cars "
        "and freight to the island of Varna when it listed in heavy seas and overturned within minutes.")


FOLLOW_UP = ("Divers from the navy joined the search for the twelve people still missing from the Sea Lark, "
             "which overturned off Port Elin in a storm. Harbour master Ruth Okafor said hopes were fading. "
             "Survivors described cars sliding across the deck as the ferry to Varna listed.")


def _doc(doc_id: int, text: str, title: str = "Ferry capsizes near Port Elin") -> Doc:
    return Doc(id=doc_id, title=title, text=text, published=DAY, source=f"s{doc_id}")


def _after(first: Doc, model: JoinModel, params: ClusterParams, second: Doc) -> bool:
    """Whether ``second`` joins ``first``'s cluster under ``model``."""
    c = Clusterer(params, join_model=model)
    c.add(first, c.decide(first))
    return not c.decide(second).is_new_cluster


def test_the_model_decides_where_it_applies() -> None:
    first = _doc(1, BASE)
    follow_up = _doc(2, FOLLOW_UP, title="Hopes fade for Sea Lark missing")
    assert _after(first, ALWAYS, EAGER, follow_up)
    assert not _after(first, NEVER, EAGER, follow_up)
    # The fixed threshold alone, and the learned decision before it applies, ignore the model.
    assert _after(first, NEVER, EAGER.model_copy(update={"join_decision": "threshold"}), follow_up)
    assert _after(first, NEVER, ClusterParams(), follow_up)  # one doc held: under learned_after_docs


def test_short_texts_keep_the_threshold() -> None:
    first = _doc(1, BASE)
    short = _doc(2, "Ferry Sea Lark capsized near Port Elin; twelve missing, the coast guard said on Tuesday.")
    assert _after(first, NEVER, EAGER.model_copy(update={"learned_min_words": 1000}), short)
    assert not _after(first, NEVER, EAGER, short)


def test_a_low_score_never_joins_whatever_the_model() -> None:
    first = _doc(1, BASE)
    other = _doc(2, "The central bank raised its main rate by a quarter point, citing inflation in services and "
                 "wages. Markets had expected the move, and the currency barely moved. Grain traders in Varna said "
                 "freight rates were unchanged; analysts expect one more rise this year.",
                 title="Central bank raises rates")  # a candidate through "Varna", scoring 0.07
    assert not _after(first, ALWAYS, EAGER, other)
    assert _after(first, ALWAYS, EAGER.model_copy(update={"learned_min_score": -1.0}), other)


def test_other_names_fall_back_to_the_threshold() -> None:
    """A templated story with other people and places does not join, even if the model would."""
    first = _templated({"mayor": "Anna Keller", "city": "Linz", "firm": "Voestalpine", "chief": "Peter Gruber",
                        "hospital": "Kepler University Hospital", "spokes": "Maria Huber"}, 1)
    other = _templated({"mayor": "John Marsh", "city": "Leeds", "firm": "Arla", "chief": "Tom Biggs",
                        "hospital": "St James's Hospital", "spokes": "Kate Rowe"}, 2)
    assert not _after(first, ALWAYS, EAGER.model_copy(update={"learned_min_score": -1.0}), other)


def test_evidence_names_every_feature_and_time_decays() -> None:
    c = Clusterer(EAGER)
    first = _doc(1, BASE)
    assert c.evidence(first) == []  # no cluster yet
    c.add(first, c.decide(first))
    near = c.evidence(_doc(2, FOLLOW_UP))
    far = c.evidence(replace(_doc(2, FOLLOW_UP), published=DAY + timedelta(days=4)))
    assert set(FEATURES) <= set(near[0][1])
    assert near[0][1]["span_1d"] == 1.0 and far[0][1]["span_1d"] < 0.01 < far[0][1]["span_3d"] < 1.0
    assert {name for name, _ in FITTED.weights} <= set(FEATURES)


def test_learned_beats_the_threshold_on_ecb_orders() -> None:
    """Undated shuffles of all dev topics: the learned decision gains F1 on average."""
    if not (DEFAULT_DATA / "ecb-plus" / "ECB+").is_dir():
        pytest.skip(f"ECB+ data not present under {DEFAULT_DATA}")
    items = load_ecb(DEFAULT_DATA)
    fixed = ClusterParams(join_decision="threshold")
    gains = []
    for seed in range(4):
        its = random.Random(seed).sample(items, len(items))
        gold = [it.gold for it in its]
        gains.append(bcubed(run_direct(its, ClusterParams()), gold)[2] - bcubed(run_direct(its, fixed), gold)[2])
    # Measured per order (seeds 0-7): -0.003, +0.002, +0.004, +0.023, +0.004, +0.007, +0.004,
    # +0.010; one order in eight loses a little, so the mean is what is asserted.
    assert sum(gains) / len(gains) > 0.003
