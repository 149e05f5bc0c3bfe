#!/usr/bin/env python3
"""Matching quality on hub.bench.generate data: hub-style real-time simulation + Splink batch baseline.

  python bench/match_quality.py --people 10000 --seed 7 [--model matching/default_model.json]

Real-time simulation (what the hub does per incoming record, records in shuffled order):
  candidates = records sharing a blocking key (keys shared by > MAX_KEY_GROUP records ignored);
  each candidate golden record is scored with MatchModel.score_cluster(record, all its members);
  probability >= --link links to the best golden record (several >= --link: they merge);
  --review <= p < --link: queued for review, own golden record; else a new golden record.
Reported: pairwise precision / recall / F1 of "same golden record" vs truth entities, blocking
recall (true pairs sharing at least one key), candidate counts, review queue size.
Baseline: matching.predict_clusters (Splink 5 predict on the same key-blocked pairs +
cluster_pairwise_predictions_at_threshold) at the same link threshold.
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from match_data import STANDARDISER, generate, load  # noqa: E402

from matching import MatchModel, blocking_keys, predict_clusters  # noqa: E402
from matching.cluster import MAX_KEY_GROUP  # noqa: E402
from matching.features import ATTRIBUTES  # noqa: E402


def pair_counts(labels_pred: dict[int, int], labels_true: dict[int, int]) -> tuple[int, int, int]:
    """(true positive pairs, predicted pairs, true pairs) over the same record ids."""
    c2 = lambda n: n * (n - 1) // 2  # noqa: E731
    pred = collections.Counter(labels_pred.values())
    true = collections.Counter(labels_true.values())
    both = collections.Counter((labels_pred[i], labels_true[i]) for i in labels_pred)
    return sum(map(c2, both.values())), sum(map(c2, pred.values())), sum(map(c2, true.values()))


def prf(tp: int, npred: int, ntrue: int) -> tuple[float, float, float]:
    p = tp / npred if npred else 1.0
    r = tp / ntrue if ntrue else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


class UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        p = self.parent.setdefault(x, x)
        while p != self.parent[p]:
            self.parent[p] = self.parent[self.parent[p]]
            p = self.parent[p]
        self.parent[x] = p
        return p


def simulate(records: list[dict], model: MatchModel, link: float, review: float, seed: int):
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    index: dict[str, list[int]] = collections.defaultdict(list)
    prepared: dict[int, object] = {}
    golden_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    stats = collections.Counter()
    keys_of: dict[int, set[str]] = {}
    t_score = 0.0
    for i in order:
        rec = records[i]
        attrs = {a: rec.get(a) for a in ATTRIBUTES}
        keys = blocking_keys(attrs)
        keys_of[i] = keys
        p = model.prepare(attrs, rid=i)
        prepared[i] = p
        cands: set[int] = set()
        for k in keys:
            hits = index.get(k)
            if hits and len(hits) <= MAX_KEY_GROUP:
                cands.update(hits)
        stats["candidates"] += len(cands)
        goldens = {golden_of[c] for c in cands}
        stats["golden_scored"] += len(goldens)
        t0 = time.perf_counter()
        scored = []
        for g in goldens:
            s = model.score_cluster(p, [prepared[m] for m in members[g]])
            scored.append((s.probability, s.match_weight, g))
        t_score += time.perf_counter() - t0
        strong = sorted([x for x in scored if x[0] >= link], reverse=True)
        if strong:
            target = strong[0][2]
            for _, _, g in strong[1:]:                       # linked strongly to several: merge them
                for m in members.pop(g):
                    golden_of[m] = target
                    members[target].append(m)
                stats["merges"] += 1
            golden_of[i] = target
            members[target].append(i)
            stats["linked"] += 1
        else:
            golden_of[i] = i
            members[i] = [i]
            if scored and max(scored)[0] >= review:
                stats["review"] += 1
            else:
                stats["new"] += 1
        for k in keys:
            index[k].append(i)
    stats["score_cluster_seconds"] = round(t_score, 2)
    return golden_of, keys_of, stats, index


def blocking_recall(records, keys_of) -> tuple[int, int]:
    by_entity = collections.defaultdict(list)
    for i, r in enumerate(records):
        by_entity[r["entity"]].append(i)
    found = total = 0
    for ids in by_entity.values():
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                total += 1
                if keys_of[ids[a]] & keys_of[ids[b]]:
                    found += 1
    return found, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--model", default=None, help="model JSON (default: the packaged default model)")
    ap.add_argument("--link", type=float, default=0.95)
    ap.add_argument("--review", type=float, default=0.6)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--errors", type=int, default=0, help="print this many false links / missed pairs")
    args = ap.parse_args()

    path = generate(args.people, args.seed, os.path.join(HERE, "data", f"gen{args.people}_s{args.seed}"))
    records = load(path)
    assert all(r["id"] == i for i, r in enumerate(records))
    model = MatchModel.from_json(open(args.model).read()) if args.model else MatchModel.default()
    truth = {r["id"]: r["entity"] for r in records}
    print(f"data: {len(records)} records of {args.people} people (seed {args.seed}), standardiser: {STANDARDISER}")

    t0 = time.time()
    golden_of, keys_of, stats, index = simulate(records, model, args.link, args.review, args.seed)
    dt_sim = time.time() - t0
    found, total = blocking_recall(records, keys_of)
    sizes = sorted((len(v) for v in index.values()), reverse=True)
    p, r, f = prf(*pair_counts(golden_of, truth))
    print(f"\nreal-time simulation (link >= {args.link}, review >= {args.review}) in {dt_sim:.1f}s")
    print(f"  pairwise precision {p:.4f}  recall {r:.4f}  F1 {f:.4f}")
    print(f"  blocking recall {found / total:.4f} ({found}/{total} true pairs share a key); "
          f"keys/record {sum(len(k) for k in keys_of.values()) / len(keys_of):.1f}; largest key groups {sizes[:5]}")
    print(f"  per record: {stats['candidates'] / len(records):.1f} candidate records, "
          f"{stats['golden_scored'] / len(records):.1f} golden records scored; "
          f"linked {stats['linked']}, review {stats['review']}, new {stats['new']}, merges {stats['merges']}; "
          f"score_cluster total {stats['score_cluster_seconds']}s")
    if args.errors:
        show_errors(records, golden_of, model, args.errors)

    if not args.no_baseline:
        t0 = time.time()
        for conflict_rule, title in ((False, "plain Splink batch baseline (predict on key-blocked pairs + "
                                              "cluster_pairwise_predictions_at_threshold)"),
                                     (True, "predict_clusters as hub rematch runs it (+ pair conflict rule)")):
            t0 = time.time()
            pairs, clusters = predict_clusters(records, model.to_json(), link_threshold=args.link,
                                               conflict_rule=conflict_rule)
            cl = dict(zip(clusters.column("id").to_pylist(), clusters.column("cluster_id").to_pylist()))
            p, r, f = prf(*pair_counts(cl, truth))
            print(f"\n{title}, threshold {args.link}, in {time.time() - t0:.1f}s")
            print(f"  pairwise precision {p:.4f}  recall {r:.4f}  F1 {f:.4f}  ({pairs.num_rows} links)")


def show_errors(records, golden_of, model, n):
    by_golden = collections.defaultdict(list)
    for i, g in golden_of.items():
        by_golden[g].append(i)
    attrs = lambda i: {a: records[i].get(a) for a in ATTRIBUTES}  # noqa: E731
    fp = []
    for ids in by_golden.values():
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                if records[ids[a]]["entity"] != records[ids[b]]["entity"]:
                    fp.append((ids[a], ids[b]))
    by_entity = collections.defaultdict(list)
    for i, r in enumerate(records):
        by_entity[r["entity"]].append(i)
    fn = [(ids[a], ids[b]) for ids in by_entity.values() for a in range(len(ids)) for b in range(a + 1, len(ids))
          if golden_of[ids[a]] != golden_of[ids[b]]]
    rng = random.Random(0)
    for title, lst in (("FALSE LINKS", fp), ("MISSED PAIRS", fn)):
        print(f"\n{title}: {len(lst)}")
        for a, b in rng.sample(lst, min(n, len(lst))):
            s = model.score(model.prepare(attrs(a)), model.prepare(attrs(b)))
            print(f"  mw {s.match_weight:7.2f}  " + ", ".join(f"{e.comparison}={e.level}({e.match_weight:+.1f})"
                                                         for e in s.explanation))
            for i in (a, b):
                print("     ", records[i]["system"], {k: v for k, v in attrs(i).items() if v})


if __name__ == "__main__":
    main()
