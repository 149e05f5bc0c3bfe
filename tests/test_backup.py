"""`hub backup` / `hub restore`: identical tables after a round trip, either dialect to either, and refusals."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import stat
import uuid
import zipfile

import httpx
import pytest
from sqlalchemy import select, text

from hub.db import Database
from hub.ops.backup import BackupError, _raw_table, backup, restore, tables
from hub.ops.migrate import upgrade
from schema.app import build_services, create_app
from authz import Authorizer
from hub.config import Settings
from hub.ingest.matcher import default_scorer
from tests.conftest import PG_SERVER, TEST_KEYS, Gql, _admin
from tests.helpers import CUSTOMER, add_system, rec, register


@pytest.fixture(scope="session")
def pg_template():
    """A migrated PostgreSQL database to copy empty targets from (CREATE DATABASE ... TEMPLATE)."""
    name = f"hub_tmpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    upgrade(PG_SERVER.rsplit("/", 1)[0] + "/" + name)
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def target_url(request, tmp_path):
    """Another empty, migrated database, of each dialect."""
    if request.param == "sqlite":
        path = tmp_path / "target.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"hub_restore_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield PG_SERVER.rsplit("/", 1)[0] + "/" + name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _normal(value):
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


async def dump(db: Database) -> dict[str, list[tuple]]:
    """Every table's stored rows in primary-key order, timestamps as aware UTC."""
    out = {}
    async with db.reader() as conn:
        for table in tables():
            raw = _raw_table(table)
            rows = (await conn.execute(select(raw).order_by(*(raw.c[c.name] for c in table.primary_key.columns))))
            out[table.name] = [tuple(_normal(v) for v in row) for row in rows]
    return out


async def populate(admin) -> list[str]:
    await add_system(admin)
    await add_system(admin, name="billing", dateOrder="DMY", trust=70)
    [a] = await register(admin, "crm", rec("A", nationalId="AB123456", givenName="Al", familyName="Ng"))
    await register(admin, "crm", rec("B", email="al@x.org", dateOfBirth="1970-05-05", familyName="Ng"))
    await register(admin, "billing", rec("C", nationalId="AB123456", email="al@x.org", dateOfBirth="05/05/1970",
                                         phone="+44 20 7946 0958"))  # merges A's and B's golden records
    await register(admin, "crm", rec("D", givenName="Zoë", familyName="Brontë", email="zb@example.org"))
    return [a["customer"]["id"]]


def hub_client(db: Database, url: str):
    services = build_services(Settings(database_url=url, keys=TEST_KEYS), db=db, authorizer=Authorizer(),
                              scorer=default_scorer())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)), base_url="http://hub")


async def test_restore_into_empty_database_gives_identical_tables_and_a_working_hub(db, admin, admin_token, tmp_path,
                                                                                    target_url):
    [customer_id] = await populate(admin)
    archive = tmp_path / "hub.backup"
    manifest = await backup(db, archive)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert manifest["tables"]["source_record"]["rows"] == 4
    assert set(manifest["tables"]) == {t.name for t in tables()}
    source = await dump(db)
    assert len(source["customer"]) == 3 and len(source["lineage"]) > 5 and len(source["event"]) > 5
    assert source["api_token"] and source["authz_rule"]

    target = Database(target_url)
    try:
        await restore(target, archive)
        assert await dump(target) == source  # golden records, lineage, history, tokens, policy, every table

        async with hub_client(target, target_url) as client:
            restored = Gql(client, admin_token)  # the source's token: only its hash was stored, and restored
            before = (await admin(CUSTOMER, id=customer_id))["customer"]
            assert (await restored(CUSTOMER, id=customer_id))["customer"] == before
            # ids continue after the restored ones (PostgreSQL sequences moved past them)
            [e] = await register(restored, "crm", rec("E", givenName="New", familyName="Person", email="np@x.org"))
            assert e["action"] == "CREATED"
            async with db.reader() as conn:
                top = (await conn.execute(text("SELECT max(id) FROM customer"))).scalar()
            assert int(e["customer"]["id"]) > top
    finally:
        await target.dispose()


async def test_restore_into_a_database_with_customers_is_refused_and_changes_nothing(db, admin, tmp_path):
    await populate(admin)
    archive = tmp_path / "hub.backup"
    await backup(db, archive)
    before = await dump(db)
    with pytest.raises(BackupError, match="not empty.*customer"):
        await restore(db, archive)
    assert await dump(db) == before


async def test_restore_of_another_revision_is_refused(db, tmp_path, target_url):
    archive = tmp_path / "hub.backup"
    await backup(db, archive)
    target = Database(target_url)
    try:
        async with target.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'aaaaaaaaaaaa'"))
        with pytest.raises(BackupError, match="revision"):
            await restore(target, archive)
    finally:
        await target.dispose()


async def test_backup_never_overwrites_and_restore_rejects_a_file_that_is_no_archive(db, tmp_path):
    existing = tmp_path / "exists.backup"
    existing.write_text("keep me")
    with pytest.raises(BackupError, match="exists"):
        await backup(db, existing)
    assert existing.read_text() == "keep me"
    with pytest.raises(BackupError, match="not a hub backup"):
        await restore(db, existing)


async def test_backup_while_registrations_commit_is_one_consistent_snapshot(db, admin, tmp_path):
    """Writes land between the tables being read: the archive still holds the state of one moment."""
    await populate(admin)
    n = 0

    async def write_between_tables(name: str, _rows: int) -> None:
        nonlocal n
        n += 1  # a new person, and a record linking to an existing golden record (a merge moves lineage)
        await register(admin, "crm", rec(f"W{n}", givenName="Wanda", familyName=f"Writer{n}",
                                         email=f"w{n}@x.org"))
        await register(admin, "billing", rec(f"L{n}", nationalId="AB123456", email=f"l{n}@x.org",
                                             dateOfBirth="05/05/1970"))

    archive = tmp_path / "hub.backup"
    manifest = await backup(db, archive, progress=write_between_tables)
    assert n >= 5  # writes really ran during the backup
    with zipfile.ZipFile(archive) as zf:
        def rows(table):
            columns = manifest["tables"][table]["columns"]
            return [dict(zip(columns, json.loads(line))) for line in zf.read(f"tables/{table}.jsonl").splitlines()]
        customers = {r["id"] for r in rows("customer")}
        records = rows("source_record")
        lineage = rows("lineage")
    assert len(records) == 4  # the moment the backup began: none of the records written during it
    assert all(r["customer_id"] in customers for r in records)
    assert all(r["customer_id"] in customers for r in lineage)
    async with db.reader() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM source_record"))).scalar() == 4 + 2 * n


async def test_backup_and_restore_commands_round_trip(db, hub_cli, tmp_path):
    archive = tmp_path / "cli.backup"
    result = await hub_cli("backup", str(archive))
    assert result.exit_code == 0 and "backed up" in result.output and archive.exists()
    again = await hub_cli("backup", str(archive))
    assert again.exit_code != 0 and "exists" in again.output
    policy = (await dump(db))["authz_rule"]
    restored = await hub_cli("restore", str(archive))  # an empty hub into itself: the policy's rows replaced
    assert restored.exit_code == 0 and "restored" in restored.output
    assert (await dump(db))["authz_rule"] == policy
    async with db.write() as session:
        await session.execute(text("INSERT INTO source_system (name, date_order, trust, record_count, created_at) VALUES ('x', 'YMD', 1, 0, CURRENT_TIMESTAMP)"))
    refused = await hub_cli("restore", str(archive))
    assert refused.exit_code != 0 and "not empty (source_system" in refused.output
