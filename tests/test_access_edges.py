"""Access-control edges: the one-system binding by capability, no write without a clear read, no trace of a
hidden field, and what a source learns from its own registrations."""
from __future__ import annotations

import datetime as dt
import asyncio
import uuid

import pytest
from alembic import command
from sqlalchemy import delete, select

from authz import Access, Authorizer, default_policy_rows
from hub.access.policy import POLICY_CHANGED, RULE, add_row, current_revision, list_rows, remove_row
from hub.db import Database
from hub.models import Event
from hub.ops.migrate import alembic_config
from tests.conftest import PG_SERVER, Gql, _admin, mint
from tests.helpers import REGISTER, add_system, rec, register

FEED = ("g", "feed", "source")


@pytest.fixture
async def live_policy(services, db):
    """The running app re-reads the stored policy on every request; the default policy is restored after."""
    from tests.test_policy import restore_default_policy

    services.policy_check_interval = 0
    yield
    await restore_default_policy(db)


async def _edit(db, fn, row) -> None:
    async with db.write() as session:
        await fn(session=session, row=row, actor="test")


# --- 1. the one-system binding, by what the policy lets a role do ------------------------------------------


def test_system_bound_follows_the_registration_right_not_the_role_name():
    auth = Authorizer([*default_policy_rows(), FEED])
    assert auth.system_bound("source") and auth.system_bound("feed")
    assert not any(auth.system_bound(r) for r in ("admin", "steward", "reader", "ghost"))
    auth.add(("p", "feed", "Systems.all", "write", "allow"))  # a feed for every system, said so in the policy
    assert not auth.system_bound("feed")


async def test_token_create_for_a_role_inheriting_source_without_system_is_refused(hub_cli, db, admin):
    await _edit(db, add_row, FEED)
    try:
        refused = await hub_cli("token", "create", "--subject", "feed-1", "--role", "feed")
        assert refused.exit_code != 0 and "--system" in refused.output and "hub_" not in refused.output
        await add_system(admin, "crm")
        bound = await hub_cli("token", "create", "--subject", "feed-1", "--role", "feed", "--system", "crm")
        assert bound.exit_code == 0 and bound.stdout.startswith("hub_")
    finally:
        await _edit(db, remove_row, FEED)


async def test_request_with_an_unbound_token_of_a_role_inheriting_source_is_forbidden(client, db, admin, live_policy):
    """A token minted before its role became bound reaches nothing, national ids least of all."""
    await add_system(admin, "crm")
    await add_system(admin, "billing")
    await register(admin, "billing", rec("B1", email="b@x.org", nationalId="123-45-6789"))
    feed = Gql(client, await mint(db, "feed", "feed-1"))  # the role is unknown yet: not bound
    await _edit(db, add_row, FEED)
    response = await feed.raw('{ sourceRecord(system: "billing", key: "B1") { key nationalId } }')
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "6789" not in response.text
    bound = Gql(client, await mint(db, "feed", "feed-2", system="crm"))
    _, errors = await bound.errors('{ sourceRecord(system: "billing", key: "B1") { key nationalId } }')
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


# --- 2. writing a field needs reading it in clear ----------------------------------------------------------

OVERRIDE = """mutation($id: ID!, $f: String!, $v: String) {
  overrideAttribute(customerId: $id, field: $f, value: $v, note: "guess") { id version } }"""
VERSION = 'query($id: ID!) { customer(id: $id) { version } }'


def test_may_write_needs_a_clear_read():
    auth = Authorizer()
    assert auth.field_access("steward", "Customer", "nationalId") is Access.MASK
    assert auth.can("steward", "Customer.nationalId", "write")
    assert not auth.may_write("steward", "Customer", "nationalId")
    assert auth.may_write("steward", "Customer", "email") and auth.may_write("admin", "Customer", "nationalId")


@pytest.mark.parametrize("guess", ["123-45-6789", "999-99-9999"])
async def test_override_of_masked_national_id_as_steward_is_forbidden_for_right_and_wrong_guesses(
        client, db, admin, guess):
    await add_system(admin)
    [r] = await register(admin, "crm", rec("K1", email="a@x.org", nationalId="123-45-6789"))
    cid = r["customer"]["id"]
    steward = Gql(client, await mint(db, "steward"))
    data, errors = await steward.errors(OVERRIDE, id=cid, f="nationalId", v=guess)
    assert data is None and [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    assert guess not in errors[0]["message"]
    assert (await admin(VERSION, id=cid))["customer"]["version"] == 1
    # an unknown customer gets the same refusal: the refusal comes before any lookup
    _, errors_unknown = await steward.errors(OVERRIDE, id="999", f="nationalId", v=guess)
    assert errors_unknown[0]["message"] == errors[0]["message"]


async def test_override_of_an_unknown_attribute_is_bad_input_and_not_asked_of_the_policy(client, db, admin, services):
    steward = Gql(client, await mint(db, "steward"))
    _, errors = await steward.errors(OVERRIDE, id="1", f="nationalIdX", v="1")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert not any("nationalIdX" in k[1] for k in services.authorizer._policy.decisions)


async def test_register_of_a_field_the_source_may_not_read_is_forbidden_and_writes_nothing(
        client, db, admin, live_policy):
    await add_system(admin)
    source = Gql(client, await mint(db, "source", "crm-feed", system="crm"))
    await _edit(db, add_row, ("source", "SourceRecord.nationalId", "read", "deny"))
    data, errors = await source.errors(REGISTER, system="crm",
                                       records=[rec("K1", email="a@x.org"), rec("K2", email="b@x.org", nationalId="X!2")])
    assert data is None and errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert "SourceRecord.nationalId" in errors[0]["message"] and "X!2" not in errors[0]["message"]
    assert (await admin('{ sourceSystems { recordCount } }'))["sourceSystems"] == [{"recordCount": 0}]
    [ok] = (await source.raw(REGISTER, system="crm", records=[rec("K1", email="a@x.org")])).json()["data"][
        "registerRecords"]
    assert ok["action"] == "ACCEPTED"


# --- 3. a field the caller may not read leaves no trace ----------------------------------------------------

TRACES = """{ customers { edges { node { id lineage { field value rule } history { kind changes } } } } }"""


async def test_lineage_and_history_as_reader_are_the_same_with_and_without_hidden_values(client, db, admin):
    await add_system(admin)
    await register(admin, "crm", rec("K1", givenName="Ann", familyName="Lee", email="a@x.org",
                                     dateOfBirth="1980-01-02", nationalId="123-45-6789"),
                   rec("K2", givenName="Bo", familyName="Kim", email="b@x.org"))
    # a later change of the hidden values only
    await register(admin, "crm", rec("K1", dt.datetime.now(dt.UTC).isoformat(), givenName="Ann", familyName="Lee",
                                     email="a@x.org", dateOfBirth="1981-01-02", nationalId="999-45-6789"))
    body = (await Gql(client, await mint(db, "reader")).raw(TRACES)).json()
    assert "errors" not in body, body["errors"]
    with_values, without = (e["node"] for e in body["data"]["customers"]["edges"])
    fields = lambda node: sorted(r["field"] for r in node["lineage"])  # noqa: E731
    assert fields(with_values) == fields(without) == ["email", "familyName", "givenName"]
    for node in (with_values, without):
        for event in node["history"]:
            named = set((event["changes"] or {}).get("fields") or {})
            assert not named & {"dateOfBirth", "nationalId"}, event
            assert "1980" not in str(event) and "6789" not in str(event)
    admin_view = (await admin(TRACES))["customers"]["edges"][0]["node"]
    assert {"dateOfBirth", "nationalId"} <= {r["field"] for r in admin_view["lineage"]}


async def test_override_entry_of_a_hidden_attribute_is_left_out_for_reader(client, db, admin):
    await add_system(admin)
    await register(admin, "crm", rec("K1", email="a@x.org", nationalId="123-45-6789"))
    async with db.write() as session:
        session.add(Event(customer_id=1, kind="OVERRIDDEN", actor="admin", note="checked", changes={
            "fields": {"nationalId": {"before": "123-45-6789", "after": "999-88-7777"}},
            "override": {"field": "nationalId", "value": "999-88-7777"}, "version": 2}))
    body = (await Gql(client, await mint(db, "reader")).raw('{ customer(id: "1") { history { kind changes } } }')
            ).json()
    [event] = [e for e in body["data"]["customer"]["history"] if e["kind"] == "OVERRIDDEN"]
    assert event["changes"] == {"fields": {}, "version": 2} and "errors" not in body


# --- 4. what a source learns from its registrations --------------------------------------------------------

PROBE = """mutation($r: [SourceRecordInput!]!) { registerRecords(system: "crm", records: $r) {
  key action matchProbability customer { id } } }"""
OWN = 'query($k: String!) { sourceRecord(system: "crm", key: $k) { key customer { id } } }'
DELETE = 'mutation($k: String!) { deleteSourceRecord(system: "crm", key: $k) { id } }'


async def _probe_world(client, db, admin):
    await add_system(admin, "crm")
    await add_system(admin, "billing")
    await register(admin, "billing", rec("B1", givenName="Ann", familyName="Lee", nationalId="123-45-6789"))
    return Gql(client, await mint(db, "source", "crm-feed", system="crm"))


async def test_probe_with_another_systems_national_id_as_source_learns_nothing_of_the_link(client, db, admin):
    source = await _probe_world(client, db, admin)
    hit = (await source.raw(PROBE, r=[rec("P1", nationalId="123-45-6789")])).json()
    miss = (await source.raw(PROBE, r=[rec("P2", nationalId="555-45-0000")])).json()
    assert hit["data"]["registerRecords"] == [{"key": "P1", "action": "ACCEPTED", "matchProbability": None,
                                               "customer": None}]
    assert miss["data"]["registerRecords"] == [{"key": "P2", "action": "ACCEPTED", "matchProbability": None,
                                                "customer": None}]
    assert hit["errors"] == miss["errors"] and {e["extensions"]["code"] for e in hit["errors"]} == {"FORBIDDEN"}
    # the admin sees that the probe did link
    linked = await admin('{ sourceRecord(system: "crm", key: "P1") { customer { sourceRecords { key } } } }')
    assert {r["key"] for r in linked["sourceRecord"]["customer"]["sourceRecords"]} == {"B1", "P1"}
    # nor by reading its own record back, nor by deleting it
    for key in ("P1", "P2"):
        body = (await source.raw(OWN, k=key)).json()
        assert body["data"]["sourceRecord"] == {"key": key, "customer": None}
        assert [e["message"] for e in body["errors"]] == ["not allowed to read SourceRecord.customer"]
    deleted = [(await source.raw(DELETE, k=key)).json() for key in ("P1", "P2")]
    assert deleted[0] == deleted[1] and deleted[0]["data"] == {"deleteSourceRecord": None}


async def test_probe_as_source_with_the_linkage_rule_opened_by_an_admin_shows_the_link(
        client, db, admin, live_policy):
    source = await _probe_world(client, db, admin)
    await _edit(db, add_row, ("source", "RegistrationResult.*", "read", "allow"))
    await _edit(db, remove_row, ("source", "SourceRecord.customer", "read", "deny"))
    [hit] = (await source(PROBE, r=[rec("P1", nationalId="123-45-6789")]))["registerRecords"]
    assert hit["action"] == "LINKED" and hit["matchProbability"] == 1.0 and hit["customer"]["id"] == "1"
    assert (await source(OWN, k="P1"))["sourceRecord"]["customer"] == {"id": "1"}


# --- the stored policy of an older hub gets the new rows -------------------------------------------------


@pytest.fixture
async def fresh_url(db_url, tmp_path):
    """An empty, unmigrated database of the test's dialect."""
    if db_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    name = f"hub_test_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    yield PG_SERVER.rsplit("/", 1)[0] + "/" + name
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_migration_adds_the_source_linkage_rows_to_a_policy_seeded_before(fresh_url):
    rows = [("p", "source", "RegistrationResult.action", "read-masked", "allow"),
            ("p", "source", "SourceRecord.customer", "read", "deny")]
    cfg = alembic_config(fresh_url)
    await asyncio.to_thread(command.upgrade, cfg, "d65f972307d8")
    old = Database(fresh_url)
    try:
        async with old.session() as session, session.begin():  # as a hub seeded before these rows existed
            for row in rows:
                await session.execute(delete(RULE).where(RULE.c.subject == row[1], RULE.c.object == row[2]))
            before = await current_revision(session=session)
        await asyncio.to_thread(command.upgrade, cfg, "head")
        async with old.session() as session:
            stored = await list_rows(session=session)
            assert [r for r in stored if r in rows] == rows
            assert await current_revision(session=session) == before + 1
            [event] = (await session.execute(select(Event.changes).where(Event.kind == POLICY_CHANGED))).scalars()
            assert event["added"] == [list(r) for r in rows]
    finally:
        await old.dispose()


async def test_register_as_a_role_that_may_not_read_the_action_is_forbidden_before_writing(
        client, db, admin, live_policy):
    await add_system(admin)
    for row in [("p", "feedx", "Mutation.registerRecords", "call", "allow"),
                ("p", "feedx", "SourceRecord.*", "write", "allow"), ("p", "feedx", "SourceRecord.*", "read", "allow")]:
        await _edit(db, add_row, row)
    feed = Gql(client, await mint(db, "feedx", "feed-x", system="crm"))
    _, errors = await feed.errors(REGISTER, system="crm", records=[rec("K1", email="a@x.org")])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN" and "RegistrationResult.action" in errors[0]["message"]
    assert (await admin('{ sourceSystems { recordCount } }'))["sourceSystems"] == [{"recordCount": 0}]
