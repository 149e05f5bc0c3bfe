"""Property-based: every query and mutation the schema allows, fed hostile strings and extreme scalars, as each
role, on both databases, never answers INTERNAL_SERVER_ERROR or a 500, and the server answers /healthz after.

The operations come from the schema itself (hypothesis-graphql over the built schema), so fields and
arguments added later are covered without editing this test. Bounded and reproducible: the "hub-fuzz"
profile runs a fixed number of examples, derandomised (HUB_FUZZ_EXAMPLES=2000 runs more, HUB_FUZZ_RANDOM=1 other
ones, e.g. before a release).
"""
from __future__ import annotations

import asyncio
import json
import os
from types import SimpleNamespace

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, queries
from sqlalchemy import text

from authz import Authorizer
from hub.config import Settings
from hub.db import Database
from hub.ingest.matcher import default_scorer
from schema.app import build_services, create_app
from schema.build import build_schema
from tests.conftest import TABLES, mint
from tests.helpers import REGISTER, SYSTEM

settings.register_profile(
    "hub-fuzz", max_examples=int(os.environ.get("HUB_FUZZ_EXAMPLES", "60")),
    derandomize=not os.environ.get("HUB_FUZZ_RANDOM"), deadline=None,
    database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

MEGABYTE = "\u00e9" * 500_000                 # 1 MB of UTF-8
HOSTILE = [
    "", " ", "\x00", "a\x00b", "\ud800", "x\udfff", "\u202eevil", "\u200fשרה", "\x1b[31m", "\r\n", "\t", "\uffff",
    "\U0001f4a5", "A" * 1_000_000, MEGABYTE, "crm", "1", "2", "0", "-1", "9" * 25, "9223372036854775808",
    "Y3VzdG9tZXI6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "dW5jZXJ0YWluOmluZi8x", "givenName", "nationalId", "email",
    "2999-01-01", "ann@example.org", "+44 20 7946 0958", "GB", "O'Brien", "'; DROP TABLE customer; --",
]
IDS = ["1", "2", "3", "0", "-1", "abc", "\x00", "99999999999999999999999", "9223372036854775807",
       "9223372036854775808", "1" * 100_000]
DATETIMES = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2999-01-01T00:00:00Z",
             "1970-01-01T00:00:00Z", "2026-01-01T00:00:00", "9999-12-31T23:59:59.999999+23:59", "not a date",
             "0000-00-00T00:00:00Z", "2026-02-30T00:00:00Z"]
INTS = [0, 1, -1, 50, 1000, 1001, 2**31 - 1, -(2**31), 2**31, 2**63, -(2**70)]

STRING = st.one_of(st.sampled_from(HOSTILE), st.text(st.characters(codec=None), max_size=40)).map(
    lambda s: graphql.StringValueNode(value=s))
SCALARS = {
    "String": STRING,
    "ID": st.one_of(st.sampled_from(IDS).map(lambda s: graphql.StringValueNode(value=s)),
                    st.sampled_from([1, 2**63, 10**30]).map(lambda n: graphql.IntValueNode(value=str(n)))),
    "Int": st.sampled_from(INTS).map(lambda n: graphql.IntValueNode(value=str(n))),
    "DateTime": st.sampled_from(DATETIMES).map(lambda s: graphql.StringValueNode(value=s)),
    "Date": st.sampled_from(["2026-01-01", "0001-01-01", "9999-12-31", "x"]).map(
        lambda s: graphql.StringValueNode(value=s)),
    "JSON": STRING,
}
ROLES = ("admin", "steward", "reader", "source")


async def _start(db_url: str):
    db = Database(db_url)
    if not db.sqlite:
        async with db.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    services = build_services(Settings(database_url=db_url), db=db, authorizer=Authorizer(), scorer=default_scorer())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)), base_url="http://hub")
    hub = SimpleNamespace(db=db, client=client, tokens={"admin": await mint(db, "admin", "fuzz-admin")})
    for name in ("crm", "billing"):
        await post(hub, "admin", SYSTEM, {"input": {"name": name}})
    hub.tokens.update(steward=await mint(db, "steward", "fuzz-steward"), reader=await mint(db, "reader", "fuzz-reader"),
                      source=await mint(db, "source", "fuzz-feed", system="crm"))
    people = [{"key": f"K{i}", "attributes": {"givenName": "Ann", "familyName": "Lee", "email": f"ann{i % 2}@x.org",
                                               "dateOfBirth": f"1980-01-0{1 + i % 2}", "nationalId": f"AB12{i}"}}
              for i in range(4)]
    await post(hub, "admin", REGISTER, {"system": "crm", "records": people})
    return hub


async def post(hub, role: str, query: str, variables: dict | None = None) -> httpx.Response:
    # ensure_ascii: a lone surrogate travels as a JSON escape, as a hostile client would send it
    return await hub.client.post("/graphql", content=json.dumps({"query": query, "variables": variables or {}}),
                                 headers={"Authorization": f"Bearer {hub.tokens[role]}",
                                          "Content-Type": "application/json"})


@pytest.fixture
def fuzz_hub(db_url):
    """A hub on this test's database, driven from a loop of its own (hypothesis calls the test synchronously)."""
    loop = asyncio.new_event_loop()
    hub = loop.run_until_complete(_start(db_url))
    yield loop, hub
    loop.run_until_complete(hub.client.aclose())
    loop.run_until_complete(hub.db.dispose())
    loop.close()


def _operations():
    schema = build_schema()._schema
    return st.one_of(queries(schema, custom_scalars=SCALARS), mutations(schema, custom_scalars=SCALARS))


def test_generated_operations_with_hostile_values_never_reach_an_internal_error(fuzz_hub):
    loop, hub = fuzz_hub

    @settings(settings.get_profile("hub-fuzz"))
    @given(operation=_operations(), role=st.sampled_from(ROLES))
    def run(operation: str, role: str) -> None:
        note(f"as {role}: {operation[:3000]}")
        response = loop.run_until_complete(post(hub, role, operation))
        assert response.status_code < 500, (response.status_code, response.text[:500])
        body = response.json()  # always JSON
        assert all(e.get("extensions", {}).get("code") != "INTERNAL_SERVER_ERROR"
                   for e in body.get("errors") or []), body["errors"]

    run()
    health = loop.run_until_complete(hub.client.get("/healthz"))
    assert health.status_code == 200
    # and the hub still serves: the seeded records are where they were
    after = loop.run_until_complete(post(hub, "admin", "{ sourceSystems { name } }"))
    assert {s["name"] for s in after.json()["data"]["sourceSystems"]} >= {"crm", "billing"}
