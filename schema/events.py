"""Change events over GraphQL: the `customerChanged` subscription and, for admins, the consumers' lag."""
from __future__ import annotations

import datetime
import re
from collections.abc import AsyncGenerator
from time import monotonic
from typing import Any, NewType

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON

from hub.access.tokens import authenticate
from hub.db import Reads
from hub.errors import HubError
from hub.events import View, consumers, follow, message, start_position, visible_to, wanted
from hub.golden.attributes import API_NAME
from schema.errors import operation

TOKEN_CHECK_SECONDS = 1.0  # how soon a revoked token's subscriptions end
_KIND = re.compile(r"[A-Z][A-Z_]{0,39}")
_FIELDS = frozenset(API_NAME.values())


def _position(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("a position is a non-negative integer")
    number = int(value)
    if number < 0:
        raise ValueError("a position is a non-negative integer")
    return number


Position = NewType("Position", int)
POSITION = strawberry.scalar(name="Position", serialize=int, parse_value=_position,
                             description="A place in the change stream: a 64-bit integer that grows in commit "
                                         "order (serialised as a JSON number).")


@strawberry.type(description="One committed change of a golden record, as far as the caller may read it: "
                             "attributes the caller may not read are absent from fields and values.")
class CustomerChange:
    position: Position = strawberry.field(description="Resume after it with customerChanged(after: position).")
    customer_id: strawberry.ID
    kind: str = strawberry.field(description="CREATED, UPDATED, LINKED, MERGED, MERGED_AWAY, SPLIT, UNMERGED, "
                                             "OVERRIDDEN, RETIRED, ERASED, ... (any kind the hub writes).")
    version: int | None = strawberry.field(description="The golden record's version after the change, when "
                                                       "the change gave it one.")
    committed_at: datetime.datetime
    fields: list[str] = strawberry.field(description="The changed attributes the caller may read.")
    values: JSON = strawberry.field(description="New value per changed attribute, masked where the caller "
                                                "reads it masked.")
    merged_into: strawberry.ID | None = strawberry.field(
        description="MERGED_AWAY: the golden record this id now forwards to.")
    other_customer_ids: list[strawberry.ID] = strawberry.field(
        description="The other golden record(s) of a merge, split or unmerge.")

    @classmethod
    def of(cls, m: dict[str, Any]) -> CustomerChange:
        return cls(position=m["position"], customer_id=strawberry.ID(str(m["customerId"])), kind=m["kind"],
                   version=m["version"], committed_at=datetime.datetime.fromisoformat(m["committedAt"]),
                   fields=m["fields"], values=m["values"],
                   merged_into=None if m["mergedInto"] is None else strawberry.ID(str(m["mergedInto"])),
                   other_customer_ids=[strawberry.ID(str(i)) for i in m["otherCustomerIds"]])


def _check_filters(kinds: list[str] | None, fields: list[str] | None) -> None:
    for kind in kinds or []:
        if not _KIND.fullmatch(kind):
            raise GraphQLError(f"{kind!r} is not an event kind (upper case, e.g. UPDATED)",
                               extensions={"code": "BAD_USER_INPUT"})
    for name in fields or []:
        if name not in _FIELDS:
            raise GraphQLError(f"unknown attribute {name!r}; use one of {', '.join(sorted(_FIELDS))}",
                               extensions={"code": "BAD_USER_INPUT"})


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Follow golden-record changes in commit order, from after a position "
                                          "(default: from now). Reconnect with the last position received to "
                                          "miss nothing and see nothing twice.")
    async def customer_changed(self, info: strawberry.Info, after: Position | None = None,
                               kinds: list[str] | None = None,
                               fields: list[str] | None = None) -> AsyncGenerator[CustomerChange, None]:
        ctx = info.context
        ctx.authorize("Subscription.customerChanged")
        _check_filters(kinds, fields)
        services, principal = ctx.services, ctx.principal
        try:
            async with services.db.reader() as conn:
                position = await start_position(conn, after)
        except HubError as e:
            raise GraphQLError(str(e), extensions={"code": e.code}) from None
        wanted_fields = frozenset(fields) if fields else None
        check_at = monotonic() + TOKEN_CHECK_SECONDS
        async for rows in follow(services.db, after=position, kinds=kinds, poll=services.settings.events_poll,
                                 idle=True):
            if monotonic() >= check_at:
                check_at = monotonic() + TOKEN_CHECK_SECONDS
                await _recheck(ctx, principal)
            view = View(services.authorizer, principal.role)  # memoised by the authorizer: policy edits apply
            rows = await visible_to(services.db, rows, view.purposes)
            for row in rows:
                m = message(row, view)
                if wanted(m, wanted_fields):
                    yield CustomerChange.of(m)


async def _recheck(ctx: Any, principal: Any) -> None:
    """End the subscription once its token is revoked; pick up policy edits as requests do."""
    reads = Reads(ctx.services.db)
    try:
        if ctx.services.policy_check_due():
            await ctx.services.refresh_policy(reads)
        now = await authenticate(reads=reads, token=ctx.token) if ctx.token else None
    finally:
        await reads.close()
    if now is None or now.role != principal.role:
        raise GraphQLError("the token of this subscription was revoked", extensions={"code": "UNAUTHENTICATED"})


@strawberry.type
class EventConsumer:
    name: str
    position: Position
    lag: int = strawberry.field(description="Changes committed that it has not passed yet.")
    updated_at: datetime.datetime


@strawberry.type
class EventStream:
    head: Position = strawberry.field(description="The last position handed out.")
    consumers: list[EventConsumer] = strawberry.field(description="Durable consumers (broker publishers, "
                                                                  "batch jobs): the outbox is pruned behind "
                                                                  "the slowest.")


@strawberry.type
class EventsQuery:
    @strawberry.field(description="The change stream's head and every durable consumer's lag (admins).")
    @operation
    async def event_stream(self, info: strawberry.Info) -> EventStream:
        async with info.context.db.reader() as conn:
            last, lags = await consumers(conn)
        return EventStream(head=last, consumers=[EventConsumer(name=c.name, position=c.position, lag=c.lag,
                                                               updated_at=c.updated_at) for c in lags])
