"""The policy in the database: seeded by the migration, edited with audit, reloaded by a running server."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import delete, event, insert, select, update

import schema.context
from authz import Authorizer, default_policy_rows
from hub.config import Settings
from hub.db import Database
from hub.errors import BadInput
from hub.models import Event
from hub.access.policy import _changed, _columns
from hub.access.policy import POLICY_CHANGED, REVISION, RULE, add_row, current_revision, list_rows, remove_row
from schema.app import build_services
from schema.context import UNAVAILABLE
from tests.conftest import TEST_KEYS, Gql, mint
from tests.helpers import add_system, rec, register

DENY_EMAIL = ("p", "reader", "Customer.email", "read", "deny")


async def restore_default_policy(db: Database) -> None:
    """Put the stored policy back to the default rows (the PostgreSQL test database outlives a test)."""
    defaults = default_policy_rows()
    async with db.write() as session:
        if await list_rows(session=session) != defaults:  # in the default order too (ids give the order)
            await session.execute(delete(RULE))
            await session.execute(insert(RULE), [_columns(row) for row in defaults])
            await _changed(session, "test", restored=("default policy",))


@pytest.fixture
async def policy_db(db):
    """The test database; its policy is the default one again after the test."""
    yield db
    await restore_default_policy(db)


async def _edit(db: Database, fn, row, actor: str = "ops"):
    async with db.write() as session:
        return await fn(session=session, row=row, actor=actor)


# --- storage ------------------------------------------------------------------------------------------


async def test_stored_policy_after_migration_is_the_default_file(db):
    async with db.session() as session:
        assert await list_rows(session=session) == default_policy_rows()
        assert await current_revision(session=session) >= 1


async def test_add_row_as_operator_bumps_the_revision_and_writes_an_audit_event(policy_db):
    async with policy_db.session() as session:
        before = await current_revision(session=session)
    assert await _edit(policy_db, add_row, ["reader", "Customer.email", "read", "deny"]) == before + 1
    assert await _edit(policy_db, add_row, DENY_EMAIL) is None  # already there: nothing written
    assert await _edit(policy_db, remove_row, DENY_EMAIL) == before + 2
    assert await _edit(policy_db, remove_row, DENY_EMAIL) is None
    async with policy_db.session() as session:
        events = (await session.scalars(select(Event).where(Event.kind == POLICY_CHANGED).order_by(Event.id))).all()
        assert DENY_EMAIL not in await list_rows(session=session)
    assert [(e.customer_id, e.actor, e.changes) for e in events] == [
        (None, "ops", {"added": list(DENY_EMAIL), "revision": before + 1}),
        (None, "ops", {"removed": list(DENY_EMAIL), "revision": before + 2}),
    ]


@pytest.mark.parametrize("row, complaint", [
    (("reader", "Customer.email", "peek", "allow"), "action"),
    (("reader", "Customer.email", "read", "maybe"), "allow|deny"),
    (("reader", "Customer.email;drop", "read", "allow"), "invalid policy row"),
    (("reader", "Customer.email"), "invalid policy row"),
    (("reader", "C" * 201, "read", "allow"), "longer than 200"),
])
async def test_add_invalid_row_is_refused_with_a_clear_error(policy_db, row, complaint):
    with pytest.raises(BadInput, match=complaint):
        await _edit(policy_db, add_row, row)
    async with policy_db.session() as session:
        assert await list_rows(session=session) == default_policy_rows()


async def test_inheritance_row_is_stored_and_listed(policy_db):
    assert await _edit(policy_db, add_row, ["g", "marketing", "reader"]) is not None
    async with policy_db.session() as session:
        assert ("g", "marketing", "reader") in await list_rows(session=session)


async def test_remove_last_row_is_refused(policy_db):
    async with policy_db.write() as session:
        await session.execute(delete(RULE).where(RULE.c.subject != "admin"))
        await session.execute(delete(RULE).where(RULE.c.action != "call"))
    with pytest.raises(BadInput, match="last policy row"):
        await _edit(policy_db, remove_row, ("admin", "*", "call", "allow"))


# --- command line -------------------------------------------------------------------------------------


async def test_policy_add_list_remove_on_the_command_line_print_what_changed(hub_cli, policy_db):
    added = await hub_cli("policy", "add", "reader", "Customer.email", "read", "deny")
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("added p, reader, Customer.email, read, deny (policy revision ")
    again = await hub_cli("policy", "add", "reader", "Customer.email", "read", "deny")
    assert again.stdout.strip() == "unchanged: p, reader, Customer.email, read, deny is already in the policy"
    listed = await hub_cli("policy", "list")
    assert "p, reader, Customer.email, read, deny" in listed.stdout.splitlines()
    assert len(listed.stdout.splitlines()) == len(default_policy_rows()) + 1
    removed = await hub_cli("policy", "remove", "p,", "reader,", "Customer.email,", "read,", "deny")
    assert removed.exit_code == 0 and removed.stdout.startswith("removed p, reader, Customer.email, read, deny")
    async with policy_db.session() as session:
        assert await list_rows(session=session) == default_policy_rows()


async def test_policy_add_of_an_invalid_row_on_the_command_line_fails_clearly(hub_cli, policy_db):
    result = await hub_cli("policy", "add", "reader", "Customer.email", "look", "allow")
    assert result.exit_code != 0 and "invalid policy row" in result.output


# --- a running server ---------------------------------------------------------------------------------


async def _reader_email(client, db) -> dict:
    reader = Gql(client, await mint(db, "reader", "web-app"))
    return (await reader.raw("{ customers { edges { node { email } } } }")).json()


async def test_policy_change_as_reader_is_obeyed_by_the_running_server_on_the_next_request(
        client, services, policy_db, admin):
    services.policy_check_interval = 0
    await add_system(admin)
    await register(admin, "crm", rec("K1", email="a@x.org"))
    assert (await _reader_email(client, policy_db))["data"]["customers"]["edges"][0]["node"]["email"] == "a@x.org"
    await _edit(policy_db, add_row, DENY_EMAIL)
    body = await _reader_email(client, policy_db)
    assert body["data"]["customers"]["edges"][0]["node"]["email"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    await _edit(policy_db, remove_row, DENY_EMAIL)
    assert "errors" not in await _reader_email(client, policy_db)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_stored_revision_is_read_at_most_once_per_interval(client, services, policy_db, admin, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(schema.context, "monotonic", clock)
    services.policy_check_interval = 1.0
    statements: list[str] = []

    def listener(*args) -> None:
        statements.append(args[2])

    event.listen(policy_db.engine.sync_engine, "before_cursor_execute", listener)
    try:
        await admin("{ sourceSystems { name } }")  # first request: looks, loads the stored policy
        await _edit(policy_db, add_row, DENY_EMAIL)
        for _ in range(3):
            await admin("{ sourceSystems { name } }")  # within the interval: no look
        looks = [s for s in statements if "authz_revision" in s and s.lstrip().upper().startswith("SELECT")]
        assert len(looks) == 1
        assert services.authorizer.can("reader", "Customer.email", "read") is True  # held until the next look
        clock.now += 1.0
        await admin("{ sourceSystems { name } }")
        looks = [s for s in statements if "authz_revision" in s and s.lstrip().upper().startswith("SELECT")]
        assert len(looks) == 2
        assert services.authorizer.can("reader", "Customer.email", "read") is False  # new policy
    finally:
        event.remove(policy_db.engine.sync_engine, "before_cursor_execute", listener)


async def test_app_start_up_loads_the_stored_policy(services, policy_db):
    await _edit(policy_db, add_row, DENY_EMAIL)
    from schema.app import create_app

    app = create_app(services)
    async with app.router.lifespan_context(app):
        assert services.authorizer.can("reader", "Customer.email", "read") is False
        async with policy_db.session() as session:
            assert services.policy_revision == await current_revision(session=session)


async def _refreshed(services) -> None:
    from hub.db import Reads

    reads = Reads(services.db)
    try:
        await services.refresh_policy(reads)
    finally:
        await reads.close()


async def test_empty_policy_table_falls_back_to_the_default_file_and_says_so(services, policy_db, caplog):
    services.authorizer.load([("p", "admin", "*", "call", "allow")])
    async with policy_db.write() as session:
        await session.execute(delete(RULE))
        await session.execute(update(REVISION).values(revision=REVISION.c.revision + 1))
    with caplog.at_level(logging.WARNING, logger="hub"):
        await _refreshed(services)
    assert services.authorizer.rows == default_policy_rows()
    assert "default policy file" in caplog.text


async def test_missing_policy_tables_fall_back_to_the_default_file_and_say_so(tmp_path, caplog):
    url = f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}"
    services = build_services(Settings(database_url=url, keys=TEST_KEYS), authorizer=Authorizer([("p", "x", "*", "call", "allow")]))
    try:
        with caplog.at_level(logging.WARNING, logger="hub"):
            await _refreshed(services)
    finally:
        await services.db.dispose()
    assert services.authorizer.rows == default_policy_rows() and services.policy_revision == UNAVAILABLE
    assert "default policy file" in caplog.text


async def test_invalid_stored_row_keeps_the_policy_held_and_is_logged(services, policy_db, caplog):
    await _refreshed(services)
    held = services.authorizer.rows
    async with policy_db.write() as session:
        await session.execute(insert(RULE).values(ptype="p", subject="reader", object="*", action="sudo",
                                                  effect="allow"))
        await session.execute(update(REVISION).values(revision=REVISION.c.revision + 1))
    try:
        with caplog.at_level(logging.ERROR, logger="hub"):
            await _refreshed(services)
    finally:
        async with policy_db.write() as session:
            await session.execute(delete(RULE).where(RULE.c.action == "sudo"))
    assert services.authorizer.rows == held and "refused" in caplog.text
