#!/usr/bin/env python3
"""Authorization overhead: a page of customers read as `reader` against the same page read as `admin`.

Loads ~2,000 golden records (three systems, most people in more than one) into a fresh PostgreSQL
database through hub.ingest.records.register_batch, then times `customers(first: 500)` with every person
attribute, lineage and source records, through the ASGI app in-process, alternating the two roles.

  python bench/authz_overhead.py                         # 2,000 customers, page 500, 30 rounds
  python bench/authz_overhead.py --rounds 60 --profile   # and a pyinstrument profile of one reader page
  python bench/authz_overhead.py --audit                 # admin reads with the read audit on vs off

--audit: the admin's page (every value sensitive to the audit: national id and date of birth on the golden
record, its lineage and its source records, some 3,700 audit entries a page) and one customer read alone,
with HUB_READ_AUDIT on and off, alternating; the audit's background flushes run meanwhile, as in service.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import sys
import time
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from authz import Authorizer  # noqa: E402
from hub.golden.attributes import API_NAME  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.db import Database  # noqa: E402
from hub.ops.migrate import upgrade  # noqa: E402
from hub.ingest.records import RecordInput, register_batch  # noqa: E402
from hub.ingest.systems import register_system  # noqa: E402
from hub.access.tokens import create_token  # noqa: E402
from schema.app import build_services, create_app  # noqa: E402
from hub.privacy.keys import new_keyring
from hub.privacy.sealing import configure

# the benchmark database's own keys (encryption at rest is on, as by default); subprocesses inherit them
os.environ.setdefault("HUB_KEYS", ";".join(new_keyring().to_text().splitlines()[1:]))

ATTRS = " ".join(API_NAME.values())
PAGE = f"""query($first: Int!) {{ customers(first: $first) {{ edges {{ node {{ id version {ATTRS}
  lineage {{ field value rule sourceRecord {{ system key }} }}
  sourceRecords {{ system key {ATTRS} }} }} }} }} }}"""
GIVEN = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jon", "Kim", "Lea", "Max", "Nia"]
FAMILY = ["Smith", "Jones", "O'Neil", "Patel", "Nguyen", "Garcia", "van den Berg", "Kowalski", "Okafor", "Lee"]
STREETS = ["High Street", "Station Road", "Church Lane", "Mill Road", "Park Avenue"]


def person(n: int, rng: random.Random) -> dict[str, str]:
    """Every person attribute of person n, in the form a source system would send them."""
    born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(18000))
    return {"givenName": rng.choice(GIVEN), "familyName": rng.choice(FAMILY), "dateOfBirth": born.isoformat(),
            "email": f"person{n}@example.org", "phone": f"020 7946 {n % 10000:04d}",
            "addressLine1": f"{n % 200 + 1} {rng.choice(STREETS)}", "addressLine2": f"Flat {n % 9 + 1}",
            "locality": "London", "postcode": "SW1A 1AA", "region": "Greater London", "country": "GB",
            "nationalId": f"{n % 1000:03d}-{n % 100:02d}-{n:04d}"}


def records(people: int, seed: int) -> dict[str, list[RecordInput]]:
    """Each person in crm; about half also in billing, a quarter in shop (linked by email + birth date)."""
    rng = random.Random(seed)
    out: dict[str, list[RecordInput]] = {"crm": [], "billing": [], "shop": []}
    for n in range(people):
        p = person(n, rng)
        out["crm"].append(RecordInput(f"C{n}", p))
        if rng.random() < 0.5:
            out["billing"].append(RecordInput(f"B{n}", {**p, "phone": f"020 7946 {(n + 7) % 10000:04d}"}))
        if rng.random() < 0.25:
            out["shop"].append(RecordInput(f"S{n}", {k: v for k, v in p.items() if k != "nationalId"}))
    return out


async def _server(server: str, sql: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def load(db: Database, people: int, seed: int) -> dict[str, str]:
    """Register the systems and records; return a token per role."""
    settings = Settings(database_url=db.url, keys=os.environ["HUB_KEYS"])
    configure(settings)
    async with db.write() as session:
        for name, trust in (("crm", 80), ("billing", 90), ("shop", 50)):
            await register_system(session=session, name=name, description=None, date_order="YMD",
                                  default_country="GB", trust=trust, actor="bench")
    for system, batch in records(people, seed).items():
        for i in range(0, len(batch), 1000):
            await register_batch(db=db, system=system, records=batch[i:i + 1000], actor="bench", settings=settings)
    async with db.write() as session:
        return {role: await create_token(session=session, subject=f"bench-{role}", role=role)
                for role in ("admin", "reader")}


async def page(client: httpx.AsyncClient, token: str, first: int) -> tuple[float, dict]:
    """Time one page; return the seconds and the body."""
    t0 = time.perf_counter()
    r = await client.post("/graphql", json={"query": PAGE, "variables": {"first": first}},
                          headers={"Authorization": f"Bearer {token}"})
    elapsed = time.perf_counter() - t0
    return elapsed, r.json()


def summary(name: str, times: list[float]) -> str:
    q = statistics.quantiles(times, n=4)
    return (f"{name:<7} median {statistics.median(times) * 1000:7.1f} ms   p25 {q[0] * 1000:7.1f}   "
            f"p75 {q[2] * 1000:7.1f}   min {min(times) * 1000:7.1f}   max {max(times) * 1000:7.1f}")


async def measure(db: Database, tokens: dict[str, str], first: int, rounds: int, profile: bool) -> None:
    services = build_services(Settings(database_url=db.url, keys=os.environ["HUB_KEYS"]), db=db, authorizer=Authorizer())
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub",
                                 timeout=120) as client:
        for role in ("admin", "reader"):  # warm-up: caches, pool, memo
            for _ in range(3):
                _, body = await page(client, tokens[role], first)
        edges = body["data"]["customers"]["edges"]
        print(f"page: {len(edges)} customers, {sum(len(e['node']['sourceRecords']) for e in edges)} source records, "
              f"{sum(len(e['node']['lineage']) for e in edges)} lineage rows; reader errors: "
              f"{sorted(e['message'] for e in body.get('errors', []))}")
        times: dict[str, list[float]] = {"admin": [], "reader": []}
        for i in range(rounds):
            order = ("admin", "reader") if i % 2 == 0 else ("reader", "admin")
            for role in order:
                times[role].append((await page(client, tokens[role], first))[0])
        ratios = [r / a for a, r in zip(times["admin"], times["reader"], strict=True)]
        print(summary("admin", times["admin"]))
        print(summary("reader", times["reader"]))
        med_a, med_r = statistics.median(times["admin"]), statistics.median(times["reader"])
        q = statistics.quantiles(ratios, n=4)
        print(f"overhead (median reader / median admin - 1): {(med_r / med_a - 1) * 100:+.1f}%   "
              f"per-round ratio median {(statistics.median(ratios) - 1) * 100:+.1f}% "
              f"(p25 {(q[0] - 1) * 100:+.1f}%, p75 {(q[2] - 1) * 100:+.1f}%)")
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="enabled")
            profiler.start()
            await page(client, tokens["reader"], first)
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))


ONE = f"""query($id: ID!) {{ customer(id: $id) {{ id version {ATTRS}
  lineage {{ field value rule sourceRecord {{ system key }} }}
  sourceRecords {{ system key {ATTRS} }} }} }}"""


async def measure_audit(db: Database, tokens: dict[str, str], first: int, rounds: int) -> None:
    """Admin reads with the read audit on and off: a page of `first` customers, and single customers."""
    import dataclasses

    base = Settings(database_url=db.url)
    apps = {name: build_services(dataclasses.replace(base, read_audit=on), db=db, authorizer=Authorizer())
            for name, on in (("on", True), ("off", False))}
    clients = {name: httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(s)), base_url="http://hub",
                                       timeout=120) for name, s in apps.items()}
    headers = {"Authorization": f"Bearer {tokens['admin']}"}

    async def one(client: httpx.AsyncClient, cid: int) -> float:
        t0 = time.perf_counter()
        r = await client.post("/graphql", json={"query": ONE, "variables": {"id": str(cid)}}, headers=headers)
        assert r.status_code == 200 and not r.json().get("errors")
        return time.perf_counter() - t0

    try:
        for name in apps:  # warm-up
            for _ in range(3):
                await page(clients[name], tokens["admin"], first)
        pages: dict[str, list[float]] = {"on": [], "off": []}
        singles: dict[str, list[float]] = {"on": [], "off": []}
        rng = random.Random(1)
        for i in range(rounds):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            for name in order:
                pages[name].append((await page(clients[name], tokens["admin"], first))[0])
            for _ in range(20):
                cid = rng.randrange(1, 1500)
                for name in order:
                    singles[name].append(await one(clients[name], cid))
        entries = apps["on"].audit.pending
        await apps["on"].audit.flush()
        # this process's CPU time for blocks of pages, the audit's writes included (flushed at the end of
        # each "on" block): steadier than wall time on a shared machine
        cpu: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(max(rounds // 2, 2)):
            for name in (("on", "off") if i % 2 == 0 else ("off", "on")):
                t0 = time.process_time()
                for _ in range(5):
                    await page(clients[name], tokens["admin"], first)
                await apps[name].audit.flush()
                cpu[name].append((time.process_time() - t0) / 5)
        written = apps["on"].audit.pending
        for name in ("on", "off"):
            await apps[name].audit.close()
        print(f"audit entries still queued at the end of the timed rounds: {entries}; after the CPU rounds: {written}")
        for label, times in (("page", pages), ("one", singles), ("page-cpu", cpu)):
            print(summary(f"{label}/on", times["on"]))
            print(summary(f"{label}/off", times["off"]))
            on, off = statistics.median(times["on"]), statistics.median(times["off"])
            print(f"{label}: audit on vs off, median {(on / off - 1) * 100:+.1f}%")
    finally:
        for c in clients.values():
            await c.aclose()


async def run(args: argparse.Namespace) -> None:
    name = args.database or f"hub_bench_authz_{uuid.uuid4().hex[:8]}"
    url = args.server.rsplit("/", 1)[0] + "/" + name
    await _server(args.server, f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        t0 = time.perf_counter()
        tokens = await load(db, args.customers, args.seed)
        print(f"loaded {args.customers} people into {name} in {time.perf_counter() - t0:.1f} s")
        if args.audit:
            await measure_audit(db, tokens, args.page, args.rounds)
        else:
            await measure(db, tokens, args.page, args.rounds, args.profile)
        await db.dispose()
    finally:
        if not args.keep:
            await _server(args.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
                    help="a PostgreSQL server URL; a fresh database is created on it and dropped after")
    ap.add_argument("--database", default=None, help="name of the fresh database (default: random)")
    ap.add_argument("--customers", type=int, default=2000)
    ap.add_argument("--page", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=30, help="timed pages per role")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="print a pyinstrument profile of one reader page")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--audit", action="store_true", help="admin reads with the read audit on vs off instead")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
