#!/usr/bin/env python3
"""Benchmark `hub rematch` end to end on generated people in a fresh PostgreSQL database (not a test).

1. data: bench/match_data.py (hub.bench.generate, records standardised by the hub);
2. load: a fresh database, every record through `register_batch(..., scorer=None)` in batches of 5000:
   the real write path with deterministic rules only, so the golden records are what a hub without a
   match model would hold (exact national id / email+birth date links) and the rematch has work to do
   (the worst case); `--matched` loads through the real-time matching path with the shipped model
   (`default_scorer`), as a hub running with its model would be, so the rematch has little left to do;
3. `hub rematch` (plan only), then `hub rematch --apply` (plan + apply), then `hub rematch` again (must
   propose nothing), each as a subprocess under /usr/bin/time -v for wall time and peak RSS.

  python bench/rematch_bench.py --people 100000            # ~281k records
  python bench/rematch_bench.py --people 400000            # ~1.13M records
  python bench/rematch_bench.py --people 100000 --reuse    # skip the load, rematch the existing database
  python bench/rematch_bench.py --people 100000 --matched  # loaded by the real-time model path
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.golden.attributes import API_NAME, ATTRIBUTES
from hub.config import Settings
from hub.db import Database
from hub.ingest.matcher import default_scorer
from hub.ops.migrate import upgrade
from hub.ingest.records import RecordInput, register_batch
from hub.ingest.systems import register_system
from hub.privacy.keys import new_keyring
from hub.privacy.sealing import configure

# the benchmark database's own keys (encryption at rest is on, as by default); subprocesses inherit them
os.environ.setdefault("HUB_KEYS", ";".join(new_keyring().to_text().splitlines()[1:]))

SERVER = os.environ.get("HUB_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


def data_path(people: int, seed: int) -> str:
    """The standardised JSONL of `people` generated people (generated once, then reused)."""
    out = subprocess.run([sys.executable, os.path.join(HERE, "match_data.py"), "--people", str(people),
                          "--seed", str(seed)], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


async def fresh_database(name: str) -> str:
    """Drop and create a database; return its URL."""
    engine = create_async_engine(SERVER, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return SERVER.rsplit("/", 1)[0] + "/" + name


def read_batches(path: str, size: int):
    """(system, [RecordInput]) batches from standardised JSONL, the values given back as API attributes."""
    batch, system = [], None
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if row["system"] != system and batch:
                yield system, batch
                batch = []
            system = row["system"]
            batch.append(RecordInput(row["key"], {API_NAME[a]: row[a] for a in ATTRIBUTES if row.get(a)}))
            if len(batch) == size:
                yield system, batch
                batch = []
    if batch:
        yield system, batch


async def load(url: str, path: str, size: int, matched: bool = False) -> tuple[int, float]:
    """Register every record (deterministic rules only, or also the model); return the count and the seconds."""
    db, settings = Database(url), Settings(database_url=url, keys=os.environ["HUB_KEYS"])
    configure(settings)
    scorer = default_scorer() if matched else None
    started, n, systems = time.perf_counter(), 0, set()
    try:
        for system, batch in read_batches(path, size):
            if system not in systems:
                async with db.write() as session:
                    # the file holds standardised values: ISO dates, E.164 phones
                    await register_system(session=session, name=system, description=None, date_order="YMD",
                                          default_country=None, trust=50, actor="bench")
                systems.add(system)
            await register_batch(db=db, system=system, records=batch, actor="bench", settings=settings, scorer=scorer)
            n += len(batch)
            print(f"\rloaded {n} records ({n / (time.perf_counter() - started):.0f}/s)", end="", file=sys.stderr)
        async with db.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
    finally:
        await db.dispose()
    print(file=sys.stderr)
    return n, time.perf_counter() - started


def timed_rematch(url: str, *args: str) -> dict:
    """Run `hub rematch ARGS` under /usr/bin/time -v; return wall seconds, peak RSS and the command's JSON."""
    env = {**os.environ, "HUB_DATABASE_URL": url, "HUB_MATCH_MODEL": os.environ.get("HUB_MATCH_MODEL", "default")}
    hub = os.path.join(os.path.dirname(sys.executable), "hub")
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", hub, "rematch", *args], env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"hub rematch {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    stages = [ln for ln in proc.stderr.splitlines() if ln.startswith(("matching:", "model "))]
    return {"args": list(args), "wall_s": round(wall, 1), "peak_rss_gb": round(rss / 1024 ** 2, 2),
            "result": json.loads(proc.stdout.strip().splitlines()[-1]), "stages": stages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=5000, help="records per register_batch call when loading")
    ap.add_argument("--reuse", action="store_true", help="rematch the database of an earlier run as it is")
    ap.add_argument("--no-apply", action="store_true", help="only time the plan")
    ap.add_argument("--matched", action="store_true",
                    help="load through the real-time matching path with the shipped model (realistic case)")
    args = ap.parse_args()
    name = f"hub_rematch_bench_{args.people}_s{args.seed}" + ("_matched" if args.matched else "")
    report: dict = {"people": args.people, "matched": args.matched, "load_before": os.getloadavg()}
    if args.reuse:
        url = SERVER.rsplit("/", 1)[0] + "/" + name
    else:
        path = data_path(args.people, args.seed)
        url = asyncio.run(fresh_database(name))
        upgrade(url)
        n, seconds = asyncio.run(load(url, path, args.batch, args.matched))
        report["load"] = {"records": n, "seconds": round(seconds, 1), "per_second": round(n / seconds)}
    report["plan"] = timed_rematch(url)
    if not args.no_apply:
        report["plan_apply"] = timed_rematch(url, "--apply")
        report["again"] = timed_rematch(url)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
