"""The HTTP layer: request bodies, size and cost limits, database outages, file permissions, --version."""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import stat

import httpx
import pytest
from sqlalchemy.engine import make_url

from authz import Authorizer
from hub.config import Settings
from hub.db import Database
from hub.ingest.matcher import default_scorer
from schema.app import build_services, create_app
from schema.build import build_schema
from schema.cost import query_cost
from tests.conftest import Gql, mint
from tests.helpers import REGISTER, add_system, rec

PORTS = range(8111, 8120)  # this suite's ports for its own listeners (TCP proxy, served hub)


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 8111-8119")


# ---------------------------------------------------------------------------------------------- bodies


async def test_body_that_is_not_utf8_gets_400_with_a_json_error(client, admin_token):
    r = await client.post("/graphql", content=b'{"query": "{ sourceSystems { name } }", "x": "\xff"}',
                          headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "UTF-8" in r.json()["errors"][0]["message"]


@pytest.mark.parametrize("body", [b"{not json", b"[[[[" * 100_000, b'"just a string"', b"12"])
async def test_body_that_is_not_a_json_object_gets_400_with_a_json_error(client, admin_token, body):
    r = await client.post("/graphql", content=body,
                          headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_unsupported_content_type_gets_a_json_error(client, admin_token):
    r = await client.post("/graphql", content=b"query", headers={"Authorization": f"Bearer {admin_token}",
                                                                 "Content-Type": "text/plain"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.fixture
async def small_body_client(db, settings):
    limited = Settings(database_url=settings.database_url, max_body_bytes=10_000)
    services = build_services(limited, db=db, authorizer=Authorizer(), scorer=default_scorer())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)),
                                 base_url="http://hub") as c:
        yield c


async def test_body_over_the_limit_by_content_length_gets_413_unread(small_body_client, admin_token):
    body = b'{"query": "{ sourceSystems { name } }", "variables": {"pad": "' + b"x" * 20_000 + b'"}}'
    r = await small_body_client.post("/graphql", content=body, headers={
        "Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_streamed_body_over_the_limit_gets_413_and_is_not_read_to_the_end(small_body_client, admin_token):
    sent = 0

    async def chunks():
        nonlocal sent
        yield b'{"query": "{ sourceSystems { name } }", "variables": {"pad": "'
        for _ in range(1000):  # 1 MB in 1 KB chunks, no Content-Length (chunked)
            sent += 1
            yield b"x" * 1000
        yield b'"}}'

    r = await small_body_client.post("/graphql", content=chunks(), headers={
        "Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert sent < 100  # refused once past 10 KB, not after buffering the megabyte


async def test_body_under_the_limit_is_served(small_body_client, admin_token):
    r = await small_body_client.post("/graphql", json={"query": "{ sourceSystems { name } }"},
                                     headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 200 and r.json() == {"data": {"sourceSystems": []}}
    assert r.headers["x-request-id"]


def test_default_body_limit_takes_a_5000_record_batch_with_long_values():
    record = rec("K-0000001", updatedAt="2026-01-01T00:00:00Z", givenName="G" * 100, familyName="F" * 100,
                 email="e" * 60 + "@example.com", phone="+44 20 7946 0958", dateOfBirth="1980-01-01",
                 addressLine1="A" * 150, addressLine2="B" * 100, locality="L" * 60, postcode="SW1A 1AA",
                 region="R" * 40, country="GB", nationalId="N" * 20)
    import json
    size = len(json.dumps({"query": REGISTER, "variables": {"system": "crm", "records": [record] * 5000}}))
    assert size < Settings().max_body_bytes


# ---------------------------------------------------------------------------------------------- cost

ATTRS = ("givenName familyName dateOfBirth email phone addressLine1 addressLine2 locality postcode region "
         "country nationalId")
PAGE = (f"customers(first: 1000) {{ edges {{ node {{ id version {ATTRS} history {{ kind at changes }} "
        f"lineage {{ field value rule sourceRecord {{ system key }} }} sourceRecords {{ system key {ATTRS} }} }} }} }}")
STALL = "{ " + " ".join(f"a{i}: {PAGE}" for i in range(30)) + " }"


def _cost(query: str, **variables) -> int:
    from graphql import parse
    return query_cost(build_schema(Settings())._schema, parse(query), None, variables)


def test_cost_multiplies_page_sizes_and_nested_lists():
    one = _cost("{ customers(first: 1) { edges { node { id } } } }")
    assert one == 4  # customers, edges, node, id
    assert _cost("{ customers(first: 10) { edges { node { id } } } }") == 1 + 1 + 10 * 2
    assert _cost("{ customers { edges { node { id } } } }") == 1 + 1 + 50 * 2  # the default page size
    assert _cost("query($n: Int!) { customers(first: $n) { edges { node { id } } } }", n=7) == 1 + 1 + 7 * 2
    # history's first, lineage's rows per attribute, fragments counted where they are spread
    nested = "{ customer(id: \"1\") { history(first: 20) { kind } lineage { field } } }"
    assert _cost(nested) == 1 + (1 + 20) + (1 + 12)
    fragment = "{ customer(id: \"1\") { ...F } a: customer(id: \"2\") { ...F } } fragment F on Customer { id email }"
    assert _cost(fragment) == 2 * (1 + 2)


def test_a_page_of_500_customers_with_lineage_and_records_is_within_the_default_limit():
    page = (f"{{ customers(first: 500) {{ edges {{ node {{ id version {ATTRS} "
            f"lineage {{ field value rule sourceRecord {{ system key }} }} sourceRecords {{ system key {ATTRS} }} }} }} }} }}")
    assert _cost(page) <= Settings().max_query_cost
    assert _cost(STALL) > 30 * Settings().max_query_cost


async def test_thirty_aliases_of_full_pages_are_refused_before_execution_with_cost_and_limit(db, client):
    reader = Gql(client, await mint(db, "reader", "web-app"))
    data, errors = await reader.errors(STALL)
    assert data is None and len(errors) == 1
    ext = errors[0]["extensions"]
    assert ext["code"] == "BAD_USER_INPUT" and ext["costLimit"] == Settings().max_query_cost
    assert ext["cost"] > ext["costLimit"]
    assert str(ext["cost"]) in errors[0]["message"] and str(ext["costLimit"]) in errors[0]["message"]


async def test_cost_limit_reads_page_sizes_from_variables(admin):
    query = f"query($n: Int!) {{ customers(first: $n) {{ edges {{ node {{ id history(first: 1000) {{ kind }} }} }} }} }}"
    assert (await admin(query, n=2))["customers"]["edges"] == []
    _, errors = await admin.errors(query, n=1000)
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT" and "cost" in errors[0]["message"]


# ---------------------------------------------------------------------------------------------- outages


class TcpProxy:
    """A TCP proxy to the test PostgreSQL: stop() refuses new connections (and cuts open ones if asked)."""

    def __init__(self, target_host: str, target_port: int, port: int) -> None:
        self.target, self.port = (target_host, target_port), port
        self.server: asyncio.base_events.Server | None = None
        self.pipes: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self, *, cut: bool) -> None:
        self.server.close()
        if cut:
            for writer in self.pipes:
                writer.transport.abort()
            self.pipes.clear()
        await asyncio.sleep(0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.pipes += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        asyncio.ensure_future(pump(reader, up_writer))
        asyncio.ensure_future(pump(up_reader, writer))


def _assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5"
    body = r.json()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["SERVICE_UNAVAILABLE"], body


SYSTEM_X = 'mutation { registerSourceSystem(input: {name: "outage-x", dateOrder: YMD, trust: 5}) { name } }'


async def test_postgres_outage_is_503_with_retry_after_and_the_hub_recovers_without_restart(pg_url):
    real = make_url(pg_url)
    proxy = TcpProxy(real.host, real.port or 5432, free_port())
    await proxy.start()
    url = real.set(port=proxy.port).render_as_string(hide_password=False)
    db = Database(url)
    services = build_services(Settings(database_url=url), db=db, authorizer=Authorizer(), scorer=default_scorer())
    services.policy_check_interval = 0
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)),
                                     base_url="http://hub") as client:
            admin = Gql(client, await mint(db, "admin", "outage-admin"))
            async with db.write() as session:  # the system may remain from an earlier run on this database
                from sqlalchemy import text
                await session.execute(text("DELETE FROM source_system WHERE name = 'outage-x'"))
            await admin("{ sourceSystems { name } }")  # one pooled connection, alive

            # new connections refused, the pooled one alive: the token is read, the write cannot connect
            await proxy.stop(cut=False)
            _assert_unavailable(await admin.raw(SYSTEM_X))

            # everything cut: the token lookup fails, on the dead connection and then on a refused one
            await proxy.stop(cut=True)
            for _ in range(3):
                _assert_unavailable(await admin.raw("{ sourceSystems { name } }"))
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
            assert (await Gql(client, None).raw("{ sourceSystems { name } }")).status_code == 401

            await proxy.start()  # the database is back: no restart
            assert (await client.get("/readyz")).status_code == 200
            assert (await admin(SYSTEM_X))["registerSourceSystem"]["name"] == "outage-x"
            assert "outage-x" in [s["name"] for s in (await admin("{ sourceSystems { name } }"))["sourceSystems"]]
    finally:
        await proxy.stop(cut=True)
        await db.dispose()


async def test_sqlite_file_out_of_reach_is_503_and_the_hub_recovers_when_it_is_back(sqlite_template, tmp_path):
    staging = tmp_path / "staging" / "hub.db"
    staging.parent.mkdir()
    shutil.copy(sqlite_template, staging)
    ready = Database(f"sqlite+aiosqlite:///{staging}")
    token = await mint(ready, "admin", "alice")
    await ready.dispose()

    live = tmp_path / "volume" / "hub.db"  # the volume is not mounted: SQLite cannot open the file
    db = Database(f"sqlite+aiosqlite:///{live}")
    services = build_services(Settings(database_url=db.url), db=db, authorizer=Authorizer(), scorer=default_scorer())
    services.policy_check_interval = 0
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)),
                                     base_url="http://hub") as client:
            admin = Gql(client, token)
            _assert_unavailable(await admin.raw("{ sourceSystems { name } }"))
            assert (await client.get("/readyz")).status_code == 503

            live.parent.mkdir()
            shutil.copy(staging, live)
            assert (await client.get("/readyz")).status_code == 200
            assert (await admin("{ sourceSystems { name } }")) == {"sourceSystems": []}
    finally:
        await db.dispose()


# ---------------------------------------------------------------------------------------------- files


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_sqlite_database_and_its_side_files_are_readable_by_the_owner_only(tmp_path):
    path = tmp_path / "fresh.db"
    old = os.umask(0o022)
    try:
        from hub.ops.migrate import upgrade_async
        await upgrade_async(f"sqlite+aiosqlite:///{path}")
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await mint(db, "admin", "alice")  # a write: the -wal and -shm files exist while connected
            for suffix in ("", "-wal", "-shm"):
                assert _mode(f"{path}{suffix}") == 0o600, suffix
        finally:
            await db.dispose()
    finally:
        os.umask(old)


async def test_hub_commands_create_the_sqlite_file_owner_only_and_narrow_an_existing_one(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hub.cli import main
    from hub.config import get_settings

    old = os.umask(0o022)
    try:
        for command in (["migrate"], ["policy", "list"]):
            path = tmp_path / f"{command[0]}.db"
            monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
            get_settings.cache_clear()
            result = await asyncio.to_thread(CliRunner().invoke, main, command, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            assert _mode(path) == 0o600, command
        os.chmod(path, 0o644)  # made by an older version
        result = await asyncio.to_thread(CliRunner().invoke, main, ["migrate"], catch_exceptions=False)
        assert _mode(path) == 0o600
    finally:
        os.umask(old)
        get_settings.cache_clear()


# ---------------------------------------------------------------------------------------------- cli


def test_version_prints_the_package_version():
    from importlib.metadata import version

    from click.testing import CliRunner

    from hub.cli import main

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"hub {version('customer-mdm-hub')}"


async def test_hub_migrate_prints_the_database_url_with_the_password_masked(pg_url, monkeypatch):
    from click.testing import CliRunner

    from hub.cli import main
    from hub.config import get_settings

    url = make_url(pg_url).set(password="S3cretPw").render_as_string(hide_password=False)
    monkeypatch.setenv("HUB_DATABASE_URL", url)  # trust authentication: the password is not checked
    get_settings.cache_clear()
    try:
        result = await asyncio.to_thread(CliRunner().invoke, main, ["migrate"], catch_exceptions=False)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0
    assert "S3cretPw" not in result.output and "postgres:***@" in result.output


async def test_registration_batch_still_works_with_the_preparation_in_a_thread(admin):
    await add_system(admin)
    records = [rec(f"K{i}", email=f"person.{i * 7919}@example.org") for i in range(120)]  # in a thread
    results = (await admin(REGISTER, system="crm", records=records))["registerRecords"]
    assert [r["action"] for r in results] == ["CREATED"] * 120
