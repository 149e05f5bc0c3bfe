"""What the hub writes to its logs: one line per request, no personal value, no secret, no client tracebacks."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hub.db import Database
from hub.logs import NOISY, HubFormatter, mask_url, quiet_drivers, redact, safe_traceback
from tests.conftest import Gql, mint
from tests.helpers import CUSTOMER, REGISTER, add_system, rec
from tests.test_http import TcpProxy, free_port

PASSWORD = "S3cretPw"
PERSON = dict(givenName="Zebedee", familyName="Quuxworth", email="Zebedee.Quuxworth@example.org",
              phone="+44 20 7946 0123", dateOfBirth="1971-03-04", nationalId="QQ123456C",
              addressLine1="12 Privet Drive", postcode="SW1A 2AA", country="GB")
# a batch the database refuses (a constraint of the test's own): its valid records' values must not leak either
DOOMED = [rec("D-1", givenName="Xanthippe", familyName="Oglethorpe", nationalId="QQ654321D",
              dateOfBirth="1966-06-16", email="x.oglethorpe@example.org"),
          rec("D-2", givenName="Ignatius", familyName="Fenwright", nationalId="QQ777888E",
              dateOfBirth="1959-09-09", email="i.fenwright@example.org")]
SECRETS = ["Zebedee", "Quuxworth", "zebedee.quuxworth", "7946 0123", "+442079460123", "1971-03-04", "QQ123456C",
           "Privet", "SW1A 2AA", "Xanthippe", "Oglethorpe", "QQ654321D", "1966-06-16", "Ignatius", "Fenwright",
           "QQ777888E", "1959-09-09", "oglethorpe@", "fenwright@", PASSWORD]
BAD_ID = "x" * 5_000_000


async def _refuse_xanthippe(db: Database) -> None:
    """Make the database itself refuse a batch (as a constraint or trigger of a real deployment would)."""
    async with db.engine.begin() as conn:
        if db.sqlite:
            await conn.execute(text("CREATE TRIGGER zz_refuse BEFORE INSERT ON source_record "
                                    "WHEN NEW.given_name = 'Xanthippe' BEGIN SELECT RAISE(ABORT, 'refused'); END"))
        else:
            await conn.execute(text("ALTER TABLE source_record ADD CONSTRAINT zz_refuse "
                                    "CHECK (given_name IS DISTINCT FROM 'Xanthippe')"))


async def _allow_xanthippe(db: Database) -> None:
    async with db.engine.begin() as conn:
        if db.sqlite:
            await conn.execute(text("DROP TRIGGER IF EXISTS zz_refuse"))
        else:
            await conn.execute(text("ALTER TABLE source_record DROP CONSTRAINT IF EXISTS zz_refuse"))


async def _workload(admin: Gql, reader: Gql, anonymous: Gql) -> list[int]:
    """Registrations, reads, every kind of client error and a batch the database refuses; the HTTP statuses."""
    statuses = []

    async def go(gql: Gql, query: str, **variables) -> dict:
        r = await gql.raw(query, **variables)
        statuses.append(r.status_code)
        return r.json()

    await go(admin, "mutation { registerSourceSystem(input: {name: \"crm\", dateOrder: YMD, trust: 60}) { name } }")
    body = await go(admin, REGISTER, system="crm", records=[rec("Z-1", **PERSON), rec("Z-2", **PERSON)])
    customer_id = body["data"]["registerRecords"][0]["customer"]["id"]
    assert (await go(admin, CUSTOMER, id=customer_id))["data"]["customer"]["nationalId"] == "QQ123456C"
    failed = await go(admin, REGISTER, system="crm", records=DOOMED)
    assert failed["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR", failed
    forbidden = await go(reader, "query($id: ID!) { customer(id: $id) { givenName dateOfBirth } }", id=customer_id)
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    bad = await go(reader, "query($id: ID!) { customer(id: $id) { id } }", id=BAD_ID)
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    refused = await go(reader, REGISTER, system="crm", records=[rec("R-1", **PERSON)])
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    missing = await go(admin, "mutation { resolveMatchCandidate(id: \"999\", decision: MERGE) { id } }")
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND", missing
    unknown = await go(admin, "mutation($r: [SourceRecordInput!]!) { registerRecords(system: \"nope\", records: $r) "
                              "{ key } }", r=[rec("Z-9", **PERSON)])
    assert unknown["errors"], unknown
    await go(anonymous, "{ sourceSystems { name } }")
    return statuses


def _leaks(text_: str) -> list[str]:
    return [s for s in SECRETS if s.lower() in text_.lower()]


@pytest.fixture
def hub_log_levels():
    """The levels `hub serve` sets (drivers that log parameters at DEBUG held at WARNING), restored after."""
    names = list(NOISY)
    before = {n: logging.getLogger(n).level for n in names}
    quiet_drivers()
    yield
    for n, level in before.items():
        logging.getLogger(n).setLevel(level)


async def test_workload_logs_one_line_per_request_and_no_personal_value(db, client, caplog, hub_log_levels):
    caplog.set_level(logging.DEBUG)
    admin = Gql(client, await mint(db, "admin", "alice"))
    reader = Gql(client, await mint(db, "reader", "web-app"))
    await _refuse_xanthippe(db)
    try:
        statuses = await _workload(admin, reader, Gql(client, None))
    finally:
        await _allow_xanthippe(db)

    records = caplog.records
    rendered = "\n".join([caplog.text, *(HubFormatter(style).format(r) for r in records for style in ("text", "json"))])
    assert _leaks(rendered) == []
    assert len(rendered) < 200_000  # the 5 MB bad id added nothing of itself

    lines = [r for r in records if r.name == "hub.request"]
    assert [r.fields["status"] for r in lines] == statuses
    for r in lines:
        assert set(r.fields) >= {"request_id", "op", "role", "status", "ms", "errors"}
        assert re.fullmatch(r"[0-9a-f]{16}", r.fields["request_id"])
    assert lines[1].fields["op"] == "mutation:registerRecords" and lines[1].fields["role"] == "admin"
    codes = [r.fields["errors"] for r in lines]
    assert codes[:3] == [None, None, None] and codes[3] == "INTERNAL_SERVER_ERROR"
    assert codes[4:7] == ["FORBIDDEN", "BAD_USER_INPUT", "FORBIDDEN"] and codes[-1] == "UNAUTHENTICATED"
    # client errors: no traceback anywhere; the database's refusal: exactly one, redacted
    tracebacks = [r for r in records if r.exc_info or "Traceback" in r.getMessage()]
    assert len(tracebacks) == 1, [r.getMessage()[:200] for r in tracebacks]
    assert "IntegrityError" in tracebacks[0].getMessage()


async def test_request_line_carries_the_client_request_id_and_the_operation_name(admin, caplog):
    caplog.set_level(logging.INFO, logger="hub.request")
    r = await admin.client.post("/graphql", json={"query": "query Systems { sourceSystems { name } }",
                                                  "operationName": "Systems"},
                                headers={"Authorization": f"Bearer {admin.token}", "X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    line = [x for x in caplog.records if x.name == "hub.request"][-1]
    assert line.fields["request_id"] == "abc-123" and line.fields["op"] == "query:Systems"
    assert line.fields["status"] == 200 and line.fields["role"] == "admin"
    text_ = HubFormatter("text").format(line)
    assert re.fullmatch(r"ts=\S+ level=INFO logger=hub.request request_id=abc-123 op=query:Systems role=admin "
                        r"status=200 ms=[0-9.]+ errors=-", text_), text_
    assert json.loads(HubFormatter("json").format(line))["op"] == "query:Systems"


def test_redaction_drops_quoted_values_and_detail_lines_and_caps_length():
    message = ('new row for relation "source_record" violates check constraint "zz"\n'
               'DETAIL:  Failing row contains (1, crm, K-1, Zebedee, QQ123456C).\n'
               "Key (email)=(zebedee@example.org) already exists. invalid input: 'Quuxworth'")
    out = redact(message)
    assert _leaks(out) == [] and "zebedee@" not in out and "DETAIL: <redacted>" in out
    assert len(redact("y" * 5_000_000)) < 1000
    value = "".join(["Zeb", "edee"])  # not in the traceback's source lines
    try:
        int(value)
    except ValueError as e:
        assert "Zebedee" not in safe_traceback(e) and "ValueError" in safe_traceback(e)


def test_database_urls_are_printed_with_the_password_masked():
    assert mask_url(f"postgresql+asyncpg://postgres:{PASSWORD}@db:5432/hub") == "postgresql+asyncpg://postgres:***@db:5432/hub"
    assert PASSWORD not in mask_url(f"postgresql://u:{PASSWORD}@h/d?sslmode=require")


def test_engines_hide_sql_parameters_on_both_dialects():
    for url in ("sqlite+aiosqlite:///:memory:", "postgresql+asyncpg://postgres@127.0.0.1:5432/x"):
        db = Database(url)
        assert db.engine.sync_engine.hide_parameters is True


# ------------------------------------------------------------------------ the server process, end to end


async def _wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise AssertionError(f"hub serve exited: {proc.stderr.read().decode()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise AssertionError("hub serve did not start")


async def test_served_hub_writes_no_personal_value_nor_the_password_to_its_stderr(db, db_url, tmp_path):
    """`hub serve` as deployed: workload, a refused batch, an outage (PostgreSQL), all of stderr read back."""
    proxy = None
    url = db_url
    if not db.sqlite:
        real = make_url(db_url)
        proxy = TcpProxy(real.host, real.port or 5432, free_port())
        await proxy.start()
        url = real.set(port=proxy.port, password=PASSWORD).render_as_string(hide_password=False)
    admin_token = await mint(db, "admin", "alice")
    reader_token = await mint(db, "reader", "web-app")
    await _refuse_xanthippe(db)
    port = free_port()
    env = {**os.environ, "HUB_DATABASE_URL": url, "HUB_LOG_LEVEL": "DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            await _wait_ready(client, proc)
            admin, reader = Gql(client, admin_token), Gql(client, reader_token)
            statuses = await _workload(admin, reader, Gql(client, None))
            if proxy is not None:
                await proxy.stop(cut=True)
                for _ in range(3):
                    r = await admin.raw("{ sourceSystems { name } }")
                    statuses.append(r.status_code)
                    assert r.status_code == 503 and r.headers["retry-after"]
                await proxy.start()
                r = await admin.raw(CUSTOMER, id="1")
                statuses.append(r.status_code)
                assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        await _allow_xanthippe(db)
        if proxy is not None:
            await proxy.stop(cut=True)
    log_text = err.decode("utf-8") + out.decode("utf-8")
    assert _leaks(log_text) == [], log_text[-3000:]
    assert len(log_text) < 200_000
    request_lines = [line for line in log_text.splitlines() if "logger=hub.request" in line]
    assert sorted(int(re.search(r" status=(\d+)", line).group(1)) for line in request_lines) == sorted(statuses)
    # the refused batch, nothing else; but a read audit that could not reach the database before the hub
    # stopped during the outage says so (it holds no values, only counts)
    errors = [line for line in log_text.splitlines() if " level=ERROR " in line
              and "read audit: " not in line]
    assert len(errors) == 1 and "IntegrityError" in errors[0], log_text
    assert all(line.startswith("ts=") or line.startswith("hub: GraphQL on") for line in log_text.splitlines())
    if proxy is not None:
        assert "postgres:***@" in log_text  # the start-up line names the database, masked
