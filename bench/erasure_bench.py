"""Time one erasure of a customer with 10 source records in a hub holding N records.

Loading a million records through `hub load` takes a quarter of an hour on this machine, so the bulk is
synthesised with SQL straight into the tables (golden records of 3 records each, their blocking keys,
lineage and a CREATED event each; every index in place, ANALYZEd). The customers erased are then
registered through the hub's own registration path (10 systems, linked by email + date of birth), given
a steward override, and erased by `erase_customer` in one write transaction, as the mutation does.

  python bench/erasure_bench.py --records 1000000                       # PostgreSQL at 127.0.0.1:5432
  python bench/erasure_bench.py --records 1000000 --sqlite /tmp/bench.db

Prints one JSON object: the sizes, the fill time, and each erasure's milliseconds with their median.
The database is created for the run and dropped afterwards (PostgreSQL) unless --keep.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.config import Settings
from hub.db import Database
from hub.ingest.records import RecordInput, register_batch
from hub.ops.migrate import upgrade_async
from hub.privacy.erasure import erase_customer
from hub.privacy.keys import new_keyring
from hub.steward.stewardship import override_attribute

SYSTEMS = [f"s{i}" for i in range(10)]


def _fill_sql(sqlite: bool) -> list[str]:
    """Statements that synthesise :n source records (golden records of 3), keys, lineage and events."""
    series = ("WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n}) SELECT i FROM g"
              if sqlite else "SELECT i FROM generate_series(1, {n}) AS g(i)")
    obj = "json_object" if sqlite else "json_build_object"
    now = "'2026-01-01 00:00:00'" if sqlite else "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
    return [
        f"INSERT INTO customer (id, status, version, created_at, updated_at, given_name, family_name, email, "
        f"date_of_birth, postcode) SELECT i, 'ACTIVE', 1, {now}, {now}, 'Given' || i, 'Family' || (i % 50000), "
        f"'person' || i || '@bench.example', '1980-01-01', 'PC' || (i % 9999) FROM ({series.format(n='{c}')}) AS s",
        f"INSERT INTO source_record (id, system, key, customer_id, raw, content_hash, updated_at, received_at, "
        f"given_name, family_name, email, date_of_birth, postcode) SELECT i, 's' || (i % 10), 'K' || i, "
        f"(i - 1) / 3 + 1, {obj}('givenName', 'Given' || ((i - 1) / 3 + 1), 'email', 'person' || ((i - 1) / 3 + 1) "
        f"|| '@bench.example'), 'h' || i, {now}, {now}, 'Given' || ((i - 1) / 3 + 1), "
        f"'Family' || (((i - 1) / 3 + 1) % 50000), 'person' || ((i - 1) / 3 + 1) || '@bench.example', '1980-01-01', "
        f"'PC' || (((i - 1) / 3 + 1) % 9999) FROM ({series.format(n='{n}')}) AS s",
        f"INSERT INTO blocking_key (key, source_record_id) SELECT 'e:person' || ((i - 1) / 3 + 1), i "
        f"FROM ({series.format(n='{n}')}) AS s",
        f"INSERT INTO blocking_key (key, source_record_id) SELECT 'n:' || (((i - 1) / 3 + 1) % 50000) || ':' || i, i "
        f"FROM ({series.format(n='{n}')}) AS s",
        f"INSERT INTO lineage (customer_id, field, value, source_record_id, rule) SELECT i, 'email', "
        f"'person' || i || '@bench.example', 3 * i - 2, 'most-recent' FROM ({series.format(n='{c}')}) AS s",
        f"INSERT INTO lineage (customer_id, field, value, source_record_id, rule) SELECT i, 'givenName', "
        f"'Given' || i, 3 * i - 2, 'source-trust' FROM ({series.format(n='{c}')}) AS s",
        f"INSERT INTO event (customer_id, kind, at, actor, changes) SELECT i, 'CREATED', {now}, 'bench', "
        f"{obj}('fields', {obj}('email', 'person' || i || '@bench.example'), 'version', 1) "
        f"FROM ({series.format(n='{c}')}) AS s",
    ]


async def fill(db: Database, n: int) -> float:
    """Synthesise the bulk; return seconds."""
    started = time.perf_counter()
    c = (n + 2) // 3
    async with db.engine.begin() as conn:
        for name in SYSTEMS:
            await conn.execute(text("INSERT INTO source_system (name, date_order, trust, record_count, created_at) "
                                    "VALUES (:n, 'YMD', 50, 0, '2026-01-01')"), {"n": name})
        for stmt in _fill_sql(db.sqlite):
            await conn.execute(text(stmt.replace("{n}", str(n)).replace("{c}", str(c))))
        if not db.sqlite:
            await conn.execute(text("SELECT setval(pg_get_serial_sequence('customer', 'id'), :c)"), {"c": c})
            await conn.execute(text("SELECT setval(pg_get_serial_sequence('source_record', 'id'), :n)"), {"n": n})
        await conn.execute(text("UPDATE source_system SET record_count = :k"), {"k": n // 10})
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


async def person(db: Database, settings: Settings, i: int) -> int:
    """Register one person in each of the 10 systems (linked by email + birth date); return the golden id."""
    ids = set()
    for name in SYSTEMS:
        [r] = await register_batch(db=db, system=name, actor="bench", settings=settings, records=[RecordInput(
            f"P{i}-{name}", {"givenName": "Erin", "familyName": f"Vale{i}", "email": f"erin.vale{i}@x.org",
                             "dateOfBirth": "1975-06-0" + str(1 + i % 9), "phone": f"+1415555{1000 + i}",
                             "addressLine1": f"{i} Birch Road"})])
        ids.add(r.customer_id)
    assert len(ids) == 1, ids
    [cid] = ids
    async with db.write() as session:
        await override_attribute(session=session, customer_id=cid, field="locality", value="Springfield",
                                 actor="bench", note="bench")
    return cid


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--erasures", type=int, default=5)
    ap.add_argument("--pg", default=os.environ.get("HUB_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--sqlite", default=None, help="a SQLite file to create instead of a PostgreSQL database")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    name = f"hub_erasure_bench_{uuid.uuid4().hex[:8]}"
    if args.sqlite:
        url = f"sqlite+aiosqlite:///{args.sqlite}"
    else:
        admin = create_async_engine(args.pg, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.pg.rsplit("/", 1)[0] + "/" + name
    await upgrade_async(url)
    keys = new_keyring().to_text().replace("\n", ";")
    settings = Settings(database_url=url, keys=keys, match_model="off")
    db = Database(url)
    try:
        fill_s = await fill(db, args.records)
        people = [await person(db, settings, i) for i in range(args.erasures)]
        timings, statements = [], []

        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info["started"] = time.perf_counter()

        def after(conn, cursor, statement, parameters, context, executemany):
            statements.append((round((time.perf_counter() - conn.info["started"]) * 1000, 2),
                               " ".join(statement.split())[:90]))

        event.listen(db.engine.sync_engine, "before_cursor_execute", before)
        event.listen(db.engine.sync_engine, "after_cursor_execute", after)
        for cid in people:
            statements.clear()
            started = time.perf_counter()
            async with db.write() as session:
                await erase_customer(session=session, customer_id=cid, actor="bench", note="bench", settings=settings)
            timings.append(round((time.perf_counter() - started) * 1000, 1))
        print(json.dumps({"database": "sqlite" if args.sqlite else "postgresql", "records": args.records,
                          "golden": (args.records + 2) // 3, "blocking_keys": 2 * args.records, "fill_s": round(fill_s, 1),
                          "erasure_ms": timings, "median_ms": statistics.median(timings),
                          "records_per_erasure": 10, "statements_last": len(statements),
                          "slowest_statements_last": sorted(statements, reverse=True)[:5]}))
    finally:
        await db.dispose()
        if not args.sqlite and not args.keep:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
