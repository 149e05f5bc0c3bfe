#!/usr/bin/env python3
"""Benchmark data for matching: run gen_customers.py, standardise every record with the hub's rules.

Writes <out>/standardised.jsonl: one object per source record
  {"id": int, "system": str, "key": str, "entity": int, <snake_case attribute>: str, ...}
(date_of_birth as ISO 'YYYY-MM-DD'). The generator is run as a script, never imported or copied.

  python bench/match_data.py --people 10000 --seed 7 --out bench/data/cust10k_s7
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GENERATOR = os.environ.get("GEN_CUSTOMERS", "/work/shared/bench/gen_customers.py")
TODAY = dt.date(2026, 1, 1)     # the generator's reference date: fixes the 2-digit-year pivot

sys.path.insert(0, ROOT)
try:
    from hub.ingest.standardise import SystemProfile, standardise   # the hub's real standardiser

    def standardise_record(raw: dict, date_order: str) -> dict:
        values = standardise(raw, SystemProfile(date_order=date_order), today=TODAY).values
        out = {}
        for k, v in values.items():
            out[k] = v.isoformat() if isinstance(v, dt.date) else v
        return out
    STANDARDISER = "hub.ingest.standardise"
except ImportError:                                            # stand-in while hub/ingest/standardise.py is absent
    import re

    _SNAKE = {"givenName": "given_name", "familyName": "family_name", "dateOfBirth": "date_of_birth",
              "email": "email", "phone": "phone", "addressLine1": "address_line1",
              "addressLine2": "address_line2", "locality": "locality", "postcode": "postcode",
              "region": "region", "country": "country", "nationalId": "national_id"}
    _FMT = {"YMD": ["%Y-%m-%d"], "DMY": ["%d/%m/%Y", "%d.%m.%Y"], "MDY": ["%m/%d/%Y", "%m/%d/%y"]}

    def standardise_record(raw: dict, date_order: str) -> dict:
        out = {}
        for camel, snake in _SNAKE.items():
            v = raw.get(camel)
            v = v.strip() if isinstance(v, str) else v
            if not v:
                continue
            if snake == "date_of_birth":
                for fmt in _FMT[date_order]:
                    try:
                        d = dt.datetime.strptime(v, fmt).date()
                        if d > TODAY:
                            d = d.replace(year=d.year - 100)
                        v = d.isoformat()
                        break
                    except ValueError:
                        continue
                else:
                    continue
            elif snake == "email":
                v = v.lower()
            elif snake == "phone":
                digits = re.sub(r"[^\d+]", "", v.split("x")[0])
                v = "+" + digits.lstrip("+").removeprefix("00") if digits.startswith(("+", "00")) else digits
            elif snake == "postcode":
                v = v.upper()
            out[snake] = v
        return out
    STANDARDISER = "stand-in (bench/match_data.py)"


def generate(people: int, seed: int, out: str) -> str:
    raw = os.path.join(out, "raw")
    if not os.path.exists(os.path.join(raw, "truth.csv")):
        subprocess.run([sys.executable, GENERATOR, "--people", str(people), "--seed", str(seed), "--out", raw],
                       check=True)
    path = os.path.join(out, "standardised.jsonl")
    if os.path.exists(path):
        return path
    systems = {s["name"]: s for s in json.load(open(os.path.join(raw, "systems.json")))}
    truth = {}
    with open(os.path.join(raw, "truth.csv")) as f:
        for row in csv.DictReader(f):
            truth[(row["system"], row["key"])] = int(row["entity"])
    n = 0
    tmp = path + ".tmp"
    with open(tmp, "w") as w:
        for name in sorted(systems):
            with open(os.path.join(raw, f"{name}.jsonl")) as f:
                for line in f:
                    rec = json.loads(line)
                    attrs = standardise_record(rec["attributes"], systems[name].get("dateOrder", "YMD"))
                    w.write(json.dumps({"id": n, "system": name, "key": rec["key"],
                                        "entity": truth[(name, rec["key"])], **attrs}, ensure_ascii=False) + "\n")
                    n += 1
    os.replace(tmp, path)
    return path


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or os.path.join(HERE, "data", f"cust{args.people}_s{args.seed}")
    path = generate(args.people, args.seed, out)
    print(path)


if __name__ == "__main__":
    main()
