"""The console in a real browser (Debian's Chromium via Playwright) against a real `hub serve` with generated data.

One hub per dialect for the module (SQLite file, PostgreSQL database), 400 generated people in five systems.
"""
from __future__ import annotations

import asyncio
import datetime
import concurrent.futures
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import PG_SERVER, _admin
from tests.console.browser import go, launch, missing, shot, sign_in
from tests.console.hubserver import Hub, free

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"no browser: {missing()}")

PORTS = {"sqlite": 8182, "postgresql": 8183}
PEOPLE = 400
CANDIDATE = """query($id: ID!) { matchCandidate(id: $id) { id status note resolvedBy
  customer { id version } otherCustomer { id } } }"""
PENDING = "{ matchCandidates(first: 1000) { edges { node { id customer { id } otherCustomer { id } } } } }"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request, tmp_path_factory):
    if not free(PORTS[request.param]):
        pytest.fail(f"port {PORTS[request.param]} is taken")
    work = tmp_path_factory.mktemp(f"console-{request.param}")
    name = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{work / 'hub.db'}"
    else:
        name = f"hub_console_{uuid.uuid4().hex[:10]}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        url = PG_SERVER.rsplit("/", 1)[0] + "/" + name
    server = Hub(work, url, PORTS[request.param])
    server.database_url = url
    try:
        server.start()
        server.load(PEOPLE)
        yield server
    finally:
        server.stop()
        if name:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def browser(hub):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    pg.set_default_timeout(20000)
    yield pg
    context.close()
    assert errors == [], errors


def _sql(hub, query: str) -> list:
    async def run():
        engine = create_async_engine(hub.database_url)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(sa.text(query))).all()
        finally:
            await engine.dispose()
    # Playwright's sync API runs an event loop in this thread: the query runs in another one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def _card(page) -> str:
    return page.get_attribute("#candidate-card", "data-candidate")


def _next_card(page, before: str) -> None:
    page.wait_for_function("b => { const c = document.querySelector('#candidate-card'); "
                           "return (c && c.dataset.candidate !== b) || document.querySelector('#queue-empty'); }",
                           arg=before)


def test_console_without_a_token_asks_for_one_and_refuses_a_bad_one(hub, page):
    page.goto(hub.url + "/console/#/dashboard")
    page.wait_for_selector("#signin")
    assert page.is_hidden("#top")
    page.fill("#token", "not-a-token")
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#signin-message.error")
    assert "Sign-in failed" in page.inner_text("#signin-message")
    assert page.evaluate("sessionStorage.getItem('hub.console.token')") is None
    shot(page, "signin")


def test_steward_works_three_candidates_by_keyboard(hub, page):
    sign_in(page, hub.url, hub.tokens["steward"])
    shot(page, "queue")
    assert page.locator("#waterfall .step").count() >= 1
    decided = []
    started = time.monotonic()
    for key, note in (("m", "same person"), ("n", None), ("m", None)):
        current = _card(page)
        if note:
            page.keyboard.press("/")
            page.keyboard.type(note)
            page.keyboard.press("Escape")
        page.keyboard.press(key)
        _next_card(page, current)
        decided.append((current, key, note))
    minutes = (time.monotonic() - started) / 60
    skipped = _card(page)
    page.keyboard.press("s")
    _next_card(page, skipped)
    print(f"\nconsole: {len(decided) / minutes:.0f} decisions per minute by keyboard ({hub.url})")
    assert page.get_attribute("body", "data-decided") == "3"
    for cid, key, note in decided:
        c = hub.gql(CANDIDATE, "admin", id=cid)["matchCandidate"]
        assert c["status"] in ({"ACCEPTED", "SUPERSEDED"} if key == "m" else {"REJECTED", "SUPERSEDED"})
        if c["status"] != "SUPERSEDED":
            assert c["resolvedBy"] == "console-steward" and c["note"] == note
    assert hub.gql(CANDIDATE, "admin", id=skipped)["matchCandidate"]["status"] == "PENDING"


def test_steward_decision_on_a_changed_record_shows_the_conflict_and_reloads(hub, page):
    sign_in(page, hub.url, hub.tokens["steward"])
    cid = _card(page)
    cand = hub.gql(CANDIDATE, "admin", id=cid)["matchCandidate"]
    # someone else changes the golden record meanwhile
    hub.gql("""mutation($id: ID!) { overrideAttribute(customerId: $id, field: "locality", value: "Elsewhere",
               note: "moved") { version } }""", "admin", id=cand["customer"]["id"])
    page.keyboard.press("m")
    page.wait_for_selector("#banner.error")
    assert "Conflict" in page.inner_text("#banner")
    page.wait_for_function("v => document.querySelector('#compare thead').innerText.includes('v' + v)",
                           arg=cand["customer"]["version"] + 1)
    assert _card(page) == cid
    assert hub.gql(CANDIDATE, "admin", id=cid)["matchCandidate"]["status"] == "PENDING"
    shot(page, "conflict")


def _customer_with_records(hub, n: int) -> dict:
    edges = hub.gql("{ customers(first: 500) { edges { node { id version sourceRecords { system key } } } } }",
                    "admin")["customers"]["edges"]
    return next(e["node"] for e in edges if len(e["node"]["sourceRecords"]) >= n)


def test_steward_splits_a_record_out_and_unmerges_a_merge(hub, page):
    customer = _customer_with_records(hub, 2)
    record = customer["sourceRecords"][-1]
    sign_in(page, hub.url, hub.tokens["steward"])
    go(page, f"#/customer/{customer['id']}", "customer")
    shot(page, "customer")
    page.fill("#action-note", "two people")
    page.click(f"[data-split='{record['system']}/{record['key']}']")
    page.wait_for_selector("#banner.ok")
    assert "split out to customer" in page.inner_text("#banner")
    moved = hub.gql("""query($s: String!, $k: String!) { sourceRecord(system: $s, key: $k) { customer { id } } }""",
                    "admin", s=record["system"], k=record["key"])["sourceRecord"]["customer"]["id"]
    assert moved != customer["id"]
    # merge the two back by API, then undo that merge from the survivor's timeline
    hub.gql("""mutation($ids: [ID!]!) { mergeCustomers(ids: $ids, note: "test") { id } }""", "admin",
            ids=[customer["id"], moved])
    page.evaluate("location.reload()")
    page.wait_for_selector(f"[data-unmerge='{moved}']")
    page.fill("#action-note", "not the same")
    page.click(f"[data-unmerge='{moved}']")
    page.wait_for_selector("#banner:not([hidden])")
    assert page.get_attribute("#banner", "class") == "ok", page.inner_text("#banner")
    back = hub.gql("""query($id: ID!) { customer(id: $id) { id sourceRecords { key } } }""", "admin", id=moved)
    assert back["customer"]["id"] == moved and [r["key"] for r in back["customer"]["sourceRecords"]] == [record["key"]]
    assert page.locator("#timeline li[data-kind=UNMERGED]").count() == 1


def test_steward_overrides_a_value_and_clears_it(hub, page):
    customer = _customer_with_records(hub, 1)
    sign_in(page, hub.url, hub.tokens["steward"])
    go(page, f"#/customer/{customer['id']}", "customer")
    row = "#golden tr[data-field=email]"
    page.click(f"{row} [data-override=email]")
    page.fill(f"{row} [data-override-input=email]", "Fixed.Address@Example.org")
    page.click(f"{row} [data-save=email]")
    page.wait_for_selector("#banner.error")  # no note: refused in the page, nothing sent
    page.fill("#action-note", "customer called")
    page.click(f"{row} [data-save=email]")
    page.wait_for_selector("#banner.ok")
    page.wait_for_selector("body[data-ready=customer]")
    assert page.locator(f"{row} [data-clear=email]").count() == 1
    assert page.inner_text(f"{row} td.value") == "fixed.address@example.org"
    assert "steward-override" in page.inner_text(row)
    shot(page, "override")
    overridden_at = datetime.datetime.now(datetime.UTC).isoformat()
    page.fill("#action-note", "wrong customer")
    page.click(f"{row} [data-clear=email]")
    page.wait_for_selector("#banner.ok")
    page.wait_for_function("() => !document.querySelector('#golden tr[data-field=email]').innerText"
                           ".includes('steward-override')")
    # as of a moment between the two, the page shows the overridden value, read-only
    go(page, f"#/customer/{customer['id']}?asOf={overridden_at.replace('+', '%2B')}", "customer")
    assert page.inner_text(f"{row} td.value") == "fixed.address@example.org"
    assert page.locator("[data-override]").count() == 0 and "as of" in page.inner_text("h1")
    kinds = [e["kind"] for e in hub.gql("""query($id: ID!) { customer(id: $id) { history { kind } } }""", "admin",
                                        id=customer["id"])["customer"]["history"]]
    assert kinds.count("OVERRIDDEN") >= 2


def test_reader_console_hides_the_date_of_birth_and_the_queue(hub, page):
    customer = _customer_with_records(hub, 1)
    dob = hub.gql("""query($id: ID!) { customer(id: $id) { dateOfBirth } }""", "admin", id=customer["id"])
    sign_in(page, hub.url, hub.tokens["reader"])
    assert "Not available to your role" in page.inner_text("#main")
    go(page, f"#/customer/{customer['id']}", "customer")
    assert page.locator("#golden tr[data-field=dateOfBirth]").count() == 0
    assert page.locator("#golden tr[data-field=email]").count() == 1
    assert "Date of birth" not in page.inner_text("#main")
    # a reader may not curate: the page offers no steward action
    assert page.locator("[data-override], [data-split], [data-unmerge], #action-note").count() == 0
    if dob["customer"]["dateOfBirth"]:
        assert dob["customer"]["dateOfBirth"] not in page.content()
    shot(page, "reader-customer")


def test_search_ranks_customers_and_jumps_to_one(hub, page):
    target = hub.gql("{ customers(first: 20) { edges { node { id email } } } }", "admin")
    node = next(e["node"] for e in target["customers"]["edges"] if e["node"]["email"])
    sign_in(page, hub.url, hub.tokens["steward"])
    go(page, "#/search", "search")
    page.fill("#search-form input[name=email]", node["email"])
    page.click("#search-form button[type=submit]")
    page.wait_for_selector("#search-results")
    first = page.locator("#search-results tbody tr").first
    assert first.get_attribute("data-customer") == node["id"]
    assert "email" in first.inner_text()
    shot(page, "search")
    first.click()
    page.wait_for_selector("body[data-ready=customer]")
    assert f"Customer {node['id']}" in page.inner_text("h1")


def test_dashboard_numbers_equal_the_database(hub, page):
    sign_in(page, hub.url, hub.tokens["steward"])
    go(page, "#/dashboard", "dashboard")
    shot(page, "dashboard")
    kpi = lambda k: page.inner_text(f"[data-kpi={k}] .value")  # noqa: E731
    [(records,)] = _sql(hub, "SELECT count(*) FROM source_record")
    [(golden,)] = _sql(hub, "SELECT count(*) FROM customer WHERE status = 'ACTIVE'")
    [(pending,)] = _sql(hub, "SELECT count(*) FROM match_candidate WHERE status = 'PENDING'")
    assert (int(kpi("sourceRecords")), int(kpi("goldenRecords")), int(kpi("pendingCandidates"))) == \
        (records, golden, pending)
    for system, n, phones in _sql(hub, "SELECT system, count(*), count(phone) FROM source_record GROUP BY system"):
        row = f"#completeness tr[data-system={system}]"
        assert int(page.inner_text(f"{row} td.num >> nth=0")) == n
        assert page.inner_text(f"{row} td[data-attribute=phone]") == f"{100 * phones / n:.1f} %"
    assert page.locator("#chart-outcomes rect").count() >= 3
    with page.expect_download() as download:
        page.click("#csv")
    text = open(download.value.path(), encoding="utf-8").read()
    assert text.startswith("section,system,attribute,measure,value") and f"totals,,,sourceRecords,{records}" in text


def test_dashboard_as_reader_is_not_available(hub, page):
    sign_in(page, hub.url, hub.tokens["reader"])
    page.evaluate("location.hash = '#/dashboard'")
    page.wait_for_selector("text=Not available to your role")


def test_explorer_runs_a_query_with_the_token_and_browses_the_docs(hub, page):
    sign_in(page, hub.url, hub.tokens["steward"])
    go(page, "#/explorer", "explorer")
    page.wait_for_selector("#docs [data-field=matchCandidates]")
    page.fill("#gql-query", "{ sourceSystems { name recordCount } }")
    page.click("#run")
    page.wait_for_function("() => document.querySelector('#gql-result').innerText.includes('recordCount')")
    assert '"name": "crm"' in page.inner_text("#gql-result")
    page.click("#docs [data-type=MatchCandidateConnection]")
    page.wait_for_selector("#docs [data-field=pageInfo]")
    shot(page, "explorer")
