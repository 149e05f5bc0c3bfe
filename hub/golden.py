"""Recompute golden records from their source records, write lineage and the audit trail."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.attributes import API_NAME, ATTRIBUTES, as_text
from hub.config import get_settings
from hub.models import ACTIVE, RETIRED, Customer, Event, Lineage, SourceRecord, SourceSystem
from hub.survivorship import Contribution, Outcome, resolve_rules, survive

SR, CUSTOMER, LINEAGE, EVENT = (SourceRecord.__table__, Customer.__table__, Lineage.__table__, Event.__table__)


def binds(values: Mapping[str, object], **keys: object) -> dict[str, object]:
    """Name update parameters apart from the columns they set (SQLAlchemy reserves the column names)."""
    return {**{"b_" + k: v for k, v in values.items()}, **keys}


async def _trust(session: AsyncSession) -> dict[str, int]:
    return dict((await session.execute(select(SourceSystem.name, SourceSystem.trust))).all())


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
            "fields": {API_NAME[a]: as_text(v) for a, v in outcome.values.items()},
            **{k: v for k, v in causes[cid].items() if v}}})
    if lineage:
        await session.execute(insert(LINEAGE), lineage)
    if events:
        await session.execute(insert(EVENT), events)


async def recompute(session: AsyncSession, causes: Mapping[int, Mapping[str, list]], *, actor: str,
                    now: dt.datetime, note: str | None = None) -> set[int]:
    """Bring stored golden records in line with their source records; return the ones still alive.

    Args:
        causes: per golden record id, what happened to it ({"linked": [refs], "updated": [...], ...}),
            written into its event.
    """
    ids = list(causes)
    if not ids:
        return set()
    rules = resolve_rules(get_settings().survivorship)
    trust = await _trust(session)
    members: dict[int, list[Contribution]] = defaultdict(list)
    rows = await session.execute(
        select(SR.c.id, SR.c.customer_id, SR.c.system, SR.c.updated_at, *(SR.c[a] for a in ATTRIBUTES))
        .where(SR.c.customer_id.in_(bindparam("ids", expanding=True))), {"ids": ids})
    for r in rows:
        m = r._mapping
        members[r.customer_id].append(Contribution(r.id, trust.get(r.system, 50), r.updated_at,
                                                   {a: m[a] for a in ATTRIBUTES if m[a] is not None}))
    current = {r.id: r for r in await session.execute(
        select(CUSTOMER).where(CUSTOMER.c.id.in_(bindparam("ids", expanding=True))), {"ids": ids})}
    old_lineage: dict[int, dict[str, tuple]] = defaultdict(dict)
    for r in await session.execute(select(LINEAGE).where(LINEAGE.c.customer_id.in_(bindparam("ids", expanding=True))),
                                   {"ids": ids}):
        old_lineage[r.customer_id][r.field] = (r.value, r.source_record_id, r.rule)

    customer_updates, lineage_rows, relineage, events = [], [], [], []
    alive: set[int] = set()
    for cid in ids:
        cur = current[cid]
        if cur.status != ACTIVE:
            continue
        recs = members.get(cid, [])
        outcome = survive(recs, rules) if recs else None
        values = outcome.values if outcome else {}
        changed = {API_NAME[a]: {"before": as_text(getattr(cur, a)), "after": as_text(values.get(a))}
                   for a in ATTRIBUTES if getattr(cur, a) != values.get(a)}
        new_lineage = {f: (as_text(c.value), c.record_id, c.rule) for f, c in outcome.lineage.items()} if outcome else {}
        if new_lineage != old_lineage.get(cid, {}):
            relineage.append(cid)
            lineage_rows += [{"customer_id": cid, "field": f, "value": v, "source_record_id": rid, "rule": rule}
                             for f, (v, rid, rule) in new_lineage.items()]
        what = {k: v for k, v in causes[cid].items() if v}
        status = ACTIVE if recs else RETIRED
        version = cur.version + 1 if changed or not recs else cur.version
        kind = ("RETIRED" if not recs else "LINKED" if "linked" in what else
                "UPDATED" if changed else "RECORD_UPDATED" if "updated" in what else
                "RECORD_REMOVED" if "removed" in what else "RECOMPUTED")
        changes = {"fields": changed, **what}
        if changed or status != cur.status or version != cur.version:
            customer_updates.append(binds({"version": version, "status": status, "updated_at": now,
                                            **{a: values.get(a) for a in ATTRIBUTES}}, _id=cid))
        if changed or what or not recs:
            events.append({"customer_id": cid, "kind": kind, "at": now, "actor": actor, "note": note,
                           "changes": changes})
        if recs:
            alive.add(cid)
    if customer_updates:
        await session.execute(update(CUSTOMER).where(CUSTOMER.c.id == bindparam("_id")).values(
            {c: bindparam("b_" + c) for c in ("version", "status", "updated_at", *ATTRIBUTES)}), customer_updates)
    if relineage:
        await session.execute(delete(LINEAGE).where(LINEAGE.c.customer_id.in_(bindparam("ids", expanding=True))),
                              {"ids": relineage})
    if lineage_rows:
        await session.execute(insert(LINEAGE), lineage_rows)
    if events:
        await session.execute(insert(EVENT), events)
    return alive
