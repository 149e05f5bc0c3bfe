"""`hub rematch`: batch-match every source record and reconcile the clusters with the golden records.

`plan_rematch` streams every source record (Core rows into an arrow table), runs `matching.predict_clusters`
(Splink 5 predict over the real-time blocking keys + connected components, DuckDB embedded) at
HUB_LINK_THRESHOLD with the model in use, and hands plain data to `reconcile`. `apply_rematch` writes the
plan in batches of about BATCH changes, each batch one write transaction (one unit of work).

Reconciliation rules (`reconcile`), in this order:

1. **Curated golden records are indivisible.** A golden record named (after following merges) by any
   active steward rule (MANUAL_MERGE, SPLIT on either side, NOT_A_MATCH) is never split by a rematch: a
   steward has looked at it, so its records stay together. (Simplest correct reading of "never split
   what a steward merged, treat manual splits likewise".)
2. **Splits.** Any other golden record whose records the clusters spread over several clusters is split
   into one part per cluster. Its id stays with the largest part (tie: the part holding the smallest
   record id): a golden id survives while most of its records stay together. The other parts leave it.
3. **Merge groups.** Units (whole golden records, kept parts, split-off parts) that share a cluster
   form one group (connected components; an indivisible golden record spanning clusters joins them).
4. **Steward decisions win.** A group is partitioned greedily, largest unit first (ties: existing ids
   before new parts, then the smaller id), each unit joining the first subgroup it does not conflict
   with. Two units conflict when an active NOT_A_MATCH or SPLIT rule joins their golden ids (after
   following merges), or when one holds a record that a SPLIT rule moved out of the other's golden id
   (a record never goes back to the golden record it was split from).
5. **Ids stay stable.** Each subgroup becomes one golden record: the existing golden record holding most
   of its records survives (tie: the smallest id) and the others are merged into it (`merge_into`, they
   forward to it for ever); split-off parts move into it. A subgroup of split-off parts only becomes a
   new golden record. A golden record alone in its subgroup and not split is unchanged.

Events: MERGED / MERGED_AWAY (reason "rematch") from `merge_into`; REMATCH_MERGE on a survivor that
received records; REMATCH_SPLIT on a golden record that lost records and on each new golden record.
Applied again on unchanged data, the plan is empty (subgroups that rule 4 kept apart conflict through
rules that follow the merges).
"""
from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlalchemy import bindparam, func, insert, select, update

from hub.config import Settings
from hub.db import Database, any_of
from hub.errors import BadInput, NotFound
from hub.golden import recompute
from hub.models import ACTIVE, MERGED, NOT_A_MATCH, SPLIT, Customer, MatchModelVersion, SourceRecord, StewardRule, utcnow
from hub.records import merge_into
from hub.training import RECORD_SCHEMA, count_records, default_model_json, record_batches

SR, CUSTOMER, RULE, MODEL = (SourceRecord.__table__, Customer.__table__, StewardRule.__table__,
                             MatchModelVersion.__table__)
BATCH = 1000          # changes per write transaction
ACTOR = "rematch"

Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class Rule:
    """An active steward rule, as the reconciliation reads it."""

    kind: str
    customer_id: int
    other_customer_id: int
    source_record_id: int | None = None


@dataclass
class Target:
    """One golden record after the rematch: who survives, who merges into it, which records move in."""

    survivor: int | None                      # None: a new golden record
    losers: list[int] = field(default_factory=list)
    loser_records: int = 0                    # records the losers bring along
    moves: list[tuple[int, list[int]]] = field(default_factory=list)   # (split golden id, its records)


@dataclass
class Change:
    """Targets that must be applied together: they share a golden record being split."""

    targets: list[Target]
    split_sources: list[int]                  # golden records losing records (recomputed after)

    @property
    def ids(self) -> set[int]:
        """Every existing golden id the change touches."""
        out = set(self.split_sources)
        for t in self.targets:
            out.update(x for x in (t.survivor, *t.losers) if x is not None)
            out.update(g for g, _ in t.moves)
        return out


@dataclass
class RematchPlan:
    changes: list[Change]
    records: int = 0
    golden: int = 0
    clusters: int = 0
    unchanged: int = 0
    model_version: int | None = None
    max_rule_id: int = 0        # rules written after the plan (id above) make its changes stale
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)   # seconds per stage: read, match, reconcile
    blocked: int = 0            # units kept apart from their proposed group by a steward rule

    @property
    def counts(self) -> dict[str, int]:
        """The diff in numbers."""
        targets = [t for c in self.changes for t in c.targets]
        return {"records": self.records, "golden": self.golden, "clusters": self.clusters,
                "merges": sum(1 for t in targets if t.losers), "merged_away": sum(len(t.losers) for t in targets),
                "splits": len({g for c in self.changes for g in c.split_sources}),
                "new_golden": sum(1 for t in targets if t.survivor is None),
                "records_moved": sum(t.loser_records + sum(len(r) for _, r in t.moves) for t in targets),
                "unchanged": self.unchanged, "blocked_by_steward": self.blocked}


@dataclass
class _Unit:
    id: int | None               # the golden id it carries, None for a split-off part
    origin: int                  # the golden record its records are in now
    records: list[int]
    clusters: set[int]


def follow(rules: Iterable[Rule], forward: Mapping[int, int]) -> list[Rule]:
    """Rewrite merged-away golden ids in rules to their survivors (forwarding is always one hop)."""
    return [Rule(r.kind, forward.get(r.customer_id, r.customer_id), forward.get(r.other_customer_id,
                                                                                 r.other_customer_id),
                 r.source_record_id) for r in rules]


def _units(current: Mapping[int, int], clusters: Mapping[int, int], curated: set[int]) -> tuple[list[_Unit], int]:
    """Split golden records by cluster (rules 1-2); return the units and how many golden records there are."""
    parts: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for rid, gid in current.items():
        # a record the clustering did not return stands alone (negative ids never clash with record ids)
        parts[gid][clusters.get(rid, -rid)].append(rid)
    units = []
    for gid, by_cluster in parts.items():
        if len(by_cluster) == 1 or gid in curated:
            units.append(_Unit(gid, gid, [r for rs in by_cluster.values() for r in rs], set(by_cluster)))
            continue
        ordered = sorted(by_cluster.items(), key=lambda kv: (-len(kv[1]), min(kv[1])))
        units.append(_Unit(gid, gid, ordered[0][1], {ordered[0][0]}))
        units += [_Unit(None, gid, rs, {c}) for c, rs in ordered[1:]]
    return units, len(parts)


def _groups(units: Sequence[_Unit]) -> list[list[_Unit]]:
    """Units sharing a cluster, transitively (rule 3)."""
    parent = list(range(len(units)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[int, int] = {}
    for i, u in enumerate(units):
        for c in u.clusters:
            j = first.setdefault(c, i)
            if j != i:
                parent[root(i)] = root(j)
    out: dict[int, list[_Unit]] = defaultdict(list)
    for i, u in enumerate(units):
        out[root(i)].append(u)
    return list(out.values())


class _Conflicts:
    """Steward rules as lookups: golden pairs kept apart, and records barred from a golden record."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.apart: dict[int, set[int]] = defaultdict(set)
        self.barred: dict[int, set[int]] = defaultdict(set)
        self.curated: set[int] = set()
        for r in rules:
            # a manual merge's rule names the merged-away id: after following, both sides are the survivor
            self.curated.update((r.customer_id, r.other_customer_id))
            if r.kind in (NOT_A_MATCH, SPLIT) and r.customer_id != r.other_customer_id:
                self.apart[r.customer_id].add(r.other_customer_id)
                self.apart[r.other_customer_id].add(r.customer_id)
            if r.kind == SPLIT and r.source_record_id is not None:
                self.barred[r.source_record_id].add(r.other_customer_id)

    def forbidden(self, unit: _Unit) -> set[int]:
        """Golden ids this unit may not share a golden record with."""
        out = set(self.apart.get(unit.id, ())) if unit.id is not None else set()
        if self.barred:
            for rid in unit.records:
                out |= self.barred.get(rid, set())
        return out


def _partition(group: list[_Unit], conflicts: _Conflicts) -> list[list[_Unit]]:
    """Greedy partition of a group so that no subgroup holds two conflicting units (rule 4)."""
    order = sorted(group, key=lambda u: (-len(u.records), u.id is None, u.id or u.origin, min(u.records)))
    subgroups: list[tuple[list[_Unit], set[int], set[int]]] = []     # (units, golden ids, forbidden ids)
    for u in order:
        forb = conflicts.forbidden(u)
        for units, ids, sub_forb in subgroups:
            if not (forb & ids) and (u.id is None or u.id not in sub_forb):
                break
        else:
            units, ids, sub_forb = [], set(), set()
            subgroups.append((units, ids, sub_forb))
        units.append(u)
        if u.id is not None:
            ids.add(u.id)
        sub_forb |= forb
    return [units for units, _, _ in subgroups]


def _target(subgroup: list[_Unit]) -> Target | None:
    """The golden record a subgroup becomes (rule 5); None when nothing changes."""
    existing = [u for u in subgroup if u.id is not None]
    if len(subgroup) == 1 and existing:
        return None
    survivor = min(existing, key=lambda u: (-len(u.records), u.id)) if existing else None
    losers = [u for u in existing if u is not survivor]
    return Target(survivor.id if survivor else None, sorted(u.id for u in losers),
                  sum(len(u.records) for u in losers),
                  sorted((u.origin, sorted(u.records)) for u in subgroup if u.id is None))


def _changes(targets: list[Target], split_sources: set[int]) -> list[Change]:
    """Bundle targets that share a split golden record, so each bundle can be applied on its own."""
    by_source: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(targets):
        for g in {g for g, _ in t.moves} | ({t.survivor, *t.losers} & split_sources):
            by_source[g].append(i)
    parent = list(range(len(targets)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for idx in by_source.values():
        for j in idx[1:]:
            parent[root(j)] = root(idx[0])
    bundles: dict[int, list[int]] = defaultdict(list)
    for i in range(len(targets)):
        bundles[root(i)].append(i)
    sources_of: dict[int, set[int]] = defaultdict(set)
    for g, idx in by_source.items():
        sources_of[root(idx[0])].add(g)
    return [Change([targets[i] for i in idx], sorted(sources_of.get(r, ()))) for r, idx in bundles.items()]


def reconcile(*, current: Mapping[int, int], clusters: Mapping[int, int],
              rules: Iterable[Rule] = (), forward: Mapping[int, int] | None = None) -> RematchPlan:
    """Turn proposed clusters into the changes to the golden records (plain data in, plan out).

    Args:
        current: source record id -> its golden record id now.
        clusters: source record id -> proposed cluster id.
        rules: active steward rules; `forward` maps merged-away golden ids to their survivors.
    """
    conflicts = _Conflicts(follow(rules, forward or {}))
    units, golden = _units(current, clusters, conflicts.curated)
    targets: list[Target] = []
    unchanged = blocked = 0
    split_sources = {u.origin for u in units if u.id is None}
    for group in _groups(units):
        subgroups = _partition(group, conflicts) if len(group) > 1 else [group]
        blocked += len(subgroups) - 1
        for sub in subgroups:
            t = _target(sub)
            if t is not None:
                targets.append(t)
            elif sub[0].id not in split_sources:
                unchanged += 1
    # every split-off part lands in some target, so every split golden record is in a change's split_sources
    return RematchPlan(_changes(targets, split_sources), records=len(current), golden=golden, clusters=len(set(clusters.values())),
                       unchanged=unchanged, blocked=blocked)


# --- reading the hub -------------------------------------------------------------------------------------

async def model_in_use(*, db: Database, choice: str) -> tuple[int | None, dict[str, Any]]:
    """The model JSON to rematch with and its stored version (None: the shipped default), as load_scorer picks."""
    if choice == "off":
        raise BadInput("HUB_MATCH_MODEL is off: a rematch needs a model (use --model latest, default or an id)")
    if choice != "default":
        stmt = select(MODEL.c.id, MODEL.c.model)
        stmt = stmt.order_by(MODEL.c.id.desc()).limit(1) if choice == "latest" else stmt.where(MODEL.c.id == int(choice))
        async with db.session() as session:
            row = (await session.execute(stmt)).first()
        if row is not None:
            return row.id, row.model
        if choice != "latest":
            raise NotFound(f"no stored match model {choice}")
    return None, default_model_json()


async def read_rules(*, db: Database) -> tuple[list[Rule], dict[int, int], int]:
    """Active steward rules, the forwarding of the golden ids they name, and the highest rule id."""
    async with db.session() as session:
        rules = [Rule(*row) for row in await session.execute(
            select(RULE.c.kind, RULE.c.customer_id, RULE.c.other_customer_id, RULE.c.source_record_id)
            .where(RULE.c.active))]
        max_id = int(await session.scalar(select(func.coalesce(func.max(RULE.c.id), 0))) or 0)
        ids = sorted({x for r in rules for x in (r.customer_id, r.other_customer_id)})
        forward = {}
        if ids:
            forward = {cid: into for cid, into in await session.execute(
                select(CUSTOMER.c.id, CUSTOMER.c.merged_into).where(CUSTOMER.c.status == MERGED,
                                                                    any_of(session, CUSTOMER.c.id, ids)))}
    return rules, forward, max_id


async def read_records(*, db: Database, progress: Progress | None = None) -> tuple[pa.Table, dict[int, int]]:
    """Every source record as an arrow table for matching, and record id -> golden id."""
    total = await count_records(db=db)
    batches, current = [], {}
    async for batch, customers in record_batches(db=db, with_customer=True):
        batches.append(batch)
        current.update(zip(batch.column(0).to_pylist(), customers, strict=True))
        if progress:
            progress("reading records", len(current), total)
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA), current


async def plan_rematch(*, db: Database, settings: Settings, model_json: dict[str, Any],
                       progress: Progress | None = None, model_version: int | None = None) -> RematchPlan:
    """Match every source record in batch and reconcile the clusters with the golden records."""
    import asyncio

    from matching import predict_clusters

    started = time.perf_counter()
    rules, forward, max_rule_id = await read_rules(db=db)
    table, current = await read_records(db=db, progress=progress)
    read_at = time.perf_counter()
    if table.num_rows:
        say = (lambda msg: progress(f"matching: {msg}", 0, None)) if progress else None
        # DuckDB/Splink work blocks: run it off the event loop
        _, clustered = await asyncio.to_thread(predict_clusters, table, model_json,
                                               link_threshold=settings.link_threshold, progress=say)
        del table
        clusters = dict(zip(clustered.column("id").to_pylist(), clustered.column("cluster_id").to_pylist(),
                            strict=True))
    else:
        clusters = {}
    matched_at = time.perf_counter()
    plan = reconcile(current=current, clusters=clusters, rules=rules, forward=forward)
    plan.model_version, plan.max_rule_id = model_version, max_rule_id
    done = time.perf_counter()
    plan.seconds = round(done - started, 3)
    plan.timings = {"read": round(read_at - started, 3), "match": round(matched_at - read_at, 3),
                    "reconcile": round(done - matched_at, 3)}
    return plan


# --- applying it -----------------------------------------------------------------------------------------

def batches(changes: Sequence[Change], size: int = BATCH) -> list[list[Change]]:
    """Pack changes into batches of about `size` targets (a change is never cut in two)."""
    out: list[list[Change]] = [[]]
    weight = 0
    for c in changes:
        if weight >= size:
            out.append([])
            weight = 0
        out[-1].append(c)
        weight += max(1, len(c.targets))
    return [b for b in out if b]


async def _stale(session, batch: list[Change], max_rule_id: int) -> set[int]:
    """Indexes of changes the hub moved on from since the plan (records moved, golden records gone, new rules)."""
    ids = sorted(set().union(*(c.ids for c in batch)))
    live = {cid for cid, status in await session.execute(
        select(CUSTOMER.c.id, CUSTOMER.c.status).where(any_of(session, CUSTOMER.c.id, ids))) if status == ACTIVE}
    moved = {rid: g for c in batch for t in c.targets for g, rids in t.moves for rid in rids}
    home = dict((await session.execute(select(SR.c.id, SR.c.customer_id).where(
        any_of(session, SR.c.id, sorted(moved))))).all()) if moved else {}
    ruled = set()
    for a, b in await session.execute(select(RULE.c.customer_id, RULE.c.other_customer_id).where(
            RULE.c.id > max_rule_id, RULE.c.active)):
        ruled.update((a, b))
    stale = set()
    for i, c in enumerate(batch):
        rids = [rid for t in c.targets for _, rs in t.moves for rid in rs]
        if not c.ids <= live or c.ids & ruled or any(home.get(r) != moved[r] for r in rids):
            stale.add(i)
    return stale


async def _apply_batch(session, batch: list[Change], *, actor: str, now: dt.datetime, max_rule_id: int) -> dict:
    """Apply one batch of changes in the caller's transaction; return what it did."""
    stale = await _stale(session, batch, max_rule_id)
    todo = [c for i, c in enumerate(batch) if i not in stale]
    targets = [t for c in todo for t in c.targets]
    fresh = [t for t in targets if t.survivor is None]
    if fresh:
        ids = (await session.execute(insert(CUSTOMER).returning(CUSTOMER.c.id, sort_by_parameter_order=True), [
            {"status": ACTIVE, "version": 0, "created_at": now, "updated_at": now} for _ in fresh])).scalars().all()
        new_ids = dict(zip(map(id, fresh), ids, strict=True))
    else:
        new_ids = {}
    home = {id(t): t.survivor if t.survivor is not None else new_ids[id(t)] for t in targets}
    moves = [{"_r": rid, "_t": home[id(t)]} for t in targets for _, rids in t.moves for rid in rids]
    if moves:
        await session.execute(update(SR).where(SR.c.id == bindparam("_r")).values(customer_id=bindparam("_t")), moves)
    merges = {lo: t.survivor for t in targets for lo in t.losers}
    if merges:
        await merge_into(session, merges, actor=actor, now=now, reason="rematch")
    await _recompute(session, todo, home, actor=actor, now=now, merges=merges)
    return {"applied": len(todo), "stale": len(stale), "merged_away": len(merges), "new_golden": len(fresh),
            "records_moved": len(moves) + sum(t.loser_records for t in targets)}


async def _recompute(session, todo: list[Change], home: dict[int, int], *, actor: str, now: dt.datetime,
                     merges: Mapping[int, int]) -> None:
    """Bring every golden record the changes touched in line with its records, with an event saying why."""
    split_out: dict[int, dict[str, list]] = defaultdict(lambda: {"records": [], "into": []})
    fresh, receivers = {}, {}
    for c in todo:
        for t in c.targets:
            target = home[id(t)]
            for g, rids in t.moves:
                split_out[g]["records"] += rids
                split_out[g]["into"].append(target)
            if t.survivor is None:
                fresh[target] = {"from": sorted({g for g, _ in t.moves}),
                                 "records": sorted(r for _, rs in t.moves for r in rs)}
            else:
                receivers[target] = {"merged": t.losers, "moved_in": sorted(r for _, rs in t.moves for r in rs)}
    for g, info in split_out.items():
        if g in receivers:
            receivers[g]["split"] = info
    await recompute(session, {g: {"split": v} for g, v in split_out.items()
                              if g not in receivers and g not in merges}, actor=actor, now=now, kind="REMATCH_SPLIT")
    await recompute(session, {g: {"split_from": v["from"], "records": v["records"]} for g, v in fresh.items()},
                    actor=actor, now=now, kind="REMATCH_SPLIT")
    await recompute(session, receivers, actor=actor, now=now, kind="REMATCH_MERGE")


async def apply_rematch(*, db: Database, plan: RematchPlan, actor: str = ACTOR, size: int = BATCH,
                        progress: Progress | None = None) -> dict[str, int]:
    """Write a plan: batches of about `size` changes, each one write transaction; stale changes are skipped."""
    totals: dict[str, int] = defaultdict(int)
    todo = batches(plan.changes, size)
    for n, batch in enumerate(todo, 1):
        async with db.write() as session:
            done = await _apply_batch(session, batch, actor=actor, now=utcnow(), max_rule_id=plan.max_rule_id)
        for k, v in done.items():
            totals[k] += v
        if progress:
            progress("applying", n, len(todo))
    return dict(totals)


def examples(plan: RematchPlan, limit: int) -> list[str]:
    """Up to `limit` changes as one line each."""
    lines = []
    for c in plan.changes:
        for t in c.targets:
            if len(lines) >= limit:
                return lines
            into = f"customer {t.survivor}" if t.survivor is not None else "a new customer"
            what = [f"merge {', '.join(map(str, t.losers))} ({t.loser_records} records)"] if t.losers else []
            what += [f"move records {', '.join(map(str, rids))} out of {g}" for g, rids in t.moves]
            lines.append(f"{into}: " + "; ".join(what))
    return lines


__all__ = ["BATCH", "Change", "RematchPlan", "Rule", "Target", "apply_rematch", "examples", "follow",
           "model_in_use", "plan_rematch", "read_records", "read_rules", "reconcile"]
