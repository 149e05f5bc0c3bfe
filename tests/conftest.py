"""Fixtures: every database test runs on both SQLite and a real PostgreSQL.

PostgreSQL: one database per test session (migrated once), emptied before each test.
SQLite: one migrated template file per session, copied for each test.
Set HUB_TEST_PG to another server's URL; PostgreSQL must answer (`.ci/run` starts it).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import uuid

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from authz import Authorizer
from hub.cli import main
from hub.config import Settings, get_settings
from hub.db import Database
from hub.ingest.matcher import default_scorer
from hub.ops.migrate import upgrade
from hub.privacy.sealing import configure as configure_sealing
from hub.access.tokens import create_token
from schema.app import build_services, create_app

# fixed test keys for personal data at rest (hub.privacy.keys); never used outside the tests
TEST_KEYS = "hash aGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGg=;enc t1 ZWVlZWVlZWVlZWVlZWVlZWVlZWVlZWVlZWVlZWVlZWU="
PG_SERVER = os.environ.get("HUB_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
# every table but the policy's (seeded by its migration; tests that edit it restore it)
TABLES = ("outbox", "event_consumer", "erasure", "erasure_block", "erasure_task", "lineage", "event", "blocking_key",
          "match_candidate", "match_model", "steward_rule", "source_record", "customer", "api_token", "source_system",
          "consent", "consent_statement", "read_audit")


async def _admin(sql: str) -> None:
    engine = create_async_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pg_url():
    name = f"hub_test_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except OSError as e:
        pytest.fail(f"PostgreSQL does not answer at {PG_SERVER} ({e}); start it (see .ci/run) or set HUB_TEST_PG")
    url = PG_SERVER.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated, empty database of each dialect."""
    if request.param == "sqlite":
        path = tmp_path / "hub.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def hub_cli(db_url, monkeypatch):
    """Run `hub ...` in a worker thread (it starts its own event loop) against this test's database."""
    monkeypatch.setenv("HUB_DATABASE_URL", db_url)
    monkeypatch.setenv("HUB_KEYS", TEST_KEYS)
    get_settings.cache_clear()

    async def invoke(*args: str):
        return await asyncio.to_thread(CliRunner().invoke, main, list(args), catch_exceptions=False)

    yield invoke
    get_settings.cache_clear()


@pytest.fixture
async def db(db_url):
    configure_sealing(Settings(database_url=db_url, keys=TEST_KEYS))  # encryption at rest on, as by default
    database = Database(db_url)
    if not database.sqlite:
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
            await conn.execute(text("UPDATE outbox_head SET last = 0, pruned_to = 0"))
    yield database
    await database.dispose()


@pytest.fixture
def settings(db_url) -> Settings:
    return Settings(database_url=db_url, keys=TEST_KEYS)


@pytest.fixture
def services(db, settings):
    return build_services(settings, db=db, authorizer=Authorizer(), scorer=default_scorer())


@pytest.fixture
async def client(services):
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as c:
        yield c
    await services.audit.close()  # the ASGI transport runs no lifespan: stop the read audit's task here


async def mint(db: Database, role: str, subject: str | None = None, system: str | None = None) -> str:
    async with db.write() as session:
        return await create_token(session=session, subject=subject or f"{role}-user", role=role, system=system)


@pytest.fixture
async def admin_token(db) -> str:
    return await mint(db, "admin", "alice")


class Gql:
    """Post GraphQL operations as one caller."""

    def __init__(self, client: httpx.AsyncClient, token: str | None) -> None:
        self.client, self.token = client, token

    async def raw(self, query: str, **variables) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return await self.client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)

    async def __call__(self, query: str, **variables) -> dict:
        """Run an operation that must succeed; return its data."""
        r = await self.raw(query, **variables)
        body = r.json()
        assert r.status_code == 200 and not body.get("errors"), body
        return body["data"]

    async def errors(self, query: str, **variables) -> tuple[dict | None, list[dict]]:
        """Run an operation expected to report errors; return (data, errors)."""
        body = (await self.raw(query, **variables)).json()
        assert body.get("errors"), body
        return body.get("data"), body["errors"]


@pytest.fixture
def admin(client, admin_token) -> Gql:
    return Gql(client, admin_token)
