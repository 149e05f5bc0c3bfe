"""Drive a hub with a generated data set through the public GraphQL API and measure it.

Steps (each one's figures go into the result dict, see README "Benchmarks"):
1. register the data set's source systems;
2. bulk load: every record but `single` held back, shuffled, in batches of one system, `concurrency`
   batches in flight; the time line of records loaded against elapsed time shows how the rate
   changes as the hub grows;
3. the held-back records arrive one at a time: first a findCustomers search with the record's
   standardised attributes (search latency, and the probabilities of true and false golden records
   for the report's distribution and threshold curves), then registerRecords with that one record;
4. every source record's golden record is read back (sourceRecords pages) and the clustering scored;
5. full golden-record reads (attributes, lineage, source records) of random customers;
6. the review queue: pending candidates, labelled by the truth; a perfect steward resolves up to
   `steward` of them (MERGE when the two hold the same person, else NOT_A_MATCH), timed per decision,
   and the clustering is scored again.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from hub.bench.generate import read_records, read_systems, read_truth
from hub.bench.score import percentiles, score_clusters, threshold_curve

ATTRS = ("givenName familyName dateOfBirth email phone addressLine1 addressLine2 "
         "locality postcode region country nationalId")
SYSTEM = "mutation($input: SourceSystemInput!) { registerSourceSystem(input: $input) { name } }"
SYSTEMS = "{ sourceSystems { name recordCount } }"
REGISTER = """mutation($system: String!, $records: [SourceRecordInput!]!) {
  registerRecords(system: $system, records: $records) { key action matchProbability customer { id } } }"""
PAGE = """query($system: String!, $after: String) { sourceRecords(system: $system, first: 1000, after: $after) {
  edges { node { key customer { id } } } pageInfo { hasNextPage endCursor } } }"""
READ = ("query($id: ID!) { customer(id: $id) { id version %s lineage { field value rule sourceRecord { system key } }"
        " sourceRecords { system key %s } } }" % (ATTRS, ATTRS))
SEARCH = """query($a: CustomerAttributesInput!) { findCustomers(attributes: $a, first: 10) {
  matchProbability customer { id sourceRecords { system key } } } }"""
CANDIDATES = """query($after: String) { matchCandidates(status: PENDING, first: 500, after: $after) {
  edges { node { id matchProbability customer { sourceRecords { system key } }
                 otherCustomer { sourceRecords { system key } } } }
  pageInfo { hasNextPage endCursor } } }"""
RESOLVE = "mutation($id: ID!, $d: MatchDecision!) { resolveMatchCandidate(id: $id, decision: $d, note: \"hub bench\") { status } }"


class HubError(RuntimeError):
    """A GraphQL error from the hub under test, with its extensions.code."""

    def __init__(self, message: str, code: str | None):
        super().__init__(message)
        self.code = code


class Client:
    """A GraphQL client of one hub; raises HubError on any error in the answer."""

    def __init__(self, url: str, token: str, connections: int = 8):
        import httpx

        self.http = httpx.AsyncClient(base_url=url, timeout=900, headers={"Authorization": f"Bearer {token}"},
                                      limits=httpx.Limits(max_connections=connections))

    async def gql(self, query: str, **variables) -> dict:
        r = await self.http.post("", json={"query": query, "variables": variables})
        try:
            body = r.json()
        except ValueError:
            raise HubError(f"HTTP {r.status_code}: {r.text[:300]}", None) from None
        if r.status_code != 200 or body.get("errors"):
            errors = body.get("errors") or [{}]
            code = (errors[0].get("extensions") or {}).get("code")
            raise HubError(f"HTTP {r.status_code}: {json.dumps(errors)[:500]}", code)
        return body["data"]

    async def close(self) -> None:
        await self.http.aclose()


@dataclasses.dataclass
class Options:
    batch: int = 500
    concurrency: int = 2
    single: int = 200          # records held back and registered one at a time (after a search each)
    reads: int = 200           # full golden-record reads
    steward: int = 500         # pending candidates a perfect steward resolves (0: none)
    seed: int = 1


def environment(database_url: str | None = None) -> dict:
    """What the figures depend on: cores, memory, Python, the database."""
    mem = None
    with contextlib.suppress(OSError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    env = {"cores": os.cpu_count(), "memory_gb": mem, "python": platform.python_version(),
           "platform": platform.platform(terse=True), "machine": platform.machine(),
           "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")}
    with contextlib.suppress(OSError, AttributeError):
        env["load_average"] = [round(x, 1) for x in os.getloadavg()]   # 1, 5, 15 min: is the machine busy?
    if database_url:
        env["database"] = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    return env


def _standardised_search(attributes: dict, system: dict) -> dict:
    """The record's attributes as a calling application would search by them: standardised by the
    hub's own rules (ISO dates, E.164 phones), so a search is not refused for the source's formats."""
    from hub.golden.attributes import API_NAME
    from hub.ingest.standardise import SystemProfile, standardise

    profile = SystemProfile(date_order=system.get("dateOrder", "YMD"), default_country=system.get("defaultCountry"))
    values = standardise(attributes, profile).values
    return {API_NAME[k]: (v.isoformat() if isinstance(v, dt.date) else str(v)) for k, v in values.items()
            if k in API_NAME}


async def read_assignments(client: Client, systems: list[str]) -> dict[tuple[str, str], str]:
    assign = {}
    for s in systems:
        after = None
        while True:
            page = (await client.gql(PAGE, system=s, after=after))["sourceRecords"]
            for e in page["edges"]:
                if e["node"]["customer"]:
                    assign[(s, e["node"]["key"])] = e["node"]["customer"]["id"]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
    return assign


async def run(data: str, url: str, token: str, opts: Options | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """Benchmark the (empty) hub at `url` with the data set in `data`; return the result dict."""
    opts = opts or Options()
    say = progress or (lambda _msg: None)
    rng = random.Random(opts.seed)
    systems = read_systems(data)
    truth = read_truth(data)
    manifest = {}
    with contextlib.suppress(OSError):
        with open(os.path.join(data, "manifest.json")) as f:
            manifest = json.load(f)
    everything = [(s["name"], r) for s in systems for r in read_records(data, s["name"])]
    rng.shuffle(everything)
    held, bulk = everything[:opts.single], everything[opts.single:]
    out: dict = {"data": {"path": os.path.abspath(data), "records": len(everything),
                          **{k: manifest.get(k) for k in ("people", "profile", "seed", "attributes",
                                                          "records_per_system", "features")}},
                 "options": dataclasses.asdict(opts)}
    client = Client(url, token, connections=max(4, opts.concurrency + 2))
    try:
        existing = {s["name"]: s["recordCount"] for s in (await client.gql(SYSTEMS))["sourceSystems"]}
        if any(existing.get(s["name"]) for s in systems):
            raise HubError("the hub already holds records of these systems: benchmark an empty hub", "CONFLICT")
        for s in systems:
            if s["name"] not in existing:
                await client.gql(SYSTEM, input={k: s[k] for k in ("name", "dateOrder", "defaultCountry", "trust")
                                                if s.get(k) is not None})
        say(f"bulk load: {len(bulk)} records in batches of {opts.batch}, {opts.concurrency} in flight")
        out["load"] = await _bulk(client, bulk, opts)
        say(f"one at a time: {len(held)} records (a search, then a registration)")
        out.update(await _singles(client, held, systems, truth, opts))
        say("reading every record's golden record")
        names = [s["name"] for s in systems]
        assign = await read_assignments(client, names)
        out["quality"] = score_clusters(assign, truth)
        ids = sorted(set(assign.values()))
        reads = []
        for cid in rng.sample(ids, min(opts.reads, len(ids))):
            t = time.perf_counter()
            await client.gql(READ, id=cid)
            reads.append(time.perf_counter() - t)
        out["read_ms"] = percentiles(reads)
        say("review queue and a perfect steward")
        out.update(await _steward(client, truth, names, opts))
        if "quality_after_steward" in out:
            out["steward"]["gain"] = {part: round(out["quality_after_steward"][part]["f1"] - out["quality"][part]["f1"], 4)
                                      for part in ("pairwise", "cluster")}
    finally:
        await client.close()
    return out


async def _bulk(client: Client, bulk: list, opts: Options) -> dict:
    batches, open_batches = [], collections.defaultdict(list)
    for s, r in bulk:
        open_batches[s].append(r)
        if len(open_batches[s]) == opts.batch:
            batches.append((s, open_batches.pop(s)))
    batches += [(s, rs) for s, rs in open_batches.items() if rs]
    actions: collections.Counter = collections.Counter()
    timeline, done = [], 0
    sem = asyncio.Semaphore(opts.concurrency)
    started = time.perf_counter()

    async def send(s, rs):
        nonlocal done
        async with sem:
            t = time.perf_counter()
            res = (await client.gql(REGISTER, system=s, records=rs))["registerRecords"]
            end = time.perf_counter()
            for x in res:
                actions[x["action"]] += 1
            done += len(rs)
            timeline.append([done, round(end - started, 3), round(len(rs) / (end - t), 1)])

    await asyncio.gather(*(send(s, rs) for s, rs in batches))
    seconds = time.perf_counter() - started
    return {"records": len(bulk), "seconds": round(seconds, 2),
            "records_per_s": round(len(bulk) / seconds, 1) if seconds else None,
            "batch": opts.batch, "concurrency": opts.concurrency, "actions": dict(actions), "timeline": timeline}


async def _singles(client: Client, held: list, systems: list[dict], truth: dict, opts: Options) -> dict:
    by_name = {s["name"]: s for s in systems}
    loaded_entities = collections.Counter(truth.values())
    for s, r in held:
        loaded_entities[truth[(s, r["key"])]] -= 1          # held records are not in the hub yet
    register, search, scored = [], [], []
    hits = collections.Counter()
    actions: collections.Counter = collections.Counter()
    positives = 0
    for s, r in held:
        entity = truth[(s, r["key"])]
        query = _standardised_search(r.get("attributes") or {}, by_name[s])
        present = loaded_entities[entity] > 0
        if query:
            t = time.perf_counter()
            try:
                found = (await client.gql(SEARCH, a=query))["findCustomers"]
            except HubError as e:
                if e.code != "BAD_USER_INPUT":
                    raise
                found = []
            search.append(time.perf_counter() - t)
            labels = []
            for rank, m in enumerate(found):
                ok = any(truth.get((x["system"], x["key"])) == entity for x in m["customer"]["sourceRecords"])
                labels.append(ok)
                scored.append((m["matchProbability"], ok))
                if ok and rank == 0:
                    hits["top1"] += 1
            if present:
                hits["present"] += 1
                hits["found"] += any(labels)
                positives += max(1, sum(labels))
        t = time.perf_counter()
        res = (await client.gql(REGISTER, system=s, records=[r]))["registerRecords"][0]
        register.append(time.perf_counter() - t)
        actions[res["action"]] += 1
        loaded_entities[entity] += 1
    true_p = [round(p, 4) for p, ok in scored if ok]
    false_p = [round(p, 4) for p, ok in scored if not ok]
    return {"register_one_ms": {**percentiles(register), "actions": dict(actions)},
            "search_ms": percentiles(search),
            "search": {"searches": len(search), "person_in_hub": hits["present"],
                       "found_in_top10": hits["found"], "found_first": hits["top1"],
                       "recall_top10": round(hits["found"] / hits["present"], 4) if hits["present"] else None},
            "scores": {"true": true_p, "false": false_p,
                       "threshold_curve": threshold_curve(scored, positives)}}


async def _steward(client: Client, truth: dict, systems: list[str], opts: Options) -> dict:
    pending, after = [], None
    while True:
        page = (await client.gql(CANDIDATES, after=after))["matchCandidates"]
        pending += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    def entities(customer):
        return {truth.get((x["system"], x["key"])) for x in customer["sourceRecords"]}

    labelled = [(c, bool(entities(c["customer"]) & entities(c["otherCustomer"]))) for c in pending]
    out = {"queue": {"pending": len(pending), "true_matches": sum(ok for _c, ok in labelled),
                     "probabilities_true": [round(c["matchProbability"], 4) for c, ok in labelled if ok],
                     "probabilities_false": [round(c["matchProbability"], 4) for c, ok in labelled if not ok]}}
    if not opts.steward or not pending:
        return out
    times, decisions = [], collections.Counter()
    for c, same in labelled[:opts.steward]:
        t = time.perf_counter()
        try:
            await client.gql(RESOLVE, id=c["id"], d="MERGE" if same else "NOT_A_MATCH")
        except HubError as e:
            if e.code not in ("CONFLICT", "NOT_FOUND"):          # superseded by an earlier merge
                raise
            decisions["superseded"] += 1
            continue
        times.append(time.perf_counter() - t)
        decisions["MERGE" if same else "NOT_A_MATCH"] += 1
    out["steward"] = {"resolved": len(times), "decisions": dict(decisions), "decision_ms": percentiles(times)}
    out["quality_after_steward"] = score_clusters(await read_assignments(client, systems), truth)
    return out


# ---- an embedded hub: `hub serve` in a subprocess on a temporary or given database ----------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedHub:
    """`hub serve` as a subprocess on a temporary SQLite file (or a given, empty database), with an
    admin token; stopped and its temporary files removed on exit."""

    def __init__(self, database_url: str | None = None, port: int | None = None, workers: int = 1):
        self.tmp = tempfile.mkdtemp(prefix="hub-bench-")
        self.database_url = database_url or f"sqlite+aiosqlite:///{os.path.join(self.tmp, 'hub.db')}"
        self.port = port or free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.proc: subprocess.Popen | None = None
        self.token = ""

    def _env(self) -> dict:
        return {**os.environ, "HUB_DATABASE_URL": self.database_url}

    def __enter__(self) -> EmbeddedHub:
        cli = [sys.executable, "-m", "hub.cli"]
        made = subprocess.run([*cli, "token", "create", "--subject", "hub-bench", "--role", "admin"],
                              env=self._env(), capture_output=True, text=True)
        if made.returncode != 0:
            raise RuntimeError(f"could not prepare the database: {made.stderr.strip()[-500:]}")
        self.token = made.stdout.strip().splitlines()[-1]
        self.log = open(os.path.join(self.tmp, "serve.log"), "w")
        self.proc = subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--workers", str(self.workers)], env=self._env(), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub serve exited with {self.proc.returncode}: {self._log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"hub serve did not become ready in {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        self.log.flush()
        with open(os.path.join(self.tmp, "serve.log")) as f:
            return f.read()[-800:]

    def peak_memory_mb(self) -> float | None:
        """Peak resident memory of the server and its worker processes (Linux, summed), in MB."""
        def children(pid: int) -> list[int]:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    return [int(c) for c in f.read().split()]
            return []

        total, todo = 0, [self.proc.pid]
        while todo:
            pid = todo.pop()
            todo += children(pid)
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            total += int(line.split()[1])
        return round(total / 1024, 1) if total else None

    def database_bytes(self) -> int | None:
        if self.database_url.startswith("sqlite"):
            path = self.database_url.split("///", 1)[1]
            return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
        return asyncio.run(_postgres_facts(self.database_url)).get("database_bytes")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def _postgres_facts(url: str) -> dict:
    """Database size and the settings that matter for sizing, read from PostgreSQL itself."""
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    con = await asyncpg.connect(dsn)
    try:
        facts = {"database_bytes": await con.fetchval("SELECT pg_database_size(current_database())"),
                 "server_version": await con.fetchval("SHOW server_version")}
        for name in ("shared_buffers", "work_mem", "effective_cache_size", "max_connections", "synchronous_commit"):
            facts[name] = await con.fetchval(f"SHOW {name}")
        return facts
    finally:
        await con.close()


def run_embedded(data: str, opts: Options, *, database_url: str | None = None, port: int | None = None,
                 workers: int = 1, progress: Callable[[str], None] | None = None) -> dict:
    """Start a hub on a temporary SQLite file (or `database_url`), benchmark it, stop it."""
    with EmbeddedHub(database_url, port, workers) as hub:
        result = asyncio.run(run(data, hub.url, hub.token, opts, progress))
        env = environment(hub.database_url)
        env["workers"] = workers
        if env["database"] == "postgresql":
            facts = asyncio.run(_postgres_facts(hub.database_url))
            env["postgresql"] = {k: v for k, v in facts.items() if k != "database_bytes"}
            result["database_bytes"] = facts["database_bytes"]
        else:
            result["database_bytes"] = hub.database_bytes()
        result["server_peak_memory_mb"] = hub.peak_memory_mb()
        result["environment"] = env
        result["hub"] = "embedded"
        from hub.config import get_settings

        settings = get_settings()          # the server read the same environment (but its database URL)
        result["thresholds"] = {"link": settings.link_threshold, "review": settings.review_threshold}
    return result
