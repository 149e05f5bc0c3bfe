"""Recompute golden records from their source records, write lineage and the audit trail."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    String,
    bindparam,
    delete,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.golden.attributes import API_NAME, ATTRIBUTES, as_text
from hub.config import get_settings
from hub.db import any_of, bulk_insert, value_rows
from hub.models import ACTIVE, RETIRED, Customer, Event, Lineage, SourceRecord, SourceSystem
from hub.golden.survivorship import STEWARD_OVERRIDE, Contribution, Outcome, resolve_rules, survive
from hub.privacy.sealing import SEALABLE, sealer

SR, CUSTOMER, LINEAGE, EVENT, SYSTEM = (SourceRecord.__table__, Customer.__table__, Lineage.__table__,
                                       Event.__table__, SourceSystem.__table__)


# statements of the hot path, built once (building and keying a statement costs more than its round trip)
# a golden record's members as survivorship sees them (see `contribution`)
MEMBERS_OF = (select(SR.c.id, SR.c.customer_id, SYSTEM.c.trust, SR.c.updated_at, *(SR.c[a] for a in ATTRIBUTES))
              .join(SYSTEM, SYSTEM.c.name == SR.c.system))
_MEMBERS = MEMBERS_OF.where(SR.c.customer_id.in_(bindparam("ids", expanding=True)))
# only what the decisions compare: timestamps and the rest of the row would be converted once per lineage row
_CURRENT = (select(CUSTOMER.c.id, CUSTOMER.c.status, CUSTOMER.c.version, *(CUSTOMER.c[a] for a in ATTRIBUTES),
                   LINEAGE.c.field, LINEAGE.c.value.label("lineage_value"), LINEAGE.c.source_record_id,
                   LINEAGE.c.rule, LINEAGE.c.actor).outerjoin(LINEAGE, LINEAGE.c.customer_id == CUSTOMER.c.id)
            .where(CUSTOMER.c.id.in_(bindparam("ids", expanding=True))))
_UPDATE_CUSTOMER = update(CUSTOMER).where(CUSTOMER.c.id == bindparam("_id")).values(
    {c: bindparam("b_" + c) for c in ("version", "status", "updated_at", *ATTRIBUTES)})


def binds(values: Mapping[str, object], **keys: object) -> dict[str, object]:
    """Name update parameters apart from the columns they set (SQLAlchemy reserves the column names)."""
    return {**{"b_" + k: v for k, v in values.items()}, **keys}


async def write_fresh(session: AsyncSession, outcomes: Mapping[int, Outcome], record_of: Mapping[int, int],
                      causes: Mapping[int, Mapping[str, list]], *, actor: str, now: dt.datetime) -> None:
    """Write the lineage and CREATED events of golden records inserted with their values.

    Args:
        outcomes: survivorship per new golden record id, computed with stand-in record ids.
        record_of: stand-in id -> the source record's real id.
    """
    lineage, events = [], []
    seal = sealer()
    for cid, outcome in outcomes.items():
        lineage += [{"customer_id": cid, "field": f, "value": seal.seal_lineage(f, as_text(c.value)),
                     "source_record_id": record_of[c.record_id], "rule": c.rule} for f, c in outcome.lineage.items()]
        events.append({"customer_id": cid, "kind": "CREATED", "at": now, "actor": actor, "note": None, "changes": {
            "fields": {API_NAME[a]: as_text(v) for a, v in outcome.values.items()}, "version": 1,
            **{k: v for k, v in causes[cid].items() if v}}})
    await bulk_insert(session, LINEAGE, lineage)
    await bulk_insert(session, EVENT, events)


def typed(api: str, text: str | None) -> object:
    """Turn a lineage text back into the column's value (dates are stored as dates)."""
    if text is None:
        return None
    return dt.date.fromisoformat(text) if api == "dateOfBirth" else text


async def recompute(session: AsyncSession, causes: Mapping[int, Mapping[str, object]], *, actor: str,
                    now: dt.datetime, note: str | None = None, kind: str | None = None,
                    overrides: Mapping[int, Mapping[str, str | None]] | None = None) -> set[int]:
    """Bring stored golden records in line with their source records; return the ones still alive.

    The path of registrations and steward decisions (a few golden records): two prebuilt reads and
    small writes. The rematch makes the same decisions (`plan_golden`) for many golden records at once
    and writes them set-based (`write_golden`). Steward overrides live in the lineage (rule steward-override) and win over every rule until cleared.

    Args:
        causes: per golden record id, what happened to it ({"linked": [refs], "updated": [...], ...}),
            written into its event.
        kind: the event kind to write (default: derived from the causes).
        overrides: per golden record, API field -> new steward value (None clears the override).
    """
    ids = list(causes)
    if not ids:
        return set()
    members: dict[int, list[Contribution]] = defaultdict(list)
    for r in await session.execute(_MEMBERS, {"ids": ids}):
        members[r[1]].append(contribution(r))
    # the golden records and their lineage in one round trip (a row per lineage field)
    state = GoldenState()
    seal = sealer()
    for r in await session.execute(_CURRENT, {"ids": ids}):
        state.current[r.id] = r
        if r.field is not None:
            state.lineage[r.id][r.field] = (seal.open_lineage(r.field, r.lineage_value), r.source_record_id, r.rule,
                                            r.actor)
    writes = plan_golden(causes, members, state, actor=actor, now=now, note=note, kind=kind, overrides=overrides)
    if writes.updates:
        await session.execute(_UPDATE_CUSTOMER, [
            binds({"version": version, "status": status, "updated_at": now, **dict(zip(ATTRIBUTES, values, strict=True))},
                  _id=cid) for cid, version, status, *values in writes.updates])
    if writes.gone:
        await session.execute(delete(LINEAGE).where(tuple_(LINEAGE.c.customer_id, LINEAGE.c.field).in_(writes.gone)))
    await upsert_lineage(session, [dict(zip(_LINEAGE_COLUMNS, row, strict=True)) for row in writes.lineage])
    await bulk_insert(session, EVENT, writes.events)
    return writes.alive


async def upsert_lineage(session: AsyncSession, rows: list[dict]) -> None:
    """Write changed lineage rows in one statement: only the fields whose origin changed are touched."""
    if not rows:
        return
    dialect_insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(LINEAGE)
    stmt = stmt.on_conflict_do_update(index_elements=[LINEAGE.c.customer_id, LINEAGE.c.field], set_={
        c: stmt.excluded[c] for c in ("value", "source_record_id", "rule", "actor")})
    await session.execute(stmt, rows)


# --- set-based writing for many golden records at once (hub rematch) -----------------------------------------

_CUSTOMER_COLUMNS = ("version", "status", *ATTRIBUTES)
_LINEAGE_COLUMNS = ("customer_id", "field", "value", "source_record_id", "rule", "actor")


def contribution(row: Sequence) -> Contribution:
    """A MEMBERS_OF row (id, customer_id, trust, updated_at, *attributes) as survivorship sees it."""
    return Contribution(row[0], row[2], row[3], {a: v for a, v in zip(ATTRIBUTES, row[4:], strict=True) if v is not None})


@dataclass
class GoldenState:
    """Stored golden records and their lineage, as `recompute` compares them."""

    current: dict[int, object] = field(default_factory=dict)
    lineage: dict[int, dict[str, tuple]] = field(default_factory=lambda: defaultdict(dict))


@dataclass
class GoldenWrites:
    """What recomputing golden records writes, collected to be written set-based (`write_golden`)."""

    updates: list[tuple] = field(default_factory=list)       # (id, version, status, *ATTRIBUTES)
    lineage: list[tuple] = field(default_factory=list)       # _LINEAGE_COLUMNS
    gone: list[tuple[int, str]] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    alive: set[int] = field(default_factory=set)


async def read_golden(session: AsyncSession, ids: Sequence[int]) -> GoldenState:
    """The golden records and their lineage, in two statements (no row per field carrying the whole record)."""
    state = GoldenState()
    if not ids:
        return state
    state.current = {r.id: r for r in await session.execute(
        select(CUSTOMER.c.id, *(CUSTOMER.c[c] for c in _CUSTOMER_COLUMNS)).where(any_of(session, CUSTOMER.c.id, ids)))}
    seal = sealer()
    for cid, f, value, *rest in await session.execute(select(*(LINEAGE.c[c] for c in _LINEAGE_COLUMNS))
                                                      .where(any_of(session, LINEAGE.c.customer_id, ids))):
        state.lineage[cid][f] = (seal.open_lineage(f, value), *rest)
    return state


def plan_golden(causes: Mapping[int, Mapping[str, object]], members: Mapping[int, list[Contribution]],
                state: GoldenState, *, actor: str, now: dt.datetime, note: str | None = None,
                kind: str | None = None, into: GoldenWrites | None = None,
                overrides: Mapping[int, Mapping[str, str | None]] | None = None) -> GoldenWrites:
    """The decisions of recomputing these golden records, given their members and stored state (no I/O).

    overrides: per golden record, API field -> new steward value (None clears the override).
    """
    out = into if into is not None else GoldenWrites()
    rules = resolve_rules(get_settings().survivorship)
    seal = sealer()
    for cid in causes:
        cur = state.current[cid]
        if cur.status != ACTIVE:
            continue
        before = state.lineage.get(cid, {})
        kept = {f: (v, a) for f, (v, _, rule, a) in before.items() if rule == STEWARD_OVERRIDE}
        for f, value in (overrides or {}).get(cid, {}).items():
            if value is None:
                kept.pop(f, None)
            else:
                kept[f] = (value, actor)
        recs = members.get(cid, [])
        outcome = survive(recs, rules, {f: typed(f, v) for f, (v, _) in kept.items()}) if recs else None
        values = outcome.values if outcome else {}
        changed = {API_NAME[a]: {"before": as_text(getattr(cur, a)), "after": as_text(values.get(a))}
                   for a in ATTRIBUTES if getattr(cur, a) != values.get(a)}
        new_lineage = {f: (as_text(c.value), c.record_id, c.rule, kept[f][1] if c.rule == STEWARD_OVERRIDE else None)
                       for f, c in outcome.lineage.items()} if outcome else {}
        # compared in clear, stored sealed
        out.lineage += [(cid, f, seal.seal_lineage(f, row[0]), *row[1:]) for f, row in new_lineage.items()
                        if before.get(f) != row]
        out.gone += [(cid, f) for f in before if f not in new_lineage]
        what = {k: v for k, v in causes[cid].items() if v}
        status = ACTIVE if recs else RETIRED
        version = cur.version + 1 if changed or not recs else cur.version
        event_kind = kind or ("RETIRED" if not recs else "LINKED" if "linked" in what else
                              "UPDATED" if changed else "RECORD_UPDATED" if "updated" in what else
                              "RECORD_REMOVED" if "removed" in what else "RECOMPUTED")
        if changed or status != cur.status or version != cur.version:
            out.updates.append((cid, version, status, *(values.get(a) for a in ATTRIBUTES)))
        if changed or what or not recs or kind:
            out.events.append({"customer_id": cid, "kind": event_kind, "at": now, "actor": actor, "note": note,
                               "changes": {"fields": changed, "version": version, **what}})
        if recs:
            out.alive.add(cid)
    return out


async def write_golden(session: AsyncSession, writes: GoldenWrites, *, now: dt.datetime) -> None:
    """Write recomputed golden records, lineage and events: one statement each, whatever their number."""
    if writes.updates:
        seal = sealer()
        # sealed here: the SQLite form of value_rows (one JSON parameter) bypasses the column types
        cols = list(zip(*[(cid, version, status, *(None if v is None else seal.stored(a, v) if a in SEALABLE else v
                                                    for a, v in zip(ATTRIBUTES, values, strict=True)))
                          for cid, version, status, *values in writes.updates], strict=True))
        v = value_rows(session, {"id": (BigInteger, cols[0]), **{
            c: (CUSTOMER.c[c].type, col) for c, col in zip(_CUSTOMER_COLUMNS, cols[1:], strict=True)}})
        await session.execute(update(CUSTOMER).where(CUSTOMER.c.id == v.c.id).values(
            updated_at=now, **{c: v.c[c] for c in _CUSTOMER_COLUMNS}))
    if writes.gone:
        cols = list(zip(*writes.gone, strict=True))
        v = value_rows(session, {"customer_id": (BigInteger, cols[0]), "field": (String, cols[1])})
        await session.execute(delete(LINEAGE).where(tuple_(LINEAGE.c.customer_id, LINEAGE.c.field).in_(
            select(v.c.customer_id, v.c.field))))
    if writes.lineage:
        v = value_rows(session, {n: (BigInteger if n in ("customer_id", "source_record_id") else String, col)
                                 for n, col in zip(_LINEAGE_COLUMNS, zip(*writes.lineage, strict=True), strict=True)})
        dialect_insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        # WHERE true: SQLite needs it to read ON CONFLICT after INSERT ... SELECT
        stmt = dialect_insert(LINEAGE).from_select(_LINEAGE_COLUMNS, select(*(v.c[n] for n in _LINEAGE_COLUMNS))
                                                   .where(true()))
        await session.execute(stmt.on_conflict_do_update(
            index_elements=[LINEAGE.c.customer_id, LINEAGE.c.field],
            set_={c: stmt.excluded[c] for c in ("value", "source_record_id", "rule", "actor")}))
    await bulk_insert(session, EVENT, writes.events)
