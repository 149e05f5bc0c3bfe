"""Change events out of the hub: the outbox, the subscription, the JSON-lines stream, policy on payloads."""
from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from sqlalchemy import insert, select, text

from hub.access.tokens import Principal, revoke_tokens
from hub.config import get_settings
from hub.db import Reads, seal_outbox
from hub.events import consumers, head, prune, save_position
from hub.models import Event, Outbox, utcnow
from schema.build import build_schema
from schema.context import Context
from schema.loaders import Loaders
from tests.conftest import Gql, mint
from tests.helpers import add_system, rec, register
from tests.test_stewardship import MERGE, SPLIT

ANNA = dict(givenName="Anna", familyName="Berg", dateOfBirth="1980-01-01", email="anna.berg@x.org",
            nationalId="123-45-6789")
BOB = dict(givenName="Bob", familyName="Stone", dateOfBirth="1970-05-05", email="bob@y.org", nationalId="987-65-4321")
SUBSCRIBE = """subscription($after: Position, $kinds: [String!], $fields: [String!]) {
  customerChanged(after: $after, kinds: $kinds, fields: $fields) {
    position customerId kind version fields values mergedInto otherCustomerIds } }"""
STREAM = "query { eventStream { head consumers { name position lag } } }"


async def _changes(hub_cli, *args: str) -> list[dict]:
    result = await hub_cli("events", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


async def _two_customers(admin) -> tuple[str, str]:
    await add_system(admin)
    [a, b] = await register(admin, "crm", rec("A1", **ANNA), rec("B1", **BOB))
    return a["customer"]["id"], b["customer"]["id"]


async def test_changes_stream_in_commit_order_with_both_ids_of_a_merge_and_a_split(admin, hub_cli):
    a, b = await _two_customers(admin)
    await admin(MERGE, ids=[a, b], note="same person")
    await admin(SPLIT, s="crm", k="B1", note="not the same")
    changes = await _changes(hub_cli, "--after", "0")
    positions = [c["position"] for c in changes]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    kinds = [(c["kind"], c["customerId"]) for c in changes]
    assert kinds[:2] == [("CREATED", int(a)), ("CREATED", int(b))]
    merged = next(c for c in changes if c["kind"] == "MERGED")
    away = next(c for c in changes if c["kind"] == "MERGED_AWAY")
    assert (merged["customerId"], merged["otherCustomerIds"]) == (int(a), [int(b)])
    assert (away["customerId"], away["mergedInto"]) == (int(b), int(a))
    split = [c for c in changes if c["kind"] == "SPLIT"]
    assert {c["customerId"] for c in split} == {int(a)} | {c["otherCustomerIds"][0] for c in split if c["customerId"] == int(a)}
    created = changes[0]
    assert created["version"] == 1 and created["values"]["email"] == "anna.berg@x.org"
    assert created["values"]["nationalId"] == "123-45-6789"  # the CLI's default view is admin's


async def test_json_lines_resume_after_a_position_without_repeats(admin, hub_cli):
    await _two_customers(admin)
    first = await _changes(hub_cli, "--after", "0")
    await register(admin, "crm", rec("C1", givenName="Cid", familyName="Moss", email="cid@z.org"))
    rest = await _changes(hub_cli, "--after", str(first[-1]["position"]))
    assert [c["kind"] for c in rest] == ["CREATED"] and rest[0]["position"] == first[-1]["position"] + 1


async def test_durable_json_lines_consumer_resumes_from_its_stored_position(admin, hub_cli):
    await _two_customers(admin)
    first = await _changes(hub_cli, "--after", "0", "--consumer", "billing")
    assert len(first) == 2
    assert await _changes(hub_cli, "--consumer", "billing") == []
    await register(admin, "crm", rec("C1", givenName="Cid", familyName="Moss", email="cid@z.org"))
    again = await _changes(hub_cli, "--consumer", "billing")
    assert [c["position"] for c in again] == [first[-1]["position"] + 1]


async def test_a_rolled_back_unit_of_work_publishes_nothing(db):
    async with db.reader() as conn:
        before = await head(conn)
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            await session.execute(insert(Event.__table__).values(customer_id=None, kind="UPDATED", at=utcnow(),
                                                                 actor="t", changes={}))
            raise RuntimeError("fails after writing its event")
    async with db.reader() as conn:
        assert await head(conn) == before
        assert (await conn.execute(select(Outbox.__table__.c.position))).all() == []


async def test_positions_follow_commit_order_when_writers_interleave(db):
    """The transaction that wrote its event first but commits last gets the later position."""
    if db.sqlite:
        pytest.skip("SQLite has one writer at a time: transactions cannot interleave")
    ev = Event.__table__
    mark = "SELECT coalesce(max(id), 0) FROM event"
    async with db.engine.connect() as slow, db.engine.connect() as fast:
        slow_tx, fast_tx = await slow.begin(), await fast.begin()
        slow_mark = (await slow.execute(text(mark))).scalar()
        fast_mark = (await fast.execute(text(mark))).scalar()
        await slow.execute(insert(ev).values(customer_id=1, kind="UPDATED", at=utcnow(), actor="slow", changes={}))
        await fast.execute(insert(ev).values(customer_id=2, kind="UPDATED", at=utcnow(), actor="fast", changes={}))
        from sqlalchemy.ext.asyncio import AsyncSession
        async with AsyncSession(bind=fast) as s:
            await seal_outbox(s, fast_mark)
        await fast_tx.commit()
        async with AsyncSession(bind=slow) as s:
            await seal_outbox(s, slow_mark)
        await slow_tx.commit()
    async with db.reader() as conn:
        rows = (await conn.execute(select(Outbox.__table__.c.position, ev.c.actor)
                                   .join(ev, ev.c.id == Outbox.__table__.c.event_id)
                                   .order_by(Outbox.__table__.c.position))).all()
    assert [r.actor for r in rows] == ["fast", "slow"]
    assert rows[1].position == rows[0].position + 1


# --- the subscription -----------------------------------------------------------------------------------

def _context(services, db, principal: Principal, token: str) -> Context:
    reads = Reads(db)
    return Context(request=None, response=None, services=services, principal=principal, reads=reads,
                   loaders=Loaders(reads), token=token)


async def _subscribe(services, db, role: str, token: str, n: int, **variables) -> list:
    """The first n results of a subscription (ExecutionResults), or the refusal."""
    schema = build_schema(services.settings)
    ctx = _context(services, db, Principal(f"{role}-user", role), token)
    stream = await schema.subscribe(SUBSCRIBE, variable_values=variables, context_value=ctx)
    if not hasattr(stream, "__anext__"):
        return [stream]
    out = []
    try:
        for _ in range(n):
            out.append(await asyncio.wait_for(anext(stream), timeout=10))
            if out[-1].errors:
                break
    finally:
        await stream.aclose()
    return out


async def test_reader_subscription_never_carries_national_id_or_birth_date(admin, services, db):
    a, b = await _two_customers(admin)
    await register(admin, "crm", rec("A1", **{**ANNA, "nationalId": "123-45-0000", "dateOfBirth": "1980-01-02",
                                              "phone": "+4915112345678"}))
    token = await mint(db, "reader")
    results = await _subscribe(services, db, "reader", token, 3, after=0)
    changes = [r.data["customerChanged"] for r in results]
    assert [c["kind"] for c in changes] == ["CREATED", "CREATED", "UPDATED"]
    for c in changes:
        assert "nationalId" not in c["fields"] and "nationalId" not in c["values"]
        assert "dateOfBirth" not in c["fields"] and "dateOfBirth" not in c["values"]
    assert changes[2]["fields"] == ["phone"] and changes[2]["values"] == {"phone": "+4915112345678"}
    assert changes[0]["values"]["email"] == "anna.berg@x.org"


async def test_steward_subscription_sees_the_national_id_masked(admin, services, db):
    await _two_customers(admin)
    token = await mint(db, "steward")
    [first] = await _subscribe(services, db, "steward", token, 1, after=0)
    change = first.data["customerChanged"]
    assert change["values"]["nationalId"] == "*******6789" and change["values"]["dateOfBirth"] == "1980-01-01"


async def test_subscription_filters_by_kind_and_by_readable_field(admin, services, db):
    a, b = await _two_customers(admin)
    await register(admin, "crm", rec("A1", **{**ANNA, "nationalId": "123-45-0000"}))
    await register(admin, "crm", rec("B1", **{**BOB, "email": "bob@new.org"}))
    token = await mint(db, "reader")
    # the national id change is invisible to a reader, even as a filter: only Bob's email change comes
    [only] = await _subscribe(services, db, "reader", token, 1, after=0, kinds=["UPDATED"],
                              fields=["nationalId", "email"])
    assert only.data["customerChanged"]["customerId"] == b
    assert only.data["customerChanged"]["values"] == {"email": "bob@new.org"}


async def test_subscription_as_source_is_forbidden(services, db):
    token = await mint(db, "admin")
    [result] = await _subscribe(services, db, "source", token, 1, after=0)
    assert result.errors[0].extensions["code"] == "FORBIDDEN"


async def test_subscription_from_a_pruned_position_is_refused(admin, services, db):
    await _two_customers(admin)
    async with db.engine.begin() as conn:
        assert await prune(conn, retention=dt.timedelta(0), now=utcnow() + dt.timedelta(seconds=1)) == 2
    token = await mint(db, "reader")
    [result] = await _subscribe(services, db, "reader", token, 1, after=0)
    assert result.errors[0].extensions["code"] == "GONE"


async def test_revoking_the_token_ends_the_subscription(admin, services, db):
    await _two_customers(admin)
    token = await mint(db, "reader", "app")
    async with db.write() as session:
        await revoke_tokens(session=session, subject="app")
    results = await _subscribe(services, db, "reader", token, 5, after=2)
    assert results[-1].errors[0].extensions["code"] == "UNAUTHENTICATED"


async def test_bad_kind_is_bad_user_input(services, db):
    token = await mint(db, "reader")
    [result] = await _subscribe(services, db, "reader", token, 1, kinds=["drop table"])
    assert result.errors[0].extensions["code"] == "BAD_USER_INPUT"


# --- retention and lag ----------------------------------------------------------------------------------

async def test_prune_keeps_what_a_durable_consumer_has_not_passed(admin, db):
    await _two_customers(admin)
    async with db.engine.begin() as conn:
        last, _ = await head(conn)
        await save_position(conn, "billing", last - 1)
        later = utcnow() + dt.timedelta(seconds=1)
        assert await prune(conn, retention=dt.timedelta(hours=1), now=later) == 0  # too young
        assert await prune(conn, retention=dt.timedelta(0), now=later) == 1        # billing passed one
        assert await prune(conn, retention=dt.timedelta(0), now=later) == 0
        assert (await head(conn)) == (last, last - 1)


async def test_consumer_lag_as_admin_and_refused_to_steward(admin, client, db):
    await _two_customers(admin)
    async with db.engine.begin() as conn:
        await save_position(conn, "nats", 0)
        last, _ = await head(conn)
    stream = (await admin(STREAM))["eventStream"]
    assert stream == {"head": last, "consumers": [{"name": "nats", "position": 0, "lag": last}]}
    steward = Gql(client, await mint(db, "steward"))
    _, errors = await steward.errors(STREAM)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


# --- the broker publisher behind its interface ------------------------------------------------------------

class FlakyBroker:
    """A broker that refuses its first batch, then stores what it is sent (the Publisher interface)."""

    name = "flaky"

    def __init__(self, stop: asyncio.Event, until: int) -> None:
        self.stored: list[dict] = []
        self.failures, self.stop, self.until = 1, stop, until

    async def start(self) -> None:
        return None

    async def publish(self, messages) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unavailable")
        self.stored += messages
        if self.stored[-1]["position"] >= self.until:
            self.stop.set()

    async def close(self) -> None:
        return None


async def test_publisher_retries_a_refused_batch_from_its_stored_position(admin, db, services):
    from authz import Authorizer
    from hub.events import View, relay

    await _two_customers(admin)
    async with db.reader() as conn:
        last, _ = await head(conn)
    stop = asyncio.Event()
    broker = FlakyBroker(stop, last)
    sent = await asyncio.wait_for(relay(db, broker, lambda: View(Authorizer(), "reader"), poll=0.05, stop=stop),
                                  timeout=30)
    assert sent == last and [m["position"] for m in broker.stored] == list(range(1, last + 1))
    assert all("nationalId" not in m["values"] for m in broker.stored)
    async with db.reader() as conn:
        _, lags = await consumers(conn)
    assert [(c.name, c.position, c.lag) for c in lags] == [("flaky", last, 0)]


async def test_forgetting_an_abandoned_consumer_lets_the_outbox_be_pruned(admin, hub_cli, db, monkeypatch):
    await _two_customers(admin)
    async with db.engine.begin() as conn:
        await save_position(conn, "abandoned", 0)
    monkeypatch.setenv("HUB_EVENTS_RETENTION_HOURS", "0")
    get_settings.cache_clear()
    held = await hub_cli("events-prune")
    assert "pruned 0 outbox rows" in held.output
    freed = await hub_cli("events-prune", "--forget", "abandoned")
    assert "pruned 2 outbox rows" in freed.output
    async with db.reader() as conn:
        assert (await consumers(conn))[1] == []


async def test_changes_as_a_consent_bound_role_only_of_customers_who_granted_it(admin, hub_cli):
    a, b = await _two_customers(admin)
    await admin("""mutation($id: ID!) { setConsent(customerId: $id, purpose: "marketing-email", granted: true,
      evidence: "newsletter box") { id } }""", id=a)
    as_marketing = await _changes(hub_cli, "--after", "0", "--role", "marketing")
    assert as_marketing and {c["customerId"] for c in as_marketing} == {int(a)}   # Bob did not consent
    assert all("nationalId" not in (c["values"] or {}) for c in as_marketing)
    assert {c["customerId"] for c in await _changes(hub_cli, "--after", "0", "--role", "reader")} == {int(a), int(b)}
