"""Metrics at /metrics, draining on shutdown, pool and timeout settings."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, text

from hub.db import Database
from hub.models import ACTIVE, Customer, MatchCandidate, utcnow
from schema.app import build_services, create_app
from schema.observe import QueueGauge
from tests.conftest import TEST_KEYS
from tests.helpers import add_system, rec, register


def samples(body: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(client) -> dict[tuple[str, tuple], float]:
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


def value(metrics, name, **labels) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_operations_by_root_field_and_code_as_admin_are_counted(client, admin):
    before = await scrape(client)
    await admin("query { customer(id: \"999999\") { id } }")
    await admin.errors("mutation { registerRecords(system: \"nosuch\", records: [{key: \"k\", attributes: {}}]) "
                       "{ key } }")
    await admin.errors("query { noSuchField }")
    after = await scrape(client)
    for operation, code in (("query:customer", "OK"), ("mutation:registerRecords", "NOT_FOUND"),
                            ("invalid", "GRAPHQL_VALIDATION_FAILED")):
        delta = (value(after, "hub_graphql_operations_total", operation=operation, code=code)
                 - value(before, "hub_graphql_operations_total", operation=operation, code=code))
        assert delta == 1, (operation, code, [k for k in after if k[0] == "hub_graphql_operations_total"])
    assert (value(after, "hub_http_requests_total", route="/graphql", status="200")
            - value(before, "hub_http_requests_total", route="/graphql", status="200")) == 3
    assert (value(after, "hub_graphql_operation_seconds_count", operation="query:customer")
            > value(before, "hub_graphql_operation_seconds_count", operation="query:customer"))


async def test_unauthenticated_request_is_counted_as_401_and_metrics_hold_no_personal_value(client, admin):
    before = await scrape(client)
    await client.post("/graphql", json={"query": "{ customer(id: \"1\") { id } }"})
    await add_system(admin)
    await register(admin, "crm", rec("r1", givenName="Zebulon", familyName="Quackenbush", email="zq@example.org"))
    after = await scrape(client)
    assert (value(after, "hub_http_requests_total", route="/graphql", status="401")
            - value(before, "hub_http_requests_total", route="/graphql", status="401")) == 1
    body = (await client.get("/metrics")).text
    assert "Zebulon" not in body and "Quackenbush" not in body and "example.org" not in body


async def test_registration_counts_actions_lock_waits_and_matcher_phases(client, admin):
    await add_system(admin)
    before = await scrape(client)
    await register(admin, "crm", rec("a", givenName="Ann", familyName="Lee", email="ann@example.org",
                                     dateOfBirth="1980-01-02"),
                   rec("b", givenName="Bob", familyName="Ray", email="bob@example.org"))
    await register(admin, "crm", rec("a", givenName="Ann", familyName="Lee", email="ann@example.org",
                                     dateOfBirth="1980-01-02"))
    after = await scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("hub_registrations_total", action="CREATED") == 2
    assert delta("hub_registrations_total", action="UNCHANGED") == 1
    assert delta("hub_write_lock_wait_seconds_count") >= 2
    assert delta("hub_match_seconds_count", phase="place") == 1  # the second batch changed nothing
    assert delta("hub_match_seconds_count", phase="candidates") == 1


async def test_review_queue_gauge_counts_pending_candidates(db, client):
    now = utcnow()
    async with db.write() as session:
        ids = (await session.execute(insert(Customer).returning(Customer.id), [
            {"status": ACTIVE, "version": 1, "created_at": now, "updated_at": now} for _ in range(3)])).scalars().all()
        await session.execute(insert(MatchCandidate), [
            {"customer_id": ids[0], "other_customer_id": ids[1], "probability": 0.8, "status": "PENDING",
             "created_at": now},
            {"customer_id": ids[1], "other_customer_id": ids[2], "probability": 0.7, "status": "PENDING",
             "created_at": now},
            {"customer_id": ids[0], "other_customer_id": ids[2], "probability": 0.7, "status": "REJECTED",
             "created_at": now}])
    await QueueGauge(db).refresh()
    assert value(await scrape(client), "hub_review_queue_size") == 2


async def test_metrics_off_answers_404(db, settings):
    from dataclasses import replace
    app = create_app(build_services(replace(settings, metrics=False), db=db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as c:
        assert (await c.get("/metrics")).status_code == 404


async def test_graphql_while_draining_is_503_service_unavailable_with_retry_after(services, admin_token):
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as c:
        headers = {"Authorization": f"Bearer {admin_token}"}
        assert (await c.get("/readyz")).status_code == 200
        app.state.drain.start()
        r = await c.post("/graphql", json={"query": "{ customer(id: \"1\") { id } }"}, headers=headers)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert (await c.get("/readyz")).status_code == 503
        assert (await c.get("/healthz")).status_code == 200


async def test_pool_and_timeout_settings_reach_the_connection(db_url):
    database = Database(db_url, pool_size=3, max_overflow=1, statement_timeout_ms=250, busy_timeout_ms=1234)
    try:
        async with database.session() as session:
            if database.sqlite:
                assert (await session.execute(text("PRAGMA busy_timeout"))).scalar_one() == 1234
            else:
                assert database.engine.pool.size() == 3
                assert (await session.execute(text("SHOW statement_timeout"))).scalar_one() == "250ms"
                with pytest.raises(Exception, match="statement timeout"):
                    await session.execute(text("SELECT pg_sleep(2)"))
    finally:
        await database.dispose()


def _wait_ready(port: int, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("hub serve did not become ready")


def test_metrics_of_two_workers_add_up_on_any_worker(pg_url, tmp_path):
    """`hub serve --workers 2`: every scrape, whichever worker answers it, counts every worker's requests."""
    port = 8201
    env = {**os.environ, "HUB_DATABASE_URL": pg_url, "HUB_KEYS": TEST_KEYS, "TMPDIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    hub = shutil.which("hub", path=os.path.dirname(sys.executable))
    proc = subprocess.Popen([hub, "serve", "--port", str(port), "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(port, proc)
        folders = list(tmp_path.glob("hub-metrics-*"))
        assert len(folders) == 1
        for _ in range(40):  # a new connection each: the kernel spreads them over both workers
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert len({p.name.rsplit("_", 1)[-1] for p in folders[0].glob("counter_*.db")}) == 2  # both served
        for _ in range(6):
            metrics = samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
            assert value(metrics, "hub_http_requests_total", route="/healthz", status="200") == 40
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert not list(tmp_path.glob("hub-metrics-*"))  # the private folder is gone
