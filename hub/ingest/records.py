"""Register and delete source records: standardise, upsert, link, survive, audit — one transaction."""
from __future__ import annotations

import asyncio

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.golden.attributes import ATTRIBUTES, invalid_mask
from hub.ingest.blocking import candidate_keys, delete_keys, id_condition, replace_keys
from hub.ingest.erased import any_blocks, blocked, record_hashes
from hub.privacy.keys import keyring
from hub.golden.candidates import queue_candidates
from hub.config import Settings
from hub.db import Database, any_of, bulk_insert, value_rows
from hub.errors import BadInput, NotFound
from hub.metrics import MATCH_SECONDS, count_registrations, timed
from hub.golden.values import binds, recompute, write_fresh
from hub.ingest.linking import CREATED, LINKED, QUEUED, UPDATED, Planner
from hub.models import ACTIVE, MERGED, Customer, Event, SourceRecord, SourceSystem, utcnow
from hub.ingest.standardise import FieldError, SystemProfile, standardise
from hub.golden.stewardship_rules import carry_overrides, follow_merges, has_rules, load_steward_memory
from hub.golden.survivorship import Contribution, resolve_rules, survive
from hub.ingest.systems import system_settings
from hub.privacy.consent import Statement, check_statement, record_statements
from hub.privacy.consent import follow as follow_consents
from hub.privacy.sealing import HASHED, lookup, sealer
from hub.validation import ARGUMENT_LIMITS, safe_echo, text_problem, updated_at_problem

UNCHANGED, REJECTED, ERASED = "UNCHANGED", "REJECTED", "ERASED"
SR = SourceRecord.__table__
CUSTOMER = Customer.__table__
EVENT = Event.__table__


# statements of the hot path, built once
_STORED = (select(SR.c.id, SR.c.key, SR.c.customer_id, SR.c.content_hash, SR.c.updated_at, has_rules(SR.c.customer_id))
           .where(SR.c.system == bindparam("system"), SR.c.key.in_(bindparam("keys", expanding=True))))
_SYSTEMS = SourceSystem.__table__
_COUNT = (update(_SYSTEMS).where(_SYSTEMS.c.name == bindparam("system_name"))
          .values(record_count=_SYSTEMS.c.record_count + bindparam("n")))
_INSERT_RECORDS = insert(SR).returning(SR.c.id, sort_by_parameter_order=True)


@dataclass
class RecordInput:
    key: str
    attributes: Mapping[str, Any]
    updated_at: dt.datetime | None = None
    # consent statements the source reports with the record; stored against its golden record
    consents: Sequence[Statement] = ()


@dataclass
class Result:
    key: str
    action: str
    customer_id: int | None = None
    probability: float | None = None
    errors: list[FieldError] = field(default_factory=list)
    same_as: int | None = field(default=None, repr=False)  # a duplicate key in the batch: the input applied


@dataclass
class _Item:
    """One accepted input on its way through the batch."""

    pos: int
    key: str
    raw: dict[str, Any]
    values: dict[str, Any]
    content_hash: str
    updated_at: dt.datetime
    errors: list[FieldError]
    existing: Any = None  # the stored row (id, customer_id, content_hash, updated_at) when the key is known
    placement: Any = None
    record_id: int | None = None
    profile: Any = None
    consents: list[Statement] = field(default_factory=list)


def content_hash(raw: Mapping[str, Any]) -> str:
    """Hash the raw attributes so an identical resend is recognised.

    A keyed hash (HMAC): a plain hash of a payload holding little but a national id or a birth date could be
    reversed by trying every value.
    """
    text = json.dumps({k: v for k, v in raw.items() if v is not None}, sort_keys=True, default=str)
    return sealer().ring.keyed_hash(text, purpose="content")


def _aware(ts: dt.datetime | None, default: dt.datetime) -> dt.datetime:
    if ts is None:
        return default
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _prepare(inputs: Sequence[RecordInput], profile: SystemProfile, now: dt.datetime,
             results: list[Result], max_skew: float, purposes: Sequence[str] = ()) -> dict[str, _Item]:
    """Standardise every input; reject the unusable; keep the latest input per key.

    A bad key or updatedAt rejects its record only; a bad attribute is a FieldError and stays out of the
    standardised values and of the stored raw payload when it was refused as text (hub.validation).
    """
    items: dict[str, _Item] = {}
    for pos, rec in enumerate(inputs):
        key = rec.key.strip() if isinstance(rec.key, str) else rec.key
        why = text_problem(key, ARGUMENT_LIMITS["key"]) or (None if key else "must be 1 to 200 characters")
        if why is not None:
            results[pos] = Result(safe_echo(rec.key), REJECTED, errors=[FieldError("key", f"key {why}")])
            continue
        if rec.updated_at is not None and (why := updated_at_problem(rec.updated_at, now, max_skew)) is not None:
            results[pos] = Result(key, REJECTED, errors=[FieldError("updatedAt", why)])
            continue
        std = standardise(rec.attributes, profile)
        if not std.identifiable:
            results[pos] = Result(key, REJECTED, errors=[*std.errors, FieldError(
                "attributes", "no usable identifying attribute: needs a national id, email or phone, "
                              "or a family name with a given name or a date of birth")])
            continue
        raw = {k: v for k, v in dict(rec.attributes).items() if v is not None and k not in std.refused}
        item = _Item(pos, key, raw, std.values, content_hash(raw), _aware(rec.updated_at, now), list(std.errors))
        for statement in rec.consents:
            problem = check_statement(statement, purposes)
            if problem:  # the record goes in; the statement it cannot carry is reported
                item.errors.append(FieldError("consents", problem))
            else:
                item.consents.append(statement if statement.at is not None else Statement(
                    statement.purpose, statement.granted, item.updated_at, statement.evidence))
        earlier = items.get(key)
        if earlier is not None:
            loser, item = (earlier, item) if item.updated_at >= earlier.updated_at else (item, earlier)
            results[loser.pos] = Result(key, UNCHANGED, same_as=item.pos, errors=[*loser.errors, FieldError(
                "key", "sent more than once in this batch; the latest by updatedAt was applied")])
        items[key] = item
    return items


async def _load_candidates(session: AsyncSession, planner: Planner, items: list[_Item],
                           settings: Settings, blocking: set[str]) -> None:
    """Feed the planner every stored record an incoming one could link to, by indexed lookups only."""
    conditions = []
    for i, rule in enumerate(settings.exact_rules):
        firsts = sorted({k[2] for it in items for k in it.profile.exact if k[1] == i})
        if firsts:
            conditions.append(lookup(SR, rule[0], firsts))
    shared = await candidate_keys(session, blocking)
    if shared:
        conditions.append(id_condition(session, list(shared)))
    if not conditions:
        return
    # the model compares stored features; the attributes are needed only for the deterministic rules
    # (and to derive features a record was stored without)
    wanted = list(ATTRIBUTES) if planner.scorer is None else sorted({a for rule in settings.exact_rules for a in rule})
    rows = (await session.execute(select(SR.c.id, SR.c.customer_id, SR.c.match_features, has_rules(SR.c.customer_id),
                                         *(SR.c[a] for a in wanted)).where(or_(*conditions)))).all()
    missing = []
    remembered = any(row.has_rules for row in rows) or any(it.existing is not None and it.existing.has_rules
                                                             for it in items)
    for row in rows:
        if planner.scorer is not None and row.match_features is None:
            missing.append(row)
            continue
        # a plain dict of the rule attributes: a Row's mapping view costs more than the rules themselves
        planner.add_known(row.id, row.customer_id, planner.stored_profile(
            dict(zip(wanted, row[4:], strict=True)), row.match_features, shared.get(row.id, ())))
    if missing:
        full = await session.execute(select(SR.c.id, SR.c.customer_id, *(SR.c[a] for a in ATTRIBUTES))
                                     .where(id_condition(session, [r.id for r in missing])))
        for row in full:
            planner.add_known(row.id, row.customer_id, planner.stored_profile(
                {a: row._mapping[a] for a in ATTRIBUTES}, None, shared.get(row.id, ())))
    if remembered:  # most batches touch no golden record a steward decided on: no round trip for them
        await load_steward_memory(session, planner, {k.label for k in planner.known.values()} |
                                  {it.existing.customer_id for it in items if it.existing is not None})


async def register_records(*, session: AsyncSession, system: str, items: dict[str, _Item], results: list,
                           actor: str, settings: Settings, planner: Planner, now: dt.datetime) -> list[Result]:
    """Upsert one system's standardised records and link each into a golden record.

    The caller holds the write transaction; nothing here commits.
    """
    src = await system_settings(session, system)
    if items and await any_blocks(session):
        await _refuse_erased(session, system, items, results, settings)
    if items:
        rows = await session.execute(_STORED, {"system": system, "keys": list(items)})
        for row in rows:
            items[row.key].existing = row
    work: list[_Item] = []
    for it in items.values():
        old = it.existing
        if old is not None and old.content_hash == it.content_hash:
            results[it.pos] = Result(it.key, UNCHANGED, old.customer_id, errors=it.errors)
        elif old is not None and it.updated_at < _aware(old.updated_at, now):
            results[it.pos] = Result(it.key, UNCHANGED, old.customer_id, errors=[*it.errors, FieldError(
                "updatedAt", f"older than the stored version ({old.updated_at.isoformat()}); the stored record was kept")])
        else:
            work.append(it)
    if work:
        await _apply(session, src, work, actor, settings, planner, now, results)
    for res in results:
        if res.same_as is not None:
            res.customer_id = results[res.same_as].customer_id
    statements = [(results[it.pos].customer_id, it.record_id or it.existing.id, s) for it in items.values()
                  for s in it.consents if results[it.pos].customer_id is not None]
    if statements:
        await record_statements(session, statements, system=system, actor=actor, now=now)
    return results


async def _refuse_erased(session: AsyncSession, system: str, items: dict[str, _Item], results: list,
                         settings: Settings) -> None:
    """Take out of the batch the records of erased people (their key or an exact-rule tuple is blocked)."""
    ring = keyring(settings)
    hashes = {key: record_hashes(ring, settings, system, key, it.values) for key, it in items.items()}
    hit = await blocked(session, [h for hs in hashes.values() for h in hs])
    for key, hs in hashes.items():
        if hit.intersection(hs):
            it = items.pop(key)
            results[it.pos] = Result(key, ERASED, errors=[FieldError(
                "key", "refused: this record or the person it describes was erased from the hub; "
                       "an admin may lift the block (liftErasureBlock)", code=ERASED)])


async def _apply(session: AsyncSession, src: SourceSystem, work: list[_Item], actor: str, settings: Settings,
                 planner: Planner, now: dt.datetime, results: list) -> None:
    """Plan the links of the changed records, then write everything set-based."""
    blocking: set[str] = set()
    for it in work:
        blocking |= it.profile.blocking
    with timed(MATCH_SECONDS, phase="candidates"):
        await _load_candidates(session, planner, work, settings, blocking)
    with timed(MATCH_SECONDS, phase="place"):
        for it in work:
            old = it.existing
            it.placement = planner.place(it.profile, record_id=old.id if old is not None else None,
                                         current=old.customer_id if old is not None else None)

    # golden records the batch creates hold only this batch's records: their values are computed here and
    # inserted whole, with no read-back; batch positions stand in for record ids until those exist
    fresh: dict[int, list[_Item]] = defaultdict(list)
    for it in work:
        root = planner.find(it.placement.label)
        if root < 0:
            fresh[root].append(it)
    outcomes = {label: survive([Contribution(it.pos, src.trust, it.updated_at, it.values) for it in items],
                               resolve_rules(settings.survivorship)) for label, items in fresh.items()}
    label_id: dict[int, int] = {}
    if fresh:
        ids = (await session.execute(insert(CUSTOMER).returning(CUSTOMER.c.id, sort_by_parameter_order=True), [
            {"status": ACTIVE, "version": 1, "created_at": now, "updated_at": now,
             **{a: outcomes[label].values.get(a) for a in ATTRIBUTES}} for label in fresh])).scalars().all()
        label_id = dict(zip(fresh, ids, strict=True))

    def final(label: int) -> int:
        root = planner.find(label)
        return label_id.get(root, root)

    # merges between stored golden records (a record linked to several)
    merges = {lbl: final(lbl) for lbl in planner.parent if lbl > 0 and final(lbl) != lbl}
    if merges:
        await merge_into(session, merges, actor=actor, now=now, reason="linked by a registration")

    seal = sealer()
    new_rows = [it for it in work if it.existing is None]
    if new_rows:
        ids = (await session.execute(_INSERT_RECORDS, [
            {"system": src.name, "key": it.key, "customer_id": final(it.placement.label), "raw": it.raw,
             "content_hash": it.content_hash, "updated_at": it.updated_at, "received_at": now,
             "match_features": it.profile.features, **seal.hashes(it.values),
             "invalid_fields": invalid_mask(e.field for e in it.errors),
             **{a: it.values.get(a) for a in ATTRIBUTES}} for it in new_rows])).scalars().all()
        for it, rid in zip(new_rows, ids, strict=True):
            it.record_id = rid
        await session.execute(_COUNT, {"system_name": src.name, "n": len(new_rows)})
    changed = [it for it in work if it.existing is not None]
    if changed:
        await session.execute(
            update(SR).where(SR.c.id == bindparam("_id")).values(
                {c: bindparam("b_" + c) for c in ("customer_id", "raw", "content_hash", "updated_at", "received_at",
                                                  "match_features", "invalid_fields", *ATTRIBUTES,
                                                  *(f"{a}_hash" for a in HASHED))}),
            [binds({"customer_id": final(it.placement.label), "raw": it.raw, "content_hash": it.content_hash,
                    "updated_at": it.updated_at, "received_at": now, "match_features": it.profile.features,
                    "invalid_fields": invalid_mask(e.field for e in it.errors),
                    **seal.hashes(it.values), **{a: it.values.get(a) for a in ATTRIBUTES}}, _id=it.existing.id)
             for it in changed])
        for it in changed:
            it.record_id = it.existing.id
        moved = [it.record_id for it in changed if final(it.placement.label) != it.existing.customer_id]
        if moved:  # consent statements a record brought follow it to its new golden record
            await follow_consents(session, records=moved)
    if planner.scorer is not None:
        await replace_keys(session, {it.record_id: it.profile.blocking for it in work},
                           stored=[it.record_id for it in changed])

    # survivorship and audit for every golden record the batch touched
    causes: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for it in work:
        ref = {"system": src.name, "key": it.key}
        p = it.placement
        kind = {CREATED: "created", QUEUED: "created", LINKED: "linked", UPDATED: "updated"}[p.action]
        if p.probability is not None and p.action == LINKED:
            ref = {**ref, "probability": round(p.probability, 6), "rule": p.rule}
        causes[final(p.label)][kind].append(ref)
    record_of = {it.pos: it.record_id for it in work}
    await write_fresh(session, {label_id[label]: outcome for label, outcome in outcomes.items()}, record_of,
                      causes, actor=actor, now=now)
    await recompute(session, {cid: c for cid, c in causes.items() if cid not in label_id.values()},
                    actor=actor, now=now)
    if any(it.placement.action == QUEUED for it in work):
        await queue_candidates(session, [(final(it.placement.label), final(it.placement.review_label),
                                          it.placement.probability, it.placement.explanation)
                                         for it in work if it.placement.action == QUEUED], now=now,
                               middle=(settings.link_threshold + settings.review_threshold) / 2)
    for it in work:
        p = it.placement
        results[it.pos] = Result(it.key, p.action, final(p.label), p.probability, it.errors)


async def merge_into(session: AsyncSession, merges: Mapping[int, int], *, actor: str, now: dt.datetime,
                     reason: str, note: str | None = None) -> None:
    """Merge golden records (loser -> survivor): move their records, forward their ids, log both sides.

    Everything that names a loser follows it to its survivor: forwarded ids, match candidates (those
    whose two sides are now one are SUPERSEDED), steward rules, and its steward overrides where the
    survivor has none. The loser's records are listed in its MERGED_AWAY event, so it can be unmerged.
    """
    away: dict[int, list[int]] = defaultdict(list)
    for rid, cid in await session.execute(select(SR.c.id, SR.c.customer_id).where(
            any_of(session, SR.c.customer_id, list(merges)))):
        away[cid].append(rid)
    await merge_writes(session, merges, away, actor=actor, now=now, reason=reason, note=note)
    await carry_overrides(session, merges)


async def merge_writes(session: AsyncSession, merges: Mapping[int, int], away: Mapping[int, list[int]], *,
                       actor: str, now: dt.datetime, reason: str, note: str | None = None) -> None:
    """The writes of a merge in a fixed number of statements, whatever the number of merges (no overrides).

    The losers' records (`away`, read before) move to their survivors, the losers are MERGED and forward
    (one hop, also for ids forwarded to a loser before), candidates and steward rules follow, and each
    merge writes MERGED on the survivor and MERGED_AWAY (with the records moved) on the loser. A survivor
    is never itself a loser.
    """
    pairs = value_rows(session, {"lo": (BigInteger, list(merges)), "su": (BigInteger, list(merges.values()))})
    await session.execute(update(SR).where(SR.c.customer_id == pairs.c.lo).values(customer_id=pairs.c.su))
    await session.execute(update(CUSTOMER).where(CUSTOMER.c.id == pairs.c.lo)
                          .values(status=MERGED, merged_into=pairs.c.su, updated_at=now))
    # ids already forwarded to a loser now forward straight to its survivor: one hop, always
    await session.execute(update(CUSTOMER).where(CUSTOMER.c.merged_into == pairs.c.lo)
                          .values(merged_into=pairs.c.su))
    await follow_merges(session, merges, now=now)
    await follow_consents(session, customers=[*merges, *merges.values()])
    events = []
    for lo, su in merges.items():
        events.append({"customer_id": su, "kind": "MERGED", "at": now, "actor": actor, "note": note,
                       "changes": {"merged": [lo], "into": su, "reason": reason}})
        events.append({"customer_id": lo, "kind": "MERGED_AWAY", "at": now, "actor": actor, "note": note,
                       "changes": {"into": su, "reason": reason, "records": sorted(away.get(lo, []))}})
    await bulk_insert(session, EVENT, events)


async def delete_record(*, session: AsyncSession, system: str, key: str, actor: str) -> int | None:
    """Remove a source record; recompute its golden record, or retire it when no record is left."""
    row = (await session.execute(select(SR.c.id, SR.c.customer_id).where(SR.c.system == system, SR.c.key == key))
           ).first()
    if row is None:
        raise NotFound(f"no source record {system}/{key}")
    await delete_keys(session, [row.id])
    await session.execute(delete(SR).where(SR.c.id == row.id))
    await session.execute(_COUNT, {"system_name": system, "n": -1})
    now = utcnow()
    causes = {row.customer_id: {"removed": [{"system": system, "key": key}]}}
    alive = await recompute(session, causes, actor=actor, now=now)
    return row.customer_id if row.customer_id in alive else None


__all__ = ["CREATED", "ERASED", "LINKED", "QUEUED", "REJECTED", "UNCHANGED", "UPDATED", "RecordInput", "Result",
           "delete_record", "merge_into", "merge_writes", "register_batch", "register_records"]


PREPARE_INLINE = 20  # records a batch may have for its preparation to run on the event loop


async def register_batch(*, db: Database, system: str, records: Sequence[RecordInput], actor: str,
                         settings: Settings, scorer=None) -> list[Result]:
    """Register one batch as one unit of work (the path of both the mutation and `hub load`).

    Standardising and deriving match features is CPU work that needs no lock: it runs before the
    write transaction, so one batch's preparation overlaps another's database work.
    """
    if not 1 <= len(records) <= settings.max_batch:
        raise BadInput(f"registerRecords takes 1 to {settings.max_batch} records per call; got {len(records)}")
    async with db.reader() as conn:
        src = await system_settings(conn, system)
    planner = Planner(settings.exact_rules, settings.link_threshold, settings.review_threshold, scorer)
    now = utcnow()
    results: list[Result | None] = [None] * len(records)

    def prepare() -> dict[str, _Item]:
        items = _prepare(records, SystemProfile(src.date_order, src.default_country), now, results,
                         settings.max_clock_skew, settings.consent_purposes)
        for it in items.values():
            it.profile = planner.profile(it.values)
        return items

    # a big batch's standardising is ~100 ms and more of pure Python: in a thread, the event loop keeps serving
    items = await asyncio.to_thread(prepare) if len(records) > PREPARE_INLINE else prepare()
    async with db.write() as session:
        out = await register_records(session=session, system=system, items=items, results=results, actor=actor,
                                     settings=settings, planner=planner, now=now)
    db.grew(sum(1 for r in out if r.action in (CREATED, LINKED, QUEUED)))
    count_registrations(r.action for r in out)
    return out
