"""Change events out of the hub: the transactional outbox, one stream, three ways out.

The door for the GraphQL layer and the CLI: follow the stream, shape a change for a role, run the
broker publisher, watch durable consumers, prune.
"""
from __future__ import annotations

import datetime as dt

from authz import Authorizer
from hub.access.policy import RULES_QUERY, as_row
from hub.config import Settings
from hub.db import Database
from hub.events.outbox import (
    ConsumerLag, Pruned, StoredChange, consumers, drop_consumer, head, prune, save_position, start_position,
)
from hub.events.payload import View, message, wanted
from hub.events.publishers import NatsPublisher, Publisher, relay
from hub.events.stream import follow, visible_to


def publisher_from(settings: Settings, kind: str | None = None) -> Publisher:
    """The configured broker publisher."""
    kind = (kind or settings.publish or "nats").lower()
    if kind != "nats":
        raise ValueError(f"unknown publisher {kind!r}: the hub ships `nats` (see hub.events.publishers.Publisher)")
    return NatsPublisher(url=settings.nats_url, stream=settings.nats_stream, subject=settings.nats_subject,
                         name=settings.publish_consumer)


async def stored_authorizer(db: Database) -> Authorizer:
    """The policy as stored (edited with `hub policy`), or the default file when none is stored."""
    async with db.reader() as conn:
        rows = [as_row(r) for r in await conn.execute(RULES_QUERY)]
    return Authorizer(rows or None)


def retention(settings: Settings) -> dt.timedelta:
    return dt.timedelta(hours=settings.events_retention_hours)


__all__ = ["ConsumerLag", "NatsPublisher", "Pruned", "Publisher", "StoredChange", "View", "consumers",
           "drop_consumer", "follow", "head", "message", "prune", "publisher_from", "relay", "retention",
           "save_position", "start_position", "stored_authorizer", "visible_to", "wanted"]
