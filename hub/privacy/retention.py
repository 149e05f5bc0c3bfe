"""Retention: a source system may declare how long the hub keeps its records; `hub retention run` removes
the records past it, with the completeness of an erasure.

A record is past its system's period when its `updatedAt` (the source's own last change, else the time
the hub received it) is older than `retentionDays`. Per batch (one write transaction each):

* a golden record that keeps other records loses the expired ones: they and their blocking keys are
  deleted, the golden record is recomputed (lineage follows), and the expired records' values and keys
  are scrubbed from its history (values it still holds through its other records are kept);
* a golden record whose last records expire is erased as by `eraseCustomer` (hub.privacy.erasure), with a
  tombstone of kind RETENTION.

Retention issues no erasure tasks (the source declared the period and applies it itself) and blocks
nothing: the source may send the record again, and it is then a new record.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, String, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.config import Settings
from hub.db import Database, any_of, value_rows
from hub.golden.attributes import API_NAME, ATTRIBUTES
from hub.golden.values import recompute
from hub.models import ACTIVE, BlockingKey, Customer, SourceRecord, SourceSystem, utcnow
from hub.models.erasure import RETENTION
from hub.privacy.erasure import add_value, erase, forget_names, scrub_history

SR, SYSTEM, BK, CUSTOMER = (SourceRecord.__table__, SourceSystem.__table__, BlockingKey.__table__,
                            Customer.__table__)
ACTOR = "retention"


@dataclass
class RetentionReport:
    records: int = 0                 # source records removed
    recomputed: int = 0              # golden records that kept other records
    erased: int = 0                  # golden records erased (their last records expired)
    per_system: dict[str, int] = field(default_factory=dict)
    batches: int = 0


async def expired(*, session, now: dt.datetime, limit: int, systems: list,
                  after: dict[str, int] | None = None) -> list[tuple[int, str]]:
    """Up to `limit` records past their system's retention period, in id order: (id, system).

    `after` (system -> last id seen) lets a run walk each system's records once instead of from the start
    in every batch; systems walked to the end are dropped from it.
    """
    out: list[tuple[int, str]] = []
    for name, days in systems:
        if len(out) >= limit or (after is not None and name not in after):
            continue
        cutoff = now - dt.timedelta(days=days)
        start = after.get(name, 0) if after is not None else 0
        want = limit - len(out)
        found = [(rid, name) for (rid,) in await session.execute(
            select(SR.c.id).where(SR.c.system == name, SR.c.id > start, SR.c.updated_at < cutoff)
            .order_by(SR.c.id).limit(want))]
        out += found
        if after is not None:
            if len(found) < want:
                after.pop(name)
            else:
                after[name] = found[-1][0]
    return out


async def remove_records(session: AsyncSession, record_ids: list[int], *, settings: Settings, now: dt.datetime,
                         note: str, report: RetentionReport) -> None:
    """Remove these records with the completeness of an erasure, in the caller's transaction."""
    rows = (await session.execute(select(SR.c.id, SR.c.customer_id, SR.c.system, SR.c.key, SR.c.raw,
                                         *(SR.c[a] for a in ATTRIBUTES)).where(any_of(session, SR.c.id, record_ids))
                                  )).all()
    if not rows:
        return
    by_customer: dict[int, list] = defaultdict(list)
    for r in rows:
        by_customer[r.customer_id].append(r)
    left = dict((await session.execute(
        select(SR.c.customer_id, func.count()).where(any_of(session, SR.c.customer_id, list(by_customer)),
                                                     ~any_of(session, SR.c.id, record_ids))
        .group_by(SR.c.customer_id))).all())
    status = dict((await session.execute(select(CUSTOMER.c.id, CUSTOMER.c.status).where(
        any_of(session, CUSTOMER.c.id, list(by_customer))))).all())
    gone = sorted(c for c in by_customer if not left.get(c) and status.get(c) == ACTIVE)
    keep = sorted(c for c in by_customer if c not in gone)
    for r in rows:
        report.per_system[r.system] = report.per_system.get(r.system, 0) + 1
    report.records += len(rows)
    if gone:  # their last records expire: erase them whole (tombstone RETENTION, no tasks, no blocks)
        await erase(session, gone, actor=ACTOR, note=note, kind=RETENTION, settings=settings, tasks=False,
                    block=False, now=now)
        report.erased += len(gone)
    if not keep:
        return
    ids = [r.id for c in keep for r in by_customer[c]]
    values: dict[str, set[str]] = defaultdict(set)
    keys = set()
    for c in keep:
        for r in by_customer[c]:
            keys.add((r.system, r.key))
            for a in ATTRIBUTES:
                add_value(values, API_NAME[a], r._mapping[a])
            for name, v in (r.raw or {}).items():
                add_value(values, name, v if isinstance(v, str) else str(v))
    await session.execute(delete(BK).where(any_of(session, BK.c.source_record_id, ids)))
    await session.execute(delete(SR).where(any_of(session, SR.c.id, ids)))
    per_system: dict[str, int] = defaultdict(int)
    for c in keep:
        for r in by_customer[c]:
            per_system[r.system] += 1
    v = value_rows(session, {"name": (String, list(per_system)), "n": (BigInteger, list(per_system.values()))})
    await session.execute(update(SYSTEM).where(SYSTEM.c.name == v.c.name)
                          .values(record_count=SYSTEM.c.record_count - v.c.n))
    causes = {c: {"removed": [{"system": r.system, "key": r.key} for r in by_customer[c]], "reason": RETENTION}
              for c in keep}
    await recompute(session, causes, actor=ACTOR, now=now, note=note)
    # the recompute's own event names the expired records: scrubbed with the rest of the history
    await scrub_history(session, keep, values, keys)
    remaining = [dict(zip(ATTRIBUTES, row, strict=True)) for row in await session.execute(
        select(*(SR.c[a] for a in ATTRIBUTES)).where(any_of(session, SR.c.customer_id, keep)))]
    await forget_names(session, [{a: r._mapping[a] for a in ATTRIBUTES} for c in keep for r in by_customer[c]],
                       remaining)
    report.recomputed += len(keep)


async def run_retention(*, db: Database, settings: Settings, batch: int = 1000, now: dt.datetime | None = None,
                        progress: Callable[[str, int, int | None], None] | None = None) -> RetentionReport:
    """Remove every record past its system's retention period, `batch` records per transaction."""
    now = now or utcnow()
    report = RetentionReport()
    async with db.session() as session:
        systems = (await session.execute(select(SYSTEM.c.name, SYSTEM.c.retention_days)
                                         .where(SYSTEM.c.retention_days.is_not(None)))).all()
    if not systems:
        return report
    after = {name: 0 for name, _ in systems}
    while after:
        async with db.write() as session:
            found = await expired(session=session, now=now, limit=batch, systems=systems, after=after)
            if not found:
                break
            note = "retention period of " + ", ".join(sorted({f"{s} ({d} days)" for s, d in systems
                                                              if any(s == x for _, x in found)}))
            await remove_records(session, [rid for rid, _ in found], settings=settings, now=now, note=note,
                                 report=report)
        report.batches += 1
        if progress is not None:
            progress("records removed", report.records, None)
    return report
