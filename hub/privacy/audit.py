"""The audit of sensitive reads: who read which sensitive field of which customer, when, in which request.

Reads are noted in memory while a request resolves (a tuple appended per value served) and handed to
the process's `ReadAudit` at the end of the request; a background task writes what is queued every
`HUB_AUDIT_FLUSH_MS` milliseconds, or at once when `HUB_AUDIT_BATCH` entries are waiting, with one bulk
insert per flush (COPY on PostgreSQL). Nothing waits on the database on the request path. Shutdown
flushes what is left. If the database refuses a flush, the entries stay queued (up to `MAX_QUEUED`, then
the oldest are dropped, and that is logged with the count only) and the next flush retries.

Entries never hold a value: only the field's name, whether it was served masked, and ids.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import Database, bulk_insert
from hub.models import ReadAudit, utcnow

log = logging.getLogger("hub")
AUDIT = ReadAudit.__table__
MAX_QUEUED = 1_000_000


@dataclass(frozen=True, slots=True)
class Read:
    """One sensitive value served: whose (customer id), which attribute, through which type, masked or not."""

    customer_id: int
    field: str
    via: str
    masked: bool


class ReadAuditLog:
    """The process's queue of read-audit entries and the task that writes them."""

    def __init__(self, db: Database, *, flush_ms: int = 200, batch: int = 1000, enabled: bool = True) -> None:
        self.db, self.enabled = db, enabled
        self.interval, self.batch = max(flush_ms, 1) / 1000, max(batch, 1)
        self._queue: list[dict] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._flush_lock = asyncio.Lock()
        self._closed = False

    def record(self, reads: Iterable[Read], *, subject: str, role: str, request_id: str | None,
               at: dt.datetime | None = None) -> None:
        """Queue the reads of one request (no I/O); the background task writes them."""
        if not self.enabled:
            return
        at = at or utcnow()
        before = len(self._queue)
        self._queue.extend({"at": at, "subject": subject, "role": role, "customer_id": r.customer_id,
                            "field": r.field, "via": r.via, "masked": r.masked, "request_id": request_id}
                           for r in reads)
        if len(self._queue) == before:
            return
        if len(self._queue) > MAX_QUEUED:
            dropped = len(self._queue) - MAX_QUEUED
            del self._queue[:dropped]
            log.error("read audit queue full: %d oldest entries dropped", dropped)
        if len(self._queue) >= self.batch:
            self._wake.set()
        self._ensure_task()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            if self._closed:
                return
            self._task = asyncio.get_running_loop().create_task(self._run(), name="read-audit-flush")

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if not self._queue:
                if self._closed:
                    return
                continue
            try:
                await self.flush()
            except Exception as e:  # noqa: BLE001 - the entries stay queued; the next round retries
                log.warning("read audit flush failed (%s); %d entries kept for the next try",
                            type(e).__name__, len(self._queue))
                await asyncio.sleep(self.interval)

    async def flush(self) -> int:
        """Write every queued entry now (one bulk insert); return how many."""
        async with self._flush_lock:
            if not self._queue:
                return 0
            rows, self._queue = self._queue, []
            try:
                async with self.db.write(lock=False) as session:
                    await bulk_insert(session, AUDIT, rows)
            except BaseException:
                self._queue[:0] = rows  # back in front, in order
                raise
            return len(rows)

    async def close(self) -> None:
        """Stop the task and write what is left (at shutdown)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as e:  # noqa: BLE001
            log.error("read audit: %d entries could not be written at shutdown (%s)", len(self._queue),
                      type(e).__name__)


async def write_reads(session: AsyncSession, reads: Sequence[Read], *, subject: str, role: str,
                      request_id: str | None = None) -> None:
    """Write reads at once, in the caller's transaction (the command line's subject export)."""
    now = utcnow()
    await bulk_insert(session, AUDIT, [{"at": now, "subject": subject, "role": role, "customer_id": r.customer_id,
                                        "field": r.field, "via": r.via, "masked": r.masked,
                                        "request_id": request_id} for r in reads])


def reads_query(customer_ids: Sequence[int], field: str | None = None, *, after: int = 0, first: int | None = None):
    """Audit entries of golden records (and optionally one field), oldest first, keyset-paged by id."""
    stmt = select(AUDIT).where(AUDIT.c.customer_id.in_(customer_ids), AUDIT.c.id > after)
    if field is not None:
        stmt = stmt.where(AUDIT.c.field == field)
    stmt = stmt.order_by(AUDIT.c.id)
    return stmt.limit(first) if first is not None else stmt
