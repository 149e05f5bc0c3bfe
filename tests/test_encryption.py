"""Encryption at rest: no clear national id or date of birth anywhere in the database, and everything still works."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from hub.config import Settings, get_settings
from hub.db import Database
from hub.golden.values import typed
from hub.ingest.records import content_hash
from hub.models import Customer, SourceRecord
from hub.ops.migrate import upgrade
from hub.privacy.keys import KeyMaterialError, key_id_of, new_keyring, parse_keys
from hub.privacy.rotation import walk
from hub.privacy.sealing import configure, sealer, verify_keys
from tests.conftest import PG_SERVER, TEST_KEYS, _admin
from tests.helpers import CUSTOMER, add_system, dump_tables, rec, register
from tests.test_stewardship import AS_OF, MERGE, OVERRIDE

NID, NID_SPACED = "QQ123456C", "qq 12 34 56 c"
DOB, DOB_DMY = "1984-07-02", "02/07/1984"
OTHER_NID, OTHER_DOB, OVERRIDE_DOB = "ZX998877A", "1990-03-04", "1971-11-30"
CLEAR = (NID, "QQ 12 34 56 C", OTHER_NID, DOB, DOB_DMY, "19840702", OTHER_DOB, OVERRIDE_DOB, "1971-11-30")


async def dump(db: Database) -> str:
    """Every row of every table the database holds, as stored, as one text."""
    return "\n".join(f"{name}: {rows}" for name, rows in (await dump_tables(db)).items())


def clear_values_in(stored: str) -> list[str]:
    return [v for v in CLEAR if v in stored or v.lower() in stored or v.replace("-", "") in stored]


async def _populate(admin) -> dict:
    """Registrations (two systems, a link, an update), a merge and overrides of both sensitive attributes."""
    await add_system(admin, "crm")
    await add_system(admin, "billing", dateOrder="DMY", trust=90)
    [a] = await register(admin, "crm", rec("C-1", givenName="Jane", familyName="Doe", email="jane@example.com",
                                           dateOfBirth=DOB, nationalId=NID_SPACED))
    [b] = await register(admin, "billing", rec("B-9", givenName="Jane", familyName="Doe", dateOfBirth=DOB_DMY,
                                               email="jane@example.com"))
    assert b["action"] == "LINKED" and b["customer"]["id"] == a["customer"]["id"]  # exact rule email + dob
    [c] = await register(admin, "crm", rec("C-2", givenName="Janet", familyName="Doh", nationalId=NID))
    assert c["action"] == "LINKED" and c["customer"]["id"] == a["customer"]["id"]  # exact rule national id
    [d] = await register(admin, "crm", rec("C-3", givenName="Max", familyName="Other", dateOfBirth=OTHER_DOB,
                                           nationalId=OTHER_NID, email="max@example.org"))
    [d2] = await register(admin, "crm", rec("C-3", updatedAt=dt.datetime.now(dt.UTC).isoformat(), givenName="Max",
                                            familyName="Other", dateOfBirth=OTHER_DOB, nationalId=OTHER_NID,
                                            email="max@example.net"))
    assert d2["action"] == "UPDATED"
    merged = (await admin(MERGE, ids=[a["customer"]["id"], d["customer"]["id"]], note="same"))["mergeCustomers"]
    cid = merged["id"]
    await admin(OVERRIDE, id=cid, f="dateOfBirth", v=OVERRIDE_DOB, note="passport seen")
    await admin(OVERRIDE, id=cid, f="nationalId", v=NID, note="passport seen")
    return {"id": cid}


async def test_database_holds_no_clear_national_id_or_birth_date(db, admin):
    who = await _populate(admin)
    stored = await dump(db)
    assert "enc1:" in stored
    assert clear_values_in(stored) == [], "clear values stored"
    if db.sqlite:  # and not in the file's pages either (WAL checkpointed, free pages dropped)
        async with db.reader() as conn:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            await conn.execute(text("VACUUM"))
        raw = await asyncio.to_thread(Path(db.url.split("///", 1)[1]).read_bytes)
        assert [v for v in CLEAR if v.encode() in raw] == []
    # while the API reads them in clear
    customer = (await admin(CUSTOMER, id=who["id"]))["customer"]
    assert (customer["nationalId"], customer["dateOfBirth"]) == (NID, OVERRIDE_DOB)
    lineage = {entry["field"]: entry for entry in customer["lineage"]}
    assert lineage["nationalId"]["value"] == NID and lineage["dateOfBirth"]["rule"] == "steward-override"
    changed = [e["changes"]["fields"]["dateOfBirth"] for e in customer["history"]
               if isinstance((e["changes"] or {}).get("fields", {}).get("dateOfBirth"), dict)]
    assert {"before": DOB, "after": OVERRIDE_DOB} in changed


async def test_source_records_carry_keyed_hashes_not_values(db, admin):
    await _populate(admin)
    seal = sealer()
    async with db.session() as s:
        rows = (await s.execute(select(SourceRecord.__table__.c.key, SourceRecord.__table__.c.national_id_hash,
                                       SourceRecord.__table__.c.date_of_birth_hash,
                                       SourceRecord.__table__.c.raw))).all()
    by_key = {r.key: r for r in rows}
    assert by_key["C-1"].national_id_hash == by_key["C-2"].national_id_hash == seal.hash("national_id", NID)
    assert by_key["C-1"].date_of_birth_hash == by_key["B-9"].date_of_birth_hash == seal.hash("date_of_birth", DOB)
    assert by_key["B-9"].national_id_hash is None
    assert by_key["B-9"].raw["dateOfBirth"] == DOB_DMY and by_key["C-1"].raw["nationalId"] == NID_SPACED


async def test_as_of_replays_sealed_history(db, admin):
    who = await _populate(admin)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)).isoformat()
    assert (await admin(AS_OF, id=who["id"], at=later))["customer"]["dateOfBirth"] == OVERRIDE_DOB


async def test_search_by_national_id_finds_the_customer(db, admin):
    who = await _populate(admin)
    found = await admin("""query($a: CustomerAttributesInput!) { findCustomers(attributes: $a, first: 5) {
        customer { id } matchProbability } }""", a={"nationalId": "QQ123456C"})
    assert found["findCustomers"][0]["customer"]["id"] == who["id"]
    assert found["findCustomers"][0]["matchProbability"] == 1.0


async def test_rotation_leaves_everything_readable_and_no_value_under_the_old_key(db, admin, hub_cli, tmp_path,
                                                                                   monkeypatch):
    who = await _populate(admin)
    key_file = tmp_path / "hub.keys"
    key_file.write_text(TEST_KEYS.replace(";", "\n"))
    monkeypatch.delenv("HUB_KEYS")
    monkeypatch.setenv("HUB_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    before = (await admin(CUSTOMER, id=who["id"]))["customer"]

    result = await hub_cli("keys", "rotate", "--key-id", "t2", "--batch", "3")
    assert result.exit_code == 0, result.output
    assert "ZWVl" not in result.output and "aGho" not in result.output  # no key material printed
    ring = parse_keys(key_file.read_text())
    assert [kid for kid, _ in ring.enc_keys] == ["t1", "t2"]
    report = await walk(db, fix=False)
    assert set(report.by_key) == {"t2"} and report.clear == 0
    stored = await dump(db)
    assert "enc1:t1:" not in stored and clear_values_in(stored) == []
    assert (await admin(CUSTOMER, id=who["id"]))["customer"] == before

    status = json.loads((await hub_cli("keys", "status")).stdout.strip().splitlines()[-1])
    assert status["active"] == "t2" and set(status["sealed_by_key"]) == {"t2"}
    retired = await hub_cli("keys", "retire")
    assert retired.exit_code == 0, retired.output
    assert [kid for kid, _ in parse_keys(key_file.read_text()).enc_keys] == ["t2"]
    assert (await admin(CUSTOMER, id=who["id"]))["customer"] == before
    # and registration keeps linking by the (unchanged) keyed hashes
    [again] = await register(admin, "crm", rec("C-9", givenName="J", familyName="D", nationalId=NID))
    assert again["action"] == "LINKED" and again["customer"]["id"] == who["id"]


async def test_rotation_is_refused_for_keys_from_the_environment(db, hub_cli):
    result = await hub_cli("keys", "rotate")
    assert result.exit_code != 0 and "HUB_KEYS" in result.output and "Traceback" not in result.output


async def test_retire_refuses_while_values_need_an_old_key(db, admin, hub_cli, tmp_path, monkeypatch):
    await _populate(admin)
    key_file = tmp_path / "hub.keys"
    key_file.write_text(parse_keys(TEST_KEYS).with_new_key("t2").to_text())  # t2 active, values under t1
    monkeypatch.delenv("HUB_KEYS")
    monkeypatch.setenv("HUB_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    result = await hub_cli("keys", "retire")
    assert result.exit_code != 0 and "rotate --resume" in result.output
    assert [kid for kid, _ in parse_keys(key_file.read_text()).enc_keys] == ["t1", "t2"]
    resumed = await hub_cli("keys", "rotate", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert (await hub_cli("keys", "retire")).exit_code == 0


async def test_wrong_key_is_an_operator_error_not_a_leak(db, admin, db_url):
    who = await _populate(admin)
    other = new_keyring()
    configure(Settings(database_url=db_url, keys=TEST_KEYS.split(";")[0] + ";"
                                                 + other.to_text().splitlines()[-1]))
    try:
        with pytest.raises(KeyMaterialError) as e:
            await verify_keys(db)  # what `hub serve` checks before it starts
        assert "t1" in str(e.value) and NID not in str(e.value)
        r = await admin.raw(CUSTOMER, id=who["id"])
        body = r.json()
        assert r.status_code == 200
        codes = {err["extensions"]["code"] for err in body["errors"]}
        assert codes == {"KEYS_UNAVAILABLE"}
        assert clear_values_in(json.dumps(body)) == [] and "enc1:" not in json.dumps(body)
    finally:
        configure(Settings(database_url=db_url, keys=TEST_KEYS))
    assert (await admin(CUSTOMER, id=who["id"]))["customer"]["nationalId"] == NID


async def test_a_command_with_keys_that_do_not_open_the_data_fails_clearly(db, admin, hub_cli, monkeypatch):
    await _populate(admin)
    other = new_keyring()
    monkeypatch.setenv("HUB_KEYS", TEST_KEYS.split(";")[0] + ";" + other.to_text().splitlines()[-1])
    get_settings.cache_clear()
    result = await hub_cli("keys", "status")
    assert result.exit_code != 0 and "'t1'" in result.output and NID not in result.output


def test_encrypted_attributes_are_configurable_among_the_sealable_ones(tmp_path):
    from hub.config import _encrypted

    assert _encrypted(None) == {"national_id", "date_of_birth"}
    assert _encrypted("nationalId") == {"national_id"} and _encrypted("none") == frozenset()
    with pytest.raises(KeyMaterialError, match="phone"):
        configure(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db", keys=TEST_KEYS,
                           encrypted_attributes=frozenset({"phone"})))


async def test_with_encryption_off_values_are_clear_but_lookups_still_use_hashes(db, admin, db_url):
    configure(Settings(database_url=db_url, keys=TEST_KEYS, encrypted_attributes=frozenset()))
    try:
        who = await _populate(admin)
        stored = await dump(db)
        assert NID in stored and "enc1:" not in stored
        async with db.session() as s:
            hashed = await s.scalar(select(SourceRecord.__table__.c.national_id_hash)
                                    .where(SourceRecord.__table__.c.key == "C-2"))
        assert hashed == sealer().hash("national_id", NID)
        # switched on later: `hub keys rotate --resume` seals what is still clear
        configure(Settings(database_url=db_url, keys=TEST_KEYS))
        report = await walk(db, fix=True)
        assert report.clear > 0 and report.rewritten > 0
        assert clear_values_in(await dump(db)) == []
        assert (await admin(CUSTOMER, id=who["id"]))["customer"]["nationalId"] == NID
    finally:
        configure(Settings(database_url=db_url, keys=TEST_KEYS))


# --- an existing hub upgrades in place -------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def old_hub_url(request, tmp_path):
    """A database at the revision before encryption at rest."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        upgrade(url, "d65f972307d8")
        yield url
        return
    name = f"hub_test_old_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = PG_SERVER.rsplit("/", 1)[0] + "/" + name
    upgrade(url, "d65f972307d8")
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _old_rows(url: str) -> None:
    database = Database(url)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("INSERT INTO source_system (name, date_order, trust, record_count, created_at) "
                                    "VALUES ('crm', 'YMD', 50, 1, '2026-01-01T00:00:00')"))
            await conn.execute(text("INSERT INTO customer (id, status, version, created_at, updated_at, given_name, "
                                    "national_id, date_of_birth) VALUES (1, 'ACTIVE', 1, '2026-01-01T00:00:00', "
                                    "'2026-01-01T00:00:00', 'Jane', :nid, :dob)"),
                               {"nid": NID, "dob": dt.date(1984, 7, 2)})
            await conn.execute(text(
                "INSERT INTO source_record (id, system, key, customer_id, raw, content_hash, match_features, "
                "updated_at, received_at, given_name, national_id, date_of_birth) VALUES (1, 'crm', 'C-1', 1, :raw, "
                "'h', :features, '2026-01-01T00:00:00', '2026-01-01T00:00:00', 'Jane', :nid, :dob)"),
                {"raw": json.dumps({"givenName": "Jane", "nationalId": NID, "dateOfBirth": DOB}),
                 "features": json.dumps({"given": "jane", "dob": DOB, "nid": NID}), "nid": NID,
                 "dob": dt.date(1984, 7, 2)})
            await conn.execute(text("INSERT INTO lineage (customer_id, field, value, source_record_id, rule) VALUES "
                                    "(1, 'nationalId', :nid, 1, 'most-frequent'), "
                                    "(1, 'dateOfBirth', :dob, 1, 'most-frequent'), "
                                    "(1, 'givenName', 'Jane', 1, 'source-trust')"), {"nid": NID, "dob": DOB})
            await conn.execute(text("INSERT INTO event (customer_id, kind, at, actor, changes) VALUES "
                                    "(1, 'CREATED', '2026-01-01T00:00:00', 'x', :changes)"),
                               {"changes": json.dumps({"fields": {"nationalId": NID, "dateOfBirth": DOB,
                                                                  "givenName": "Jane"}, "version": 1})})
            await conn.execute(text("INSERT INTO blocking_key (key, source_record_id) VALUES (:k, 1)"),
                               {"k": f"i:{NID}"})
    finally:
        await database.dispose()


async def test_an_existing_hub_is_sealed_in_place_by_the_migration(old_hub_url, tmp_path):
    await _old_rows(old_hub_url)
    configure(Settings(database_url=old_hub_url, keys=TEST_KEYS))
    await asyncio.to_thread(upgrade, old_hub_url)
    database = Database(old_hub_url)
    try:
        stored = await dump(database)
        assert "enc1:t1:" in stored and clear_values_in(stored) == []
        seal = sealer()
        async with database.session() as s:
            row = (await s.execute(select(SourceRecord).where(SourceRecord.key == "C-1"))).scalar_one()
            golden = (await s.execute(select(Customer).where(Customer.id == 1))).scalar_one()
            keys = (await s.execute(text("SELECT key FROM blocking_key"))).scalars().all()
            lineage = dict((await s.execute(text("SELECT field, value FROM lineage"))).all())
        assert (row.national_id, row.date_of_birth) == (NID, dt.date(1984, 7, 2))
        assert (golden.national_id, golden.date_of_birth) == (NID, dt.date(1984, 7, 2))
        assert row.national_id_hash == seal.hash("national_id", NID)
        assert row.date_of_birth_hash == seal.hash("date_of_birth", DOB)
        assert row.raw == {"givenName": "Jane", "nationalId": NID, "dateOfBirth": DOB}
        assert row.match_features["nid"] == NID
        assert row.content_hash == content_hash(row.raw) != "h"  # a keyed hash: resends stay UNCHANGED
        assert keys == sorted(seal.block_keys([f"i:{NID}"]))
        assert seal.open_lineage("nationalId", lineage["nationalId"]) == NID and lineage["givenName"] == "Jane"
        assert typed("dateOfBirth", seal.open_lineage("dateOfBirth", lineage["dateOfBirth"])) == dt.date(1984, 7, 2)
        assert key_id_of(lineage["dateOfBirth"]) == "t1"
    finally:
        await database.dispose()


async def test_keys_init_writes_an_owner_only_file_once(hub_cli, tmp_path, monkeypatch):
    key_file = tmp_path / "hub.keys"
    monkeypatch.delenv("HUB_KEYS")
    monkeypatch.setenv("HUB_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    first = await hub_cli("keys", "init")
    assert first.exit_code == 0, first.output
    assert (key_file.stat().st_mode & 0o777) == 0o600 and first.stdout == ""  # no key material printed
    ring = parse_keys(key_file.read_text())
    again = await hub_cli("keys", "init")
    assert again.exit_code != 0 and "refusing to overwrite" in again.output
    assert parse_keys(key_file.read_text()) == ring
    printed = await hub_cli("keys", "init", "--stdout")
    assert printed.exit_code == 0 and parse_keys(printed.stdout) != ring


def test_a_running_sealer_picks_up_a_rotated_key_file(tmp_path):
    from hub.models.types import SEALING
    from hub.privacy.keys import write_key_file
    from hub.privacy.sealing import Sealer

    key_file = tmp_path / "hub.keys"
    ring = parse_keys(TEST_KEYS)
    write_key_file(key_file, ring)
    saved = SEALING.sealer
    try:
        SEALING.sealer = running = Sealer(ring, {"national_id"}, key_file=str(key_file))
        rotated = ring.with_new_key("t2")
        write_key_file(key_file, rotated)
        # a value sealed elsewhere under the new key opens at once (the file is re-read for the unknown key)
        sealed = rotated.encrypt(NID, context="national_id")
        assert running.open("national_id", sealed) == NID
        assert key_id_of(SEALING.get().stored("national_id", NID)) == "t2"
        # a rotation the process has not met a value of yet: within a second every new value is sealed under it
        write_key_file(key_file, rotated.with_new_key("t3"))
        SEALING.sealer._checked -= 2
        assert key_id_of(SEALING.get().stored("national_id", NID)) == "t3"
    finally:
        SEALING.sealer = saved


async def test_rotation_runs_while_records_are_registered(db, admin, db_url, tmp_path):
    from hub.privacy.rotation import rotate

    await _populate(admin)
    key_file = tmp_path / "hub.keys"
    key_file.write_text(TEST_KEYS.replace(";", "\n"))
    settings = Settings(database_url=db_url, key_file=str(key_file))
    configure(settings)

    async def registrations():
        out = []
        for i in range(8):
            [r] = await register(admin, "crm", rec(f"R-{i}", givenName="Ann", familyName=f"Lee{i}",
                                                   dateOfBirth=f"1960-01-{i + 10:02d}", nationalId=f"RT{i:04d}99"))
            out.append(r)
            await asyncio.sleep(0)
        return out

    try:
        (active, report), made = await asyncio.gather(rotate(db, settings, key_id="t2", batch=2), registrations())
        assert active == "t2" and report.rewritten > 0
        after = await walk(db, fix=False)
        assert set(after.by_key) == {"t2"} and after.clear == 0
        for i, r in enumerate(made):
            customer = (await admin(CUSTOMER, id=r["customer"]["id"]))["customer"]
            assert (customer["nationalId"], customer["dateOfBirth"]) == (f"RT{i:04d}99", f"1960-01-{i + 10:02d}")
    finally:
        configure(Settings(database_url=db_url, keys=TEST_KEYS))


async def test_downgrading_opens_every_value_again(old_hub_url):
    from alembic import command
    from alembic.script import ScriptDirectory

    from hub.ops.migrate import alembic_config

    await _old_rows(old_hub_url)
    configure(Settings(database_url=old_hub_url, keys=TEST_KEYS))
    await asyncio.to_thread(upgrade, old_hub_url)
    config = alembic_config(old_hub_url)
    before_sealing = ScriptDirectory.from_config(config).get_revision("a58b3571d2b6").down_revision
    await asyncio.to_thread(command.downgrade, config, before_sealing)
    database = Database(old_hub_url)
    try:
        stored = await dump(database)
        assert "enc1:" not in stored
        async with database.reader() as conn:
            row = (await conn.execute(text("SELECT national_id, date_of_birth FROM source_record"))).one()
            golden = (await conn.execute(text("SELECT national_id, date_of_birth FROM customer"))).one()
            lineage = dict((await conn.execute(text("SELECT field, value FROM lineage"))).all())
        assert [str(v) for v in (*row, *golden)] == [NID, DOB, NID, DOB]
        assert lineage["nationalId"] == NID and lineage["dateOfBirth"] == DOB
    finally:
        await database.dispose()
    await asyncio.to_thread(upgrade, old_hub_url)  # and up again
