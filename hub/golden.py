"""Recompute golden records from their source records, write lineage and the audit trail."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.attributes import API_NAME, ATTRIBUTES, as_text
from hub.config import get_settings
from hub.db import bulk_insert
from hub.models import ACTIVE, RETIRED, Customer, Event, Lineage, SourceRecord, SourceSystem
from hub.survivorship import STEWARD_OVERRIDE, Contribution, Outcome, resolve_rules, survive

SR, CUSTOMER, LINEAGE, EVENT, SYSTEM = (SourceRecord.__table__, Customer.__table__, Lineage.__table__,
                                       Event.__table__, SourceSystem.__table__)


# statements of the hot path, built once (building and keying a statement costs more than its round trip)
_MEMBERS = (select(SR.c.id, SR.c.customer_id, SYSTEM.c.trust, SR.c.updated_at, *(SR.c[a] for a in ATTRIBUTES))
            .join(SYSTEM, SYSTEM.c.name == SR.c.system).where(SR.c.customer_id.in_(bindparam("ids", expanding=True))))
_CURRENT = (select(CUSTOMER, LINEAGE.c.field, LINEAGE.c.value.label("lineage_value"), LINEAGE.c.source_record_id,
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
    for cid, outcome in outcomes.items():
        lineage += [{"customer_id": cid, "field": f, "value": as_text(c.value), "source_record_id": record_of[c.record_id],
                     "rule": c.rule} for f, c in outcome.lineage.items()]
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

    Steward overrides live in the lineage (rule steward-override) and win over every rule until cleared.

    Args:
        causes: per golden record id, what happened to it ({"linked": [refs], "updated": [...], ...}),
            written into its event.
        kind: the event kind to write (default: derived from the causes).
        overrides: per golden record, API field -> new steward value (None clears the override).
    """
    ids = list(causes)
    if not ids:
        return set()
    rules = resolve_rules(get_settings().survivorship)
    members: dict[int, list[Contribution]] = defaultdict(list)
    rows = await session.execute(_MEMBERS, {"ids": ids})
    for r in rows:
        m = r._mapping
        members[r.customer_id].append(Contribution(r.id, r.trust, r.updated_at,
                                                   {a: m[a] for a in ATTRIBUTES if m[a] is not None}))
    # the golden records and their lineage in one round trip (a row per lineage field)
    current, old_lineage = {}, defaultdict(dict)
    for r in await session.execute(_CURRENT, {"ids": ids}):
        current[r.id] = r
        if r.field is not None:
            old_lineage[r.id][r.field] = (r.lineage_value, r.source_record_id, r.rule, r.actor)

    customer_updates, lineage_rows, gone, events = [], [], [], []
    alive: set[int] = set()
    for cid in ids:
        cur = current[cid]
        if cur.status != ACTIVE:
            continue
        kept = {f: (v, a) for f, (v, _, rule, a) in old_lineage.get(cid, {}).items() if rule == STEWARD_OVERRIDE}
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
        before = old_lineage.get(cid, {})
        lineage_rows += [{"customer_id": cid, "field": f, "value": v, "source_record_id": rid, "rule": rule,
                          "actor": who} for f, (v, rid, rule, who) in new_lineage.items()
                         if before.get(f) != (v, rid, rule, who)]
        gone += [(cid, f) for f in before if f not in new_lineage]
        what = {k: v for k, v in causes[cid].items() if v}
        status = ACTIVE if recs else RETIRED
        version = cur.version + 1 if changed or not recs else cur.version
        event_kind = kind or ("RETIRED" if not recs else "LINKED" if "linked" in what else
                              "UPDATED" if changed else "RECORD_UPDATED" if "updated" in what else
                              "RECORD_REMOVED" if "removed" in what else "RECOMPUTED")
        if changed or status != cur.status or version != cur.version:
            customer_updates.append(binds({"version": version, "status": status, "updated_at": now,
                                            **{a: values.get(a) for a in ATTRIBUTES}}, _id=cid))
        if changed or what or not recs or kind:
            events.append({"customer_id": cid, "kind": event_kind, "at": now, "actor": actor, "note": note,
                           "changes": {"fields": changed, "version": version, **what}})
        if recs:
            alive.add(cid)
    if customer_updates:
        await session.execute(_UPDATE_CUSTOMER, customer_updates)
    if gone:
        await session.execute(delete(LINEAGE).where(tuple_(LINEAGE.c.customer_id, LINEAGE.c.field).in_(gone)))
    await upsert_lineage(session, lineage_rows)
    await bulk_insert(session, EVENT, events)
    return alive


async def upsert_lineage(session: AsyncSession, rows: list[dict]) -> None:
    """Write changed lineage rows in one statement: only the fields whose origin changed are touched."""
    if not rows:
        return
    dialect_insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(LINEAGE)
    stmt = stmt.on_conflict_do_update(index_elements=[LINEAGE.c.customer_id, LINEAGE.c.field], set_={
        c: stmt.excluded[c] for c in ("value", "source_record_id", "rule", "actor")})
    await session.execute(stmt, rows)
