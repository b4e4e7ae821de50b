"""Fit the clusterer's signal weights by logistic regression on ECB+ dev topics, and check them.

Why this exists: ``Scorer.score`` (``monitor.cluster.scoring``) is a weighted mean of per-signal cosines (body,
title, entities, numbers) minus a year-conflict penalty, compared with ``threshold``.
That is a linear decision rule, so its weights can be *fitted* instead of hand-tuned:

1. Teacher-forced pairs: docs are streamed in an order, each is compared with every
   cluster built so far from the *gold* assignment (so one early mistake does not
   change what later docs are compared with), giving one row per (doc, cluster) with
   the signals exactly as the daemon computes them and label "same event".
2. A logistic model over those rows; its coefficients map onto ``ClusterParams``
   (``w_* = coef``, ``year_conflict_penalty = -coef_year / sum(w)``,
   ``threshold = -intercept / sum(w)``).
3. Leave-topics-out cross-validation: weights fitted on 4/5 of the topics (threshold
   then re-chosen by online F1 on those same training topics) are scored
   online (``bench.cluster_eval.run_direct``, the real clusterer) on the held-out fifth,
   next to the shipped defaults on the same topics.  Only if the fitted weights win
   there do they earn a place as defaults.

It also prints, per signal, the in-topic ROC AUC (only pairs within one ECB+ topic,
i.e. the hard same-kind-event pairs) and the teacher-forced decision accuracy of the
shipped score: the share of docs for which "join the best cluster if score >=
threshold, else start one" is right.  That number bounds what a better threshold alone
can do with these signals.

    .venv/bin/python bench/cluster_fit.py            # ~1-2 minutes
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from bench.cluster_eval import DEFAULT_DATA, Item, bcubed, load_ecb, run_direct
from monitor.cluster import Assignment, Clusterer, ClusterParams, Doc
from monitor.cluster.vectors import query

FEATURES = ("body", "title", "ents", "nums", "year_conflict")
_PARAM_OF = {"body": "w_body", "title": "w_title", "ents": "w_entities", "nums": "w_numbers"}


def _topic(gold: str) -> int:
    return int(gold.split("/")[0])


Row = tuple[int, bool, bool, int, dict[str, float]]


def teacher_forced_rows(items: Sequence[Item], params: ClusterParams, tag: int = 0) -> list[Row]:
    """(doc key, same event, same topic, doc topic, signals incl. 'score') per doc x gold cluster.

    The doc key is ``tag * 1e6 + position`` so rows of several orders can be pooled."""
    c = Clusterer(params)
    gold_of: dict[int, str] = {}
    cluster_of_gold: dict[str, int] = {}
    rows = []
    for i, it in enumerate(items, start=1):
        doc = Doc(i, it.title, it.text, it.published, it.source)
        for cid, sig in signal_scores(c, doc).items():
            same_topic = _topic(gold_of[cid]) == _topic(it.gold)
            rows.append((tag * 1_000_000 + i, gold_of[cid] == it.gold, same_topic, _topic(it.gold), sig))
        cid = cluster_of_gold.get(it.gold)
        c.add(doc, Assignment.new(i) if cid is None else Assignment.join(cid, None, ()))
        if cid is None:
            cluster_of_gold[it.gold] = i
            gold_of[i] = it.gold
    return rows


def signal_scores(c: Clusterer, doc: Doc) -> dict[int, dict[str, float]]:
    """Per live cluster: each signal's cosine with ``doc`` (0.0 if either side lacks it),
    ``year_conflict`` (1.0 if both name years, none in common) and the combined ``score`` a
    decision would give: the inputs of a decision, for fitting weights."""
    p = c.read(doc)
    q = query(p.features.vectors(), p.idf, c.params.query_terms)
    out = {}
    for cid, cluster in c.window.clusters.items():
        sig = c.scorer.cosines(q, cluster)
        sig["year_conflict"] = float(c.scorer.year_conflict(p.features.years, cluster))
        sig["score"] = c.scorer.score(q, p.features.years, p.ts, cluster)
        out[cid] = sig
    return out


def decision_accuracy(rows: list[Row], scores: Sequence[float], threshold: float) -> float:
    """Share of docs where 'best cluster if its score >= threshold, else new' is right."""
    by_doc: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for (i, same, _, _, _), s in zip(rows, scores, strict=True):
        by_doc[i].append((s, same))
    ok = 0
    for cands in by_doc.values():
        best, same = max(cands)
        has_own = any(s for _, s in cands)
        ok += (best >= threshold and same) if has_own else best < threshold
    return ok / len(by_doc) if by_doc else 1.0


def fit(rows: list[Row]) -> LogisticRegression:
    x = np.array([[r[4][k] for k in FEATURES] for r in rows])
    y = np.array([r[1] for r in rows])
    # Balanced classes: the decision threshold should not depend on how many clusters
    # happen to be live (most rows are easy cross-topic negatives).
    return LogisticRegression(C=10.0, class_weight="balanced", max_iter=5000).fit(x, y)


def to_params(model: LogisticRegression, base: ClusterParams) -> ClusterParams:
    coef = dict(zip(FEATURES, model.coef_[0], strict=True))
    weights = {_PARAM_OF[s]: max(0.0, float(coef[s])) for s in _PARAM_OF}
    wsum = sum(weights.values()) or 1.0
    return base.model_copy(
        update={
            **weights,
            "year_conflict_penalty": max(0.0, -float(coef["year_conflict"]) / wsum),
            "threshold": -float(model.intercept_[0]) / wsum,
        }
    )


def online_f1(items: Sequence[Item], params: ClusterParams, orders: Sequence[int | None]) -> float:
    f1s = []
    for seed in orders:
        its = list(items)
        if seed is not None:
            random.Random(seed).shuffle(its)
        pred = run_direct(its, params)
        f1s.append(bcubed(pred, [it.gold for it in its])[2])
    return statistics.mean(f1s)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--orders", type=int, default=2, help="shuffled orders for teacher forcing")
    args = ap.parse_args(argv)

    base = ClusterParams()
    items = load_ecb(args.data)
    orders: list[int | None] = [None, *range(args.orders)]
    rows: list[Row] = []
    for tag, seed in enumerate(orders):
        its = list(items)
        if seed is not None:
            random.Random(seed).shuffle(its)
        rows.extend(teacher_forced_rows(its, base, tag))

    same = np.array([r[1] for r in rows])
    in_topic = np.array([r[2] for r in rows])
    print(f"{len(rows)} teacher-forced (doc, cluster) rows over {len(orders)} orders")
    for k in (*FEATURES, "score"):
        v = np.array([r[4][k] for r in rows])
        print(f"  {k:<14} in-topic AUC {roc_auc_score(same[in_topic], v[in_topic]):.3f}")
    scores = [r[4]["score"] for r in rows]
    grid = [round(t, 2) for t in np.arange(0.05, 0.5, 0.01)]
    best = max(grid, key=lambda t: decision_accuracy(rows, scores, t))
    print(
        f"shipped score: decision accuracy {decision_accuracy(rows, scores, base.threshold):.3f} at "
        f"threshold {base.threshold}, best {decision_accuracy(rows, scores, best):.3f} at {best}"
    )

    model = fit(rows)
    fitted = to_params(model, base)
    print("fitted on all dev topics:", {k: round(getattr(fitted, k), 3) for k in
                                        (*_PARAM_OF.values(), "year_conflict_penalty", "threshold")})

    all_topics = sorted({_topic(it.gold) for it in items})
    cv_fit, cv_base = [], []
    for fold in range(args.folds):
        held = set(all_topics[fold :: args.folds])
        train_rows = [r for r in rows if r[3] not in held]
        params = to_params(fit(train_rows), base)
        # The teacher-forced optimum is too low online (a wrong join drags the centroid and
        # later docs follow it), so the threshold is re-chosen by online F1 on the training topics.
        train = [it for it in items if _topic(it.gold) not in held]
        params = max(
            (params.model_copy(update={"threshold": params.threshold + d}) for d in (0.0, 0.03, 0.06, 0.09)),
            key=lambda p: online_f1(train, p, [None, 0]),
        )
        test = [it for it in items if _topic(it.gold) in held]
        cv_fit.append(online_f1(test, params, [None, 0, 1]))
        cv_base.append(online_f1(test, base, [None, 0, 1]))
        print(f"  fold {fold}: held-out topics {sorted(held)} (threshold {params.threshold:.3f})  "
              f"online B3 F1 fitted {cv_fit[-1]:.4f}  "
              f"defaults {cv_base[-1]:.4f}")
    print(f"leave-topics-out online F1: fitted {statistics.mean(cv_fit):.4f}, "
          f"defaults {statistics.mean(cv_base):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
