"""Scoring a clustering against the truth, and latency summaries (shared by the runner and the baseline)."""
from __future__ import annotations

import collections
from collections.abc import Hashable, Iterable, Mapping


def _pairs(sizes: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes)


def _prf(tp: int, predicted: int, true: int) -> dict:
    p = tp / predicted if predicted else 1.0
    r = tp / true if true else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


def score_clusters(assign: Mapping[Hashable, Hashable], truth: Mapping[Hashable, Hashable]) -> dict:
    """Pairwise and exact-cluster precision/recall/F1 of `assign` (record -> cluster) against `truth`
    (record -> entity).

    Pairwise: a predicted pair is two records in one cluster, a true pair two records of one entity;
    records the clustering lacks (rejected ones) count as missed. Cluster: a predicted cluster is right
    when it holds exactly the records of one entity; recall is the share of entities reproduced exactly.
    """
    records = [r for r in truth if r in assign]
    both = collections.Counter((assign[r], truth[r]) for r in records)
    clusters: dict = collections.defaultdict(set)
    for r in records:
        clusters[assign[r]].add(r)
    entities: dict = collections.defaultdict(set)
    for r, e in truth.items():
        entities[e].add(r)
    tp = _pairs(both.values())
    predicted = _pairs(len(v) for v in clusters.values())
    true = _pairs(len(v) for v in entities.values())
    exact = sum(1 for members in clusters.values() if members == entities[truth[next(iter(members))]])
    cluster = _prf(exact, len(clusters), len(entities))
    return {"pairwise": {**_prf(tp, predicted, true), "true_pairs": true, "predicted_pairs": predicted,
                         "correct_pairs": tp},
            "cluster": {**cluster, "exact_clusters": exact},
            "records": len(truth), "clustered_records": len(records), "clusters": len(clusters),
            "entities": len(entities)}


def percentiles(seconds: list[float], *, keep: int = 2000) -> dict:
    """p50/p90/p99/max in milliseconds, with up to `keep` samples kept for the report's histograms."""
    if not seconds:
        return {"n": 0}
    xs = sorted(seconds)

    def q(p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 2)

    step = max(1, len(xs) // keep)
    return {"n": len(xs), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(xs[-1] * 1000, 2),
            "mean": round(sum(xs) / len(xs) * 1000, 2), "samples_ms": [round(x * 1000, 2) for x in xs[::step]]}


def threshold_curve(scored: list[tuple[float, bool]], positives: int, steps: int = 100) -> list[dict]:
    """Precision and recall of "probability >= t" over scored (probability, is_true) pairs, for t in 0..1.

    `positives` is the number of true pairs that exist, found or not (the recall denominator)."""
    out = []
    ordered = sorted(scored, reverse=True)
    for i in range(steps + 1):
        t = i / steps
        above = [ok for p, ok in ordered if p >= t]
        tp = sum(above)
        out.append({"threshold": round(t, 3), "precision": round(tp / len(above), 4) if above else 1.0,
                    "recall": round(min(1.0, tp / positives), 4) if positives else 1.0, "predicted": len(above)})
    return out
