"""Registration end to end over GraphQL: standardise, upsert, link, survive, audit."""
from __future__ import annotations

from sqlalchemy import func, select

from hub.models import Customer, Event, SourceRecord
from tests.helpers import CUSTOMER, DELETE, RECORD, REGISTER, add_system, rec, register

ANNA = dict(givenName="  ANNA ", familyName="VAN DEN BERG", dateOfBirth="03/04/1987", email=" Anna.Berg@Example.COM ",
            phone="020 123 4567", country="Netherlands", postcode=" 1011 ab ", nationalId="123 456 789")


async def count(db, model) -> int:
    async with db.session() as s:
        return await s.scalar(select(func.count()).select_from(model))


async def test_register_record_as_admin_is_standardised_with_lineage(admin):
    await add_system(admin, "billing", dateOrder="DMY", trust=90)
    [res] = await register(admin, "billing", rec("B1", **ANNA))
    assert res["action"] == "CREATED" and res["errors"] == [] and res["customer"]["version"] == 1
    c = (await admin(CUSTOMER, id=res["customer"]["id"]))["customer"]
    assert (c["givenName"], c["familyName"], c["dateOfBirth"]) == ("Anna", "van den Berg", "1987-04-03")
    assert (c["email"], c["phone"], c["country"], c["postcode"]) == (
        "anna.berg@example.com", "+31201234567", "NL", "1011 AB")
    lineage = {row["field"]: row for row in c["lineage"]}
    assert lineage["email"]["sourceRecord"] == {"system": "billing", "key": "B1"}
    assert lineage["dateOfBirth"]["rule"] == "most-frequent" and lineage["dateOfBirth"]["value"] == "1987-04-03"
    assert [e["kind"] for e in c["history"]] == ["CREATED"]
    assert c["history"][0]["actor"] == "alice"


async def test_bad_value_is_a_field_error_and_the_raw_value_is_kept(admin, db):
    await add_system(admin)
    [res] = await register(admin, "crm", rec("K1", givenName="Bo", familyName="Li", email="not-an-email",
                                              dateOfBirth="2999-01-01"))
    assert res["action"] == "CREATED"
    assert {e["field"] for e in res["errors"]} == {"email", "dateOfBirth"}
    r = (await admin(RECORD, system="crm", key="K1"))["sourceRecord"]
    assert r["email"] is None and r["dateOfBirth"] is None
    async with db.session() as s:
        raw = await s.scalar(select(SourceRecord.raw).where(SourceRecord.key == "K1"))
    assert raw["email"] == "not-an-email"


async def test_unusable_record_is_rejected_while_the_rest_of_the_batch_goes_in(admin, db):
    await add_system(admin)
    res = await register(admin, "crm", rec("OK1", email="a@x.org"), rec("BAD", givenName="Solo"),
                         rec("", email="b@x.org"), rec("OK2", email="c@x.org"))
    assert [r["action"] for r in res] == ["CREATED", "REJECTED", "REJECTED", "CREATED"]
    assert res[1]["customer"] is None and any(e["field"] == "attributes" for e in res[1]["errors"])
    assert res[2]["errors"][0]["field"] == "key"
    assert await count(db, SourceRecord) == 2


async def test_same_batch_twice_changes_nothing_the_second_time(admin, db):
    await add_system(admin)
    batch = [rec("A", email="a@x.org", givenName="Ann"), rec("B", email="b@x.org", familyName="Bee",
                                                               dateOfBirth="1970-01-01")]
    first = await register(admin, "crm", *batch)
    events, customers = await count(db, Event), await count(db, Customer)
    second = await register(admin, "crm", *batch)
    assert [r["action"] for r in second] == ["UNCHANGED", "UNCHANGED"]
    assert [r["customer"] for r in second] == [r["customer"] for r in first]
    assert (await count(db, Event), await count(db, Customer)) == (events, customers)


async def test_older_update_does_not_overwrite_newer_data(admin):
    await add_system(admin)
    await register(admin, "crm", rec("A", "2026-05-01T00:00:00Z", email="new@x.org", givenName="Ann"))
    [res] = await register(admin, "crm", rec("A", "2026-01-01T00:00:00Z", email="old@x.org", givenName="Ann"))
    assert res["action"] == "UNCHANGED" and res["errors"][0]["field"] == "updatedAt"
    assert (await admin(RECORD, system="crm", key="A"))["sourceRecord"]["email"] == "new@x.org"


async def test_update_changes_golden_value_and_version_once(admin):
    await add_system(admin)
    [a] = await register(admin, "crm", rec("A", "2026-01-01T00:00:00Z", email="a@x.org", givenName="Ann"))
    [b] = await register(admin, "crm", rec("A", "2026-02-01T00:00:00Z", email="ann@y.org", givenName="Ann"))
    assert b["action"] == "UPDATED" and b["customer"] == {"id": a["customer"]["id"], "version": 2}
    c = (await admin(CUSTOMER, id=a["customer"]["id"]))["customer"]
    assert c["email"] == "ann@y.org"
    assert [e["kind"] for e in c["history"]] == ["CREATED", "UPDATED"]
    assert c["history"][1]["changes"]["fields"]["email"] == {"before": "a@x.org", "after": "ann@y.org"}


async def test_batch_over_the_limit_is_refused_before_anything_is_written(admin, db):
    await add_system(admin)
    data, errors = await admin.errors(REGISTER, system="crm",
                                      records=[rec(f"K{i}", email=f"u{i}@x.org") for i in range(5001)])
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT" and "5000" in errors[0]["message"]
    assert await count(db, SourceRecord) == 0


async def test_unknown_system_is_not_found(admin):
    _, errors = await admin.errors(REGISTER, system="nope", records=[rec("K", email="a@x.org")])
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_same_national_id_links_across_systems_and_trust_wins_names(admin):
    await add_system(admin, "crm", trust=80)
    await add_system(admin, "billing", dateOrder="DMY", trust=90)
    [a] = await register(admin, "crm", rec("C1", givenName="Jon", familyName="Smith", nationalId="123-45-6789"))
    [b] = await register(admin, "billing", rec("B1", givenName="John", familyName="Smith", nationalId="123-45-6789"))
    assert b["action"] == "LINKED" and b["customer"]["id"] == a["customer"]["id"] and b["matchProbability"] == 1.0
    c = (await admin(CUSTOMER, id=a["customer"]["id"]))["customer"]
    assert c["givenName"] == "John"
    assert {"field": "givenName", "value": "John", "rule": "source-trust",
            "sourceRecord": {"system": "billing", "key": "B1"}} in c["lineage"]
    assert [e["kind"] for e in c["history"]] == ["CREATED", "LINKED"]


async def test_email_and_birth_date_link_within_one_batch(admin):
    await add_system(admin)
    res = await register(admin, "crm", rec("A", email="kim@x.org", dateOfBirth="1980-02-03", givenName="Kim"),
                         rec("B", email="KIM@x.org", dateOfBirth="1980-02-03", familyName="Lee"),
                         rec("C", email="max@y.org", dateOfBirth="1955-07-19", givenName="Max", familyName="Lee"))
    assert [r["action"] for r in res] == ["CREATED", "LINKED", "CREATED"]
    assert res[0]["customer"]["id"] == res[1]["customer"]["id"] != res[2]["customer"]["id"]


async def test_record_matching_two_golden_records_merges_them_and_old_id_forwards(admin):
    await add_system(admin)
    [a] = await register(admin, "crm", rec("A", nationalId="AB123456", givenName="Al"))
    [b] = await register(admin, "crm", rec("B", email="al@x.org", dateOfBirth="1970-05-05", familyName="Ng"))
    [c] = await register(admin, "crm", rec("C", nationalId="AB123456", email="al@x.org", dateOfBirth="1970-05-05"))
    assert c["action"] == "LINKED"
    survivor = min(int(a["customer"]["id"]), int(b["customer"]["id"]))
    assert int(c["customer"]["id"]) == survivor
    moved = (await admin(CUSTOMER, id=b["customer"]["id"]))["customer"]
    assert int(moved["id"]) == survivor and {r["key"] for r in moved["sourceRecords"]} == {"A", "B", "C"}


async def test_delete_record_recomputes_then_retires(admin):
    await add_system(admin)
    await register(admin, "crm", rec("A", "2026-01-01T00:00:00Z", email="a@x.org", dateOfBirth="1990-01-01"))
    [b] = await register(admin, "crm", rec("B", "2026-03-01T00:00:00Z", email="a@x.org", dateOfBirth="1990-01-01",
                                           phone="+44 20 7946 0958"))
    cid = b["customer"]["id"]
    after = (await admin(DELETE, system="crm", key="B"))["deleteSourceRecord"]
    assert after["id"] == cid and after["version"] == 3
    c = (await admin(CUSTOMER, id=cid))["customer"]
    assert c["phone"] is None and [r["key"] for r in c["sourceRecords"]] == ["A"]
    assert (await admin(DELETE, system="crm", key="A"))["deleteSourceRecord"] is None
    assert (await admin(CUSTOMER, id=cid))["customer"] is None
    _, errors = await admin.errors(DELETE, system="crm", key="A")
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
