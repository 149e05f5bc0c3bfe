"""Subject access: one query (admin only) and `hub subject export` hand over everything held on a person."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from hub.models import ReadAudit
from tests.conftest import Gql, mint
from tests.helpers import add_system, rec, register

ANNA = dict(givenName="Anna", familyName="Berg", dateOfBirth="1980-01-01", email="anna.berg@x.org",
            nationalId="123-45-6789")
ANNA_BILLING = dict(givenName="ANNA", familyName="BERG", dateOfBirth="01/01/1980", email="anna.berg@x.org",
                    phone="020 7946 0958")
ANNA_MOTHER = dict(givenName="Anna", familyName="Berg", dateOfBirth="1955-03-09", email="anna.berg@x.org")
REPORT = """query($id: ID!) { subjectAccess(id: $id) { customerId document summary } }"""


async def _person(admin) -> dict[str, str]:
    """Anna in crm and billing (linked), a look-alike queued for review then kept apart, a merge, consents and
    a read of her national id. Returns the ids."""
    await add_system(admin, "crm")
    await add_system(admin, "billing", dateOrder="DMY", defaultCountry="GB")
    [a] = await register(admin, "crm", {**rec("A1", **ANNA), "consents": [
        {"purpose": "marketing-email", "granted": True, "evidence": "web form"}]})
    [b] = await register(admin, "billing", rec("B1", **ANNA_BILLING))
    assert b["action"] == "LINKED"
    [m] = await register(admin, "crm", rec("M1", **ANNA_MOTHER))
    assert m["action"] == "QUEUED_FOR_REVIEW"
    [cand] = (await admin("{ matchCandidates { edges { node { id } } } }"))["matchCandidates"]["edges"]
    await admin("""mutation($id: ID!) { resolveMatchCandidate(id: $id, decision: NOT_A_MATCH, note: "mother") {
      id } }""", id=cand["node"]["id"])
    [x] = await register(admin, "crm", rec("X1", givenName="Anna", familyName="Berg", phone="020 7946 0958",
                                           email="a.berg@work.example"))
    await admin("""mutation($ids: [ID!]!) { mergeCustomers(ids: $ids, note: "same person") { id } }""",
                ids=[a["customer"]["id"], x["customer"]["id"]])
    await admin("""query($id: ID!) { customer(id: $id) { nationalId } }""", id=a["customer"]["id"])
    return {"anna": a["customer"]["id"], "merged": x["customer"]["id"], "mother": m["customer"]["id"]}


async def test_subject_access_as_admin_for_a_merged_away_id_reports_everything_on_the_survivor(admin, db):
    ids = await _person(admin)
    out = (await admin(REPORT, id=ids["merged"]))["subjectAccess"]
    doc = out["document"]
    assert out["customerId"] == ids["anna"] and doc["requestedId"] == ids["merged"]
    assert doc["customer"]["id"] == ids["anna"] and doc["customer"]["mergedIds"] == [ids["merged"]]
    assert doc["customer"]["attributes"]["nationalId"] == "123-45-6789"
    records = {(r["system"], r["key"]): r for r in doc["sourceRecords"]}
    assert set(records) == {("crm", "A1"), ("billing", "B1"), ("crm", "X1")}
    billing = records["billing", "B1"]
    assert billing["raw"]["dateOfBirth"] == "01/01/1980" and billing["standardised"]["dateOfBirth"] == "1980-01-01"
    assert billing["standardised"]["phone"] == "+442079460958"
    assert {lin["field"] for lin in doc["lineage"]} >= {"givenName", "nationalId", "dateOfBirth"}
    kinds = {(e["customerId"], e["kind"]) for e in doc["history"]}
    assert {(ids["anna"], "CREATED"), (ids["anna"], "LINKED"), (ids["anna"], "MERGED"),
            (ids["merged"], "MERGED_AWAY"), (ids["anna"], "NOT_A_MATCH")} <= kinds
    assert [(c["purpose"], c["granted"], c["source"], c["evidence"]) for c in doc["consents"]] == [
        ("marketing-email", True, "crm", "web form")]
    assert len(doc["consentHistory"]) == 1
    [cand] = doc["matchCandidates"]
    assert cand["status"] == "REJECTED" and cand["resolvedBy"] == "alice" and cand["note"] == "mother"
    assert {(d["kind"], d["actor"]) for d in doc["stewardDecisions"]} >= {("NOT_A_MATCH", "alice"),
                                                                          ("MANUAL_MERGE", "alice")}
    assert json.loads(json.dumps(doc)) == doc  # one JSON document
    summary = out["summary"]
    assert f"customer {ids['anna']}" in summary and "## Source records (3)" in summary
    assert "marketing-email: granted" in summary and "billing (1), crm (2)" in summary


async def test_subject_access_lists_who_read_the_national_id_and_is_itself_audited(admin, client, services, db):
    ids = await _person(admin)
    await services.audit.flush()
    doc = (await admin(REPORT, id=ids["anna"]))["subjectAccess"]["document"]
    assert [(r["subject"], r["field"], r["via"]) for r in doc["sensitiveReads"] if r["field"] == "nationalId"] == [
        ("alice", "nationalId", "Customer")]
    await services.audit.flush()
    async with db.session() as s:
        vias = [(r.field, r.via) for r in (await s.execute(select(ReadAudit).where(
            ReadAudit.via == "SubjectAccess"))).scalars()]
    assert sorted(vias) == [("dateOfBirth", "SubjectAccess"), ("nationalId", "SubjectAccess")]


async def test_subject_access_of_an_unknown_id_is_not_found(admin, db):
    _, errors = await admin.errors(REPORT, id="4242")
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    _, errors = await admin.errors(REPORT, id="abc")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("role", ["steward", "reader", "marketing", "source"])
async def test_subject_access_as_anyone_but_admin_is_forbidden(admin, client, db, role):
    ids = await _person(admin)
    caller = Gql(client, await mint(db, role, system="crm" if role == "source" else None))
    data, errors = await caller.errors(REPORT, id=ids["anna"])
    assert data is None and errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_hub_subject_export_writes_the_document_and_summary_and_audits_the_export(hub_cli, admin, db, tmp_path):
    ids = await _person(admin)
    out = tmp_path / "anna.json"
    result = await hub_cli("subject", "export", ids["merged"], "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["customer"]["id"] == ids["anna"] and len(doc["sourceRecords"]) == 3
    assert (tmp_path / "anna.md").read_text().startswith(f"# What the customer hub holds on customer {ids['anna']}")
    async with db.session() as s:
        rows = [(r.subject, r.role, r.field) for r in (await s.execute(select(ReadAudit).where(
            ReadAudit.via == "SubjectAccess"))).scalars()]
    assert sorted(rows) == [("cli:subject", "admin", "dateOfBirth"), ("cli:subject", "admin", "nationalId")]


async def test_hub_subject_export_to_stdout_and_of_an_unknown_id(hub_cli, admin, db):
    ids = await _person(admin)
    result = await hub_cli("subject", "export", ids["anna"])
    assert result.exit_code == 0 and json.loads(result.stdout)["customer"]["id"] == ids["anna"]
    assert "## Consents" in result.stderr
    missing = await hub_cli("subject", "export", "4242")
    assert missing.exit_code != 0 and "no customer 4242" in missing.output
