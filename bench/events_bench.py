"""Change events: outbox overhead on a bulk load, commit-to-delivery latency per way out, consumer speed.

  python bench/events_bench.py --records 10000 [--pg postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
                               [--port 8162] [--skip-overhead] [--skip-latency]

1. Overhead: the same synthetic records loaded in-process (register_batch, batches of 500, as `hub load`)
   into fresh PostgreSQL databases, with the outbox and with `seal_outbox` replaced by a no-op,
   alternated (A B A B) so that drift of the shared machine hits both.
2. Latency: a `hub serve` subprocess (publisher inside, NATS at 127.0.0.1:4222) on a fresh database;
   while the records are registered over HTTP (2 concurrent senders), three consumers follow: the
   websocket subscription (reader, served by a second `hub serve`), `hub events --follow` (a subprocess)
   and a NATS subscriber on the subjects `hub publish` (a third process) writes to. Latency = receive time - the change's committedAt (stamped as the outbox is sealed,
   just before the commit; one machine, one clock).
3. Throughput: once loaded, one consumer reading the whole stream: `hub events --after 0` and the
   websocket subscription from position 0.
Prints one JSON object. Needs the [test] extras (websockets, httpx) and nats-py.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from hub import db as hub_db  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.ops.migrate import upgrade  # noqa: E402

GIVEN = ["Anna", "Ben", "Carla", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Klara", "Leon"]
FAMILY = ["Berg", "Stone", "Meyer", "Schulz", "Novak", "Costa", "Larsen", "Moreau", "Rossi", "Weber"]
SUBSCRIBE = "subscription($after: Position) { customerChanged(after: $after) { position committedAt } }"
REGISTER = """mutation($system: String!, $records: [SourceRecordInput!]!) {
  registerRecords(system: $system, records: $records) { key action } }"""
SYSTEM = """mutation($input: SourceSystemInput!) { registerSourceSystem(input: $input) { name } }"""


def records(n: int, seed: int = 7) -> list[dict]:
    """Synthetic people; about one in seven is a second record of an earlier person (same email and birth date)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        if i > 10 and rnd.random() < 0.15:
            j = rnd.randrange(i)
            base = dict(out[j]["attributes"])
            base["phone"] = f"+49151{rnd.randrange(10**7):07d}"
        else:
            g, f = rnd.choice(GIVEN), rnd.choice(FAMILY)
            base = {"givenName": g, "familyName": f, "email": f"{g}.{f}.{i}@example.org".lower(),
                    "dateOfBirth": f"{rnd.randrange(1940, 2005)}-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}",
                    "locality": "Berlin", "country": "DE", "nationalId": f"{rnd.randrange(10**9):09d}"}
        out.append({"key": f"R{i}", "attributes": base})
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


async def _admin(server: str, sql: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


async def fresh_db(server: str) -> str:
    name = f"hub_bench_events_{uuid.uuid4().hex[:8]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(upgrade, url)
    return url


async def drop_db(server: str, url: str) -> None:
    await _admin(server, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


# --- 1. overhead ----------------------------------------------------------------------------------------

async def load_in_process(url: str, data: list[dict], batch: int) -> float:
    from hub.ingest.matcher import default_scorer
    from hub.ingest.records import RecordInput, register_batch
    from hub.ingest.systems import register_system

    database = hub_db.Database(url)
    settings = Settings(database_url=url)
    scorer = default_scorer()
    async with database.write() as session:
        await register_system(session=session, name="crm", description=None, date_order="YMD",
                              default_country="DE", trust=50, actor="bench")
    started = time.perf_counter()
    for i in range(0, len(data), batch):
        chunk = [RecordInput(r["key"], r["attributes"]) for r in data[i:i + batch]]
        await register_batch(db=database, system="crm", records=chunk, actor="bench", settings=settings,
                             scorer=scorer)
    seconds = time.perf_counter() - started
    await database.dispose()
    return seconds


async def overhead(server: str, data: list[dict], batch: int, rounds: int) -> dict:
    real = hub_db.seal_outbox
    sealing = [0.0]

    async def no_outbox(session, mark):
        return None

    async def timed(session, mark):
        # the outbox's own cost, measured where it is paid (the load's total is noisy on a shared machine)
        t0 = time.perf_counter()
        await real(session, mark)
        sealing[0] += time.perf_counter() - t0

    timings: dict[str, list[float]] = {"with_outbox": [], "without_outbox": []}
    for _ in range(rounds):
        for label, seal in (("with_outbox", timed), ("without_outbox", no_outbox)):
            hub_db.seal_outbox = seal
            url = await fresh_db(server)
            try:
                timings[label].append(await load_in_process(url, data, batch))
            finally:
                hub_db.seal_outbox = real
                await drop_db(server, url)
    best = {k: min(v) for k, v in timings.items()}
    return {"records": len(data), "seconds": {k: [round(x, 2) for x in v] for k, v in timings.items()},
            "records_per_s": {k: round(len(data) / v) for k, v in best.items()},
            "overhead_pct": round(100 * (best["with_outbox"] / best["without_outbox"] - 1), 1),
            "sealing_seconds_per_load": round(sealing[0] / rounds, 3),
            "sealing_pct_of_load": round(100 * sealing[0] / sum(timings["with_outbox"]), 2)}


# --- 2. latency and 3. throughput -------------------------------------------------------------------------

def received(committed_at: str) -> float:
    return time.time() - dt.datetime.fromisoformat(committed_at).timestamp()


async def follow_subscription(port: int, token: str, after: int, until: int, out: list[float]) -> float:
    import websockets

    started = time.perf_counter()
    async with websockets.connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"],
                                  max_size=None) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        json.loads(await ws.recv())
        await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": SUBSCRIBE, "variables": {"after": after}}}))
        while True:
            msg = json.loads(await ws.recv())
            change = msg["payload"]["data"]["customerChanged"]
            out.append((change["position"], received(change["committedAt"])))
            if change["position"] >= until:
                return time.perf_counter() - started


async def follow_cli(env: dict, out: list, stop: asyncio.Event) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hub.cli", "events", "--follow", "--after", "0",
                                                env=env, stdout=asyncio.subprocess.PIPE, limit=2**24)

    async def read() -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            change = json.loads(line)
            out.append((change["position"], received(change["committedAt"])))

    reading = asyncio.create_task(read())
    await stop.wait()
    proc.kill()
    await proc.wait()
    reading.cancel()


async def follow_nats(subject: str, out: list, ready: asyncio.Event, stop: asyncio.Event) -> None:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    async def on_message(msg) -> None:
        change = json.loads(msg.data)
        out.append((change["position"], received(change["committedAt"])))

    # a core subscription sees what JetStream stores on the subjects, as it is stored
    await nc.subscribe(f"{subject}.>", cb=on_message)
    ready.set()
    await stop.wait()
    await nc.close()


async def latency(server: str, data: list[dict], port: int, http_batch: int) -> dict:
    url = await fresh_db(server)
    tag = uuid.uuid4().hex[:6]
    stream, subject = f"HUB_BENCH_{tag}", f"hubbench.{tag}"
    env = {**os.environ, "HUB_DATABASE_URL": url, "HUB_NATS_STREAM": stream,
           "HUB_NATS_SUBJECT": subject, "HUB_PUBLISH_ROLE": "reader"}
    # as deployed for a bulk load: registrations on one server process, subscriptions on another (CPU-bound
    # registration work runs on its process's event loop), the broker publisher as `hub publish`
    procs = [subprocess.Popen([sys.executable, "-m", "hub.cli", *cmd], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for cmd in (["serve", "--port", str(port)], ["serve", "--port", str(port + 1)], ["publish"])]
    try:
        admin = subprocess.run([sys.executable, "-m", "hub.cli", "token", "create", "--subject", "bench",
                                "--role", "admin"], env=env, capture_output=True, text=True, check=True).stdout.strip()
        reader = subprocess.run([sys.executable, "-m", "hub.cli", "token", "create", "--subject", "app",
                                 "--role", "reader"], env=env, capture_output=True, text=True, check=True).stdout.strip()
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/graphql", timeout=600,
                                   headers={"Authorization": f"Bearer {admin}"})
        for p in (port, port + 1):
            for _ in range(600):
                try:
                    if (await client.get(f"http://127.0.0.1:{p}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        await client.post("", json={"query": SYSTEM, "variables": {"input": {"name": "crm", "defaultCountry": "DE"}}})
        lat = {"subscription": [], "json_lines": [], "nats": []}
        stop, nats_ready = asyncio.Event(), asyncio.Event()
        sub_task = asyncio.create_task(follow_subscription(port + 1, reader, 0, 10**18, lat["subscription"]))
        cli_task = asyncio.create_task(follow_cli(env, lat["json_lines"], stop))
        nats_task = asyncio.create_task(follow_nats(subject, lat["nats"], nats_ready, stop))
        await nats_ready.wait()
        await asyncio.sleep(1.0)
        queue = [data[i:i + http_batch] for i in range(0, len(data), http_batch)]
        started = time.perf_counter()

        async def sender() -> None:
            while queue:
                chunk = queue.pop(0)
                body = (await client.post("", json={"query": REGISTER,
                                                    "variables": {"system": "crm", "records": chunk}})).json()
                if body.get("errors"):
                    raise RuntimeError(str(body["errors"])[:300])

        await asyncio.gather(sender(), sender())
        print(f"loaded {len(data)} records", file=sys.stderr)
        load_seconds = time.perf_counter() - started
        last = (await client.post("", json={"query": "{ eventStream { head } }"})).json()["data"]["eventStream"]["head"]
        for _ in range(1200):
            if all(v and max(p for p, _ in v) >= last for v in lat.values()):
                break
            await asyncio.sleep(0.1)
        stop.set()
        sub_task.cancel()
        await asyncio.gather(cli_task, nats_task, sub_task, return_exceptions=True)
        duplicates = {k: len(v) - len({p for p, _ in v}) for k, v in lat.items()}
        lat = {k: [x for _, x in v] for k, v in lat.items()}
        # 3. throughput: one consumer reading everything from the start
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "hub.cli", "events", "--after", "0"], env=env,
                             capture_output=True, check=True).stdout
        cli_seconds = time.perf_counter() - t0
        n_cli = out.count(b"\n")
        sub_seconds = await follow_subscription(port + 1, reader, 0, last, [])
        await client.aclose()
        return {"load_seconds": round(load_seconds, 1), "records_per_s": round(len(data) / load_seconds),
                "changes": last, "duplicates": duplicates,
                "latency_ms": {k: {"n": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99), "max": pct(v, 1.0)}
                               for k, v in lat.items()},
                "consumer_changes_per_s": {"json_lines": round(n_cli / cli_seconds),
                                           "subscription": round(last / sub_seconds)}}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        import nats

        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            await nc.jetstream().delete_stream(stream)
        except Exception:  # noqa: BLE001
            pass
        await nc.close()
        await drop_db(server, url)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=10000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--pg", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--port", type=int, default=8162, help="and the next one")
    p.add_argument("--http-batch", type=int, default=100, help="records per registerRecords call")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    args = p.parse_args()
    data = records(args.records)
    result = {}
    if not args.skip_latency:
        result["latency"] = await latency(args.pg, data, args.port, args.http_batch)
    if not args.skip_overhead:
        result["overhead"] = await overhead(args.pg, data, args.batch, args.rounds)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
