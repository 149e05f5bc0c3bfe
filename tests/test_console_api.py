"""What the console needs of the API: its pages served offline, the queue's filters, one candidate, dataQuality."""
from __future__ import annotations

import re

import sqlalchemy as sa

from console import STATIC
from tests.conftest import Gql, mint
from tests.helpers import add_system, rec, register

ANNA = dict(givenName="Anna", familyName="Berg", dateOfBirth="1980-01-01", email="anna.berg@x.org")
ANNA_MOTHER = dict(givenName="Anna", familyName="Berg", dateOfBirth="1955-03-09", email="anna.berg@x.org")
CARL = dict(givenName="Carl", familyName="Holm", dateOfBirth="1970-02-02", email="carl@x.org", phone="+14155550123")
CARL_TOO = dict(givenName="C.", familyName="Holms", phone="+1 415 555 0123")

QUEUE = """query($system: String, $min: Float, $max: Float) {
  matchCandidates(first: 50, system: $system, minProbability: $min, maxProbability: $max) {
    edges { node { id matchProbability } } } }"""
ONE = """query($id: ID!) { matchCandidate(id: $id) { id status customer { id } otherCustomer { id }
  explanation { comparison } } }"""
QUALITY = """{ dataQuality { cachedSeconds seconds modelInUse { id }
  totals { sourceRecords goldenRecords recordsPerGolden pendingCandidates oldestPendingAt }
  systems { system records goldenRecords recordsPerGolden latestUpdateAt invalidValues
    attributes { attribute present completeness invalid validity } }
  duplicates { recordsPerGolden goldenRecords } matchOutcomes { day created linked queued }
  stewardThroughput { day merged notAMatch } queueAge { bucket candidates } } }"""


async def _two_candidates(admin):
    """Anna's mother queued against Anna (crm), and a C. Holms (support) queued against Carl (crm)."""
    await add_system(admin, "crm")
    await add_system(admin, "support")
    await register(admin, "crm", rec("A1", **ANNA), rec("C1", **CARL))
    [mother] = await register(admin, "crm", rec("B1", **ANNA_MOTHER))
    [carl] = await register(admin, "support", rec("S1", **CARL_TOO))
    assert mother["action"] == carl["action"] == "QUEUED_FOR_REVIEW"
    return mother["matchProbability"], carl["matchProbability"]


async def test_console_page_as_anyone_is_served_with_only_local_assets(client):
    r = await client.get("/console", follow_redirects=True)
    assert r.status_code == 200 and "<title>Hub console</title>" in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    for asset in re.findall(r'(?:src|href)="([^"#]+)"', r.text):
        assert "//" not in asset, asset  # nothing from another host
        assert (await client.get(f"/console/{asset}")).status_code == 200, asset
    for path in STATIC.iterdir():
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", path.read_text(encoding="utf-8")), path.name


async def test_console_page_holds_no_data_without_a_token(client):
    r = await client.get("/console/console.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert (await client.post("/graphql", json={"query": "{ dataQuality { seconds } }"})).status_code == 401


async def test_queue_filtered_by_system_as_steward_keeps_candidates_touching_it(admin, client, db):
    await _two_candidates(admin)
    steward = Gql(client, await mint(db, "steward", "sam"))
    everything = (await steward(QUEUE))["matchCandidates"]["edges"]
    support = (await steward(QUEUE, system="support"))["matchCandidates"]["edges"]
    crm = (await steward(QUEUE, system="crm"))["matchCandidates"]["edges"]
    nowhere = (await steward(QUEUE, system="billing"))["matchCandidates"]["edges"]
    assert len(everything) == 2 and len(crm) == 2 and nowhere == []
    assert len(support) == 1
    [carl] = support
    detail = (await steward(ONE, id=carl["node"]["id"]))["matchCandidate"]
    assert detail["status"] == "PENDING" and detail["explanation"]


async def test_queue_filtered_by_probability_band_keeps_those_inside(admin):
    mother, carl = await _two_candidates(admin)
    low, high = sorted((mother, carl))
    assert low < high
    band = (await admin(QUEUE, min=high, max=1.0))["matchCandidates"]["edges"]
    assert [e["node"]["matchProbability"] for e in band] == [high]
    below = (await admin(QUEUE, min=0.0, max=low))["matchCandidates"]["edges"]
    assert [e["node"]["matchProbability"] for e in below] == [low]


async def test_queue_with_a_band_upside_down_is_bad_input(admin):
    _, errors = await admin.errors(QUEUE, min=0.9, max=0.1)
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    _, errors = await admin.errors(QUEUE, min=-1.0)
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_match_candidate_unknown_id_is_null_and_junk_is_bad_input(admin):
    assert (await admin(ONE, id="999999"))["matchCandidate"] is None
    _, errors = await admin.errors(ONE, id="x")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_data_quality_as_steward_equals_the_database(admin, client, db):
    await _two_candidates(admin)
    # one refused value (an email that is no email) is kept raw and left out: validity counts it
    await register(admin, "support", rec("S2", givenName="Bo", familyName="Ek", email="not-an-email"))
    steward = Gql(client, await mint(db, "steward", "sam"))
    q = (await steward(QUALITY))["dataQuality"]
    async with db.session() as session:
        records = dict((await session.execute(sa.text(
            "SELECT system, count(*) FROM source_record GROUP BY system"))).all())
        golden = await session.scalar(sa.text("SELECT count(*) FROM customer WHERE status = 'ACTIVE'"))
        pending = await session.scalar(sa.text("SELECT count(*) FROM match_candidate WHERE status = 'PENDING'"))
        emails = dict((await session.execute(sa.text(
            "SELECT system, count(email) FROM source_record GROUP BY system"))).all())
    assert {s["system"]: s["records"] for s in q["systems"]} == records
    assert q["totals"]["goldenRecords"] == golden and q["totals"]["pendingCandidates"] == pending == 2
    assert q["totals"]["sourceRecords"] == sum(records.values())
    by = {(s["system"], a["attribute"]): a for s in q["systems"] for a in s["attributes"]}
    assert by["support", "email"]["present"] == emails["support"]
    assert by["support", "email"]["invalid"] == 1 and by["support", "email"]["validity"] == 0.0
    assert by["crm", "email"]["invalid"] == 0 and by["crm", "email"]["validity"] == 1.0
    assert by["crm", "nationalId"]["validity"] is None  # nobody sent one
    assert sum(d["goldenRecords"] for d in q["duplicates"]) == golden
    assert sum(d["queued"] for d in q["matchOutcomes"]) == 2
    assert sum(d["created"] for d in q["matchOutcomes"]) == 5  # every record made its own golden record
    assert sum(b["candidates"] for b in q["queueAge"]) == 2
    assert q["modelInUse"] is None  # the shipped default model


async def test_data_quality_counts_steward_decisions_per_day(admin):
    await _two_candidates(admin)
    edges = (await admin(QUEUE))["matchCandidates"]["edges"]
    decide = """mutation($id: ID!, $d: MatchDecision!) { resolveMatchCandidate(id: $id, decision: $d) { status } }"""
    await admin(decide, id=edges[0]["node"]["id"], d="MERGE")
    await admin(decide, id=edges[1]["node"]["id"], d="NOT_A_MATCH")
    q = (await admin(QUALITY))["dataQuality"]
    [day] = q["stewardThroughput"]
    assert (day["merged"], day["notAMatch"]) == (1, 1)
    assert q["totals"]["pendingCandidates"] == 0


async def test_data_quality_as_reader_or_source_is_forbidden(admin, client, db):
    await add_system(admin, "crm")
    for role, system in (("reader", None), ("source", "crm")):
        caller = Gql(client, await mint(db, role, f"{role}-x", system=system))
        data, errors = await caller.errors(QUALITY)
        assert data is None and errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_data_quality_is_served_from_memory_within_its_ttl(admin, services):
    await add_system(admin, "crm")
    await register(admin, "crm", rec("A1", **ANNA))
    first = (await admin(QUALITY))["dataQuality"]
    await register(admin, "crm", rec("C1", **CARL))
    cached = (await admin(QUALITY))["dataQuality"]
    assert first["cachedSeconds"] == 60 and cached["totals"]["sourceRecords"] == 1
    services.quality_cache.at -= 61  # older than the TTL: computed again
    assert (await admin(QUALITY))["dataQuality"]["totals"]["sourceRecords"] == 2


async def test_unmerge_as_steward_brings_the_merged_record_back(admin, client, db):
    await add_system(admin, "crm")
    [a] = await register(admin, "crm", rec("A1", **ANNA))
    [c] = await register(admin, "crm", rec("C1", **CARL))
    ids = [a["customer"]["id"], c["customer"]["id"]]
    await admin("""mutation($ids: [ID!]!) { mergeCustomers(ids: $ids) { id } }""", ids=ids)
    steward = Gql(client, await mint(db, "steward", "sam"))
    back = await steward("""mutation($id: ID!) { unmergeCustomer(id: $id, note: "two people") { id } }""", id=ids[1])
    assert back["unmergeCustomer"]["id"] == ids[1]
    reader = Gql(client, await mint(db, "reader", "app"))
    _, errors = await reader.errors("""mutation($id: ID!) { unmergeCustomer(id: $id) { id } }""", id=ids[1])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
