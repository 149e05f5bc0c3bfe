"""`hub rematch`: batch-match every source record and reconcile the clusters with the golden records.

`plan_rematch` reads every source record (PostgreSQL: one COPY parsed by arrow; else Core rows into an
arrow table), runs `matching.predict_clusters` (Splink 5 predict over the real-time blocking keys +
connected components, DuckDB embedded) at HUB_LINK_THRESHOLD with the model in use, and hands plain data
to `reconcile`: only the records of golden records and clusters that disagree (every other golden record
is exactly one cluster, unchanged). `apply_rematch` writes the plan in batches of about BATCH changes,
each batch one write transaction (one unit of work) written set-based: a fixed number of statements per
batch whatever its size (`_apply_batch`).

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
   of its records survives (tie: the smallest id) and the others are merged into it (`merge_writes`, they
   forward to it for ever); split-off parts move into it. A subgroup of split-off parts only becomes a
   new golden record. A golden record alone in its subgroup and not split is unchanged.

Events: MERGED / MERGED_AWAY (reason "rematch") from `merge_writes`; REMATCH_MERGE on a survivor that
received records; REMATCH_SPLIT on a golden record that lost records and on each new golden record.
Applied again on unchanged data, the plan is empty (subgroups that rule 4 kept apart conflict through
rules that follow the merges).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import gc
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlalchemy import BigInteger, func, insert, select, update

from hub.golden.attributes import ATTRIBUTES
from hub.config import Settings
from hub.db import Database, any_of, value_rows
from hub.errors import BadInput, NotFound
from hub.golden.values import (
    MEMBERS_OF,
    GoldenState,
    GoldenWrites,
    contribution,
    plan_golden,
    read_golden,
    write_golden,
)
from hub.models import (
    ACTIVE,
    MANUAL_MERGE,
    MERGED,
    NOT_A_MATCH,
    SPLIT,
    Customer,
    Event,
    Lineage,
    SourceRecord,
    StewardRule,
    utcnow,
)
from hub.models.matching import PROMOTED, MatchCandidate, MatchModelVersion
from hub.ingest.records import merge_writes
from hub.privacy.consent import follow as follow_consents
from hub.golden.stewardship_rules import carry_overrides
from hub.golden.survivorship import STEWARD_OVERRIDE
from hub.privacy.keys import is_sealed
from hub.privacy.sealing import SEALABLE, sealer
from matching import MatchModel
from hub.ops.training import RECORD_SCHEMA, count_records, default_model_json, record_batches

SR, CUSTOMER, RULE, MODEL, MC, LINEAGE, EVENT = (
    SourceRecord.__table__, Customer.__table__, StewardRule.__table__, MatchModelVersion.__table__,
    MatchCandidate.__table__, Lineage.__table__, Event.__table__)
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
    # golden records by size now, proposed clusters by size: {size: how many}
    size_counts: tuple[dict[int, int], dict[int, int]] = field(default_factory=lambda: ({}, {}))
    # the proposed clusters against steward decisions as labels (`label_agreement`)
    labels: dict[str, Any] = field(default_factory=dict)

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


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector off while millions of objects are built (each collection of the oldest
    generation would walk them all again); reference counting still frees whatever is dropped."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
        # "latest" is the promoted model (a trained candidate is not used until promoted)
        stmt = stmt.where(MODEL.c.status == PROMOTED).order_by(MODEL.c.id.desc()).limit(1) if choice == "latest" \
            else stmt.where(MODEL.c.id == _model_id(choice))
        async with db.session() as session:
            row = (await session.execute(stmt)).first()
        if row is not None:
            return row.id, row.model
        if choice != "latest":
            raise NotFound(f"no stored match model {choice}")
    return None, default_model_json()


def _model_id(choice: str) -> int:
    try:
        return int(choice)
    except ValueError:
        raise BadInput(f"model {choice!r}: give latest (the promoted one), default or a stored model id") from None


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


async def read_records(*, db: Database, progress: Progress | None = None) -> tuple[pa.Table, pa.Array]:
    """Every source record as an arrow table for matching (ordered by id), and each one's golden id.

    PostgreSQL: one COPY of the columns as CSV, parsed by arrow (no Python object per value); else Core rows
    through a server-side cursor.
    """
    total = await count_records(db=db)
    if not db.sqlite:
        table = await _copy_records(db)
        if progress:
            progress("reading records", table.num_rows, total)
        return table.drop_columns(["customer_id"]).cast(RECORD_SCHEMA), table.column("customer_id").combine_chunks()
    batches, customers, done = [], [], 0
    async for batch, golden in record_batches(db=db, with_customer=True):
        batches.append(batch)
        customers += golden
        done += batch.num_rows
        if progress:
            progress("reading records", done, total)
    return pa.Table.from_batches(batches, schema=RECORD_SCHEMA), pa.array(customers, pa.int64())


async def _copy_records(db: Database) -> pa.Table:
    """id, attributes (dates as ISO text) and customer_id of every source record, by COPY ... TO STDOUT (CSV)."""
    from pyarrow import csv

    # the sealed attributes arrive as stored (sealed, or ISO text) and are opened below, column by column
    columns = ["id", *ATTRIBUTES, "customer_id"]
    names = ["id", *ATTRIBUTES, "customer_id"]
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_from_query(
            f"SELECT {', '.join(columns)} FROM {SR.name} ORDER BY id", output=sink, format="csv")
    data = b"".join(chunks)
    chunks.clear()
    # NULL is an unquoted empty field, an empty string a quoted one
    table = csv.read_csv(pa.py_buffer(data), read_options=csv.ReadOptions(column_names=names),
                        parse_options=csv.ParseOptions(newlines_in_values=True),
                        convert_options=csv.ConvertOptions(
                            column_types={n: pa.int64() if n in ("id", "customer_id") else pa.string() for n in names},
                            strings_can_be_null=True, quoted_strings_can_be_null=False))
    return open_columns(table)


def open_columns(table: pa.Table) -> pa.Table:
    """Open the sealed attribute columns of an arrow table read around the column types (COPY)."""
    seal = sealer()
    for attr in SEALABLE:
        i = table.schema.get_field_index(attr)
        values = table.column(i).to_pylist()
        if any(v is not None and is_sealed(v) for v in values):
            table = table.set_column(i, attr, pa.array([seal.open(attr, v) if v is not None else None
                                                        for v in values], pa.string()))
    return table


def _touched(ids: pa.Array, golden: pa.Array, clustered: pa.Table) -> tuple[dict[int, int], dict[int, int], dict]:
    """The records a rematch may change: those of a golden record the clusters spread over several clusters
    and those of a cluster that spans several golden records (every other golden record is exactly one
    cluster: unchanged). Returns their current golden ids, their clusters, and counts over all records."""
    import pyarrow.compute as pc

    joined = pa.table({"id": ids, "gid": golden}).join(clustered, "id", join_type="left outer")
    # a record the clustering did not return stands alone (negative ids never clash with record ids)
    cl = pc.coalesce(joined.column("cluster_id"), pc.negate(joined.column("id")))
    joined = pa.table({"id": joined.column("id"), "gid": joined.column("gid"), "cl": cl})
    spread = joined.group_by("gid").aggregate([("cl", "count_distinct")])
    spread = spread.filter(pc.greater(spread.column("cl_count_distinct"), 1)).column("gid")
    shared = joined.group_by("cl").aggregate([("gid", "count_distinct")])
    shared = shared.filter(pc.greater(shared.column("gid_count_distinct"), 1)).column("cl")
    touched = joined.filter(pc.or_(pc.is_in(joined.column("gid"), value_set=spread.combine_chunks()),
                                   pc.is_in(joined.column("cl"), value_set=shared.combine_chunks())))
    rids = touched.column("id").to_pylist()
    counts = {"golden": pc.count_distinct(joined.column("gid")).as_py(),
              "touched_golden": pc.count_distinct(touched.column("gid")).as_py(),
              "clusters": pc.count_distinct(clustered.column("cluster_id")).as_py()}
    return (dict(zip(rids, touched.column("gid").to_pylist(), strict=True)),
            dict(zip(rids, touched.column("cl").to_pylist(), strict=True)), counts)


def exact_links(table: pa.Table, clustered: pa.Table, rules: Sequence[Sequence[str]],
                model_json: dict[str, Any] | None = None) -> pa.Table:
    """Join the clusters of records that meet a deterministic rule (HUB_EXACT_RULES) on equal values, as
    registration links them (`exact_keys`: every attribute of the rule present), unless the pair falls in
    one of the model's conflict levels (then the model's "plainly another person" wins, as the batch
    clustering decides). Without it a rematch splits what the real-time path linked by rule (FEBRL:
    duplicates sharing a national id whose given name and birth date were replaced)."""
    import pyarrow.compute as pc

    if not rules or not table.num_rows:
        return clustered
    model = MatchModel.from_json(model_json) if model_json is not None else None
    cl = pa.table({"id": table.column("id")}).join(clustered, "id", join_type="left outer")
    ids = cl.column("id").combine_chunks()
    cluster = pc.coalesce(cl.column("cluster_id"), pc.negate(cl.column("id")))
    cluster_of = dict(zip(ids.to_pylist(), cluster.to_pylist(), strict=True))
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    joined = False
    for rule in rules:
        mask = None
        for a in rule:
            col = table.column(a)
            ok = pc.and_(pc.is_valid(col), pc.not_equal(col, ""))
            mask = ok if mask is None else pc.and_(mask, ok)
        groups = table.filter(mask).group_by(list(rule)).aggregate([("id", "list")]).column("id_list").to_pylist()
        groups = [g for g in groups if len({cluster_of[r] for r in g}) > 1]
        if not groups:
            continue
        rows: dict[int, Any] = {}
        if model is not None:
            wanted = pa.array(sorted({r for g in groups for r in g}), pa.int64())
            for rec in table.filter(pc.is_in(table.column("id"), value_set=wanted)).to_pylist():
                rows[rec["id"]] = model.prepare(rec)
        for g in groups:
            for i, x in enumerate(g):
                for y in g[i + 1:]:
                    rx, ry = root(cluster_of[x]), root(cluster_of[y])
                    if rx == ry:
                        continue
                    if model is not None and any((e.comparison, e.level) in model.conflict_levels
                                                 for e in model.score(rows[x], rows[y]).explanation):
                        continue
                    parent[max(rx, ry)] = min(rx, ry)
                    joined = True
    if not joined:
        return clustered
    return pa.table({"id": ids, "cluster_id": pa.array([root(c) for c in cluster.to_pylist()], pa.int64())})


def label_agreement(rules: Sequence[Rule], forward: Mapping[int, int], ids: pa.Array, golden: pa.Array,
                    clustered: pa.Table) -> dict[str, Any]:
    """How the proposed clusters (before the steward rules are enforced) agree with steward decisions.

    Labels: a golden record a steward merged (MANUAL_MERGE) is one customer (positive: the clusters keep
    its records together); a NOT_A_MATCH pair is two customers, and a record a steward split out is not
    the customer it left (negatives: no cluster joins them). Precision = kept-together positives / all
    pairings the clusters make among the labels; recall = positives kept together / positives."""
    import pyarrow.compute as pc

    rules = follow(rules, forward)
    if not rules:
        return {"labels": 0}
    gids = sorted({x for r in rules for x in (r.customer_id, r.other_customer_id)})
    rids = sorted({r.source_record_id for r in rules if r.source_record_id is not None})
    t = pa.table({"id": ids, "gid": golden})
    t = t.filter(pc.or_(pc.is_in(t.column("gid"), value_set=pa.array(gids, pa.int64())),
                        pc.is_in(t.column("id"), value_set=pa.array(rids, pa.int64()))))
    t = t.join(clustered, "id", join_type="left outer")
    members: dict[int, set[int]] = defaultdict(set)
    cluster_of: dict[int, int] = {}
    for rid, gid, cl in zip(t.column("id").to_pylist(), t.column("gid").to_pylist(),
                            t.column("cluster_id").to_pylist(), strict=True):
        cl = cl if cl is not None else -rid
        members[gid].add(cl)
        cluster_of[rid] = cl
    positives = {r.customer_id for r in rules if r.kind == MANUAL_MERGE}
    tp = sum(1 for g in positives if len(members.get(g, ())) <= 1)
    negatives = fp = 0
    for r in rules:
        if r.kind == NOT_A_MATCH and r.customer_id != r.other_customer_id:
            negatives += 1
            fp += bool(members.get(r.customer_id, set()) & members.get(r.other_customer_id, set()))
        elif r.kind == SPLIT and r.source_record_id is not None and r.source_record_id in cluster_of:
            negatives += 1
            fp += cluster_of[r.source_record_id] in members.get(r.other_customer_id, set())
    n = len(positives) + negatives
    return {"labels": n, "positive": len(positives), "negative": negatives, "true_positive": tp,
            "false_positive": fp,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / len(positives), 4) if positives else None,
            "agreement": round((tp + negatives - fp) / n, 4) if n else None}


def _sizes(groups) -> dict[int, int]:
    """{group size: how many groups} of an array of group ids."""
    import pyarrow.compute as pc

    if len(groups) == 0:
        return {}
    sizes = pc.value_counts(groups).field("counts")
    counted = pc.value_counts(sizes)
    return dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True))


async def plan_rematch(*, db: Database, settings: Settings, model_json: dict[str, Any],
                       progress: Progress | None = None, model_version: int | None = None,
                       engine: str = "duckdb") -> RematchPlan:
    """Match every source record in batch and reconcile the clusters with the golden records.

    engine: `duckdb` (embedded) or `spark` (Splink's SparkAPI on HUB_SPARK_MASTER; same clusters).
    """
    with gc_paused():
        return await _plan(db=db, settings=settings, model_json=model_json, progress=progress,
                           model_version=model_version, engine=engine)


def batch_matcher(engine: str, settings: Settings) -> Callable[..., tuple[pa.Table, pa.Table]]:
    """The batch predict + cluster function of an engine (`duckdb` or `spark`), with the engine's settings."""
    if engine == "duckdb":
        from matching import predict_clusters
        return predict_clusters
    if engine == "spark":
        from matching import spark

        why = spark.available()
        if why:
            raise BadInput(f"--engine spark: {why}")

        def on_spark(*args, **kwargs):
            with spark.spark_session(settings.spark_master, conf=settings.spark_conf) as session:
                return spark.predict_clusters_spark(*args, spark=session, **kwargs)
        return on_spark
    raise BadInput(f"unknown matching engine {engine!r}: duckdb or spark")


async def _plan(*, db: Database, settings: Settings, model_json: dict[str, Any], progress: Progress | None,
                model_version: int | None, engine: str = "duckdb") -> RematchPlan:
    predict_clusters = batch_matcher(engine, settings)

    started = time.perf_counter()
    rules, forward, max_rule_id = await read_rules(db=db)
    table, golden = await read_records(db=db, progress=progress)
    read_at = time.perf_counter()
    ids = table.column("id").combine_chunks()
    if table.num_rows:
        say = (lambda msg: progress(f"matching: {msg}", 0, None)) if progress else None
        # DuckDB/Splink work blocks: run it off the event loop
        _, clustered = await asyncio.to_thread(predict_clusters, table, model_json,
                                               link_threshold=settings.link_threshold, progress=say)
    else:
        clustered = pa.table({"id": pa.array([], pa.int64()), "cluster_id": pa.array([], pa.int64())})
    clustered = exact_links(table, clustered, settings.exact_rules, model_json)
    del table
    matched_at = time.perf_counter()
    # only the records of golden records and clusters that disagree go through the reconciliation
    current, clusters, counts = _touched(ids, golden, clustered)
    plan = reconcile(current=current, clusters=clusters, rules=rules, forward=forward)
    plan.records, plan.golden, plan.clusters = len(ids), counts["golden"], counts["clusters"]
    plan.unchanged += counts["golden"] - counts["touched_golden"]
    plan.model_version, plan.max_rule_id = model_version, max_rule_id
    plan.size_counts = (_sizes(golden), _sizes(clustered.column("cluster_id")))
    plan.labels = label_agreement(rules, forward, ids, golden, clustered)
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
    """Apply one batch of changes in the caller's transaction; return what it did.

    Everything the batch needs is read before it writes (under the write lock nothing else moves): then
    survivorship runs in a thread while the database applies the moves and merges, and the recomputed
    golden records are written last. Same statements' effect as moving the records, `merge_into` and
    `recompute` one after the other.
    """
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
    moves = {rid: home[id(t)] for t in targets for _, rids in t.moves for rid in rids}
    merges = {lo: t.survivor for t in targets for lo in t.losers}
    causes = _causes(todo, home, merges)
    recomputed = [cid for kind in causes.values() for cid in kind]
    if merges:
        overridden = set((await session.execute(select(LINEAGE.c.customer_id).where(
            any_of(session, LINEAGE.c.customer_id, list(merges)), LINEAGE.c.rule == STEWARD_OVERRIDE))).scalars())
        if overridden:  # rare: a steward edited a golden record that the rematch merges away
            await carry_overrides(session, {lo: merges[lo] for lo in sorted(overridden)})
    # every record of every golden record involved (moved records sit in a split source, which is involved)
    rows = (await session.execute(MEMBERS_OF.where(any_of(session, SR.c.customer_id,
                                                          sorted({*recomputed, *merges}))))).all()
    state = await read_golden(session, recomputed)
    job = asyncio.ensure_future(asyncio.to_thread(_survivorship, rows, moves, merges, causes, state,
                                                  actor=actor, now=now))
    try:
        away: dict[int, list[int]] = defaultdict(list)
        for row in rows:
            if row[1] in merges and row[0] not in moves:
                away[row[1]].append(row[0])
        if moves:
            v = value_rows(session, {"r": (BigInteger, list(moves)), "t": (BigInteger, list(moves.values()))})
            await session.execute(update(SR).where(SR.c.id == v.c.r).values(customer_id=v.c.t))
            await follow_consents(session, records=list(moves))
        if merges:
            await merge_writes(session, merges, away, actor=actor, now=now, reason="rematch")
    except BaseException:
        await asyncio.wait([job])
        raise
    await write_golden(session, await job, now=now)
    return {"applied": len(todo), "stale": len(stale), "merged_away": len(merges), "new_golden": len(fresh),
            "records_moved": len(moves) + sum(t.loser_records for t in targets)}


def _causes(todo: list[Change], home: Mapping[int, int], merges: Mapping[int, int]) -> dict[str, dict[int, dict]]:
    """The golden records to recompute, per event kind, each with what happened to it (its event's changes).

    A split golden record that also receives records gets one REMATCH_MERGE event saying both; one merged
    away is not recomputed (MERGED_AWAY says it all)."""
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
    return {"split": {g: {"split": v} for g, v in split_out.items() if g not in receivers and g not in merges},
            "new": {g: {"split_from": v["from"], "records": v["records"]} for g, v in fresh.items()},
            "merge": receivers}


def _survivorship(rows: Sequence, moves: Mapping[int, int], merges: Mapping[int, int],
                  causes: Mapping[str, Mapping[int, dict]], state: GoldenState, *, actor: str,
                  now: dt.datetime) -> GoldenWrites:
    """What `recompute` would write for the recomputed golden records once the moves and merges are done
    (their members are the rows read before, moved as the batch moves them); no I/O."""
    members: dict[int, list] = defaultdict(list)
    for row in rows:
        rid, cid = row[0], row[1]
        members[moves[rid] if rid in moves else merges.get(cid, cid)].append(contribution(row))
    writes = GoldenWrites()
    for kind, event in (("split", "REMATCH_SPLIT"), ("new", "REMATCH_SPLIT"), ("merge", "REMATCH_MERGE")):
        plan_golden(causes[kind], members, state, actor=actor, now=now, kind=event, into=writes)
    return writes


async def apply_rematch(*, db: Database, plan: RematchPlan, actor: str = ACTOR, size: int = BATCH,
                        progress: Progress | None = None) -> dict[str, int]:
    """Write a plan: batches of about `size` changes, each one write transaction; stale changes are skipped."""
    totals: dict[str, int] = defaultdict(int)
    todo = batches(plan.changes, size)
    for n, batch in enumerate(todo, 1):
        with gc_paused():
            async with db.write() as session:
                done = await _apply_batch(session, batch, actor=actor, now=utcnow(),
                                          max_rule_id=plan.max_rule_id)
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
