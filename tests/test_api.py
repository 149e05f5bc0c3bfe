"""HTTP surface, authentication, operation-level authorisation and query limits."""
from __future__ import annotations

import pytest
from sqlalchemy import event

from hub.access.tokens import revoke_tokens
from tests.conftest import Gql, mint
from tests.helpers import REGISTER, RECORD, add_system, rec, register

PAGE = """query($after: String) { customers(first: 2, after: $after) {
  edges { cursor node { id email } } pageInfo { hasNextPage endCursor } } }"""


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_graphiql_page_is_served_without_a_token(client):
    r = await client.get("/graphql", headers={"Accept": "text/html"})
    assert r.status_code == 200 and "graphiql" in r.text.lower()


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer hub_not-a-token", "Basic abc"])
async def test_request_without_a_valid_token_is_401(client, header):
    headers = {"Authorization": header} if header else {}
    r = await client.post("/graphql", json={"query": "{ sourceSystems { name } }"}, headers=headers)
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_revoked_token_is_401(client, db):
    token = await mint(db, "admin", "bob")
    gql = Gql(client, token)
    await gql("{ sourceSystems { name } }")
    async with db.write() as s:
        assert await revoke_tokens(session=s, subject="bob") == 1
    assert (await gql.raw("{ sourceSystems { name } }")).status_code == 401


async def test_register_as_reader_is_forbidden(client, db, admin):
    await add_system(admin)
    reader = Gql(client, await mint(db, "reader"))
    data, errors = await reader.errors(REGISTER, system="crm", records=[rec("K", email="a@x.org")])
    assert data is None and errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_unknown_role_is_forbidden_everything(client, db):
    ghost = Gql(client, await mint(db, "ghost"))
    _, errors = await ghost.errors("{ sourceSystems { name } }")
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_source_registers_for_its_own_system_only(client, db, admin):
    await add_system(admin, "crm")
    await add_system(admin, "shop")
    source = Gql(client, await mint(db, "source", "crm-feed", system="crm"))
    [ok] = (await source.raw(REGISTER, system="crm", records=[rec("K1", email="a@x.org")])).json()["data"][
        "registerRecords"]
    assert ok["action"] == "ACCEPTED"  # a source is not told what its record linked to (policy)
    _, errors = await source.errors(REGISTER, system="shop", records=[rec("K2", email="b@x.org")])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    _, errors = await source.errors(RECORD, system="shop", key="K2")
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_customers_are_paged_by_cursor(admin):
    await add_system(admin)
    await register(admin, "crm", *[rec(f"K{i}", email=f"u{i}@x.org") for i in range(5)])
    seen, after = [], None
    while True:
        page = (await admin(PAGE, after=after))["customers"]
        seen += [e["node"]["email"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [f"u{i}@x.org" for i in range(5)]
    _, errors = await admin.errors(PAGE, after="garbage")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_page_of_customers_with_records_and_lineage_is_a_handful_of_statements(admin, db):
    await add_system(admin)
    await register(admin, "crm", *[rec(f"K{i}", email=f"user{i:03d}.{chr(97 + i % 26) * 3}@d{i}.org",
                                        givenName="Al", familyName=f"Name{chr(97 + i % 26)}{chr(97 + i // 26)}")
                                    for i in range(60)])
    statements = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(db.engine.sync_engine, "before_cursor_execute", listener)
    try:
        data = await admin("""{ customers(first: 60) { edges { node { id email sourceRecords { key email }
            lineage { field value sourceRecord { key } } history { kind } } } } }""")
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", listener)
    assert len(data["customers"]["edges"]) == 60
    business = [s for s in statements if "api_token" not in s and not s.startswith("BEGIN")]
    assert len(business) <= 6, business


async def test_deep_query_is_refused(admin):
    deep = "{ customers { edges { node { sourceRecords { customer { sourceRecords { customer { sourceRecords " \
           "{ customer { sourceRecords { customer { id } } } } } } } } } } } }"
    _, errors = await admin.errors(deep)
    assert "depth" in errors[0]["message"]


async def test_unexpected_failure_is_masked(admin, monkeypatch):
    import schema.queries

    def boom(*_):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(schema.queries, "select", boom)
    _, errors = await admin.errors("{ sourceSystems { name } }")
    assert errors[0]["message"] == "Internal server error."
    assert errors[0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


async def test_registration_result_reads_the_golden_record_when_more_than_its_id_is_asked(admin):
    await add_system(admin)
    query = """mutation($r: [SourceRecordInput!]!) { registerRecords(system: "crm", records: $r) {
        key action customer { id version email } } }"""
    data = await admin(query, r=[rec("K1", email="Ann@X.org"), rec("K2", email="bob@x.org")])
    results = data["registerRecords"]
    assert [r["customer"]["email"] for r in results] == ["ann@x.org", "bob@x.org"]
    assert all(r["customer"]["version"] == 1 for r in results)
    assert results[0]["customer"]["id"] != results[1]["customer"]["id"]
