"""Concurrent registrations never duplicate a record and never leave a record without a golden record."""
from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from hub.config import Settings
from hub.db import Database
from hub.models import ACTIVE, Customer, SourceRecord, SourceSystem
from hub.ingest.records import RecordInput, register_batch
from tests.conftest import TEST_KEYS
from tests.helpers import add_system, rec, register


async def test_concurrent_clients_for_the_same_keys_create_each_record_once(admin, db, db_url):
    await add_system(admin)
    # several "server processes": each its own engine and pool, so only the database can keep order
    others = [Database(db_url) for _ in range(3)]
    settings = Settings(database_url=db_url, keys=TEST_KEYS)
    batches = [[RecordInput(f"K{i}", {"email": f"u{i}@x.org", "givenName": f"N{j}"}) for i in range(20)]
               for j in range(6)]
    try:
        await asyncio.gather(*(register_batch(db=others[n % 3], system="crm", records=b, actor=f"client{n}",
                                              settings=settings) for n, b in enumerate(batches)))
    finally:
        for o in others:
            await o.dispose()
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(SourceRecord)) == 20
        assert await s.scalar(select(SourceSystem.record_count).where(SourceSystem.name == "crm")) == 20
        # every record belongs to exactly one live golden record, and no golden record is empty
        orphans = await s.scalar(select(func.count()).select_from(SourceRecord).join(
            Customer, Customer.id == SourceRecord.customer_id).where(Customer.status != ACTIVE))
        empty = await s.scalar(select(func.count()).select_from(Customer).where(
            Customer.status == ACTIVE, ~select(SourceRecord.id).where(
                SourceRecord.customer_id == Customer.id).exists()))
    assert (orphans, empty) == (0, 0)


async def test_concurrent_http_batches_link_to_one_golden_record(admin):
    await add_system(admin, "crm")
    await add_system(admin, "shop")
    results = await asyncio.gather(*(register(admin, system, rec(f"{system}-{n}", email="same@x.org",
                                                                  dateOfBirth="1980-01-01", givenName="Sam"))
                                     for n in range(4) for system in ("crm", "shop")))
    ids = {r[0]["customer"]["id"] for r in results}
    assert len(ids) == 1
