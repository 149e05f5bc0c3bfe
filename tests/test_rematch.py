"""`hub rematch`: batch clusters reconciled with the golden records, ids stable, steward decisions kept."""
from __future__ import annotations

import collections
import json

from sqlalchemy import select

from hub.config import get_settings
from hub.models import MANUAL_MERGE, NOT_A_MATCH, SPLIT, Customer, Event
from hub.ops.rematch import Rule, apply_rematch, model_in_use, plan_rematch, reconcile
from hub.privacy.sealing import SEALABLE, sealer
from tests.helpers import CUSTOMER, add_system, rec, register
from tests.test_stewardship import MERGE
from tests.test_stewardship import SPLIT as SPLIT_MUTATION


def _targets(plan):
    return [(t.survivor, t.losers, t.moves) for c in plan.changes for t in c.targets]


# --- the reconciliation on plain data ----------------------------------------------------------------------

def test_merge_keeps_the_id_holding_most_of_the_cluster():
    # golden 7 holds records 1, 2; golden 3 holds record 3; golden 9 holds record 4; one cluster
    plan = reconcile(current={1: 7, 2: 7, 3: 3, 4: 9}, clusters={1: 1, 2: 1, 3: 1, 4: 1})
    assert _targets(plan) == [(7, [3, 9], [])]
    assert plan.counts["merged_away"] == 2 and plan.counts["records_moved"] == 2


def test_merge_tie_keeps_the_smallest_id():
    plan = reconcile(current={1: 8, 2: 5}, clusters={1: 1, 2: 1})
    assert _targets(plan) == [(5, [8], [])]


def test_split_keeps_the_id_with_the_largest_part_and_the_rest_becomes_new():
    plan = reconcile(current={1: 4, 2: 4, 3: 4}, clusters={1: 1, 2: 2, 3: 2})
    assert _targets(plan) == [(None, [], [(4, [1])])]
    assert plan.counts["splits"] == 1 and plan.counts["new_golden"] == 1 and plan.counts["unchanged"] == 0
    assert plan.changes[0].split_sources == [4]


def test_split_off_part_joins_the_golden_record_of_its_cluster():
    # golden 4 = {1, 2, 3}: record 3 belongs with record 5 of golden 6
    plan = reconcile(current={1: 4, 2: 4, 3: 4, 5: 6}, clusters={1: 1, 2: 1, 3: 3, 5: 3})
    assert _targets(plan) == [(6, [], [(4, [3])])]
    assert plan.counts["records_moved"] == 1


def test_unchanged_stays_unchanged():
    plan = reconcile(current={1: 1, 2: 1, 3: 2}, clusters={1: 1, 2: 1, 3: 3})
    assert plan.changes == [] and plan.counts["unchanged"] == 2


def test_not_a_match_blocks_a_merge_even_after_a_merge_moved_the_rule():
    # the rule names 11, since merged into 2; 1 and 2 stay apart, 3 joins the larger one
    rules = [Rule(NOT_A_MATCH, 1, 11)]
    plan = reconcile(current={1: 1, 2: 2, 3: 2, 4: 3}, clusters={1: 1, 2: 1, 3: 1, 4: 1}, rules=rules,
                     forward={11: 2})
    assert _targets(plan) == [(2, [3], [])]
    assert plan.counts["blocked_by_steward"] == 1 and plan.counts["unchanged"] == 1


def test_split_rule_keeps_a_record_out_of_the_golden_record_it_was_split_from():
    # record 2 was split out of golden 1 into golden 5; the clusters put it back
    rules = [Rule(SPLIT, 5, 1, 2)]
    plan = reconcile(current={1: 1, 3: 1, 2: 5}, clusters={1: 1, 2: 1, 3: 1}, rules=rules)
    assert plan.changes == [] and plan.counts["blocked_by_steward"] == 1


def test_split_rule_bars_the_record_even_when_it_now_sits_in_another_golden_record():
    # record 2 (split from 1) was later merged into golden 8 by the real-time path: 8 must not join 1
    rules = [Rule(SPLIT, 8, 1, 2)]
    plan = reconcile(current={1: 1, 2: 8, 3: 8}, clusters={1: 1, 2: 1, 3: 1}, rules=rules)
    assert plan.changes == []


def test_manual_merge_blocks_a_split():
    # a steward merged 2 into 1 (the rule still names the merged-away 2)
    rules = [Rule(MANUAL_MERGE, 1, 2)]
    current, clusters = {1: 1, 2: 1, 3: 1}, {1: 1, 2: 1, 3: 3}
    assert _targets(reconcile(current=current, clusters=clusters)) == [(None, [], [(1, [3])])]
    plan = reconcile(current=current, clusters=clusters, rules=rules, forward={2: 1})
    assert plan.changes == [] and plan.counts["unchanged"] == 1


def test_an_indivisible_golden_record_joins_every_cluster_it_spans():
    # golden 1 (manually merged) spans clusters 1 and 3; golden 2 and 3 are in those clusters
    rules = [Rule(MANUAL_MERGE, 1, 9)]
    plan = reconcile(current={1: 1, 3: 1, 2: 2, 4: 3}, clusters={1: 1, 2: 1, 3: 3, 4: 3}, rules=rules,
                     forward={9: 1})
    assert _targets(plan) == [(1, [2, 3], [])]


def test_split_and_merge_of_one_golden_record_are_one_change():
    # golden 1 = {1, 2, 3}: 1, 2 go with golden 5, 3 with golden 6
    plan = reconcile(current={1: 1, 2: 1, 3: 1, 5: 5, 6: 6}, clusters={1: 1, 2: 1, 5: 1, 3: 3, 6: 3})
    assert len(plan.changes) == 1
    assert sorted(_targets(plan), key=str) == sorted([(1, [5], []), (6, [], [(1, [3])])], key=str)


# --- end to end ------------------------------------------------------------------------------------------

ANNA = {"givenName": "Anna", "familyName": "Berg", "dateOfBirth": "1980-01-01", "phone": "+4930123456",
            "addressLine1": "12 Lake Street", "postcode": "10115", "locality": "Berlin"}
CARL = {"givenName": "Carl", "familyName": "Holm", "dateOfBirth": "1970-02-02", "email": "carl.holm@x.org"}
OLAF = {"givenName": "Olaf", "familyName": "Nord", "dateOfBirth": "1950-05-05", "email": "olaf@nord.no"}
ZOE = {"givenName": "Zoe", "familyName": "Kim", "dateOfBirth": "1999-09-09", "email": "zoe@kim.kr"}


async def _hub_without_model(admin, services):
    """Records the real-time path (deterministic rules only) left apart that the batch model joins, and one
    golden record that a national id wrongly joined."""
    services.scorer = None
    await add_system(admin)
    reg = {}
    for key, attrs in [("A1", dict(ANNA, email="anna@berg.de")), ("A2", dict(ANNA, email="anna.b@work.com")),
                       ("C1", CARL), ("C2", dict(CARL, dateOfBirth=None, phone="+4930999999")),
                       ("Z1", dict(ZOE, nationalId="NO-123456")), ("O1", dict(OLAF, nationalId="NO-123456")),
                       ("O2", dict(OLAF, phone="+4740000000"))]:
        [r] = await register(admin, "crm", rec(key, **attrs))
        reg[key] = r["customer"]["id"]
    assert reg["O1"] == reg["Z1"] and reg["O2"] == reg["O1"]       # one national id, one email+dob
    assert len({reg["A1"], reg["A2"], reg["C1"], reg["C2"]}) == 4
    return reg


async def _plan(db, settings):
    _, model_json = await model_in_use(db=db, choice="default")
    return await plan_rematch(db=db, settings=settings, model_json=model_json)


async def _golden(admin, cid):
    return (await admin(CUSTOMER, id=cid))["customer"]


async def test_rematch_merges_and_splits_keeping_ids_stable(admin, services, db, settings):
    reg = await _hub_without_model(admin, services)
    plan = await _plan(db, settings)
    counts = plan.counts
    assert (counts["merges"], counts["merged_away"], counts["splits"], counts["new_golden"]) == (2, 2, 1, 1)
    assert counts["records_moved"] == 3 and counts["unchanged"] == 0
    done = await apply_rematch(db=db, plan=plan, actor="rematch")
    assert done["applied"] == len(plan.changes) and done["stale"] == 0

    anna = await _golden(admin, reg["A2"])          # a merged-away id forwards to its survivor
    assert anna["id"] == reg["A1"] and {r["key"] for r in anna["sourceRecords"]} == {"A1", "A2"}
    carl = await _golden(admin, reg["C1"])
    assert {r["key"] for r in carl["sourceRecords"]} == {"C1", "C2"}
    olaf = await _golden(admin, reg["O1"])          # the id stays with the larger part
    assert olaf["id"] == reg["O1"] and {r["key"] for r in olaf["sourceRecords"]} == {"O1", "O2"}
    zoe = (await admin("""query { sourceRecord(system: "crm", key: "Z1") { customer { id givenName } } }"""))
    zoe = zoe["sourceRecord"]["customer"]
    assert int(zoe["id"]) > max(int(x) for x in reg.values()) and zoe["givenName"] == "Zoe"
    assert olaf["givenName"] == "Olaf"

    kinds = {e["kind"] for e in anna["history"]}
    assert {"MERGED", "REMATCH_MERGE"} <= kinds
    assert "REMATCH_SPLIT" in {e["kind"] for e in olaf["history"]}
    async with db.session() as session:
        away = (await session.execute(select(Customer).where(Customer.id == int(reg["A2"])))).scalar_one()
        actors = set((await session.execute(select(Event.actor).where(Event.kind.like("REMATCH%")))).scalars())
    assert (away.status, away.merged_into) == ("MERGED", int(reg["A1"])) and actors == {"rematch"}

    again = await _plan(db, settings)
    assert again.changes == [] and again.counts["unchanged"] == 4


async def test_rematch_respects_steward_splits_and_merges(admin, services, db, settings):
    reg = await _hub_without_model(admin, services)
    await apply_rematch(db=db, plan=await _plan(db, settings), actor="rematch")
    # a steward takes A2 back out (SPLIT), and puts Zoe back with Olaf (MANUAL_MERGE)
    await admin(SPLIT_MUTATION, s="crm", k="A2", note="different people")
    zoe = (await admin("""query { sourceRecord(system: "crm", key: "Z1") { customer { id } } }"""))
    await admin(MERGE, ids=[reg["O1"], zoe["sourceRecord"]["customer"]["id"]], note="same household account")
    plan = await _plan(db, settings)
    assert plan.changes == [] and plan.counts["blocked_by_steward"] == 1
    # as labels, both decisions contradict the model: it clusters A2 with A1 again and Zoe apart from Olaf
    labels = plan.labels
    assert (labels["positive"], labels["negative"], labels["true_positive"], labels["false_positive"]) == (1, 1, 0, 1)
    assert labels["agreement"] == 0.0


async def test_cli_rematch_prints_the_diff_and_applies_only_when_asked(admin, services, hub_cli, monkeypatch):
    await _hub_without_model(admin, services)
    monkeypatch.setenv("HUB_MATCH_MODEL", "default")
    get_settings.cache_clear()
    dry = await hub_cli("rematch", "--show", "2")
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.strip().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["applied"] is None
    assert json.loads(lines[-1])["plan"]["merges"] == 2 and "pass --apply" in dry.stderr
    # the plan splits a golden record of the few there are: far above HUB_REMATCH_MAX_SPLIT_SHARE (1%)
    refused = await hub_cli("rematch", "--apply")
    assert refused.exit_code != 0 and "--accept-splits" in refused.stderr and "splits 1" in refused.stderr
    assert "merges 2" in refused.stderr          # the plan's summary came first
    assert json.loads((await hub_cli("rematch")).stdout)["plan"]["merges"] == 2     # nothing written
    done = await hub_cli("rematch", "--apply", "--accept-splits")
    assert json.loads(done.stdout.strip().splitlines()[-1])["applied"]["merged_away"] == 2
    again = await hub_cli("rematch")
    assert json.loads(again.stdout)["plan"]["merges"] == 0


# --- the set-based apply writes what merge_into + recompute write ------------------------------------------

class _Rollback(Exception):
    pass


async def _snapshot(session, first_new: int) -> dict:
    """The tables a rematch writes, with ids of golden records it creates named by their order."""
    from sqlalchemy import text

    new: dict[int, str] = {}

    def cid(x):
        if x is None or x < first_new:
            return x
        return new.setdefault(x, f"new{len(new)}")

    # sealed values differ by their random nonces: compared opened (the raw SQL reads them as stored)
    seal = sealer()

    def opened(r):
        return {k: seal.value(k, v) if k in SEALABLE and v is not None else v for k, v in r.items()}

    out = {}
    rows = (await session.execute(text("SELECT * FROM customer ORDER BY id"))).mappings().all()
    out["customer"] = [{**opened(r), "id": cid(r["id"]), "merged_into": cid(r["merged_into"]),
                        "updated_at": None, "created_at": None} for r in rows]
    out["records"] = [(r[0], cid(r[1])) for r in await session.execute(
        text("SELECT id, customer_id FROM source_record ORDER BY id"))]
    out["lineage"] = sorted(((cid(r[0]), r[1], seal.open_lineage(r[1], r[2]), *r[3:]) for r in await session.execute(
        text("SELECT customer_id, field, value, source_record_id, rule, actor FROM lineage"))), key=str)

    def ids_in(changes):        # the keys of rematch events that name golden records
        if isinstance(changes, dict):
            return {k: ([cid(x) for x in v] if isinstance(v, list) else cid(v)) if k in ("into", "merged", "split_from")
                    else ids_in(v) for k, v in changes.items()}
        return changes

    out["events"] = [(cid(r[0]), r[1], r[2], json.dumps(ids_in(seal.open_document(
                          "changes", r[3] if isinstance(r[3], dict) else json.loads(r[3]))),
                                                        sort_keys=True, default=str))
                     for r in await session.execute(text("SELECT customer_id, kind, actor, changes FROM event ORDER BY id"))]
    out["rules"] = sorted(tuple(map(str, r)) for r in await session.execute(
        text("SELECT kind, customer_id, other_customer_id, source_record_id, active FROM steward_rule")))
    out["candidates"] = sorted(tuple(map(str, r)) for r in await session.execute(
        text("SELECT customer_id, other_customer_id, status FROM match_candidate")))
    return out


async def _one_by_one(session, changes, now):
    """The plain path the set-based apply replaces: records moved one by one, merge_into, recompute."""
    from sqlalchemy import insert, update

    from hub.golden.values import recompute
    from hub.ingest.records import merge_into
    from hub.models import ACTIVE, SourceRecord
    from hub.ops.rematch import _causes

    targets = [t for c in changes for t in c.targets]
    home = {}
    for t in targets:
        if t.survivor is None:
            home[id(t)] = (await session.execute(insert(Customer.__table__).returning(Customer.__table__.c.id), [
                {"status": ACTIVE, "version": 0, "created_at": now, "updated_at": now}])).scalar_one()
        else:
            home[id(t)] = t.survivor
    for t in targets:
        for _, rids in t.moves:
            for rid in rids:
                await session.execute(update(SourceRecord.__table__).where(SourceRecord.__table__.c.id == rid)
                                      .values(customer_id=home[id(t)]))
    merges = {lo: t.survivor for t in targets for lo in t.losers}
    if merges:
        await merge_into(session, merges, actor="rematch", now=now, reason="rematch")
    causes = _causes(changes, home, merges)
    await recompute(session, causes["split"], actor="rematch", now=now, kind="REMATCH_SPLIT")
    await recompute(session, causes["new"], actor="rematch", now=now, kind="REMATCH_SPLIT")
    await recompute(session, causes["merge"], actor="rematch", now=now, kind="REMATCH_MERGE")


async def test_set_based_apply_writes_what_merge_into_and_recompute_write(admin, services, db, settings):
    from sqlalchemy import func

    from hub.models import utcnow
    from hub.ops.rematch import _apply_batch
    from tests.test_stewardship import OVERRIDE

    reg = await _hub_without_model(admin, services)
    # steward overrides on a golden record the rematch merges away (carried over) and on both sides of
    # another merge (the survivor keeps its own)
    await admin(OVERRIDE, id=reg["A2"], f="email", v="anna@example.org", note="asked")
    await admin(OVERRIDE, id=reg["C1"], f="phone", v="+4930111111", note="asked")
    await admin(OVERRIDE, id=reg["C2"], f="phone", v="+4930222222", note="asked")
    plan = await _plan(db, settings)
    assert plan.counts["merged_away"] == 2 and plan.counts["new_golden"] == 1
    now = utcnow()
    async with db.session() as session:
        first_new = int(await session.scalar(select(func.max(Customer.id)))) + 1
    snapshots = []
    for apply in (_one_by_one, None):
        try:
            async with db.write() as session:
                if apply is None:
                    done = await _apply_batch(session, plan.changes, actor="rematch", now=now,
                                              max_rule_id=plan.max_rule_id)
                    assert done["stale"] == 0
                else:
                    await apply(session, plan.changes, now)
                snapshots.append(await _snapshot(session, first_new))
                raise _Rollback
        except _Rollback:
            pass
    reference, set_based = snapshots
    for table in reference:
        assert set_based[table] == reference[table], table
    anna = [r for r in set_based["lineage"] if r[0] == int(reg["A1"]) and r[1] == "email"]
    assert anna == [(int(reg["A1"]), "email", "anna@example.org", None, "steward-override", "alice")]


async def test_set_based_recompute_matches_recompute(admin, services, db):
    from sqlalchemy import update

    from hub.db import any_of
    from hub.golden.values import MEMBERS_OF, contribution, plan_golden, read_golden, recompute, write_golden
    from hub.models import SourceRecord, utcnow

    async def set_based(session, causes, *, actor, now, kind):
        """What the rematch's apply does for the golden records it recomputes."""
        ids = list(causes)
        members = collections.defaultdict(list)
        for row in await session.execute(MEMBERS_OF.where(any_of(session, SourceRecord.__table__.c.customer_id, ids))):
            members[row[1]].append(contribution(row))
        await write_golden(session, plan_golden(causes, members, await read_golden(session, ids), actor=actor, now=now,
                                                kind=kind), now=now)

    reg = await _hub_without_model(admin, services)
    ids = sorted({int(x) for x in reg.values()})
    now = utcnow()
    snapshots = []
    for fn in (recompute, set_based):
        try:
            async with db.write() as session:
                # records change hands behind survivorship's back: O2 to Anna's golden record, A2 to Carl's
                sr = SourceRecord.__table__
                await session.execute(update(sr).where(sr.c.key == "O2").values(customer_id=int(reg["A1"])))
                await session.execute(update(sr).where(sr.c.key == "A2").values(customer_id=int(reg["C1"])))
                await fn(session, {cid: {"moved": [cid]} for cid in ids}, actor="t", now=now, kind="TEST")
                snapshots.append(await _snapshot(session, 10 ** 12))
                raise _Rollback
        except _Rollback:
            pass
    assert snapshots[0] == snapshots[1]


async def test_changes_the_hub_moved_on_from_are_skipped_as_stale(admin, services, db, settings):
    reg = await _hub_without_model(admin, services)
    plan = await _plan(db, settings)
    # a steward merges Carl's two golden records after the plan: the plan's merge of them is stale
    await admin(MERGE, ids=[reg["C1"], reg["C2"]], note="same person")
    done = await apply_rematch(db=db, plan=plan, actor="rematch", size=1)
    assert done["stale"] == 1 and done["applied"] == len(plan.changes) - 1
    anna = await _golden(admin, reg["A2"])
    assert anna["id"] == reg["A1"]
    carl = await _golden(admin, reg["C2"])
    assert "REMATCH_MERGE" not in {e["kind"] for e in carl["history"]}


def test_label_agreement_counts_steward_merges_kept_together_and_decisions_the_clusters_contradict():
    import pyarrow as pa

    from hub.ops.rematch import label_agreement

    # golden 10: records 1, 2 (steward merged 11 into it); golden 20: 3; golden 30: 4; golden 40: 5 (split from 30)
    ids = pa.array([1, 2, 3, 4, 5], pa.int64())
    golden = pa.array([10, 10, 20, 30, 40], pa.int64())
    rules = [Rule("MANUAL_MERGE", 10, 11), Rule("NOT_A_MATCH", 20, 10), Rule("SPLIT", 40, 30, 5)]
    # the model keeps 1+2 together (right), joins 3 to them (wrong), keeps 5 apart from 4 (right)
    clustered = pa.table({"id": ids, "cluster_id": pa.array([1, 1, 1, 4, 5], pa.int64())})
    got = label_agreement(rules, {11: 10}, ids, golden, clustered)
    assert (got["labels"], got["positive"], got["negative"], got["true_positive"], got["false_positive"]) == (3, 1, 2, 1, 1)
    assert got["precision"] == 0.5 and got["recall"] == 1.0 and got["agreement"] == round(2 / 3, 4)
    # splitting the merged golden record loses the positive
    apart = pa.table({"id": ids, "cluster_id": pa.array([1, 2, 3, 4, 4], pa.int64())})
    got = label_agreement(rules, {11: 10}, ids, golden, apart)
    assert (got["true_positive"], got["false_positive"], got["recall"]) == (0, 1, 0.0)
    assert label_agreement([], {}, ids, golden, clustered) == {"labels": 0}


def test_exact_links_join_clusters_of_records_sharing_a_rule_value_as_registration_does():
    import pyarrow as pa

    from hub.ops.rematch import exact_links
    from hub.ops.training import default_model_json

    table = pa.table({"id": pa.array([1, 2, 3, 4], pa.int64()),
                      "national_id": ["A1", "A1", None, ""], "email": ["x@y", None, "z@y", "z@y"],
                      "date_of_birth": ["1980-01-01", None, "1990-01-01", "1990-01-01"]})
    clustered = pa.table({"id": pa.array([1, 2, 3, 4], pa.int64()), "cluster_id": pa.array([1, 2, 3, 4], pa.int64())})
    got = exact_links(table, clustered, (("national_id",), ("email", "date_of_birth")))
    assert dict(zip(got.column("id").to_pylist(), got.column("cluster_id").to_pylist())) == {1: 1, 2: 1, 3: 3, 4: 3}
    # an empty national id is no key; no rule, no change
    assert exact_links(table, clustered, ()) is clustered
    # with a model: a pair in a conflict level (another given name) is not joined by the rule
    people = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "given_name": ["Zoe", "Olaf", "Olaf"],
                       "family_name": ["Kim", "Nord", "Nord"], "national_id": ["N1", "N1", "N1"]})
    three = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "cluster_id": pa.array([1, 2, 3], pa.int64())})
    got = exact_links(people, three, (("national_id",),), default_model_json())
    assert dict(zip(got.column("id").to_pylist(), got.column("cluster_id").to_pylist())) == {1: 1, 2: 2, 3: 2}
