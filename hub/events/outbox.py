"""The change stream as stored: outbox rows in commit order, their events, durable consumers, pruning.

Positions are handed out by the unit of work as it commits (`hub.db.seal_outbox`); everything here
only reads them, records how far a durable consumer got, and prunes what every consumer has passed.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from hub.errors import HubError
from hub.models import Event, EventConsumer, Outbox, OutboxHead, utcnow

OUT, EV, HEAD, CONSUMER = Outbox.__table__, Event.__table__, OutboxHead.__table__, EventConsumer.__table__
NAME_LIMIT = 100

_READ = (select(OUT.c.position, OUT.c.customer_id, OUT.c.kind, OUT.c.at, EV.c.changes)
         .join(EV, EV.c.id == OUT.c.event_id)
         .where(OUT.c.position > bindparam("after")).order_by(OUT.c.position).limit(bindparam("n")))
_READ_KINDS = _READ.where(OUT.c.kind.in_(bindparam("kinds", expanding=True)))
_HEAD = select(HEAD.c.last, HEAD.c.pruned_to).where(HEAD.c.id == 1)


class Pruned(HubError):
    """A consumer asked to resume from a position the outbox no longer holds."""

    code = "GONE"


@dataclass(frozen=True)
class StoredChange:
    """One committed change as the outbox holds it (before any role's view is applied)."""

    position: int
    customer_id: int | None
    kind: str
    committed_at: dt.datetime
    changes: dict[str, Any]


async def read_changes(conn, *, after: int, limit: int = 500, kinds: Sequence[str] | None = None
                       ) -> list[StoredChange]:
    """The committed changes after a position, oldest first (one indexed range read)."""
    params: dict[str, Any] = {"after": after, "n": limit}
    if kinds:
        params["kinds"] = list(kinds)
    rows = await conn.execute(_READ_KINDS if kinds else _READ, params)
    return [StoredChange(r.position, r.customer_id, r.kind, r.at, r.changes or {}) for r in rows]


async def head(conn) -> tuple[int, int]:
    """The last position handed out and the position up to which the outbox may have been pruned."""
    row = (await conn.execute(_HEAD)).first()
    return (row.last, row.pruned_to) if row is not None else (0, 0)


async def start_position(conn, after: int | None) -> int:
    """Where a consumer starts: after `after`, or after the newest change (None); refuse a pruned gap."""
    last, pruned_to = await head(conn)
    if after is None:
        return last
    if after < 0:
        raise HubError(f"position must be 0 or more, not {after}")
    if after < pruned_to:
        raise Pruned(f"changes up to position {pruned_to} were pruned; resume from {pruned_to} or later "
                     "(and reload the customers you follow), or register a durable consumer to keep them")
    return after


def check_name(name: str) -> str:
    """A durable consumer's name: 1-100 printable characters."""
    name = (name or "").strip()
    if not name or len(name) > NAME_LIMIT or not name.isprintable():
        raise HubError(f"a consumer name has 1 to {NAME_LIMIT} printable characters")
    return name


async def consumer_position(conn, name: str) -> int | None:
    """How far a durable consumer got (None: unknown consumer)."""
    return (await conn.execute(select(CONSUMER.c.position).where(CONSUMER.c.name == name))).scalar()


async def save_position(conn, name: str, position: int) -> None:
    """Record a durable consumer's progress (creating it on first use); never moves it backwards."""
    now = utcnow()
    done = await conn.execute(update(CONSUMER).where(CONSUMER.c.name == name, CONSUMER.c.position <= position)
                              .values(position=position, updated_at=now))
    if done.rowcount == 0 and await consumer_position(conn, name) is None:
        await conn.execute(insert(CONSUMER).values(name=name, position=position, updated_at=now))


async def drop_consumer(conn, name: str) -> bool:
    """Forget a durable consumer: the outbox no longer waits for it."""
    return bool((await conn.execute(delete(CONSUMER).where(CONSUMER.c.name == name))).rowcount)


@dataclass(frozen=True)
class ConsumerLag:
    name: str
    position: int
    lag: int
    updated_at: dt.datetime


async def consumers(conn) -> tuple[int, list[ConsumerLag]]:
    """The head position and every durable consumer with how many positions it is behind."""
    last, _ = await head(conn)
    rows = await conn.execute(select(CONSUMER).order_by(CONSUMER.c.name))
    return last, [ConsumerLag(r.name, r.position, max(last - r.position, 0), r.updated_at) for r in rows]


async def prune(conn, *, retention: dt.timedelta, now: dt.datetime | None = None) -> int:
    """Delete outbox rows older than the retention that every durable consumer has passed; return how many.

    The events themselves stay: they are the audit log (customer history). Run in a transaction.
    """
    cutoff = (now or utcnow()) - retention
    last, pruned_to = await head(conn)
    upto = (await conn.execute(select(func.min(CONSUMER.c.position)))).scalar()
    upto = last if upto is None else min(upto, last)
    # the newest prunable position: rows are in commit order, so their commit times only grow
    newest = (await conn.execute(select(func.max(OUT.c.position)).where(
        OUT.c.position > pruned_to, OUT.c.position <= upto, OUT.c.at < cutoff))).scalar()
    if newest is None:
        return 0
    gone = (await conn.execute(delete(OUT).where(OUT.c.position <= newest))).rowcount
    await conn.execute(update(HEAD).where(HEAD.c.id == 1, HEAD.c.pruned_to < newest).values(pruned_to=newest))
    return gone or 0
