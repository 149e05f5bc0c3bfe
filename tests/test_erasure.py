"""Right to erasure: nothing of the person survives anywhere; tombstone, blocks and tasks; who may do what."""
from __future__ import annotations

import json
import sqlite3

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from hub.config import Settings
from hub.models import MatchModelVersion
from hub.privacy.sealing import configure as configure_sealing
from tests.conftest import TEST_KEYS, Gql, mint
from tests.helpers import CUSTOMER, add_system, dump_tables, rec, register

# the person to erase: values that appear nowhere else in the test
ZEB = dict(givenName="ZEBEDEE", familyName="quillfeather", dateOfBirth="1971-03-14", email=" Zeb.Quill@Example.org",
           nationalId="QQ123456C", addressLine1="17 Wombat Lane", addressLine2="Flat 3", locality="Dunmoreton",
           postcode="zx9 9qq", region="Westshire", country="United Kingdom")
ZEB_BILLING = dict(givenName="Zebedee", familyName="Quillfeather", dateOfBirth="14/03/1971",
                   email="zeb.quill@example.org", phone="020 7946 0321")
# same mailbox and name, a typo in the birth date: queued for review, then merged by a steward
ZEB_SHOP = dict(givenName="Zebedee", familyName="Quillfeather", dateOfBirth="1971-03-15",
                email="zeb.quill@example.org", phone="+44 20 7946 0999")
ANNA = dict(givenName="Anna", familyName="Berg", dateOfBirth="1980-01-01", email="anna.berg@x.org",
            addressLine1="1 Elm Road", postcode="AB1 2CD")
# a record of Zebedee's wrongly linked to Anna (her mailbox and birth date on his support ticket), split out
ZEB_SUPPORT = dict(givenName="Zebedee", familyName="Quillfeather", dateOfBirth="1980-01-01", email="anna.berg@x.org",
                   phone="+44 7700 900123")
# every value of Zebedee's as sent and as standardised (not the country, which others share, nor Anna's values)
ERASED_VALUES = ["ZEBEDEE", "Zebedee", "quillfeather", "Quillfeather", "1971-03-14", "14/03/1971", "1971-03-15",
                 "Zeb.Quill@Example.org", "zeb.quill@example.org", "QQ123456C", "17 Wombat Lane", "Flat 3",
                 "Dunmoreton", "zx9 9qq", "ZX9 9QQ", "Westshire", "020 7946 0321", "+442079460321",
                 "+44 20 7946 0999", "+442079460999", "+44 7700 900123", "+447700900123", "Flat 9 Quill House"]

ERASE = """mutation($id: ID!, $note: String!) { eraseCustomer(id: $id, note: $note) {
  customerId sourceRecordsErased erasedAt erasedBy reason note mergedCustomerIds removed openTasks acknowledgedTasks
  blocked tasks { id system key status } } }"""
RECEIPT = """query($id: ID!) { erasure(id: $id) { customerId sourceRecordsErased openTasks acknowledgedTasks blocked
  blockLiftedBy tasks { id system key status acknowledgedBy } } }"""
TASKS = """query($s: String!, $st: ErasureTaskStatus) { erasureTasks(system: $s, status: $st) {
  id system key status customerId dueAt } }"""
ACK = """mutation($id: ID!) { acknowledgeErasureTask(id: $id, note: "deleted from the CRM") {
  id key status acknowledgedBy } }"""
OVERDUE = """query($days: Int) { overdueErasureTasks(days: $days) { id system key } }"""
LIFT = """mutation($id: ID!) { liftErasureBlock(id: $id, note: "customer signed a new contract") {
  blocked blockLiftedBy } }"""
QUEUE = "{ matchCandidates { edges { node { id customer { id } otherCustomer { id } } } } }"
RESOLVE = """mutation($id: ID!) { resolveMatchCandidate(id: $id, decision: MERGE, note: "birth date typo") { id } }"""
MERGE = """mutation($ids: [ID!]!) { mergeCustomers(ids: $ids, note: "his support ticket") { id } }"""
SPLIT = """mutation { splitSourceRecord(system: "support", key: "T-7", note: "not Anna") { id } }"""
OVERRIDE = """mutation($id: ID!) { overrideAttribute(customerId: $id, field: "addressLine2", value: "Flat 9 Quill House",
  note: "confirmed by phone") { id } }"""
# what a source may ask of its results by default (it is not told which customer its record joined)
SOURCE_REGISTER = """mutation($system: String!, $records: [SourceRecordInput!]!) {
  registerRecords(system: $system, records: $records) { key action errors { field code message } } }"""
REGISTER = """mutation($system: String!, $records: [SourceRecordInput!]!) {
  registerRecords(system: $system, records: $records) { key action errors { field code message } customer { id } } }"""
AS_OF = """query($id: ID!, $at: DateTime!) { customer(id: $id, asOf: $at) { id email } }"""


async def _zebedee(admin) -> dict:
    """Zebedee in four systems, a merge through a candidate, a split from Anna, an override; Anna beside him."""
    await add_system(admin, "crm")
    await add_system(admin, "billing", dateOrder="DMY", defaultCountry="GB", trust=90)
    await add_system(admin, "shop")
    await add_system(admin, "support", defaultCountry="GB")
    [anna] = await register(admin, "crm", rec("A-1", **ANNA))
    [z1] = await register(admin, "crm", rec("Z-1", **ZEB))
    [z2] = await register(admin, "billing", rec("B-9", **ZEB_BILLING))
    assert z2["action"] == "LINKED" and z2["customer"]["id"] == z1["customer"]["id"]
    [z3] = await register(admin, "shop", rec("S-3", **ZEB_SHOP))
    assert z3["action"] == "QUEUED_FOR_REVIEW"
    [cand] = [e["node"] for e in (await admin(QUEUE))["matchCandidates"]["edges"]]
    await admin(RESOLVE, id=cand["id"])
    [z4] = await register(admin, "support", rec("T-7", **ZEB_SUPPORT))
    assert z4["action"] == "LINKED" and z4["customer"]["id"] == anna["customer"]["id"]
    split_off = (await admin(SPLIT))["splitSourceRecord"]["id"]
    zeb = z1["customer"]["id"]
    await admin(MERGE, ids=[zeb, split_off])
    await admin(OVERRIDE, id=zeb)
    # a consent whose evidence quotes him: consent statements are his data too
    await admin("""mutation($id: ID!) { setConsent(customerId: $id, purpose: "profiling", granted: true,
      evidence: "form signed by Zebedee Quillfeather at 17 Wombat Lane") { id } }""", id=zeb)
    return {"zeb": zeb, "shop": z3["customer"]["id"], "split": split_off, "anna": anna["customer"]["id"]}


_dump = dump_tables  # every table, found by the database's own catalogue


def _found(haystack: str) -> list[str]:
    low = haystack.lower()
    return [v for v in ERASED_VALUES if v.lower() in low]


async def _trained_model(db) -> None:
    """A stored model as `hub train` leaves it: term frequencies of every name, his among them."""
    from hub.ops.training import default_model_json

    model = default_model_json()
    tf = model["term_frequencies"]
    smallest = {c: min(tf[c].values()) for c in ("given", "family")}
    tf["given"]["zebedee"] = 4 * smallest["given"]          # his four records
    tf["family"]["quillfeather"] = 4 * smallest["family"]
    tf["given"]["anna"] = 50 * smallest["given"]             # a name many share stays
    async with db.write() as session:
        await session.execute(MatchModelVersion.__table__.insert().values(
            actor="trainer", records=1000, model=model, params={}))


# his national id and birth dates as sent and standardised: sealed at rest unless encryption is off
SEALED_FORMS = {"1971-03-14", "14/03/1971", "1971-03-15", "QQ123456C"}


@pytest.mark.parametrize("encrypted", [False, True], ids=["in-clear", "encrypted"])
async def test_erasure_leaves_no_erased_value_in_any_table(admin, db, encrypted):
    if not encrypted:   # every value stored in clear, so the probe can see each one before the erasure
        configure_sealing(Settings(database_url=db.url, keys=TEST_KEYS, encrypted_attributes=frozenset()))
    ids = await _zebedee(admin)
    await _trained_model(db)
    anna_before = (await admin(CUSTOMER, id=ids["anna"]))["customer"]
    dumped = await _dump(db)
    assert {"source_record", "event", "lineage", "match_candidate", "blocking_key"} <= set(dumped)
    visible = set(ERASED_VALUES) - (SEALED_FORMS if encrypted else set())
    assert set(_found("\n".join(dumped.values()))) == visible  # the probe sees them before

    receipt = (await admin(ERASE, id=ids["zeb"], note="art. 17 request #42"))["eraseCustomer"]
    assert receipt["customerId"] == ids["zeb"] and receipt["sourceRecordsErased"] == 4
    assert sorted(receipt["mergedCustomerIds"], key=int) == sorted([ids["shop"], ids["split"]], key=int)
    assert receipt["removed"]["sourceRecords"] == 4 and receipt["removed"]["matchCandidates"] == 1
    assert receipt["blocked"] and receipt["openTasks"] == 4 and receipt["acknowledgedTasks"] == 0
    assert sorted((t["system"], t["key"]) for t in receipt["tasks"]) == [
        ("billing", "B-9"), ("crm", "Z-1"), ("shop", "S-3"), ("support", "T-7")]

    dumped = await _dump(db)
    leaks = {table: _found(rows) for table, rows in dumped.items() if _found(rows)}
    assert leaks == {}
    assert receipt["removed"]["relatedEvents"] >= 1  # Anna's history held his name
    assert receipt["removed"]["matchModels"] == 1
    async with db.session() as s:
        [model] = (await s.execute(select(MatchModelVersion.model))).scalars().all()
    assert "anna" in model["term_frequencies"]["given"] and "zebedee" not in model["term_frequencies"]["given"]
    # everybody else is untouched: Anna's golden record, her record, her history's own values
    anna_after = (await admin(CUSTOMER, id=ids["anna"]))["customer"]
    for key in ("givenName", "familyName", "email", "dateOfBirth", "addressLine1", "postcode", "lineage"):
        assert anna_after[key] == anna_before[key]
    assert [r["key"] for r in anna_after["sourceRecords"]] == ["A-1"]
    assert "anna.berg@x.org" in json.dumps([e["changes"] for e in anna_after["history"]])
    assert [e["kind"] for e in anna_after["history"]] == [e["kind"] for e in anna_before["history"]]

    if db.sqlite:  # the file itself: nothing in freed pages or the write-ahead log either
        await db.dispose()
        path = make_url(db.url).database
        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        with open(path, "rb") as f:
            checkpointed = f.read().decode("latin-1")
        assert _found(checkpointed) == []  # secure_delete zeroed what was deleted
        con = sqlite3.connect(path)
        con.execute("VACUUM")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        with open(path, "rb") as f:
            assert _found(f.read().decode("latin-1")) == []
        assert "anna.berg@x.org" in checkpointed


async def test_erased_customer_reads_as_absent_and_its_tombstone_is_for_admins(admin, client, db):
    ids = await _zebedee(admin)
    before = (await admin(CUSTOMER, id=ids["zeb"]))["customer"]
    at = before["history"][-1]
    await admin(ERASE, id=ids["shop"], note="request #7")  # any id he ever had erases the person
    steward = Gql(client, await mint(db, "steward", "sam"))
    reader = Gql(client, await mint(db, "reader", "app"))
    for caller in (admin, steward, reader):
        for cid in (ids["zeb"], ids["shop"], ids["split"]):
            assert (await caller(CUSTOMER, id=cid))["customer"] is None
    assert (await admin(AS_OF, id=ids["zeb"], at="2100-01-01T00:00:00Z"))["customer"] is None
    assert (await admin(AS_OF, id=ids["shop"], at="2100-01-01T00:00:00Z"))["customer"] is None
    assert at["kind"]  # it had a history before
    tomb = (await admin(RECEIPT, id=ids["split"]))["erasure"]
    assert tomb["customerId"] == ids["zeb"] and tomb["sourceRecordsErased"] == 4
    assert (await admin(RECEIPT, id=ids["anna"]))["erasure"] is None
    for caller in (steward, reader):
        _, errors = await caller.errors(RECEIPT, id=ids["zeb"])
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    history = (await admin("""query($id: ID!) { customer(id: $id) { id } }""", id=ids["anna"]))["customer"]
    assert history["id"] == ids["anna"]


async def test_erase_as_steward_or_reader_is_forbidden_and_twice_changes_nothing(admin, client, db, services):
    ids = await _zebedee(admin)
    for role in ("steward", "reader"):
        caller = Gql(client, await mint(db, role))
        _, errors = await caller.errors(ERASE, id=ids["zeb"], note="x")
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert (await admin(CUSTOMER, id=ids["zeb"]))["customer"] is not None
    _, errors = await admin.errors(ERASE, id="999999", note="x")
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    _, errors = await admin.errors(ERASE, id=ids["zeb"], note="  ")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    first = (await admin(ERASE, id=ids["zeb"], note="request #1"))["eraseCustomer"]
    await services.audit.flush()    # the audit of the reads so far is written off the request path
    dumped = await _dump(db)
    again = (await admin(ERASE, id=ids["zeb"], note="request #1 again"))["eraseCustomer"]
    assert again == first
    await services.audit.flush()
    assert await _dump(db) == dumped


async def test_resent_key_or_same_person_is_refused_as_erased_until_an_admin_lifts_the_block(admin, client, db):
    ids = await _zebedee(admin)
    await admin(ERASE, id=ids["zeb"], note="request #9")
    crm = Gql(client, await mint(db, "source", "crm-feed", system="crm"))
    results = (await crm(SOURCE_REGISTER, system="crm", records=[
        rec("Z-1", givenName="Zed", email="other@example.org"),                          # an erased key
        rec("Z-NEW", email="ZEB.QUILL@example.org", dateOfBirth="1971-03-14"),          # the same person
        rec("Z-ID", nationalId="qq 123456 c", givenName="Z"),                           # same national id
        rec("C-1", givenName="Carl", familyName="Holm", email="carl@x.org")]))["registerRecords"]
    assert [r["action"] for r in results] == ["ERASED", "ERASED", "ERASED", "ACCEPTED"]
    assert results[0]["errors"][0]["field"] == "key"
    erased_codes = {e["code"] for r in results[:3] for e in r["errors"]}
    assert erased_codes == {"ERASED"}
    assert (await admin(RECEIPT, id=ids["zeb"]))["erasure"]["blocked"] is True
    _, errors = await crm.errors(LIFT, id=ids["zeb"])
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    lifted = (await admin(LIFT, id=ids["zeb"]))["liftErasureBlock"]
    assert lifted == {"blocked": False, "blockLiftedBy": "alice"}
    [again] = (await crm(SOURCE_REGISTER, system="crm",
                         records=[rec("Z-1", givenName="Zed", email="zed@example.org")]))["registerRecords"]
    assert again["action"] == "ACCEPTED" and not again["errors"]


async def test_erasure_tasks_reach_only_their_own_system_and_acknowledging_forgets_the_key(admin, client, db,
                                                                                              hub_cli):
    ids = await _zebedee(admin)
    await admin(ERASE, id=ids["zeb"], note="request #3")
    crm = Gql(client, await mint(db, "source", "crm-feed", system="crm"))
    billing = Gql(client, await mint(db, "source", "billing-feed", system="billing"))
    [task] = (await crm(TASKS, s="crm"))["erasureTasks"]
    assert (task["system"], task["key"], task["status"], task["customerId"]) == ("crm", "Z-1", "OPEN", ids["zeb"])
    _, errors = await crm.errors(TASKS, s="billing")
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    [billing_task] = (await billing(TASKS, s="billing"))["erasureTasks"]
    _, errors = await crm.errors(ACK, id=billing_task["id"])
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    steward = Gql(client, await mint(db, "steward", "sam"))
    for query, args in ((TASKS, {"s": "crm"}), (OVERDUE, {}), (ACK, {"id": task["id"]})):
        _, errors = await steward.errors(query, **args)
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    done = (await crm(ACK, id=task["id"]))["acknowledgeErasureTask"]
    assert done == {"id": task["id"], "key": None, "status": "ACKNOWLEDGED", "acknowledgedBy": "crm-feed"}
    assert (await crm(ACK, id=task["id"]))["acknowledgeErasureTask"] == done
    assert (await crm(TASKS, s="crm"))["erasureTasks"] == []
    [acked] = (await crm(TASKS, s="crm", st="ACKNOWLEDGED"))["erasureTasks"]
    assert acked["key"] is None
    tomb = (await admin(RECEIPT, id=ids["zeb"]))["erasure"]
    assert (tomb["openTasks"], tomb["acknowledgedTasks"]) == (3, 1)
    async with db.session() as s:
        stored = (await s.execute(text("SELECT key, key_hash FROM erasure_task WHERE system = 'crm'"))).one()
    assert stored[0] is None and len(stored[1]) == 64 and "Z-1" not in stored[1]
    assert (await admin(OVERDUE))["overdueErasureTasks"] == []  # within the 30 days
    overdue = (await admin(OVERDUE, days=0))["overdueErasureTasks"]
    assert sorted(t["system"] for t in overdue) == ["billing", "shop", "support"]
    result = await hub_cli("erasure", "overdue", "--days", "0")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted((t["system"], t["key"]) for t in lines) == [("billing", "B-9"), ("shop", "S-3"),
                                                               ("support", "T-7")]


async def test_retired_customer_can_be_erased_and_its_history_goes(admin, db):
    await add_system(admin, "crm")
    [r] = await register(admin, "crm", rec("Z-1", **ZEB))
    await admin("""mutation { deleteSourceRecord(system: "crm", key: "Z-1") { id } }""")
    assert "Dunmoreton" in "\n".join((await _dump(db)).values())  # retired: the history still holds it
    receipt = (await admin(ERASE, id=r["customer"]["id"], note="request #11"))["eraseCustomer"]
    assert (receipt["sourceRecordsErased"], receipt["tasks"]) == (0, [])
    dumped = await _dump(db)
    assert {table: _found(rows) for table, rows in dumped.items() if _found(rows)} == {}


async def test_erasure_tasks_without_status_lists_open_and_acknowledged(admin, client, db):
    ids = await _zebedee(admin)
    await admin(ERASE, id=ids["zeb"], note="request #5")
    [task] = (await admin(TASKS, s="crm"))["erasureTasks"]
    await admin(ACK, id=task["id"])
    everything = (await admin(TASKS, s="crm", st=None))["erasureTasks"]
    assert [(t["id"], t["status"]) for t in everything] == [(task["id"], "ACKNOWLEDGED")]
    _, errors = await admin.errors(ACK, id="nope")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_cli_erases_and_lifts_the_block(admin, db, hub_cli):
    await add_system(admin, "crm")
    [r] = await register(admin, "crm", rec("Z-1", **ZEB))
    cid = r["customer"]["id"]
    result = await hub_cli("erasure", "erase", cid, "--note", "request by letter")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["customerId"], out["sourceRecordsErased"], out["blocked"]) == (int(cid), 1, True)
    assert [(t["system"], t["key"]) for t in out["tasks"]] == [("crm", "Z-1")]
    assert _found(result.output) == []
    [again] = await register(admin, "crm", rec("Z-1", **ZEB))
    assert again["action"] == "ERASED"
    lifted = await hub_cli("erasure", "lift", cid, "--note", "new contract")
    assert lifted.exit_code == 0 and "lifted" in lifted.stderr
    [back] = await register(admin, "crm", rec("Z-1", **ZEB))
    assert back["action"] == "CREATED"
    missing = await hub_cli("erasure", "lift", "424242", "--note", "x")
    assert missing.exit_code != 0 and "no erasure" in missing.output


def test_block_hashes_are_the_key_rings_keyed_hashes_and_hold_no_value():
    from hub.config import Settings
    from hub.ingest.erased import key_hash, keyed, rule_hashes
    from hub.privacy.keys import parse_keys
    from tests.conftest import TEST_KEYS

    ring = parse_keys(TEST_KEYS)
    assert keyed(ring, "crm\x1fZ-1", "erasure-key") == ring.keyed_hash("crm\x1fZ-1", purpose="erasure-key")
    assert key_hash(ring, "crm", "Z-1") != key_hash(ring, "crm2", "Z-1")
    hashes = rule_hashes(ring, {"email": "zeb.quill@example.org", "national_id": "QQ123456C"},
                         Settings().exact_rules)
    assert len(hashes) == 1 and all(len(h) == 64 and "QQ123456C" not in h for h in hashes)
