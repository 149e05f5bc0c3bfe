"""Input validation at the edge: every string and scalar a client sends, the same on SQLite and PostgreSQL.

A bad attribute is a FieldError of its record, a bad key or updatedAt rejects only its record, a bad argument
is BAD_USER_INPUT; nothing a client sends reaches INTERNAL_SERVER_ERROR or is stored beyond its limit.
"""
from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from sqlalchemy import select

from hub.config import Settings
from hub.errors import BadInput
from hub.models import Customer, SourceRecord, SourceSystem, person
from hub.privacy.keys import new_keyring
from hub.privacy.sealing import SEALABLE
from hub.validation import (
    ARGUMENT_LIMITS,
    ATTRIBUTE_LIMITS,
    IDENTIFIER,
    MULTILINE,
    STORED_CHARS,
    TEXT,
    Limit,
    parse_id,
    safe_echo,
    text_problem,
)
from schema.app import build_services, create_app
from tests.conftest import Gql
from tests.helpers import REGISTER, add_system, rec, register

GOOD = dict(givenName="Ann", familyName="Lee", email="ann.lee@example.org")
SR = SourceRecord.__table__


def person_of(i: int) -> dict:
    return dict(givenName=f"Person{chr(65 + i % 26)}", familyName=f"Family{chr(65 + i // 26 % 26)}",
                email=f"person{i}@example.org")


async def post(admin: Gql, query: str, **variables) -> dict:
    """Post with JSON escapes (\\ud800 stays a lone surrogate on the server, as a hostile client sends it)."""
    r = await admin.client.post("/graphql", content=json.dumps({"query": query, "variables": variables}),
                                headers={"Authorization": f"Bearer {admin.token}",
                                         "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    return r.json()


def codes(body: dict) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


async def stored(db, key: str):
    async with db.session() as s:
        return (await s.execute(select(SR).where(SR.c.key == key))).first()


# ------------------------------------------------------------------------------------------ limits

def test_attribute_limits_match_the_columns():
    columns = {name: col.type.length for name, col in Customer.__table__.columns.items()
               if name in person.PersonColumns.model_fields and getattr(col.type, "length", None)}
    api = {"".join(p.capitalize() if i else p for i, p in enumerate(n.split("_"))): n for n in columns}
    # a sealed attribute's column holds its encrypted form: the longest clear value must fit once sealed
    sealed = {a: n for a, n in api.items() if n in SEALABLE}
    assert {a: c for a, c in STORED_CHARS.items() if a not in sealed} == {
        a: columns[n] for a, n in api.items() if a not in sealed}
    ring = new_keyring()
    for attribute, name in sealed.items():
        longest = "9" * STORED_CHARS.get(attribute, len("1900-01-01"))
        assert len(ring.encrypt(longest, context=name)) <= columns[name], attribute
    for attribute, chars in STORED_CHARS.items():  # what is received may be longer only where it is rewritten
        assert ATTRIBUTE_LIMITS[attribute].chars <= chars or attribute in ("country", "phone")


def test_argument_limits_match_the_columns():
    assert ARGUMENT_LIMITS["key"].chars == SR.c.key.type.length
    assert ARGUMENT_LIMITS["system"].chars == SR.c.system.type.length
    assert ARGUMENT_LIMITS["name"].chars == SourceSystem.__table__.c.name.type.length
    assert ARGUMENT_LIMITS["description"].chars == SourceSystem.__table__.c.description.type.length


@pytest.mark.parametrize("value, kind", [
    ("a\x00b", TEXT), ("a\ud800b", TEXT), ("a\x1bb", TEXT), ("a\x7fb", MULTILINE), ("a\u202eb", TEXT),
    ("a\ufffeb", TEXT), ("a\tb", IDENTIFIER), ("a\u200bb", IDENTIFIER), ("a\u2028b", IDENTIFIER), ("x" * 11, TEXT),
])
def test_text_with_a_character_it_may_not_hold_is_refused(value, kind):
    assert text_problem(value, Limit(10, kind)) is not None


@pytest.mark.parametrize("value, kind", [
    ("Zoë O'Brien-Łukasz", TEXT), ("\u05e9\u05e8\u05d4\u200f", TEXT), ("a\tb\nc", TEXT), ("line\r\nline", MULTILINE),
    ("\u0645\u062d\u0645\u062f\u200c", TEXT), ("ACME 12/3", IDENTIFIER), ("x" * 20, TEXT), ("😀", IDENTIFIER),
])
def test_ordinary_text_is_accepted(value, kind):
    assert text_problem(value, Limit(20, kind)) is None


@pytest.mark.parametrize("value", ["99999999999999999999999", "9223372036854775808", "0", "-1", "1e3", " 7", "١٢",
                                   "7\x00", "", "x" * 5_000_000])
def test_id_beyond_bigint_or_not_digits_is_refused(value):
    with pytest.raises(BadInput) as e:
        parse_id(value)
    assert len(str(e.value)) < 200  # never echoes a huge value


def test_safe_echo_replaces_what_a_response_cannot_carry():
    assert safe_echo("k\x00\ud800" + "x" * 500) == "k\ufffd\ufffd" + "x" * 197


# ---------------------------------------------------------------------------------- registration

async def test_bad_values_in_a_batch_as_admin_refuse_only_their_values_or_records(admin, db):
    await add_system(admin)
    records = [rec(f"G{i}", **person_of(i)) for i in range(40)]
    records += [
        rec("LONG", **{**GOOD, "givenName": "A" * 202}),                       # varchar(200) on PostgreSQL
        rec("NUL-NAME", **{**GOOD, "email": "nul@x.org", "familyName": "Le\x00e"}),
        rec("NUL-ADDR", **{**GOOD, "email": "addr@x.org", "addressLine1": "1 High St\x00"}),
        rec("K\x00", **GOOD),
        rec("K\ud800", **GOOD),
        rec("S\ud800", **{**GOOD, "email": "sur@x.org", "locality": "Lon\udc00don"}),
        rec("X" * 201, **GOOD),
        rec("   ", **GOOD),
    ]
    body = await post(admin, REGISTER, system="crm", records=records)
    assert "errors" not in body, body
    results = body["data"]["registerRecords"]
    assert all(r["action"] != "REJECTED" and r["errors"] == [] and r["customer"] for r in results[:40])
    by_key = {r["key"]: r for r in results[40:]}
    assert [e["field"] for e in by_key["LONG"]["errors"]] == ["givenName"] and by_key["LONG"]["action"] == "CREATED"
    assert [e["field"] for e in by_key["NUL-NAME"]["errors"]] == ["familyName"]
    assert [e["field"] for e in by_key["NUL-ADDR"]["errors"]] == ["addressLine1"]
    rejected = [r for r in results[40:] if r["action"] == "REJECTED"]
    assert len(rejected) == 5 and all(r["errors"][0]["field"] == "key" for r in rejected)
    assert all(len(r["key"]) <= 200 for r in results)
    long = await stored(db, "LONG")
    assert long.given_name is None and "givenName" not in long.raw and long.family_name == "Lee"
    nul = await stored(db, "NUL-NAME")
    assert nul.family_name is None and "familyName" not in nul.raw
    assert "addressLine1" not in (await stored(db, "NUL-ADDR")).raw


async def test_a_megabyte_given_name_and_national_id_are_not_stored_as_admin(admin, db):
    await add_system(admin)
    [res] = await register(admin, "crm", rec("BIG", givenName="G" * 1_000_000, nationalId="9" * 1_000_000,
                                             familyName="Lee", email="big@example.org"))
    assert res["action"] == "CREATED"
    assert {e["field"]: e["message"] for e in res["errors"]} == {
        "givenName": "must be at most 200 characters (got 1000000)",
        "nationalId": "must be at most 64 characters (got 1000000)"}
    row = await stored(db, "BIG")
    assert row.given_name is None and row.national_id is None and set(row.raw) == {"familyName", "email"}
    async with db.session() as s:
        golden = (await s.execute(select(Customer.__table__))).one()
    assert golden.given_name is None and golden.national_id is None


async def test_standardised_value_longer_than_its_column_is_a_field_error(admin, db):
    await add_system(admin)
    # title-casing turns ß into Ss: 66 words of "ßx" are 197 characters as sent, 263 once standardised
    [res] = await register(admin, "crm", rec("SS", givenName=" ".join(["ßx"] * 66), **{
        k: v for k, v in GOOD.items() if k != "givenName"}))
    assert [e["field"] for e in res["errors"]] == ["givenName"]
    assert (await stored(db, "SS")).given_name is None


@pytest.mark.parametrize("updated_at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                                        "2999-01-01T00:00:00Z"])
async def test_updated_at_out_of_range_or_in_the_future_rejects_only_its_record(admin, updated_at):
    await add_system(admin)
    results = await register(admin, "crm", rec("BAD", updated_at, **GOOD),
                             rec("OK", **{**GOOD, "email": "ok@example.org"}))
    assert [r["action"] for r in results] == ["REJECTED", "CREATED"]
    assert [e["field"] for e in results[0]["errors"]] == ["updatedAt"]


async def test_far_future_updated_at_no_longer_freezes_a_record(admin):
    await add_system(admin)
    [first] = await register(admin, "crm", rec("K", "2999-01-01T00:00:00Z", **GOOD))
    assert first["action"] == "REJECTED"
    assert (await register(admin, "crm", rec("K", **GOOD)))[0]["action"] == "CREATED"
    [later] = await register(admin, "crm", rec("K", dt.datetime.now(dt.UTC).isoformat(),
                                               **{**GOOD, "givenName": "Anne"}))
    assert later["action"] == "UPDATED"


async def test_clock_skew_is_a_setting(db, db_url, admin_token):
    import httpx

    from authz import Authorizer
    from hub.ingest.matcher import default_scorer

    services = build_services(Settings(database_url=db_url, max_clock_skew=3600), db=db, authorizer=Authorizer(),
                              scorer=default_scorer())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)),
                                 base_url="http://hub") as client:
        gql = Gql(client, admin_token)
        await add_system(gql)
        soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)).isoformat()
        later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()
        results = await register(gql, "crm", rec("A", soon, **GOOD), rec("B", later, **GOOD))
        assert [r["action"] for r in results] == ["CREATED", "REJECTED"]


# --------------------------------------------------------------------------- arguments and scalars

@pytest.mark.parametrize("query, variables", [
    ('query($d: DateTime) { customer(id: "1", asOf: $d) { id } }', {"d": "9999-12-31T23:59:59-14:00"}),
    ('query($d: DateTime) { customer(id: "1", asOf: $d) { id } }', {"d": "0001-01-01T00:00:00+14:00"}),
    ('{ customer(id: "99999999999999999999999") { id } }', {}),
    ('{ customer(id: "9223372036854775808") { id } }', {}),
    ('query($id: ID!) { customer(id: $id) { id } }', {"id": "7" * 5_000_000}),
    ('mutation { mergeCustomers(ids: ["1", "99999999999999999999"]) { id } }', {}),
    ('mutation { unmergeCustomer(id: "9223372036854775808") { id } }', {}),
    ('mutation { resolveMatchCandidate(id: "9223372036854775808", decision: MERGE) { id } }', {}),
    (('mutation { overrideAttribute(customerId: "9223372036854775808", field: "email", value: "a@b.org", '
      'note: "n") { id } }'), {}),
    ('query($s: String!) { sourceRecord(system: $s, key: "a") { key } }', {"s": "crm\x00"}),
    ('query($k: String!) { sourceRecord(system: "crm", key: $k) { key } }', {"k": "a\ud800"}),
    ('query($k: String!) { sourceRecords(system: $k) { edges { cursor } } }', {"k": "c" * 101}),
    ('mutation($k: String!) { deleteSourceRecord(system: "crm", key: $k) { id } }', {"k": "\x00"}),
    ('mutation($k: String!) { splitSourceRecord(system: "crm", key: $k) { id } }', {"k": "k\ud800"}),
    ('mutation($n: String) { mergeCustomers(ids: ["1", "2"], note: $n) { id } }', {"n": "a\x00"}),
    ('mutation($n: String) { mergeCustomers(ids: ["1", "2"], note: $n) { id } }', {"n": "n" * 2001}),
    ('mutation($v: String) { overrideAttribute(customerId: "1", field: "givenName", value: $v, note: "n") { id } }',
     {"v": "Ann\x00"}),
    ('mutation($f: String!) { overrideAttribute(customerId: "1", field: $f, value: "x", note: "n") { id } }',
     {"f": "\ud800"}),
    ('mutation($i: SourceSystemInput!) { registerSourceSystem(input: $i) { name } }', {"i": {"name": "s\x00"}}),
    ('mutation($i: SourceSystemInput!) { registerSourceSystem(input: $i) { name } }',
     {"i": {"name": "s", "description": "d\ud800"}}),
    ('mutation($i: SourceSystemInput!) { registerSourceSystem(input: $i) { name } }',
     {"i": {"name": "s", "defaultCountry": "G\x00B"}}),
    ('query($a: CustomerAttributesInput!) { findCustomers(attributes: $a) { matchProbability } }',
     {"a": {"familyName": "Lee\x00"}}),
    ('query($a: CustomerAttributesInput!) { findCustomers(attributes: $a) { matchProbability } }',
     {"a": {"email": "e" * 1_000_000}}),
    (('mutation($s: String!) { registerRecords(system: $s, records: [{key: "k", attributes: {email: "a@b.org"}}]) '
      '{ key } }'), {"s": "crm\ud800"}),
])
async def test_bad_argument_as_admin_is_bad_user_input(admin, query, variables):
    await add_system(admin)
    body = await post(admin, query, **variables)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert all(len(e["message"]) < 300 for e in body["errors"])


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize("query, cursor", [
    ("customers(first: 1, after: $c) { edges { cursor } }", "customer:99999999999999999999999"),
    ("customers(first: 1, after: $c) { edges { cursor } }", "customer:-5"),
    ('sourceRecords(system: "crm", after: $c) { edges { cursor } }', "record:9223372036854775808"),
    ("matchCandidates(orderBy: OLDEST, after: $c) { edges { cursor } }", "candidate:99999999999999999999"),
    ("matchCandidates(orderBy: NEWEST, after: $c) { edges { cursor } }", "candidate:99999999999999999999"),
    ("matchCandidates(after: $c) { edges { cursor } }", "uncertain:0.1/99999999999999999999"),
    ("matchCandidates(after: $c) { edges { cursor } }", "uncertain:inf/1"),
    ("matchCandidates(after: $c) { edges { cursor } }", "uncertain:nan/1"),
])
async def test_cursor_beyond_bigint_as_admin_is_bad_user_input(admin, query, cursor):
    await add_system(admin)
    body = await post(admin, f"query($c: String) {{ {query} }}", c=_cursor(cursor))
    assert codes(body) == ["BAD_USER_INPUT"], body


async def test_a_cursor_the_hub_made_still_pages_as_admin(admin):
    await add_system(admin)
    await register(admin, "crm", *(rec(f"P{i}", **person_of(i)) for i in range(3)))
    page = (await admin("{ customers(first: 2) { pageInfo { endCursor } } }"))["customers"]
    rest = (await admin("query($c: String) { customers(first: 2, after: $c) { edges { node { id } } } }",
                        c=page["pageInfo"]["endCursor"]))["customers"]
    assert len(rest["edges"]) == 1


@pytest.mark.parametrize("query, variables, code", [
    ('query($d: DateTime) { customer(id: "1", asOf: $d) { id } }', {"d": "2026-13-45"}, "BAD_USER_INPUT"),
    ('query($n: Int!) { customers(first: $n) { edges { cursor } } }', {"n": 2**40}, "BAD_USER_INPUT"),
    ('query($k: String!) { sourceRecord(system: "crm", key: $k) { key } }', {"k": 7}, "BAD_USER_INPUT"),
    ('{ customers(first: 99999999999) { edges { cursor } } }', {}, "GRAPHQL_VALIDATION_FAILED"),
    ('{ nope }', {}, "GRAPHQL_VALIDATION_FAILED"),
])
async def test_scalar_graphql_cannot_read_as_admin_has_a_code(admin, query, variables, code):
    body = await post(admin, query, **variables)
    assert codes(body) == [code], body


@pytest.mark.parametrize("ids", [[], ["1"], [str(i) for i in range(1, 103)]])
async def test_merge_of_fewer_than_two_or_too_many_ids_as_admin_is_bad_user_input(admin, ids):
    body = await post(admin, "mutation($ids: [ID!]!) { mergeCustomers(ids: $ids) { id } }", ids=ids)
    assert codes(body) == ["BAD_USER_INPUT"], body


@pytest.mark.parametrize("read", ['customer(id: "1") { id lineage { field } sourceRecords { key } history { kind } }',
                                  'customer(id: "1", asOf: "2026-01-01T00:00:00Z") { id version }',
                                  "customers(first: 5) { edges { node { id } } }"])
async def test_a_refused_field_beside_reads_as_admin_leaves_later_requests_working(admin, read):
    # the refused non-null field nulls the whole answer and graphql-core cancels the sibling reads mid-flight;
    # their connection must not go back to the pool broken (the next request's token lookup failed on it)
    await add_system(admin)
    await register(admin, "crm", rec("K1", **GOOD))
    for _ in range(8):
        body = await post(admin, f'{{ {read} findCustomers(attributes: {{familyName: "Lee"}}, first: 0) '
                                 "{ matchProbability } }")
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert (await admin('{ sourceSystems { name } }'))["sourceSystems"] == [{"name": "crm"}]
