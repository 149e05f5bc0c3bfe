"""The steward workflow over GraphQL: queue, decisions, undo, overrides, history."""
from __future__ import annotations

import datetime as dt

from tests.conftest import Gql, mint
from tests.helpers import CUSTOMER, REGISTER, add_system, rec, register

ANNA = dict(givenName="Anna", familyName="Berg", dateOfBirth="1980-01-01", email="anna.berg@x.org")
# same mailbox, same name, another birth date: the model queues it for review (capped at 0.9)
ANNA_MOTHER = dict(givenName="Anna", familyName="Berg", dateOfBirth="1955-03-09", email="anna.berg@x.org")

QUEUE = """query($after: String, $order: CandidateOrder) { matchCandidates(first: 10, after: $after, orderBy: $order) {
  edges { cursor node { id status matchProbability explanation { comparison level matchWeight }
    customer { id sourceRecords { key } } otherCustomer { id sourceRecords { key } } } }
  pageInfo { hasNextPage endCursor } } }"""
RESOLVE = """mutation($id: ID!, $d: MatchDecision!, $note: String) {
  resolveMatchCandidate(id: $id, decision: $d, note: $note) { id status resolvedBy note } }"""
MERGE = """mutation($ids: [ID!]!, $note: String, $v: [Int!]) { mergeCustomers(ids: $ids, note: $note, expectedVersions: $v) {
  id version sourceRecords { key } } }"""
SPLIT = """mutation($s: String!, $k: String!, $note: String) { splitSourceRecord(system: $s, key: $k, note: $note) {
  id version email dateOfBirth sourceRecords { key } } }"""
UNMERGE = """mutation($id: ID!) { unmergeCustomer(id: $id, note: "wrong merge") { id version dateOfBirth
  sourceRecords { key } } }"""
OVERRIDE = """mutation($id: ID!, $f: String!, $v: String, $note: String!, $ev: Int) {
  overrideAttribute(customerId: $id, field: $f, value: $v, note: $note, expectedVersion: $ev) {
    id version email givenName lineage { field value rule sourceRecord { key } } } }"""
AS_OF = """query($id: ID!, $at: DateTime!) { customer(id: $id, asOf: $at) { id version email dateOfBirth } }"""


async def _queued(admin):
    await add_system(admin)
    [a] = await register(admin, "crm", rec("A1", **ANNA))
    [b] = await register(admin, "crm", rec("B1", **ANNA_MOTHER))
    assert (a["action"], b["action"]) == ("CREATED", "QUEUED_FOR_REVIEW")
    assert 0.6 <= b["matchProbability"] < 0.95
    return a["customer"]["id"], b["customer"]["id"]


async def test_queue_shows_both_customers_and_the_explanation_as_steward(admin, client, db):
    anna, mother = await _queued(admin)
    steward = Gql(client, await mint(db, "steward", "sam"))
    [edge] = (await steward(QUEUE))["matchCandidates"]["edges"]
    node = edge["node"]
    assert node["status"] == "PENDING"
    assert {node["customer"]["id"], node["otherCustomer"]["id"]} == {anna, mother}
    comparisons = {e["comparison"]: e["level"] for e in node["explanation"]}
    assert comparisons["email"] == "exact" and comparisons["date_of_birth"] == "else"


async def test_queue_serves_the_most_uncertain_first(admin):
    await add_system(admin)
    await register(admin, "crm", rec("A1", **ANNA), rec("C1", givenName="Carl", familyName="Holm",
                                                        dateOfBirth="1970-02-02", email="carl@x.org",
                                                        phone="+14155550123"))
    await register(admin, "crm", rec("B1", **ANNA_MOTHER))
    await register(admin, "crm", rec("D1", givenName="C.", familyName="Holms", phone="+1 415 555 0123"))
    edges = (await admin(QUEUE))["matchCandidates"]["edges"]
    probabilities = [e["node"]["matchProbability"] for e in edges]
    assert len(probabilities) == 2 and probabilities[0] != probabilities[1]
    middle = (0.95 + 0.6) / 2
    assert [abs(p - middle) for p in probabilities] == sorted(abs(p - middle) for p in probabilities)
    page = (await admin(QUEUE, after=edges[0]["cursor"]))["matchCandidates"]
    assert [e["node"]["id"] for e in page["edges"]] == [edges[1]["node"]["id"]]


async def test_merge_decision_merges_forwards_and_cannot_be_taken_twice(admin):
    anna, mother = await _queued(admin)
    cid = (await admin(QUEUE))["matchCandidates"]["edges"][0]["node"]["id"]
    done = (await admin(RESOLVE, id=cid, d="MERGE", note="same person, typo in birth year"))["resolveMatchCandidate"]
    assert done == {"id": cid, "status": "ACCEPTED", "resolvedBy": "alice", "note": "same person, typo in birth year"}
    survivor = (await admin(CUSTOMER, id=mother))["customer"]
    assert survivor["id"] == min(anna, mother, key=int)
    assert {r["key"] for r in survivor["sourceRecords"]} == {"A1", "B1"}
    assert [e["kind"] for e in survivor["history"]][-2:] == ["MERGED", "UPDATED"] or "MERGED" in [
        e["kind"] for e in survivor["history"]]
    _, errors = await admin.errors(RESOLVE, id=cid, d="NOT_A_MATCH")
    assert errors[0]["extensions"]["code"] == "CONFLICT"


async def test_not_a_match_is_remembered_by_the_real_time_path(admin):
    anna, mother = await _queued(admin)
    cid = (await admin(QUEUE))["matchCandidates"]["edges"][0]["node"]["id"]
    assert (await admin(RESOLVE, id=cid, d="NOT_A_MATCH"))["resolveMatchCandidate"]["status"] == "REJECTED"
    # a record that matches both exactly (same national id as one, same email+dob as the other) links to one
    await register(admin, "crm", rec("A2", nationalId="XY-123456", **ANNA))
    [c] = await register(admin, "crm", rec("C1", nationalId="XY-123456", email="anna.berg@x.org",
                                           dateOfBirth="1955-03-09"))
    assert c["action"] == "LINKED"
    ids = {(await admin(CUSTOMER, id=x))["customer"]["id"] for x in (anna, mother)}
    assert ids == {anna, mother}


async def test_merge_then_split_restores_the_original_values_and_never_relinks(admin):
    await add_system(admin)
    [a] = await register(admin, "crm", rec("A", givenName="Ola", familyName="Nord", email="ola@x.org",
                                           dateOfBirth="1990-01-01"))
    [b] = await register(admin, "crm", rec("B", givenName="Kari", familyName="Sund", email="kari@y.org",
                                           dateOfBirth="1991-02-02"))
    merged = (await admin(MERGE, ids=[a["customer"]["id"], b["customer"]["id"]], note="oops"))["mergeCustomers"]
    assert {r["key"] for r in merged["sourceRecords"]} == {"A", "B"}
    split = (await admin(SPLIT, s="crm", k="B", note="different people"))["splitSourceRecord"]
    assert (split["email"], split["dateOfBirth"], split["version"]) == ("kari@y.org", "1991-02-02", 1)
    left = (await admin(CUSTOMER, id=a["customer"]["id"]))["customer"]
    assert (left["email"], left["dateOfBirth"]) == ("ola@x.org", "1990-01-01")
    # the split record comes again, now sharing email and birth date with A: it stays apart
    [again] = await register(admin, "crm", rec("B", dt.datetime.now(dt.UTC).isoformat(), givenName="Kari", familyName="Sund",
                                               email="ola@x.org", dateOfBirth="1990-01-01"))
    assert again["action"] == "UPDATED" and again["customer"]["id"] == split["id"]
    _, errors = await admin.errors(SPLIT, s="crm", k="A")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_unmerge_brings_back_the_original_id_and_values(admin):
    await add_system(admin)
    [a] = await register(admin, "crm", rec("A", givenName="Ola", email="ola@x.org", dateOfBirth="1990-01-01"))
    [b] = await register(admin, "crm", rec("B", givenName="Kari", email="kari@y.org", dateOfBirth="1991-02-02"))
    await admin(MERGE, ids=[a["customer"]["id"], b["customer"]["id"]])
    back = (await admin(UNMERGE, id=b["customer"]["id"]))["unmergeCustomer"]
    assert back["id"] == b["customer"]["id"] and back["dateOfBirth"] == "1991-02-02"
    assert [r["key"] for r in back["sourceRecords"]] == ["B"]
    assert [r["key"] for r in (await admin(CUSTOMER, id=a["customer"]["id"]))["customer"]["sourceRecords"]] == ["A"]


async def test_merge_supersedes_the_candidate_between_the_two(admin):
    anna, mother = await _queued(admin)
    await admin(MERGE, ids=[anna, mother])
    edges = (await admin("""{ matchCandidates(status: SUPERSEDED) { edges { node { id status } } } }"""))
    assert [e["node"]["status"] for e in edges["matchCandidates"]["edges"]] == ["SUPERSEDED"]


async def test_stale_expected_version_is_a_conflict(admin):
    await add_system(admin)
    [a] = await register(admin, "crm", rec("A", givenName="Ola", email="ola@x.org"))
    [b] = await register(admin, "crm", rec("B", givenName="Kari", email="kari@y.org"))
    _, errors = await admin.errors(MERGE, ids=[a["customer"]["id"], b["customer"]["id"]], v=[7, 1])
    assert errors[0]["extensions"]["code"] == "CONFLICT"
    _, errors = await admin.errors(OVERRIDE, id=a["customer"]["id"], f="email", v="x@y.org", note="n", ev=5)
    assert errors[0]["extensions"]["code"] == "CONFLICT"


async def test_override_survives_recompute_until_cleared(admin, client, db):
    await add_system(admin)
    [a] = await register(admin, "crm", rec("A", "2026-01-01T00:00:00Z", givenName="Ola", email="ola@x.org"))
    cid = a["customer"]["id"]
    steward = Gql(client, await mint(db, "steward", "sam"))
    c = (await steward(OVERRIDE, id=cid, f="email", v=" Ola.Nord@Example.org ", note="customer called",
                       ev=1))["overrideAttribute"]
    assert (c["email"], c["version"]) == ("ola.nord@example.org", 2)
    lineage = {x["field"]: x for x in c["lineage"]}
    assert lineage["email"] == {"field": "email", "value": "ola.nord@example.org", "rule": "steward-override",
                                "sourceRecord": None}
    await register(admin, "crm", rec("A", "2026-02-01T00:00:00Z", givenName="Ola", email="new@x.org"))
    assert (await admin(CUSTOMER, id=cid))["customer"]["email"] == "ola.nord@example.org"
    _, errors = await steward.errors(OVERRIDE, id=cid, f="email", v="not an email", note="typo")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    cleared = (await steward(OVERRIDE, id=cid, f="email", v=None, note="back to the source"))["overrideAttribute"]
    assert cleared["email"] == "new@x.org"
    history = (await admin(CUSTOMER, id=cid))["customer"]["history"]
    overridden = [e for e in history if e["kind"] == "OVERRIDDEN"]
    assert [e["actor"] for e in overridden] == ["sam", "sam"] and overridden[0]["note"] == "customer called"


async def test_customer_as_of_a_moment_shows_the_values_then(admin):
    await add_system(admin)
    [a] = await register(admin, "crm", rec("A", "2026-01-01T00:00:00Z", email="old@x.org", givenName="Ola"))
    between = dt.datetime.now(dt.UTC).isoformat()
    await register(admin, "crm", rec("A", "2026-02-01T00:00:00Z", email="new@x.org", givenName="Ola"))
    then = (await admin(AS_OF, id=a["customer"]["id"], at=between))["customer"]
    now = (await admin(AS_OF, id=a["customer"]["id"], at=dt.datetime.now(dt.UTC).isoformat()))["customer"]
    assert (then["email"], then["version"]) == ("old@x.org", 1)
    assert (now["email"], now["version"]) == ("new@x.org", 2)
    before = (await admin(AS_OF, id=a["customer"]["id"], at="2000-01-01T00:00:00Z"))["customer"]
    assert before is None


async def test_steward_decisions_as_reader_are_forbidden(admin, client, db):
    anna, mother = await _queued(admin)
    reader = Gql(client, await mint(db, "reader"))
    _, errors = await reader.errors(MERGE, ids=[anna, mother])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    _, errors = await reader.errors(REGISTER, system="crm", records=[rec("Z", email="z@x.org")])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
