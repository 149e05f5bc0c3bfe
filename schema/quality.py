"""Query.dataQuality: the data-quality dashboard's numbers, computed by hub.quality and cached in-process."""
from __future__ import annotations

import asyncio
import datetime as dt
import time

import strawberry

from hub.quality.dashboard import Report, data_quality
from schema.errors import operation


@strawberry.type(description="How complete and valid one attribute is in one source system's records.")
class AttributeQuality:
    attribute: str = strawberry.field(description="Attribute name as in PersonAttributes, e.g. email.")
    present: int = strawberry.field(description="Records holding a standardised value.")
    completeness: float = strawberry.field(description="present / records, 0..1.")
    invalid: int = strawberry.field(description="Values sent that failed validation (kept raw, left out).")
    validity: float | None = strawberry.field(description="Valid share of the values sent, 0..1; null when "
                                                          "no record sent the attribute.")


@strawberry.type
class SystemQuality:
    system: str
    records: int
    golden_records: int = strawberry.field(description="Golden records holding at least one of its records.")
    records_per_golden: float
    latest_update_at: dt.datetime | None
    freshness_seconds: float | None = strawberry.field(description="Age of the latest update, in seconds.")
    invalid_values: int
    attributes: list[AttributeQuality]


@strawberry.type
class QualityTotals:
    source_records: int
    golden_records: int
    records_per_golden: float
    pending_candidates: int
    oldest_pending_at: dt.datetime | None


@strawberry.type
class DuplicateBucket:
    records_per_golden: int = strawberry.field(description="Records per golden record (the last bucket: this many "
                                                           "or more).")
    golden_records: int


@strawberry.type
class MatchOutcomeDay:
    day: str
    created: int = strawberry.field(description="Golden records created (a record matched nobody).")
    linked: int = strawberry.field(description="Golden records a new record linked to.")
    queued: int = strawberry.field(description="Match candidates queued for review.")


@strawberry.type
class StewardDay:
    day: str
    merged: int
    not_a_match: int


@strawberry.type
class QueueAgeBucket:
    bucket: str
    candidates: int


@strawberry.type
class MatchModelInUse:
    id: int
    created_at: dt.datetime
    records: int
    note: str | None


@strawberry.type(description="The state of the hub's customer data at a glance, computed with set-based SQL.")
class DataQuality:
    computed_at: dt.datetime
    seconds: float = strawberry.field(description="How long computing it took.")
    cached_seconds: int = strawberry.field(description="How long it is served from memory before recomputing.")
    model_in_use: MatchModelInUse | None = strawberry.field(description="The stored match model real-time "
                                                                        "matching uses; null: the shipped default.")
    totals: QualityTotals
    systems: list[SystemQuality]
    duplicates: list[DuplicateBucket]
    match_outcomes: list[MatchOutcomeDay] = strawberry.field(description="Per UTC day, the last 30 days.")
    steward_throughput: list[StewardDay] = strawberry.field(description="Decisions per UTC day, the last 30 days.")
    queue_age: list[QueueAgeBucket]


def _shape(report: Report, ttl: int) -> DataQuality:
    m = report.model
    return DataQuality(
        computed_at=report.computed_at, seconds=report.seconds, cached_seconds=ttl,
        model_in_use=MatchModelInUse(id=m["id"], created_at=m["created_at"], records=m["records"], note=m["note"])
        if m else None,
        totals=QualityTotals(source_records=report.source_records, golden_records=report.golden_records,
                             records_per_golden=report.records_per_golden,
                             pending_candidates=report.pending_candidates, oldest_pending_at=report.oldest_pending_at),
        systems=[SystemQuality(system=s.system, records=s.records, golden_records=s.golden_records,
                               records_per_golden=s.records_per_golden, latest_update_at=s.latest_update_at,
                               freshness_seconds=s.freshness_seconds, invalid_values=s.invalid_values,
                               attributes=[AttributeQuality(attribute=a.attribute, present=a.present,
                                                            completeness=a.completeness, invalid=a.invalid,
                                                            validity=a.validity) for a in s.attributes])
                 for s in report.systems],
        duplicates=[DuplicateBucket(records_per_golden=n, golden_records=c) for n, c in report.duplicates],
        match_outcomes=[MatchOutcomeDay(day=d, created=a, linked=b, queued=c) for d, a, b, c in report.outcomes],
        steward_throughput=[StewardDay(day=d, merged=a, not_a_match=b) for d, a, b in report.throughput],
        queue_age=[QueueAgeBucket(bucket=b, candidates=n) for b, n in report.queue_age])


class QualityCache:
    """One report per process, recomputed when older than the TTL by one caller; the others get the last one."""

    def __init__(self) -> None:
        self.report: Report | None = None
        self.at = 0.0
        self.lock = asyncio.Lock()

    async def get(self, compute, ttl: int) -> Report:
        if self.report is not None and (time.monotonic() - self.at < ttl or self.lock.locked()):
            return self.report  # fresh, or being recomputed: the last report meanwhile (seconds at 1M records)
        async with self.lock:
            if self.report is None or time.monotonic() - self.at >= ttl:
                self.report = await compute()
                self.at = time.monotonic()
            return self.report


@strawberry.type
class QualityQuery:
    @strawberry.field(description="Data quality per source system and attribute, match outcomes, the review queue "
                                  "and steward throughput; cached for HUB_QUALITY_CACHE_SECONDS.")
    @operation
    async def data_quality(self, info: strawberry.Info) -> DataQuality:
        ctx = info.context
        services = ctx.services
        if services.quality_cache is None:
            services.quality_cache = QualityCache()
        cache = services.quality_cache
        ttl = services.settings.quality_cache_seconds

        async def compute() -> Report:
            async with ctx.db.session() as session:
                return await data_quality(session=session, model_version=getattr(services.scorer, "version", None))

        return _shape(await cache.get(compute, ttl), ttl)
