#!/usr/bin/env python3
"""Matching speed: microseconds per prepare / score / blocking_keys, and predict_clusters wall time.

  python bench/match_speed.py --people 10000 --seed 7              # hot path only
  python bench/match_speed.py --people 100000 --seed 7 --batch     # + predict_clusters on ~280k records
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from match_data import generate, load  # noqa: E402

from matching import MatchModel, blocking_keys, predict_clusters  # noqa: E402
from matching.features import ATTRIBUTES  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", action="store_true", help="also time predict_clusters on all records")
    ap.add_argument("--memory-limit", default="6GB")
    args = ap.parse_args()
    records = load(generate(args.people, args.seed, os.path.join(HERE, "data", f"gen{args.people}_s{args.seed}")))
    model = MatchModel.default()
    sample = [{a: r.get(a) for a in ATTRIBUTES} for r in random.Random(1).sample(records, min(20000, len(records)))]

    t0 = time.perf_counter()
    prepared = [model.prepare(r) for r in sample]
    t_prep = (time.perf_counter() - t0) / len(sample) * 1e6
    t0 = time.perf_counter()
    for r in sample:
        blocking_keys(r)
    t_keys = (time.perf_counter() - t0) / len(sample) * 1e6
    rng = random.Random(2)
    pairs = [(prepared[rng.randrange(len(prepared))], prepared[rng.randrange(len(prepared))]) for _ in range(50000)]
    # realistic candidates: records of the same entity (mostly agreeing fields, the slow levels)
    by_entity = {}
    for r in records:
        by_entity.setdefault(r["entity"], []).append(r)
    same = []
    for recs in list(by_entity.values())[:20000]:
        if len(recs) > 1:
            same.append((model.prepare(recs[0]), model.prepare(recs[1])))
    for name, ps in (("random pairs", pairs), ("same-person pairs", same)):
        t0 = time.perf_counter()
        for a, b in ps:
            model.score(a, b)
        t_score = (time.perf_counter() - t0) / len(ps) * 1e6
        t0 = time.perf_counter()
        for a, b in ps:
            model.match_weight(a, b)
        t_mw = (time.perf_counter() - t0) / len(ps) * 1e6
        print(f"score ({name}): {t_score:.1f} us/pair with explanation, {t_mw:.1f} us/pair match_weight only")
    print(f"prepare: {t_prep:.1f} us/record (cold caches); blocking_keys: {t_keys:.1f} us/record")

    if args.batch:
        peak = [0.0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb())
                time.sleep(0.2)
        threading.Thread(target=watch, daemon=True).start()
        base = rss_mb()
        t0 = time.time()
        pairs_t, clusters = predict_clusters(records, model.to_json(), link_threshold=0.95,
                                             memory_limit=args.memory_limit,
                                             progress=lambda m: print(f"  {m}", flush=True))
        stop.set()
        n_clusters = len(set(clusters.column("cluster_id").to_pylist()))
        print(f"predict_clusters: {len(records)} records -> {pairs_t.num_rows} links, {n_clusters} clusters in "
              f"{time.time() - t0:.1f}s; process RSS peak {peak[0]:.0f} MB (records loaded: {base:.0f} MB); "
              f"maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
