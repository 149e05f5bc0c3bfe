"""The sample data of the README's walkthrough links as the README says, on both databases."""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select

from hub.ingest.matcher import default_scorer
from hub.ingest.records import RecordInput, register_batch
from hub.models import SourceRecord
from hub.samples import FILES
from tests.helpers import add_system


def _records(system: str) -> list[RecordInput]:
    lines = [json.loads(line) for line in FILES[system].read_text(encoding="utf-8").splitlines() if line.strip()]
    return [RecordInput(o["key"], o["attributes"], dt.datetime.fromisoformat(o["updatedAt"])) for o in lines]


async def test_sample_systems_loaded_in_order_link_duplicates_keep_the_household_apart_and_reject_one(
        admin, db, settings):
    await add_system(admin, "crm", dateOrder="YMD", defaultCountry="GB", trust=80)
    await add_system(admin, "billing", dateOrder="DMY", defaultCountry="GB", trust=90)
    await add_system(admin, "support", dateOrder="MDY", defaultCountry="GB", trust=50)
    scorer = default_scorer()
    actions: dict[str, str] = {}
    for system in ("crm", "billing", "support"):
        for result in await register_batch(db=db, system=system, records=_records(system), actor="test",
                                           settings=settings,
                                           scorer=scorer):
            actions[result.key] = result.action
    assert actions["S-3099"] == "REJECTED"
    assert [k for k, a in actions.items() if a == "REJECTED"] == ["S-3099"], "every other sample line is valid"
    async with db.session() as session:
        rows = (await session.execute(select(SourceRecord.key, SourceRecord.customer_id))).all()
    customer = dict(rows)
    people = {}
    for key, cid in customer.items():
        people.setdefault(cid, set()).add(key)
    assert sorted(map(sorted, people.values())) == sorted([
        ["B-2001", "C-1001", "S-3001"],  # Ahmed Khan in all three systems (exact, then by the match model)
        ["C-1002"], ["B-2002"],  # his household: same address and phone, other people
        ["B-2003", "C-1003"],  # Jane O'Neil: same email and date of birth
        ["C-1004", "S-3002"],  # Maria Garcia: by the match model
        ["C-1005"],
        ["B-2004", "S-3003"],  # Priya Patel: same national id
    ])
