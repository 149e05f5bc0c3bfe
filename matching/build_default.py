"""Rebuild matching/default_model.json.

  python -m matching.build_default --people 20000 --seed 11
      runs bench/match_data.py (hub.bench.generate + the hub's standardiser) as a subprocess,
      then trains on its standardised.jsonl
  python -m matching.build_default --records path/to/standardised.jsonl
      trains on any file of standardised records (one JSON object per line, snake_case attributes)

matching imports nothing of the project: the data step runs as a separate process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from .train import train

PKG = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(PKG)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Train matching/default_model.json")
    ap.add_argument("--people", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=11, help="data seed (also the training seed)")
    ap.add_argument("--records", help="standardised JSONL to train on instead of generating data")
    ap.add_argument("--out", default=os.path.join(PKG, "default_model.json"))
    ap.add_argument("--max-pairs-u", type=float, default=1e7)
    ap.add_argument("--max-pairs-em", type=float, default=2e6)
    args = ap.parse_args(argv)
    path = args.records
    if not path:
        data_dir = os.path.join(ROOT, "bench", "data", f"gen{args.people}_s{args.seed}")
        out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "match_data.py"), "--people",
                              str(args.people), "--seed", str(args.seed), "--out", data_dir],
                             check=True, capture_output=True, text=True)
        path = out.stdout.strip().splitlines()[-1]
    with open(path) as f:
        records = [json.loads(line) for line in f]
    t0 = time.time()
    model = train(records, seed=args.seed, max_pairs_u=args.max_pairs_u, max_pairs_em=args.max_pairs_em)
    model["matching_training"]["data"] = (f"hub bench generate --people {args.people} --seed {args.seed}, "
                                          "standardised by hub.ingest.standardise" if not args.records else path)
    with open(args.out, "w") as f:
        json.dump(model, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"trained on {len(records)} records in {time.time() - t0:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
