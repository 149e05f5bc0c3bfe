"""Several clients at once: registrations, merges, splits and decisions never break the hub's invariants."""
from __future__ import annotations

import asyncio
import random

from sqlalchemy import func, select

from hub.errors import HubError
from hub.models import ACTIVE, MERGED, Customer, Event, MatchCandidate, SourceRecord
from hub.ingest.records import RecordInput, register_batch
from hub.steward.stewardship import merge_customers, resolve_candidate, split_record


def person(i: int, variant: int) -> dict:
    """Records of a few people, with near-duplicates that link, queue or stay apart."""
    n = i % 12
    base = {"givenName": ["Anna", "Ola", "Kari", "Per"][n % 4], "familyName": ["Berg", "Nord", "Sund"][n % 3],
            "dateOfBirth": f"19{50 + n}-0{1 + variant % 2}-1{n % 9}", "email": f"p{n}@x.org"}
    if variant == 2:
        base["email"] = f"p{n}.alt@y.org"
    return base


async def invariants(db) -> None:
    async with db.session() as s:
        records = (await s.execute(select(SourceRecord.id, SourceRecord.customer_id))).all()
        customers = {c.id: c for c in (await s.execute(select(Customer.id, Customer.status, Customer.merged_into))).all()}
        # every record belongs to exactly one live golden record
        assert all(customers[r.customer_id].status == ACTIVE for r in records)
        # every live golden record has a record; every merged one forwards, in one hop, to a live one
        holding = {r.customer_id for r in records}
        for c in customers.values():
            if c.status == ACTIVE:
                assert c.id in holding, f"customer {c.id} is live with no record"
            if c.status == MERGED:
                assert customers[c.merged_into].status == ACTIVE
        assert await s.scalar(select(func.count()).select_from(Event)) > 0


async def test_concurrent_registrations_and_steward_decisions_keep_the_invariants(admin, db, db_url, settings):
    from tests.helpers import add_system
    from hub.ingest.matcher import default_scorer
    from hub.db import Database

    await add_system(admin, "crm")
    await add_system(admin, "shop")
    rng = random.Random(7)
    clients = [Database(db_url) for _ in range(3)]
    sent: set[tuple[str, str]] = set()
    outcomes = {"ok": 0, "refused": 0}

    async def registrar(n: int) -> None:
        for round_ in range(4):
            system = ("crm", "shop")[(n + round_) % 2]
            batch = [RecordInput(f"{system}-{n}-{round_}-{j}", person(rng.randrange(40), rng.randrange(3)))
                     for j in range(6)]
            await register_batch(db=clients[n % 3], system=system, records=batch, actor=f"feed{n}",
                                 settings=settings, scorer=default_scorer())
            sent.update((system, r.key) for r in batch)

    async def steward(n: int) -> None:
        database = clients[n % 3]
        for _ in range(8):
            await asyncio.sleep(0)
            try:
                async with database.write() as s:
                    ids = (await s.execute(select(Customer.id).where(Customer.status == ACTIVE))).scalars().all()
                    cands = (await s.execute(select(MatchCandidate.id).where(MatchCandidate.status == "PENDING"))
                             ).scalars().all()
                    keys = (await s.execute(select(SourceRecord.system, SourceRecord.key))).all()
                    action = rng.randrange(3)
                    if action == 0 and len(ids) >= 2:
                        await merge_customers(session=s, ids=rng.sample(list(ids), 2), actor=f"steward{n}")
                    elif action == 1 and keys:
                        system, key = rng.choice(keys)
                        await split_record(session=s, system=system, key=key, actor=f"steward{n}")
                    elif cands:
                        await resolve_candidate(session=s, candidate_id=rng.choice(cands),
                                                decision=rng.choice(["MERGE", "NOT_A_MATCH"]), actor=f"steward{n}")
                outcomes["ok"] += 1
            except HubError:
                outcomes["refused"] += 1  # e.g. a lone record cannot be split: nothing may be half-written

    try:
        await asyncio.gather(*(registrar(n) for n in range(4)), *(steward(n) for n in range(3)))
    finally:
        for c in clients:
            await c.dispose()
    await invariants(db)
    async with db.session() as s:
        stored = set((await s.execute(select(SourceRecord.system, SourceRecord.key))).all())
    assert stored == sent  # no record lost, none invented
    assert outcomes["ok"] > 0
