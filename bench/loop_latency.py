"""How long /healthz waits while the hub works: does any allowed request block the event loop?

Starts `hub serve` (one worker) on a fresh PostgreSQL database (or SQLite with --sqlite), loads people
through registerRecords, then polls /healthz every 10 ms while, over and over, a reader runs the costliest
query the cost limit allows (the largest page of customers with every attribute it may read, lineage,
source records and history) and an admin registers a batch of 5000 new records. Prints /healthz p50/p99/max, idle
and under load, and what the load achieved.

    python bench/loop_latency.py [--port 8115] [--people 3000] [--seconds 30] [--sqlite]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphql import parse  # noqa: E402

from hub.config import Settings  # noqa: E402
from schema.build import build_schema  # noqa: E402
from schema.cost import query_cost  # noqa: E402

PG = os.environ.get("HUB_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
READER_ATTRS = "givenName familyName email phone addressLine1 addressLine2 locality postcode region country"
REGISTER = """mutation($s: String!, $r: [SourceRecordInput!]!) { registerRecords(system: $s, records: $r) {
  key action customer { id } } }"""
GIVEN = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jon", "Kim", "Lea", "Max", "Nia"]
FAMILY = ["Smith", "Jones", "O'Neil", "Patel", "Nguyen", "Garcia", "van den Berg", "Kowalski", "Okafor", "Lee"]


def costliest_reader_page(limit: int) -> tuple[str, int]:
    """The costliest reader page the limit allows: the largest page of customers with lineage and source
    records, then the longest history that still fits."""
    schema = build_schema(Settings())._schema
    best = ("", 0)
    for first in range(1000, 0, -50):
        for history in range(1, 1001, 5):
            query = (f"{{ customers(first: {first}) {{ edges {{ node {{ id version {READER_ATTRS} "
                     f"lineage {{ field value rule sourceRecord {{ system key }} }} "
                     f"sourceRecords {{ system key {READER_ATTRS} }} "
                     f"history(first: {history}) {{ kind at actor changes }} }} }} }} }}")
            cost = query_cost(schema, parse(query), None, {})
            if cost > limit:
                break
            if cost > best[1]:
                best = (query, cost)
        if best[1]:
            return best
    return best


def people(n: int, start: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(start, start + n):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        out.append({"key": f"P-{i}", "attributes": {
            "givenName": given, "familyName": f"{family}{i}", "email": f"{given}.{i}@example.org".lower(),
            "phone": f"+4420794{i % 100000:05d}", "dateOfBirth": f"19{50 + i % 50}-0{1 + i % 9}-1{i % 10}",
            "addressLine1": f"{i} High Street", "locality": "London", "postcode": "SW1A 1AA", "country": "GB"}})
    return out


def hub(args: list[str], env: dict) -> str:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8115)
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="loop_latency_")
    if args.sqlite:
        url = f"sqlite+aiosqlite:///{tmp}/hub.db"
    else:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine
        name = f"hub_loop_{uuid.uuid4().hex[:8]}"
        admin_engine = create_async_engine(PG, isolation_level="AUTOCOMMIT")
        async with admin_engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG.rsplit("/", 1)[0] + "/" + name
    env = {**os.environ, "HUB_DATABASE_URL": url, "HUB_LOG_LEVEL": "WARNING"}
    hub(["migrate"], env)
    admin_token = hub(["token", "create", "--subject", "bench", "--role", "admin"], env)
    reader_token = hub(["token", "create", "--subject", "web", "--role", "reader"], env)
    server = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--port", str(args.port)], env=env)
    base = f"http://127.0.0.1:{args.port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=300) as client:
            for _ in range(600):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            admin = {"Authorization": f"Bearer {admin_token}"}
            reader = {"Authorization": f"Bearer {reader_token}"}
            for system in ("crm", "billing"):
                await client.post("/graphql", headers=admin, json={"query": "mutation { registerSourceSystem(input: "
                                  f'{{name: "{system}", dateOrder: YMD, trust: 50}}) {{ name }} }}'})
            rng = random.Random(7)
            for system in ("crm", "billing"):  # each person in both systems: 2 source records per customer
                for start in range(0, args.people, 5000):
                    batch = people(min(5000, args.people - start), start, rng)
                    r = await client.post("/graphql", headers=admin, json={"query": REGISTER,
                                          "variables": {"s": system, "r": batch}})
                    assert not r.json().get("errors"), r.text[:500]
            query, cost = costliest_reader_page(Settings().max_query_cost)

            samples: list[float] = []

            async def poll(until: float) -> None:
                while time.perf_counter() < until:
                    t = time.perf_counter()
                    await client.get("/healthz")
                    samples.append((time.perf_counter() - t) * 1000)
                    await asyncio.sleep(0.01)

            def summary(values: list[float]) -> str:
                q = statistics.quantiles(values, n=100)
                return f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(values):.1f} ms ({len(values)} probes)"

            await poll(time.perf_counter() + 3)
            idle = list(samples)
            samples.clear()
            stats = {"reads": 0, "read_bytes": 0, "read_s": 0.0, "batches": 0, "batch_s": 0.0}
            end = time.perf_counter() + args.seconds

            async def read_loop() -> None:
                while time.perf_counter() < end:
                    t = time.perf_counter()
                    r = await client.post("/graphql", headers=reader, json={"query": query})
                    assert r.status_code == 200 and r.json()["data"]["customers"], r.text[:300]
                    stats["reads"] += 1
                    stats["read_bytes"] += len(r.content)
                    stats["read_s"] += time.perf_counter() - t

            async def write_loop() -> None:
                n = 10 ** 7
                while time.perf_counter() < end:
                    batch = people(5000, n, rng)
                    n += 5000
                    t = time.perf_counter()
                    r = await client.post("/graphql", headers=admin, json={"query": REGISTER,
                                          "variables": {"s": "crm", "r": batch}})
                    assert not r.json().get("errors"), r.text[:300]
                    stats["batches"] += 1
                    stats["batch_s"] += time.perf_counter() - t

            await asyncio.gather(poll(end), read_loop(), write_loop())
            print(f"database: {'SQLite' if args.sqlite else 'PostgreSQL'}; {args.people} people x 2 systems loaded")
            print(f"reader query: cost {cost} of {Settings().max_query_cost}: {stats['reads']} runs, "
                  f"{stats['read_s'] / max(1, stats['reads']):.2f} s and "
                  f"{stats['read_bytes'] / max(1, stats['reads']) / 1e6:.1f} MB each")
            print(f"5000-record batches: {stats['batches']} runs, {stats['batch_s'] / max(1, stats['batches']):.2f} s each")
            print(f"/healthz idle:       {summary(idle)}")
            print(f"/healthz under load: {summary(samples)}")
    finally:
        server.terminate()
        server.wait(30)
        if not args.sqlite:
            async with admin_engine.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await admin_engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
