"""Retention: records past their system's period leave the hub as completely as by an erasure."""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select

from hub.models import MatchModelVersion
from hub.ops.training import default_model_json
from tests.helpers import CUSTOMER, add_system, rec, register
from tests.test_erasure import RECEIPT, _dump

SYSTEM = """mutation($input: SourceSystemInput!) { registerSourceSystem(input: $input) { name retentionDays } }"""
OLD, RECENT = "2020-01-01T00:00:00Z", dt.datetime.now(dt.UTC).isoformat()  # updatedAt may not lie ahead
# Pia: a recent CRM record and an expired web-events record, linked by email + birth date
PIA_CRM = dict(givenName="Pia", familyName="Lund", dateOfBirth="1990-05-05", email="pia.lund@x.org")
PIA_EVENTS = dict(givenName="Pia", familyName="Lund", dateOfBirth="1990-05-05", email="pia.lund@x.org",
                  phone="+44 7700 900555", addressLine1="8 Heron Quay")
# Quentin: only an expired record
QUENTIN = dict(givenName="Quentin", familyName="Quorndonvale", email="q.quorn@x.org", phone="+44 7700 900777")
EXPIRED_VALUES = ["+447700900555", "+44 7700 900555", "8 Heron Quay", "Quentin", "Quorndonvale", "q.quorn@x.org",
                  "+447700900777", "+44 7700 900777"]


async def test_retention_run_removes_expired_records_recomputes_or_erases_and_blocks_nothing(admin, db, hub_cli):
    await add_system(admin, "crm")
    stored = (await admin(SYSTEM, input={"name": "web", "retentionDays": 30}))["registerSourceSystem"]
    assert stored == {"name": "web", "retentionDays": 30}
    [pia] = await register(admin, "crm", rec("C-1", updatedAt=RECENT, **PIA_CRM))
    [pia_web, quentin, fresh] = await register(admin, "web", rec("W-1", updatedAt=OLD, **PIA_EVENTS),
                                               rec("W-2", updatedAt=OLD, **QUENTIN),
                                               rec("W-3", updatedAt=RECENT, givenName="Rut", email="rut@x.org"))
    assert pia_web["customer"]["id"] == pia["customer"]["id"]
    before = (await admin(CUSTOMER, id=pia["customer"]["id"]))["customer"]
    assert before["phone"] == "+447700900555"

    model = default_model_json()
    smallest = min(model["term_frequencies"]["given"].values())
    model["term_frequencies"]["given"] |= {"quentin": smallest, "pia": smallest}
    async with db.write() as session:
        await session.execute(MatchModelVersion.__table__.insert().values(actor="t", records=4, model=model, params={}))

    result = await hub_cli("retention", "run", "--batch", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["records"], report["recomputed"], report["erased"], report["per_system"]) == (2, 1, 1, {"web": 2})
    assert report["batches"] == 2

    after = (await admin(CUSTOMER, id=pia["customer"]["id"]))["customer"]
    assert after["phone"] is None and after["addressLine1"] is None and after["email"] == "pia.lund@x.org"
    assert [r["key"] for r in after["sourceRecords"]] == ["C-1"]
    assert (await admin(CUSTOMER, id=quentin["customer"]["id"]))["customer"] is None
    assert (await admin(CUSTOMER, id=fresh["customer"]["id"]))["customer"]["email"] == "rut@x.org"
    tomb = (await admin(RECEIPT, id=quentin["customer"]["id"]))["erasure"]
    assert (tomb["sourceRecordsErased"], tomb["tasks"], tomb["blocked"]) == (1, [], False)
    dumped = "\n".join((await _dump(db)).values()).lower()
    assert [v for v in EXPIRED_VALUES if v.lower() in dumped] == []
    assert "pia.lund@x.org" in dumped and "rut@x.org" in dumped

    async with db.session() as session:
        [given] = [m["term_frequencies"]["given"] for m in (await session.execute(
            select(MatchModelVersion.model))).scalars()]
    assert "quentin" not in given and "pia" in given  # Pia's name is still held by her CRM record

    again = await hub_cli("retention", "run")
    assert json.loads(again.stdout.strip().splitlines()[-1])["records"] == 0
    [back] = await register(admin, "web", rec("W-2", updatedAt=RECENT, **QUENTIN))
    assert back["action"] == "CREATED"  # retention does not block: the source may send it again


async def test_retention_days_out_of_range_is_bad_input(admin):
    _, errors = await admin.errors(SYSTEM, input={"name": "web", "retentionDays": 0})
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
