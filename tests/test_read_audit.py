"""The audit of sensitive reads: what is recorded for each role and road, batching off the request path, the
admin query "who read this national id", and the policy's say over what is sensitive."""
from __future__ import annotations

import asyncio
import dataclasses

import httpx
import pytest
from sqlalchemy import func, select

from authz import Authorizer
from hub.access.policy import add_row, remove_row
from hub.ingest.matcher import default_scorer
from hub.models import ReadAudit
from schema.app import build_services, create_app
from tests.conftest import Gql, mint
from tests.helpers import add_system, rec, register

ANN = dict(givenName="Ann", familyName="Lee", email="ann@x.org", dateOfBirth="1980-01-01", nationalId="111-22-3333")
BEN = dict(givenName="Ben", familyName="Ray", email="ben@x.org", dateOfBirth="1981-02-02", nationalId="222-33-4444")
READ = """query($id: ID!) { customer(id: $id) { id email nationalId dateOfBirth } }"""
WHO = """query($id: ID!, $field: String, $first: Int, $after: String) {
  sensitiveReads(customerId: $id, field: $field, first: $first, after: $after) {
    edges { cursor node { at subject role customerId field via masked requestId } }
    pageInfo { hasNextPage endCursor } } }"""


async def _entries(db) -> list:
    async with db.session() as s:
        return list((await s.execute(select(ReadAudit).order_by(ReadAudit.id))).scalars())


@pytest.fixture
async def hub(db, settings):
    """A hub whose read audit flushes only when asked (or at 1000 entries): the tests see the queue."""
    services = build_services(dataclasses.replace(settings, audit_flush_ms=3_600_000), db=db,
                              authorizer=Authorizer(), scorer=default_scorer())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)), base_url="http://hub") as c:
        admin = Gql(c, await mint(db, "admin", "alice"))
        await add_system(admin, "crm")
        [r] = await register(admin, "crm", rec("A", **ANN))
        yield services, c, admin, r["customer"]["id"]
    await services.audit.close()


async def test_national_id_read_as_admin_is_queued_then_written_in_one_flush(hub, db):
    services, client, admin, cid = hub
    r = await client.post("/graphql", json={"query": READ, "variables": {"id": cid}},
                          headers={"Authorization": f"Bearer {admin.token}", "X-Request-ID": "req-42"})
    assert r.json()["data"]["customer"]["nationalId"] == "111-22-3333"
    assert services.audit.pending == 2 and await _entries(db) == []  # nothing written on the request path
    assert await services.audit.flush() == 2
    rows = await _entries(db)
    assert sorted((e.subject, e.role, e.customer_id, e.field, e.via, e.masked, e.request_id) for e in rows) == [
        ("alice", "admin", int(cid), "dateOfBirth", "Customer", False, "req-42"),
        ("alice", "admin", int(cid), "nationalId", "Customer", False, "req-42")]


async def test_national_id_read_as_steward_is_audited_as_masked(hub, db):
    services, client, admin, cid = hub
    steward = Gql(client, await mint(db, "steward", "sam"))
    assert (await steward(READ, id=cid))["customer"]["nationalId"] == "*******3333"
    await services.audit.flush()
    assert sorted((e.subject, e.field, e.masked) for e in await _entries(db)) == [
        ("sam", "dateOfBirth", False), ("sam", "nationalId", True)]


@pytest.mark.parametrize("role", ["reader", "marketing"])
async def test_refused_reads_as_reader_or_marketing_are_not_audited(hub, db, role):
    services, client, admin, cid = hub
    await admin("""mutation($id: ID!) { setConsent(customerId: $id, purpose: "marketing-email", granted: true) {
      id } }""", id=cid)
    caller = Gql(client, await mint(db, role))
    body = (await caller.raw(READ, id=cid)).json()
    assert body["data"]["customer"]["nationalId"] is None and body["data"]["customer"]["email"] == "ann@x.org"
    assert services.audit.pending == 0


async def test_source_reading_its_own_records_national_id_is_audited(hub, db):
    services, client, admin, cid = hub
    feed = Gql(client, await mint(db, "source", "crm-feed", system="crm"))
    rec_ = (await feed('{ sourceRecord(system: "crm", key: "A") { key nationalId } }'))["sourceRecord"]
    assert rec_["nationalId"] == "111-22-3333"
    await services.audit.flush()
    assert [(e.subject, e.role, e.customer_id, e.field, e.via) for e in await _entries(db)] == [
        ("crm-feed", "source", int(cid), "nationalId", "SourceRecord")]


async def test_national_id_through_lineage_and_history_is_audited_with_its_road(hub, db):
    services, client, admin, cid = hub
    await admin("""query($id: ID!) { customer(id: $id) { lineage { field value } history { changes } } }""", id=cid)
    await services.audit.flush()
    roads = {(e.field, e.via) for e in await _entries(db)}
    assert roads == {("nationalId", "AttributeLineage"), ("dateOfBirth", "AttributeLineage"),
                     ("nationalId", "CustomerEvent"), ("dateOfBirth", "CustomerEvent")}


async def test_reading_only_plain_fields_is_not_audited(hub, db):
    services, client, admin, cid = hub
    await admin("""query($id: ID!) { customer(id: $id) { id email givenName } }""", id=cid)
    assert services.audit.pending == 0


async def test_a_full_batch_is_written_without_waiting_for_the_interval(db, settings):
    services = build_services(dataclasses.replace(settings, audit_flush_ms=3_600_000, audit_batch=2), db=db,
                              authorizer=Authorizer(), scorer=default_scorer())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)), base_url="http://hub") as c:
        admin = Gql(c, await mint(db, "admin", "alice"))
        await add_system(admin, "crm")
        [r] = await register(admin, "crm", rec("A", **ANN))
        await admin(READ, id=r["customer"]["id"])
        for _ in range(500):  # the background task wakes at once; give it its turns on the loop
            if services.audit.pending == 0 and len(await _entries(db)) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(await _entries(db)) == 2
    await services.audit.close()


async def test_shutdown_writes_what_is_queued(hub, db):
    services, client, admin, cid = hub
    await admin(READ, id=cid)
    assert services.audit.pending == 2
    await services.audit.close()
    assert len(await _entries(db)) == 2


async def test_audit_switched_off_records_nothing(db, settings):
    services = build_services(dataclasses.replace(settings, read_audit=False), db=db, authorizer=Authorizer(),
                              scorer=default_scorer())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)), base_url="http://hub") as c:
        admin = Gql(c, await mint(db, "admin", "alice"))
        await add_system(admin, "crm")
        [r] = await register(admin, "crm", rec("A", **ANN))
        await admin(READ, id=r["customer"]["id"])
        assert services.audit.pending == 0
    await services.audit.close()
    assert await _entries(db) == []


async def test_who_read_this_national_id_as_admin_pages_by_customer_and_field(hub, db):
    services, client, admin, cid = hub
    steward = Gql(client, await mint(db, "steward", "sam"))
    await admin(READ, id=cid)
    await steward(READ, id=cid)
    first = (await admin(WHO, id=cid, field="nationalId", first=1))["sensitiveReads"]  # flushes pending first
    assert [(e["node"]["subject"], e["node"]["masked"]) for e in first["edges"]] == [("alice", False)]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (await admin(WHO, id=cid, field="nationalId", first=10, after=first["pageInfo"]["endCursor"]))
    assert [(e["node"]["subject"], e["node"]["role"], e["node"]["masked"])
            for e in rest["sensitiveReads"]["edges"]] == [("sam", "steward", True)]
    everything = (await admin(WHO, id=cid))["sensitiveReads"]["edges"]
    assert {e["node"]["field"] for e in everything} == {"nationalId", "dateOfBirth"}


async def test_who_read_after_a_merge_covers_the_merged_away_id(hub, db):
    services, client, admin, cid = hub
    [b] = await register(admin, "crm", rec("B", **BEN))
    await admin(READ, id=b["customer"]["id"])
    await admin("""mutation($ids: [ID!]!) { mergeCustomers(ids: $ids) { id } }""", ids=[cid, b["customer"]["id"]])
    reads = (await admin(WHO, id=b["customer"]["id"], field="nationalId"))["sensitiveReads"]["edges"]
    assert [e["node"]["customerId"] for e in reads] == [b["customer"]["id"]]


@pytest.mark.parametrize("field, customer, code", [("email2", None, "BAD_USER_INPUT"), (None, "999", "NOT_FOUND"),
                                                   (None, "x", "BAD_USER_INPUT")])
async def test_who_read_with_bad_input_is_refused(hub, field, customer, code):
    _, _, admin, cid = hub
    _, errors = await admin.errors(WHO, id=customer or cid, field=field)
    assert errors[0]["extensions"]["code"] == code


@pytest.mark.parametrize("role", ["steward", "reader", "marketing", "source"])
async def test_who_read_as_anyone_but_admin_is_forbidden(hub, db, role):
    _, client, _, cid = hub
    caller = Gql(client, await mint(db, role, system="crm" if role == "source" else None))
    _, errors = await caller.errors(WHO, id=cid)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_field_the_admin_marks_sensitive_is_audited_from_then_on(hub, db):
    services, client, admin, cid = hub
    services.policy_check_interval = 0  # look at the stored policy on every request, from the next one on
    services._policy_due = 0.0
    row = ("p", "*", "Customer.email", "audit", "allow")
    async with db.write() as session:
        await add_row(session=session, row=row, actor="test")
    try:
        await admin("""query($id: ID!) { customer(id: $id) { email } }""", id=cid)
        await services.audit.flush()
        assert [(e.field, e.via) for e in await _entries(db)] == [("email", "Customer")]
    finally:
        async with db.write() as session:
            await remove_row(session=session, row=row, actor="test")


async def test_audit_entries_hold_no_personal_value(hub, db):
    services, client, admin, cid = hub
    await admin(READ, id=cid)
    await services.audit.flush()
    async with db.session() as s:
        count = await s.scalar(select(func.count()).select_from(ReadAudit))
        texts = [str(tuple(r)) for r in (await s.execute(select(ReadAudit.__table__))).all()]
    assert count == 2 and not any(v in t for t in texts for v in ("111-22-3333", "1980-01-01"))
