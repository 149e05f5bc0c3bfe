"""Publishing the change stream to a message broker, exactly once as the broker sees it.

A `Publisher` sends a batch of messages and returns only once the broker has stored every one of
them. `relay` reads the outbox after the durable consumer's stored position, publishes, then stores
the new position. If the process dies between the two, the batch is published again on restart: the
broker drops the repeats because each message carries its position as its id (NATS JetStream:
`Nats-Msg-Id`, within the stream's duplicate window; Kafka: an idempotent producer keyed by customer
id, see README).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import text

from hub.db import Database
from hub.events.outbox import check_name, consumer_position, head, prune, read_changes, save_position
from hub.events.payload import View, message
from hub.events.stream import visible_to

log = logging.getLogger("hub.events")
RELAY_LOCK_KEY = 0x4855_4250  # "HUBP": one relay per durable consumer name across processes (PostgreSQL)


class Publisher(Protocol):
    """A broker behind one small interface."""

    name: str  # names the durable consumer whose progress is stored

    async def start(self) -> None:
        """Connect, and create the destination (stream, topic) if needed."""

    async def publish(self, messages: Sequence[Mapping[str, Any]]) -> None:
        """Send messages in order; return once the broker has stored all of them, else raise."""

    async def close(self) -> None:
        """Flush and disconnect."""


class NatsPublisher:
    """NATS JetStream: one stream, a subject per kind (`<prefix>.<KIND>`), the position as message id."""

    def __init__(self, *, url: str, stream: str, subject: str, name: str = "nats",
                 duplicate_window: float = 24 * 3600, timeout: float = 10.0) -> None:
        self.url, self.stream, self.subject, self.name = url, stream, subject, name
        self.duplicate_window, self.timeout = duplicate_window, timeout
        self._nc: Any = None
        self._js: Any = None

    async def start(self) -> None:
        import nats
        from nats.js.errors import BadRequestError

        self._nc = await nats.connect(self.url, connect_timeout=self.timeout, max_reconnect_attempts=-1)
        self._js = self._nc.jetstream(timeout=self.timeout)
        config = {"name": self.stream, "subjects": [f"{self.subject}.>"], "duplicate_window": self.duplicate_window}
        try:
            await self._js.add_stream(**config)
        except BadRequestError:  # exists with another configuration: bring it in line
            await self._js.update_stream(**config)

    def subject_of(self, kind: str) -> str:
        return f"{self.subject}.{kind}"

    async def publish(self, messages: Sequence[Mapping[str, Any]]) -> None:
        # sent one after the other on one connection (order kept), acknowledged together
        acks = [await self._js.publish_async(self.subject_of(m["kind"]), json.dumps(m).encode(),
                                             headers={"Nats-Msg-Id": str(m["position"])}, stream=self.stream)
                for m in messages]
        await asyncio.wait_for(asyncio.gather(*acks), timeout=self.timeout)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None


async def relay(db: Database, publisher: Publisher, view_of, *, poll: float = 0.2, batch: int = 500,
                retention: dt.timedelta | None = None, prune_every: float = 600.0,
                stop: asyncio.Event | None = None) -> int:
    """Publish the stream from the durable consumer's stored position until `stop` is set; return how many.

    `view_of()` gives the role's view for the next batch (policy edits apply from the next batch).
    On PostgreSQL one relay per consumer name runs at a time (a session advisory lock); another process
    configured the same waits as a standby. A broker error is retried after a pause, from the stored position.
    """
    name = check_name(publisher.name)
    stop = stop or asyncio.Event()
    async with _exclusive(db, name, stop) as acquired:
        if not acquired:
            return 0
        return await _relay(db, publisher, view_of, name=name, poll=poll, batch=batch, retention=retention,
                            prune_every=prune_every, stop=stop)


async def _relay(db, publisher, view_of, *, name, poll, batch, retention, prune_every, stop) -> int:
    sent = 0
    started = False
    next_prune = 0.0
    loop = asyncio.get_running_loop()
    try:
        while not stop.is_set():
            try:
                if not started:
                    await publisher.start()
                    started = True
                async with db.reader() as conn:
                    position = await consumer_position(conn, name)
                    if position is None:  # a new consumer publishes everything the outbox still holds
                        position = (await head(conn))[1]
                    rows = await read_changes(conn, after=position, limit=batch)
                if rows:
                    view = view_of()
                    shown = await visible_to(db, rows, view.purposes)
                    await publisher.publish([message(r, view) for r in shown])
                    async with db.engine.begin() as conn:
                        await save_position(conn, name, rows[-1].position)
                    sent += len(rows)
                if retention is not None and loop.time() >= next_prune:
                    next_prune = loop.time() + prune_every
                    async with db.engine.begin() as conn:
                        pruned = await prune(conn, retention=retention)
                    if pruned:
                        log.info("outbox pruned: %d rows", pruned)
                if len(rows) < batch:
                    await _wait(stop, poll)
            except (OSError, TimeoutError, asyncio.TimeoutError) as e:
                log.warning("publisher %s: %s; retrying from the stored position", name, type(e).__name__)
                await _wait(stop, 1.0)
            except Exception as e:  # noqa: BLE001 - a broker error must not end the relay
                log.warning("publisher %s: %s: %s; retrying from the stored position", name, type(e).__name__,
                            str(e)[:200])
                await _wait(stop, 1.0)
    finally:
        if started:
            await publisher.close()
    return sent


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


class _exclusive:
    """Hold a session advisory lock named after the consumer (PostgreSQL), waiting as a standby until free."""

    def __init__(self, db: Database, name: str, stop: asyncio.Event) -> None:
        self.db, self.name, self.stop = db, name, stop
        self._cm = None
        self._conn = None

    async def __aenter__(self) -> bool:
        if self.db.sqlite:
            return True
        self._cm = self.db.engine.connect()
        self._conn = await self._cm.__aenter__()
        await self._conn.execution_options(isolation_level="AUTOCOMMIT")
        args = {"a": RELAY_LOCK_KEY, "b": _key(self.name)}
        while not self.stop.is_set():
            if (await self._conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), args)).scalar():
                return True
            await _wait(self.stop, 2.0)
        return False

    async def __aexit__(self, *exc) -> None:
        if self._cm is not None:
            try:
                await self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
            finally:
                await self._cm.__aexit__(*exc)


def _key(name: str) -> int:
    """A stable 32-bit key for a consumer name (advisory locks take two int4 keys)."""
    return zlib.crc32(name.encode()) - 2 ** 31
