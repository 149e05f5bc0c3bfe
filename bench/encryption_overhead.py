"""What encryption at rest costs registration: the same data loaded with it on and off, in-process.

Loads a `gen_customers.py` data set through `register_batch` (the path of registerRecords and `hub load`)
into a fresh database, once with HUB_ENCRYPTED_ATTRIBUTES on and once off (alternating, `--rounds` times),
then registers `--single` further records one call each. Reports wall time and this process's CPU time
(the CPU time is the steadier figure on a shared machine), plus the cost of sealing and opening one value.

    python ../shared/bench/gen_customers.py --people 3000 --seed 7 --out bench/data/cust3k
    python bench/encryption_overhead.py --data bench/data/cust3k [--pg postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.config import Settings
from hub.db import Database
from hub.ingest.matcher import default_scorer
from hub.ingest.records import RecordInput, register_batch
from hub.ingest.systems import register_system
from hub.ops.migrate import upgrade
from hub.privacy.keys import new_keyring
from hub.privacy.sealing import configure

KEYS = ";".join(new_keyring().to_text().splitlines()[1:])


def read_data(folder: str) -> tuple[list[dict], dict[str, list[RecordInput]]]:
    with open(os.path.join(folder, "systems.json")) as f:
        systems = json.load(f)
    records = {}
    for s in systems:
        with open(os.path.join(folder, f"{s['name']}.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        records[s["name"]] = [RecordInput(r["key"], r["attributes"], dt.datetime.fromisoformat(r["updatedAt"])
                                          if r.get("updatedAt") else None) for r in rows]
    return systems, records


async def _pg(server: str, sql: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


async def one_run(url: str, encrypted: frozenset[str], systems, records, single: int, batch: int) -> dict:
    settings = Settings(database_url=url, keys=KEYS, encrypted_attributes=encrypted)
    configure(settings)
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    scorer = default_scorer()
    try:
        async with db.write() as session:
            for s in systems:
                await register_system(session=session, name=s["name"], description=None, date_order=s["dateOrder"],
                                      default_country=s.get("defaultCountry"), trust=s["trust"], actor="bench")
        # the last `single` records of each system are sent one by one, after the bulk load
        per = max(1, single // len(records))
        bulk = {name: rows[:-per] for name, rows in records.items()}
        singles = [(name, r) for name, rows in records.items() for r in rows[-per:]]
        n = sum(map(len, bulk.values()))
        wall, cpu = time.perf_counter(), time.process_time()
        for name, rows in bulk.items():
            for i in range(0, len(rows), batch):
                await register_batch(db=db, system=name, records=rows[i:i + batch], actor="bench",
                                     settings=settings, scorer=scorer)
        bulk_wall, bulk_cpu = time.perf_counter() - wall, time.process_time() - cpu
        walls, cpus = [], []
        for name, r in singles:
            wall, cpu = time.perf_counter(), time.process_time()
            await register_batch(db=db, system=name, records=[r], actor="bench", settings=settings, scorer=scorer)
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
        return {"records": n, "bulk_records_per_s": round(n / bulk_wall, 1),
                "bulk_cpu_ms_per_record": round(bulk_cpu * 1000 / n, 3),
                "single_p50_ms": round(statistics.median(walls), 2),
                "single_cpu_p50_ms": round(statistics.median(cpus), 2)}
    finally:
        await db.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--pg", default=None, help="PostgreSQL server URL (a database is created per run); else SQLite")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--single", type=int, default=200)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    systems, records = read_data(args.data)
    ring = new_keyring()
    t = time.perf_counter()
    for _ in range(10000):
        ring.decrypt(ring.encrypt("1984-07-02", context="date_of_birth"), context="date_of_birth")
    print(f"seal + open one value: {(time.perf_counter() - t) * 100:.1f} us", file=sys.stderr)
    results: dict[str, list[dict]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for label, attrs in (("on", frozenset({"national_id", "date_of_birth"})), ("off", frozenset())):
            if args.pg:
                name = f"hub_encbench_{uuid.uuid4().hex[:8]}"
                await _pg(args.pg, f'CREATE DATABASE "{name}"')
                url = args.pg.rsplit("/", 1)[0] + "/" + name
            else:
                url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
            try:
                r = await one_run(url, attrs, systems, records, args.single, args.batch)
            finally:
                if args.pg:
                    await _pg(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(label, r, file=sys.stderr)
            results[label].append(r)
    summary = {label: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for label, runs in results.items()}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
