"""Data quality at a glance: per source system and attribute, computed with a few set-based queries.

Every figure is an aggregate over one table (source records, golden records, events, match candidates),
read in one pass each; nothing is fetched row by row. At a million records this is a handful of scans,
so callers cache the answer (schema/quality.py) rather than run it per page view.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from hub.golden.attributes import API_NAME, ATTRIBUTES, INVALID_BIT
from hub.models import ACTIVE, Customer, Event, MatchCandidate, MatchModelVersion, SourceRecord
from hub.models.matching import ACCEPTED, PENDING, REJECTED
from hub.models.types import utcnow

SR, CUSTOMER, EVENT, MC = SourceRecord.__table__, Customer.__table__, Event.__table__, MatchCandidate.__table__
MODEL = MatchModelVersion.__table__

# records-per-golden-record histogram: 1, 2, ... DUPLICATE_CAP-1, then DUPLICATE_CAP or more
DUPLICATE_CAP = 10
# days of match outcomes and steward decisions shown
DAYS = 30
# pending-queue age buckets: (label, upper bound in seconds)
AGE_BUCKETS = (("< 1 h", 3600), ("1 h - 1 d", 86400), ("1 - 7 d", 7 * 86400), ("7 - 30 d", 30 * 86400),
               ("> 30 d", None))


@dataclass
class AttributeQuality:
    attribute: str       # API name
    present: int         # records holding a standardised value
    completeness: float  # present / records
    invalid: int         # values sent but refused by validation (kept raw only)
    validity: float | None  # valid / sent; None when no record sent the attribute


@dataclass
class SystemQuality:
    system: str
    records: int
    golden_records: int
    records_per_golden: float
    latest_update_at: dt.datetime | None
    freshness_seconds: float | None
    invalid_values: int
    attributes: list[AttributeQuality] = field(default_factory=list)


@dataclass
class Report:
    computed_at: dt.datetime
    seconds: float
    source_records: int
    golden_records: int
    pending_candidates: int
    oldest_pending_at: dt.datetime | None
    model: dict[str, Any] | None
    systems: list[SystemQuality]
    duplicates: list[tuple[int, int]]              # (records per golden record, golden records)
    outcomes: list[tuple[str, int, int, int]]      # (day, created, linked, queued)
    throughput: list[tuple[str, int, int]]         # (day, merged, not a match)
    queue_age: list[tuple[str, int]]               # (bucket, candidates)

    @property
    def records_per_golden(self) -> float:
        return self.source_records / self.golden_records if self.golden_records else 0.0


def _day(session: AsyncSession, column) -> Any:
    """The UTC calendar day of a timestamp column, as ISO text, in either dialect."""
    if session.bind.dialect.name == "postgresql":
        return sa.func.to_char(column, "YYYY-MM-DD")
    return sa.func.substr(column, 1, 10)  # SQLite stores 'YYYY-MM-DD HH:MM:SS' in UTC


def _count_if(condition) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _refused(attribute: str) -> Any:
    """The record's value of this attribute was sent but refused by validation (SourceRecord.invalid_fields)."""
    return SR.c.invalid_fields.op("&")(INVALID_BIT[attribute]) != 0


async def _systems(session: AsyncSession, now: dt.datetime) -> list[SystemQuality]:
    columns = [sa.func.count(SR.c[a]).label(f"present_{a}") for a in ATTRIBUTES]
    # one test of a small integer per attribute and row: no JSON is parsed
    columns += [_count_if(_refused(a)).label(f"invalid_{a}") for a in ATTRIBUTES]
    stmt = (sa.select(SR.c.system, sa.func.count().label("records"),
                      sa.func.count(sa.distinct(SR.c.customer_id)).label("golden"),
                      sa.func.max(SR.c.updated_at).label("latest"), *columns)
            .group_by(SR.c.system).order_by(SR.c.system))
    out = []
    for r in (await session.execute(stmt)).mappings():
        attrs = []
        for a in ATTRIBUTES:
            invalid = int(r[f"invalid_{a}"])
            sent = int(r[f"present_{a}"]) + invalid  # a refused value is left out of the column
            attrs.append(AttributeQuality(API_NAME[a], int(r[f"present_{a}"]), r[f"present_{a}"] / r["records"],
                                          invalid, (sent - invalid) / sent if sent else None))
        latest = r["latest"]
        out.append(SystemQuality(r["system"], r["records"], r["golden"], r["records"] / r["golden"], latest,
                                 (now - latest).total_seconds() if latest else None,
                                 sum(a.invalid for a in attrs), attrs))
    return out


async def _duplicates(session: AsyncSession) -> list[tuple[int, int]]:
    per = (sa.select(sa.func.least(sa.func.count(), DUPLICATE_CAP) if session.bind.dialect.name == "postgresql"
                     else sa.func.min(sa.func.count(), DUPLICATE_CAP))
           .select_from(SR).group_by(SR.c.customer_id)).subquery()
    size = per.c[0]
    rows = await session.execute(sa.select(size, sa.func.count()).group_by(size).order_by(size))
    return [(int(n), int(c)) for n, c in rows]


async def _outcomes(session: AsyncSession, since: dt.datetime) -> list[tuple[str, int, int, int]]:
    day = _day(session, EVENT.c.at)
    events = await session.execute(
        sa.select(day, EVENT.c.kind, sa.func.count())
        .where(EVENT.c.kind.in_(("CREATED", "LINKED")), EVENT.c.at >= since).group_by(day, EVENT.c.kind))
    by: dict[str, list[int]] = {}
    for d, kind, n in events:
        by.setdefault(d, [0, 0, 0])[0 if kind == "CREATED" else 1] += n
    qday = _day(session, MC.c.created_at)
    for d, n in await session.execute(sa.select(qday, sa.func.count()).where(MC.c.created_at >= since)
                                      .group_by(qday)):
        by.setdefault(d, [0, 0, 0])[2] += n
    return [(d, *v) for d, v in sorted(by.items())]


async def _throughput(session: AsyncSession, since: dt.datetime) -> list[tuple[str, int, int]]:
    day = _day(session, MC.c.resolved_at)
    rows = await session.execute(
        sa.select(day, MC.c.status, sa.func.count())
        .where(MC.c.status.in_((ACCEPTED, REJECTED)), MC.c.resolved_at >= since).group_by(day, MC.c.status))
    by: dict[str, list[int]] = {}
    for d, status, n in rows:
        by.setdefault(d, [0, 0])[0 if status == ACCEPTED else 1] += n
    return [(d, *v) for d, v in sorted(by.items())]


async def _queue(session: AsyncSession, now: dt.datetime) -> tuple[int, dt.datetime | None, list[tuple[str, int]]]:
    bounds = [(label, now - dt.timedelta(seconds=limit) if limit else None) for label, limit in AGE_BUCKETS]
    columns = []
    newer_than = None
    for label, edge in bounds:
        cond = MC.c.created_at >= edge if edge is not None else sa.true()
        if newer_than is not None:
            cond = sa.and_(cond, MC.c.created_at < newer_than)
        columns.append(_count_if(cond).label(label))
        newer_than = edge
    row = (await session.execute(sa.select(sa.func.count(), sa.func.min(MC.c.created_at), *columns)
                                 .where(MC.c.status == PENDING))).one()
    return int(row[0]), row[1], [(label, int(n)) for (label, _), n in zip(bounds, row[2:], strict=True)]


async def _model(session: AsyncSession, version: int | None) -> dict[str, Any] | None:
    if version is None:
        return None
    row = (await session.execute(sa.select(MODEL.c.id, MODEL.c.created_at, MODEL.c.records, MODEL.c.note)
                                 .where(MODEL.c.id == version))).first()
    return dict(row._mapping) if row is not None else None


async def data_quality(*, session: AsyncSession, model_version: int | None) -> Report:
    """Compute the data-quality report: one aggregate query per measure."""
    started = time.perf_counter()
    now = utcnow()
    since = now - dt.timedelta(days=DAYS)
    systems = await _systems(session, now)
    golden = int(await session.scalar(sa.select(sa.func.count()).select_from(CUSTOMER)
                                      .where(CUSTOMER.c.status == ACTIVE)))
    pending, oldest, ages = await _queue(session, now)
    report = Report(computed_at=now, seconds=0.0, source_records=sum(s.records for s in systems),
                    golden_records=golden, pending_candidates=pending, oldest_pending_at=oldest,
                    model=await _model(session, model_version), systems=systems,
                    duplicates=await _duplicates(session), outcomes=await _outcomes(session, since),
                    throughput=await _throughput(session, since), queue_age=ages)
    report.seconds = time.perf_counter() - started
    return report
