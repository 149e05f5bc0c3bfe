"""Following the change stream: every way out (subscription, JSON lines, brokers) reads it here.

Consumers read committed rows from the database, each at its own pace: a slow consumer holds no lock
and no queue that a writer waits on, so it never slows registrations.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from hub.db import Database
from hub.events.outbox import StoredChange, read_changes

BATCH = 500


async def follow(db: Database, *, after: int, kinds: Sequence[str] | None = None, poll: float = 0.2,
                 batch: int = BATCH, forever: bool = True, idle: bool = False) -> AsyncIterator[list[StoredChange]]:
    """Yield committed changes after a position, in position order, batch by batch.

    Positions are handed out under a lock held to the commit, so once position p is visible every
    position before it is too: reading `position > last seen` never skips a change. `forever`: keep
    polling every `poll` seconds once caught up; else stop at the end of the stream.
    """
    position = after
    while True:
        async with db.reader() as conn:
            rows = await read_changes(conn, after=position, limit=batch, kinds=kinds)
        if rows:
            position = rows[-1].position
            yield rows
        elif idle and forever:
            yield rows
        if len(rows) < batch:
            if not forever:
                return
            await asyncio.sleep(poll)


async def visible_to(db: Database, rows: list[StoredChange], purposes: frozenset[str]) -> list[StoredChange]:
    """The changes a role bound to consent purposes may see: those of customers who granted every purpose.

    The same row-level rule as queries (hub.privacy.consent.visible): for such a role a customer without
    the consent does not exist, so neither do its changes. One indexed read per batch.
    """
    if not purposes or not rows:
        return rows
    from sqlalchemy import select

    from hub.models import Customer
    from hub.privacy.consent import visible

    ids = sorted({r.customer_id for r in rows if r.customer_id is not None})
    table = Customer.__table__
    async with db.reader() as conn:
        seen = {i for (i,) in await conn.execute(
            select(table.c.id).where(table.c.id.in_(ids), visible(table.c.id, purposes)))}
    return [r for r in rows if r.customer_id in seen]
