"""The `hub` command line, against both databases."""
from __future__ import annotations

import json

from sqlalchemy import select

from hub.models import ApiToken, SourceRecord
from tests.helpers import add_system


async def test_token_create_prints_only_the_token_and_stores_its_hash(hub_cli, db):
    result = await hub_cli("token", "create", "--subject", "ops", "--role", "admin")
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert token.startswith("hub_") and "\n" not in token
    async with db.session() as s:
        row = (await s.scalars(select(ApiToken).where(ApiToken.subject == "ops"))).one()
    assert row.token_hash != token and len(row.token_hash) == 64
    revoked = await hub_cli("token", "revoke", "--subject", "ops")
    assert revoked.exit_code == 0 and "revoked 1" in revoked.stderr


async def test_source_token_without_system_is_refused(hub_cli, db):
    result = await hub_cli("token", "create", "--subject", "feed", "--role", "source")
    assert result.exit_code != 0 and "--system" in result.output


async def test_load_jsonl_and_csv_through_the_registration_path(hub_cli, db, admin, tmp_path):
    await add_system(admin, "shop", dateOrder="MDY")
    jsonl = tmp_path / "shop.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"key": "S1", "updatedAt": "2026-01-02T03:04:05+00:00",
         "attributes": {"givenName": "ann", "familyName": "lee", "email": "ann@x.org", "dateOfBirth": "04/03/85"}},
        {"key": "S2", "attributes": {"givenName": "Nobody"}},
    ]) + "\n")
    result = await hub_cli("load", str(jsonl), "--system", "shop")
    assert result.exit_code == 1, result.output  # a rejected line
    assert json.loads(result.stdout.strip().splitlines()[-1])["actions"] == {"CREATED": 1, "REJECTED": 1}
    assert "line 2: rejected (attributes)" in result.stderr
    csv_file = tmp_path / "more.csv"
    csv_file.write_text("key,givenName,familyName,email,dateOfBirth\nS3,Ann,Lee,ann@x.org,04/03/1985\n")
    result = await hub_cli("load", str(csv_file), "--system", "shop")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["actions"] == {"LINKED": 1}
    async with db.session() as s:
        rows = (await s.scalars(select(SourceRecord).order_by(SourceRecord.key))).all()
    assert [(r.key, r.given_name, str(r.date_of_birth)) for r in rows] == [
        ("S1", "Ann", "1985-04-03"), ("S3", "Ann", "1985-04-03")]
    assert rows[0].customer_id == rows[1].customer_id


async def test_load_into_an_unknown_system_fails_clearly(hub_cli, db, tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"key": "K", "attributes": {"email": "a@x.org"}}) + "\n")
    result = await hub_cli("load", str(f), "--system", "nope")
    assert result.exit_code != 0 and "unknown source system" in result.output
