#!/usr/bin/env python3
"""Benchmark data for matching: the project's generator (hub.bench.generate), every record standardised
by the hub's own rules (hub.ingest.standardise) with its system's date order and default country.

Writes <out>/raw/ (the generator's folder, as `hub bench generate` makes it) and <out>/standardised.jsonl:
one object per source record
  {"id": int, "system": str, "key": str, "entity": int, <snake_case attribute>: str, ...}
(date_of_birth as ISO 'YYYY-MM-DD'). Both are made once and reused.

  python bench/match_data.py --people 10000 --seed 7 [--profile full] --out bench/data/cust10k_s7
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TODAY = dt.date(2026, 11, 1)     # the generator's reference date: fixes the 2-digit-year pivot

sys.path.insert(0, ROOT)
from hub.bench.generate import read_records, read_systems, read_truth, write  # noqa: E402
from hub.ingest.standardise import SystemProfile, standardise  # noqa: E402

STANDARDISER = "hub.ingest.standardise"


def standardise_record(raw: dict, profile: SystemProfile) -> dict:
    values = standardise(raw, profile, today=TODAY).values
    return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in values.items()}


def generate(people: int, seed: int, out: str, profile: str = "full") -> str:
    raw = os.path.join(out, "raw")
    if not os.path.exists(os.path.join(raw, "manifest.json")):
        write(raw, people, seed=seed, profile=profile)
    path = os.path.join(out, "standardised.jsonl")
    if os.path.exists(path):
        return path
    truth = read_truth(raw)
    n = 0
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as w:
        for system in sorted(read_systems(raw), key=lambda s: s["name"]):
            name = system["name"]
            sp = SystemProfile(date_order=system.get("dateOrder", "YMD"), default_country=system.get("defaultCountry"))
            for rec in read_records(raw, name):
                attrs = standardise_record(rec["attributes"], sp)
                w.write(json.dumps({"id": n, "system": name, "key": rec["key"],
                                    "entity": int(truth[(name, rec["key"])]), **attrs}, ensure_ascii=False) + "\n")
                n += 1
    os.replace(tmp, path)
    return path


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", default="full")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    suffix = "" if args.profile == "full" else f"_{args.profile}"
    out = args.out or os.path.join(HERE, "data", f"gen{args.people}_s{args.seed}{suffix}")
    print(generate(args.people, args.seed, out, args.profile))


if __name__ == "__main__":
    main()
