"""Who sees what, through the API: every default role x every person attribute, on every road to a value.

The matrix tests read one shared world per database (built once per module: three golden records, one of
them fed by two systems, one of them updated) and assert on answers fetched once per role, so 200-odd
cases cost a dozen requests. The other tests build their own data with the conftest fixtures.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import text

from authz import Authorizer, mask
from hub.config import Settings
from hub.db import Database
from hub.ingest.matcher import default_scorer
from hub.models import Event
from hub.access.policy import add_row, remove_row
from hub.access.tokens import revoke_tokens
from schema.app import build_services, create_app
from tests.conftest import TABLES, TEST_KEYS, Gql, mint
from tests.helpers import REGISTER, add_system, rec, register

ROLES = ("admin", "steward", "reader", "source")
ATTRIBUTES = ("givenName", "familyName", "dateOfBirth", "email", "phone", "addressLine1", "addressLine2",
              "locality", "postcode", "region", "country", "nationalId")
CLEAR, MASKED, NULL = "clear", "masked", "null"


def expected(role: str, type_name: str, attribute: str) -> str:
    """The default policy's promise for one person attribute of Customer or SourceRecord."""
    if role == "admin" or (role == "source" and type_name == "SourceRecord"):
        return CLEAR
    if role == "steward":
        return MASKED if attribute == "nationalId" else CLEAR
    if role == "reader":
        return NULL if attribute in ("nationalId", "dateOfBirth") else CLEAR
    return NULL  # source: of a golden record, the id and version only


def person(n: int, **overrides) -> dict:
    """Every person attribute, distinct per person."""
    return {"givenName": ["Jane", "John", "Ann"][n], "familyName": ["O'Neil", "Smith", "Lee"][n],
            "dateOfBirth": f"198{n}-07-0{n + 2}", "email": f"p{n}@example.com", "phone": f"020 7946 09{n}8",
            "addressLine1": f"{n + 1} High Street", "addressLine2": f"Flat {n + 2}", "locality": "London",
            "postcode": "SW1A 1AA", "region": "Greater London", "country": "GB",
            "nationalId": f"{n}23-45-678{n}", **overrides}


ATTRS = " ".join(ATTRIBUTES)
CUSTOMERS = f"{{ customers(first: 10) {{ edges {{ node {{ id {ATTRS} }} }} }} }}"
RECORDS_OF_CUSTOMERS = f"{{ customers(first: 10) {{ edges {{ node {{ sourceRecords {{ system key {ATTRS} }} }} }} }} }}"
LINEAGE_AND_HISTORY = """{ customers(first: 10) { edges { node { id lineage { field value }
  history { kind changes } } } } }"""
OWN_RECORDS = f"""{{ sourceRecords(system: "crm") {{ edges {{ node {{ system key {ATTRS}
  customer {{ id version {ATTRS} }} }} }} }} }}"""


@dataclass
class World:
    """One populated hub and the answers each role got on each road."""

    client: httpx.AsyncClient
    db: Database
    tokens: dict[str, str] = field(default_factory=dict)
    answers: dict[tuple[str, str], dict] = field(default_factory=dict)

    async def answer(self, role: str, query: str) -> dict:
        """The whole response body of a query as a role, fetched once."""
        if (role, query) not in self.answers:
            self.answers[role, query] = (await Gql(self.client, self.tokens[role]).raw(query)).json()
        return self.answers[role, query]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world_url(request, tmp_path_factory) -> str:
    """A migrated database of each dialect for this module (made outside the event loop)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("field_access") / "hub.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="module")
async def world(world_url):
    """Three golden records: 1 from crm C0 + billing B1, 2 from crm C1 (then updated), 3 from crm C2."""
    database = Database(world_url)
    if not database.sqlite:
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    services = build_services(Settings(database_url=database.url, keys=TEST_KEYS), db=database, authorizer=Authorizer(),
                              scorer=default_scorer())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)),
                                 base_url="http://hub") as client:
        w = World(client, database)
        w.tokens = {role: await mint(database, role) for role in ("admin", "steward", "reader")}
        admin = Gql(client, w.tokens["admin"])
        await add_system(admin, "crm", defaultCountry="GB", trust=80)
        await add_system(admin, "billing", defaultCountry="GB", trust=60)
        w.tokens["source"] = await mint(database, "source", "crm-feed", system="crm")
        await register(admin, "crm", *[rec(f"C{n}", "2026-01-01T00:00:00+00:00", **person(n)) for n in range(3)])
        await register(admin, "billing", rec("B1", "2026-01-01T00:00:00+00:00", **person(0)))
        await register(admin, "crm", rec("C1", "2026-02-01T00:00:00+00:00",
                                         **person(1, nationalId="999-88-7777", dateOfBirth="1971-03-04")))
        yield w
    await database.dispose()


def _errors_for(body: dict, name: str) -> list[dict]:
    """The FORBIDDEN errors that name one field (Type.field)."""
    return [e for e in body.get("errors") or []
            if e["extensions"]["code"] == "FORBIDDEN" and e["message"] == f"not allowed to read {name}"]


def _check(seen: list, clear: list, expectation: str) -> None:
    """Each value is in clear, masked to its last 4 characters, or null, as expected."""
    assert any(v is not None for v in clear), "the world must hold values to hide"
    if expectation == CLEAR:
        assert seen == clear
    elif expectation == MASKED:
        for s, c in zip(seen, clear, strict=True):
            assert s == mask(c) and s.startswith("*") and s.endswith(c[-4:]), (s, c)
    else:
        assert seen == [None] * len(clear)


def _road(role: str, type_name: str) -> tuple[str, callable, list]:
    """The query by which a role reads a type's attributes, the items it lists, and their first path."""
    if role == "source":
        nodes = lambda d: [e["node"] for e in d["sourceRecords"]["edges"]]  # noqa: E731
        if type_name == "SourceRecord":
            return OWN_RECORDS, nodes, ["sourceRecords", "edges", 0, "node"]
        return OWN_RECORDS, lambda d: [n["customer"] for n in nodes(d)], ["sourceRecords", "edges", 0, "node",
                                                                          "customer"]
    if type_name == "Customer":
        return CUSTOMERS, lambda d: [e["node"] for e in d["customers"]["edges"]], ["customers", "edges", 0, "node"]
    return (RECORDS_OF_CUSTOMERS, lambda d: [r for e in d["customers"]["edges"] for r in e["node"]["sourceRecords"]],
            ["customers", "edges", 0, "node", "sourceRecords", 0])


async def _clear_values(world: World, role: str, type_name: str, attribute: str) -> list:
    """What an admin sees of the same items, asking the same query."""
    query, items, _ = _road(role, type_name)
    return [i[attribute] for i in items((await world.answer("admin", query))["data"])]


@pytest.mark.parametrize("type_name", ["Customer", "SourceRecord"])
@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("role", ROLES)
async def test_person_attribute_as_role_is_clear_masked_or_null_with_one_forbidden_error(
        world, role, attribute, type_name):
    query, items, first_path = _road(role, type_name)
    body = await world.answer(role, query)
    if role == "source" and type_name == "Customer":
        # the golden record behind a source's own records is not shown to it (what its records linked to)
        assert [i for i in items(body["data"])] == [None] * 3
        assert [e["path"] for e in _errors_for(body, "SourceRecord.customer")] == [[*first_path[:-1], "customer"]]
        assert _errors_for(body, f"Customer.{attribute}") == []
        return
    expectation = expected(role, type_name, attribute)
    seen = [i[attribute] for i in items(body["data"])]
    assert len(seen) >= 3, "several items are read at once"
    _check(seen, await _clear_values(world, role, type_name, attribute), expectation)
    errors = _errors_for(body, f"{type_name}.{attribute}")
    if expectation == NULL:
        assert [e["path"] for e in errors] == [[*first_path, attribute]]
    else:
        assert errors == []


def _lineage(body: dict, attribute: str) -> list:
    return [row["value"] for e in body["data"]["customers"]["edges"] for row in e["node"]["lineage"]
            if row["field"] == attribute]


def _created(body: dict, attribute: str) -> list:
    return [ev["changes"]["fields"][attribute] for e in body["data"]["customers"]["edges"]
            for ev in e["node"]["history"] if ev["kind"] == "CREATED" and attribute in ev["changes"]["fields"]]


def _updated(body: dict, attribute: str) -> list:
    return [side for e in body["data"]["customers"]["edges"] for ev in e["node"]["history"] if ev["kind"] == "UPDATED"
            and attribute in ev["changes"]["fields"]
            for side in (ev["changes"]["fields"][attribute]["before"], ev["changes"]["fields"][attribute]["after"])]


def _check_or_absent(seen: list, clear: list, expectation: str) -> None:
    """As _check, but an attribute hidden from the caller leaves no trace at all: no entry, not even a null."""
    if expectation == NULL:
        assert clear and seen == []
    else:
        _check(seen, clear, expectation)


@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("role", ["admin", "steward", "reader"])
async def test_lineage_value_as_role_follows_the_attribute_rule(world, role, attribute):
    body = await world.answer(role, LINEAGE_AND_HISTORY)
    expectation = expected(role, "Customer", attribute)
    _check_or_absent(_lineage(body, attribute),
                     _lineage(await world.answer("admin", LINEAGE_AND_HISTORY), attribute), expectation)
    assert _errors_for(body, "AttributeLineage.value") == []


@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("role", ["admin", "steward", "reader"])
async def test_created_event_changes_as_role_follow_the_attribute_rule(world, role, attribute):
    body = await world.answer(role, LINEAGE_AND_HISTORY)
    expectation = expected(role, "Customer", attribute)
    _check_or_absent(_created(body, attribute),
                     _created(await world.answer("admin", LINEAGE_AND_HISTORY), attribute), expectation)
    assert _errors_for(body, f"CustomerEvent.changes.{attribute}") == []


@pytest.mark.parametrize("attribute", ["nationalId", "dateOfBirth"])
@pytest.mark.parametrize("role", ["admin", "steward", "reader"])
async def test_updated_event_before_and_after_as_role_follow_the_attribute_rule(world, role, attribute):
    body = await world.answer(role, LINEAGE_AND_HISTORY)
    expectation = expected(role, "Customer", attribute)
    _check_or_absent(_updated(body, attribute),
                     _updated(await world.answer("admin", LINEAGE_AND_HISTORY), attribute), expectation)


async def test_linked_event_changes_as_reader_are_shown_whole(world):
    """Events whose changes hold no denied attribute value reach a reader unchanged."""
    def linked(body: dict) -> list:
        return [ev["changes"] for e in body["data"]["customers"]["edges"] for ev in e["node"]["history"]
                if ev["kind"] == "LINKED"]

    seen = linked(await world.answer("reader", LINEAGE_AND_HISTORY))
    assert seen and seen == linked(await world.answer("admin", LINEAGE_AND_HISTORY))


async def _source_seeing_its_customers(client, db, admin) -> Gql:
    """A crm source token under a policy that shows a source the golden record of its records."""
    await add_system(admin, "crm")
    await register(admin, "crm", *[rec(f"C{n}", **person(n)) for n in range(3)])
    async with db.write() as session:
        await remove_row(session=session, row=("source", "SourceRecord.customer", "read", "deny"), actor="test")
    return Gql(client, await mint(db, "source", "crm-feed", system="crm"))


async def test_customer_lineage_and_history_as_source_are_empty_with_one_error_each(client, db, admin, live_policy):
    source = await _source_seeing_its_customers(client, db, admin)
    body = (await source.raw("""{ sourceRecords(system: "crm") { edges { node {
        customer { id sourceRecords { key } lineage { value } history { changes } } } } } }""")).json()
    customers = [e["node"]["customer"] for e in body["data"]["sourceRecords"]["edges"]]
    assert customers and all(c["id"] and c["lineage"] == c["history"] == c["sourceRecords"] == [] for c in customers)
    for name in ("Customer.sourceRecords", "Customer.lineage", "Customer.history"):
        assert len(_errors_for(body, name)) == 1, name


async def test_customer_timestamps_as_source_are_refused_once(client, db, admin, live_policy):
    """Non-null fields the policy denies: the customer is null and one error names the field."""
    source = await _source_seeing_its_customers(client, db, admin)
    body = (await source.raw(
        """{ sourceRecords(system: "crm") { edges { node { key customer { id createdAt } } } } }""")).json()
    nodes = [e["node"] for e in body["data"]["sourceRecords"]["edges"]]
    assert len(nodes) == 3 and all(n["key"] and n["customer"] is None for n in nodes)
    assert len(_errors_for(body, "Customer.createdAt")) == 1
    assert len(body["errors"]) == 1


# --- roads built per test -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "steward", "reader"])
async def test_override_entry_in_history_as_role_follows_the_attribute_rule(client, db, admin, role):
    """An entry naming one attribute ({"field", "value"}, as a steward's override writes) is guarded too."""
    await add_system(admin)
    await register(admin, "crm", rec("K1", email="a@x.org", nationalId="123-45-6789"))
    async with db.write() as session:
        session.add(Event(customer_id=1, kind="OVERRIDDEN", actor="steward-user", note="checked", changes={
            "fields": {"nationalId": {"before": "123-45-6789", "after": "999-88-7777"}},
            "override": {"field": "nationalId", "value": "999-88-7777"}}))
    body = (await Gql(client, await mint(db, role)).raw('{ customer(id: "1") { history { kind changes } } }')).json()
    [event] = [e for e in body["data"]["customer"]["history"] if e["kind"] == "OVERRIDDEN"]
    if expected(role, "Customer", "nationalId") == NULL:  # hidden: neither the entry nor the key is there
        assert "override" not in event["changes"] and "nationalId" not in event["changes"]["fields"]
        return
    seen = [event["changes"]["override"]["value"], event["changes"]["fields"]["nationalId"]["after"]]
    _check(seen, ["999-88-7777", "999-88-7777"], expected(role, "Customer", "nationalId"))
    assert event["changes"]["override"]["field"] == "nationalId"


async def test_national_id_as_reader_is_null_with_one_forbidden_error_even_when_absent(client, db, admin):
    """The refusal does not depend on a value existing, so it does not tell whether one exists."""
    await add_system(admin)
    await register(admin, "crm", rec("K1", email="a@x.org"), rec("K2", email="b@x.org"))
    reader = Gql(client, await mint(db, "reader"))
    body = (await reader.raw("{ customers { edges { node { email nationalId } } } }")).json()
    assert [e["node"]["nationalId"] for e in body["data"]["customers"]["edges"]] == [None, None]
    assert [e["path"] for e in body["errors"]] == [["customers", "edges", 0, "node", "nationalId"]]


async def test_request_with_a_revoked_reader_token_is_401(client, db):
    reader = Gql(client, await mint(db, "reader", "web-app"))
    await reader("{ sourceSystems { name } }")
    async with db.write() as session:
        await revoke_tokens(session=session, subject="web-app")
    response = await reader.raw("{ sourceSystems { name } }")
    assert response.status_code == 401 and response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


OPERATIONS = {
    "customer": '{ customer(id: "1") { id } }',
    "customers": "{ customers { edges { node { id } } } }",
    "sourceSystems": "{ sourceSystems { name } }",
    "sourceRecord": '{ sourceRecord(system: "crm", key: "K") { key } }',
    "sourceRecords": '{ sourceRecords(system: "crm") { edges { node { key } } } }',
    "matchCandidates": "{ matchCandidates { edges { node { id } } } }",
    "registerSourceSystem": 'mutation { registerSourceSystem(input: {name: "x"}) { name } }',
    "registerRecords": 'mutation { registerRecords(system: "crm", records: [{key: "K", attributes: {}}]) { key } }',
    "deleteSourceRecord": 'mutation { deleteSourceRecord(system: "crm", key: "K") { id } }',
}


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_operation_as_unknown_role_is_forbidden(client, db, operation):
    ghost = Gql(client, await mint(db, "ghost"))
    _, errors = await ghost.errors(OPERATIONS[operation])
    assert [(e["path"], e["extensions"]["code"]) for e in errors] == [([operation], "FORBIDDEN")]


async def test_registration_result_as_source_with_linkage_opened_gives_the_customer_id_only(
        client, db, admin, live_policy):
    await add_system(admin)
    source = Gql(client, await mint(db, "source", "crm-feed", system="crm"))
    async with db.write() as session:
        await add_row(session=session, row=("source", "RegistrationResult.*", "read", "allow"), actor="test")
    body = (await source.raw("""mutation($r: [SourceRecordInput!]!) { registerRecords(system: "crm", records: $r) {
        key action customer { id version email nationalId } } }""",
                             r=[rec("K1", email="a@x.org", nationalId="123-45-6789")])).json()
    [result] = body["data"]["registerRecords"]
    assert result["action"] == "CREATED" and result["customer"]["id"] and result["customer"]["version"] == 1
    assert result["customer"]["email"] is result["customer"]["nationalId"] is None
    assert sorted(e["message"] for e in body["errors"]) == ["not allowed to read Customer.email",
                                                            "not allowed to read Customer.nationalId"]


@pytest.fixture
async def live_policy(services, db):
    """The running app re-reads the stored policy on every request; the default policy is restored after."""
    from tests.test_policy import restore_default_policy

    services.policy_check_interval = 0
    yield
    await restore_default_policy(db)


async def test_customer_source_records_as_source_are_its_own_systems_only(client, db, admin, live_policy):
    """Even a policy that lets sources read a golden record's source records keeps other systems out."""
    await add_system(admin, "crm")
    await add_system(admin, "billing")
    await register(admin, "crm", rec("C1", email="a@x.org", dateOfBirth="1980-01-01"))
    await register(admin, "billing", rec("B1", email="a@x.org", dateOfBirth="1980-01-01"))
    async with db.write() as session:
        await add_row(session=session, row=("source", "Customer.sourceRecords", "read", "allow"), actor="test")
        await remove_row(session=session, row=("source", "SourceRecord.customer", "read", "deny"), actor="test")
    source = Gql(client, await mint(db, "source", "crm-feed", system="crm"))
    data = await source('{ sourceRecord(system: "crm", key: "C1") { customer { sourceRecords { system key } } } }')
    assert data["sourceRecord"]["customer"]["sourceRecords"] == [{"system": "crm", "key": "C1"}]
    admin_view = await admin('{ customer(id: "1") { sourceRecords { system } } }')
    assert len(admin_view["customer"]["sourceRecords"]) == 2


async def test_registration_as_source_that_may_not_read_a_field_it_sends_is_forbidden_without_the_value(
        client, db, admin, live_policy):
    await add_system(admin)
    source = Gql(client, await mint(db, "source", "crm-feed", system="crm"))
    records = [rec("K1", email="a@x.org", nationalId="X!1")]
    [before] = (await source.raw(REGISTER, system="crm", records=records)).json()["data"]["registerRecords"]
    assert "X!1" in before["errors"][0]["message"]  # its own value, which it may read: quoted
    async with db.write() as session:
        await add_row(session=session, row=("source", "SourceRecord.nationalId", "read", "deny"), actor="test")
    _, errors = await source.errors(REGISTER, system="crm", records=[rec("K2", email="b@x.org", nationalId="X!2")])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN" and "X!2" not in errors[0]["message"]
