"""Erasure over GraphQL: the receipt (tombstone), erasure tasks for source systems, lifting a block.

Who may call what is the policy's (authz/policy.csv): erasing, lifting, tombstones and the overdue list are
for admins; a source token lists and acknowledges its own system's tasks (restricted here to the system
its token names). None of these types carries a personal value: the receipt holds counts and ids, a task
the source's own key until it is acknowledged.
"""
from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from hub.errors import BadInput, NotFound
from hub.privacy.erasure import (
    acknowledge_task, erase_customer, lift_block, list_tasks, overdue_tasks, receipt, task_due,
)
from schema.errors import operation
from schema.queries import check_system, parse_id


@strawberry.enum
class ErasureTaskStatus(enum.Enum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"


@strawberry.type(description='"Erase key K": what a source system must do for an erased customer, until it '
                             "acknowledges.")
class ErasureTask:
    row: strawberry.Private[Any]
    days: strawberry.Private[int]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    @strawberry.field(description="The erased customer (golden record id) the task belongs to.")
    def customer_id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.customer_id))

    @strawberry.field
    def system(self) -> str:
        return self.row.system

    @strawberry.field(description="The record's key in its source system, to act on; null once acknowledged "
                                  "(only its keyed hash is kept then).")
    def key(self) -> str | None:
        return self.row.key

    @strawberry.field
    def status(self) -> ErasureTaskStatus:
        return ErasureTaskStatus.OPEN if self.row.acknowledged_at is None else ErasureTaskStatus.ACKNOWLEDGED

    @strawberry.field
    def created_at(self) -> dt.datetime:
        return self.row.created_at

    @strawberry.field(description="When an open task becomes overdue (HUB_ERASURE_TASK_DAYS after it was issued).")
    def due_at(self) -> dt.datetime:
        return task_due(self.row.created_at, self.days)

    @strawberry.field
    def acknowledged_at(self) -> dt.datetime | None:
        return self.row.acknowledged_at

    @strawberry.field
    def acknowledged_by(self) -> str | None:
        return self.row.acknowledged_by

    @strawberry.field
    def note(self) -> str | None:
        return self.row.note


@strawberry.type(description="The tombstone of an erased customer: when, who, why, what was removed (counts "
                             "only), and the tasks sent to its source systems.")
class ErasureReceipt:
    row: strawberry.Private[Any]
    task_rows: strawberry.Private[list]
    is_blocked: strawberry.Private[bool]
    days: strawberry.Private[int]

    @strawberry.field
    def customer_id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.customer_id))

    @strawberry.field
    def source_records_erased(self) -> int:
        return self.row.source_records

    @strawberry.field
    def erased_at(self) -> dt.datetime:
        return self.row.erased_at

    @strawberry.field(description="Subject of the token that erased it (`retention` for a retention run).")
    def erased_by(self) -> str:
        return self.row.actor

    @strawberry.field(description="ERASURE (eraseCustomer) or RETENTION (its last records passed their "
                                  "system's retention period).")
    def reason(self) -> str:
        return self.row.kind

    @strawberry.field(description="Why: the note given with the erasure.")
    def note(self) -> str | None:
        return self.row.note

    @strawberry.field(description="Golden record ids merged away into it; they resolve to nothing now.")
    def merged_customer_ids(self) -> list[strawberry.ID]:
        return [strawberry.ID(str(i)) for i in self.row.merged_ids or []]

    @strawberry.field(description="Rows removed or emptied per kind of data (sourceRecords, blockingKeys, "
                                  "lineage, events, matchCandidates, ...).")
    def removed(self) -> JSON:
        return self.row.counts or {}

    @strawberry.field
    def tasks(self) -> list[ErasureTask]:
        return [ErasureTask(row=t, days=self.days) for t in self.task_rows]

    @strawberry.field
    def open_tasks(self) -> int:
        return sum(1 for t in self.task_rows if t.acknowledged_at is None)

    @strawberry.field
    def acknowledged_tasks(self) -> int:
        return sum(1 for t in self.task_rows if t.acknowledged_at is not None)

    @strawberry.field(description="Whether registrations of this person are refused (code ERASED).")
    def blocked(self) -> bool:
        return self.is_blocked

    @strawberry.field
    def block_lifted_at(self) -> dt.datetime | None:
        return self.row.block_lifted_at

    @strawberry.field
    def block_lifted_by(self) -> str | None:
        return self.row.block_lifted_by


def _days(info: strawberry.Info) -> int:
    return info.context.services.settings.erasure_task_days


async def _receipt(info: strawberry.Info, customer_id: int) -> ErasureReceipt | None:
    async with info.context.db.session() as session:
        found = await receipt(session=session, customer_id=customer_id)
    if found is None:
        return None
    return ErasureReceipt(row=found.tombstone, task_rows=found.tasks, is_blocked=found.blocked, days=_days(info))


def _task_id(value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadInput(f"{value!r} is not an erasure task id") from None


def _first(first: int) -> int:
    if not 1 <= first <= 1000:
        raise BadInput("first must be between 1 and 1000")
    return first


@operation
async def erasure(info: strawberry.Info, id: strawberry.ID) -> ErasureReceipt | None:
    """The tombstone of an erased customer (any id it ever had); null when it was not erased."""
    return await _receipt(info, parse_id(id))


@operation
async def erasure_tasks(info: strawberry.Info, system: str, status: ErasureTaskStatus | None = ErasureTaskStatus.OPEN,
                        first: int = 100, after: strawberry.ID | None = None) -> list[ErasureTask]:
    """A system's erasure tasks, oldest first (a source token: its own system only); `after` a task id."""
    check_system(info, system)
    async with info.context.db.session() as session:
        rows = await list_tasks(session=session, system=system,
                                open_only=None if status is None else status is ErasureTaskStatus.OPEN,
                                first=_first(first), after=_task_id(after) if after else 0)
    return [ErasureTask(row=r, days=_days(info)) for r in rows]


@operation
async def overdue_erasure_tasks(info: strawberry.Info, days: int | None = None,
                                first: int = 100) -> list[ErasureTask]:
    """Open tasks older than `days` (default HUB_ERASURE_TASK_DAYS), oldest first: sources that still hold data."""
    limit = _days(info) if days is None else days
    async with info.context.db.session() as session:
        rows = await overdue_tasks(session=session, days=limit, first=_first(first))
    return [ErasureTask(row=r, days=limit) for r in rows]


@operation
async def erase_customer_mutation(info: strawberry.Info, id: strawberry.ID, note: str) -> ErasureReceipt:
    """Right to erasure: remove the customer's personal data from the golden record and every source record."""
    ctx = info.context
    async with ctx.db.write() as session:
        erased = await erase_customer(session=session, customer_id=parse_id(id), actor=ctx.principal.subject,
                                      note=note, settings=ctx.services.settings)
    found = await _receipt(info, erased)
    if found is None:  # the erasure committed; its tombstone is there
        raise NotFound(f"no erasure of customer {erased}")
    return found


@operation
async def lift_erasure_block(info: strawberry.Info, id: strawberry.ID, note: str) -> ErasureReceipt:
    """Let an erased customer's records be registered again; the tombstone says who lifted the block and when."""
    ctx = info.context
    async with ctx.db.write() as session:
        erased = await lift_block(session=session, customer_id=parse_id(id), actor=ctx.principal.subject, note=note)
    found = await _receipt(info, erased)
    if found is None:
        raise NotFound(f"no erasure of customer {erased}")
    return found


@operation
async def acknowledge_erasure_task(info: strawberry.Info, id: strawberry.ID, note: str | None = None) -> ErasureTask:
    """A source system confirms it erased the key (its own system's tasks only); the key is then forgotten."""
    ctx = info.context
    task_id = _task_id(id)
    async with ctx.db.write() as session:
        await acknowledge_task(session=session, task_id=task_id, system=ctx.principal.system,
                               actor=ctx.principal.subject, note=note)
    async with ctx.db.session() as session:
        [row] = await list_tasks(session=session, system=None, open_only=None, first=1, after=task_id - 1)
    return ErasureTask(row=row, days=_days(info))


@strawberry.type
class PrivacyQuery:
    erasure: ErasureReceipt | None = strawberry.field(
        resolver=erasure, description="The tombstone of an erased customer (any id it ever had); null when it "
                                      "was not erased. Admins only.")
    erasure_tasks: list[ErasureTask] = strawberry.field(
        resolver=erasure_tasks, description="A system's erasure tasks, oldest first; a source token sees its own "
                                            "system's only.")
    overdue_erasure_tasks: list[ErasureTask] = strawberry.field(
        resolver=overdue_erasure_tasks, description="Open erasure tasks past their deadline, oldest first: which "
                                                    "sources still hold an erased person. Admins only.")


@strawberry.type
class PrivacyMutation:
    erase_customer: ErasureReceipt = strawberry.field(
        resolver=erase_customer_mutation, description="Right to erasure: remove the customer's personal data from "
                                                      "the golden record and every source record.")
    lift_erasure_block: ErasureReceipt = strawberry.field(
        resolver=lift_erasure_block, description="Let an erased customer's records be registered again.")
    acknowledge_erasure_task: ErasureTask = strawberry.field(
        resolver=acknowledge_erasure_task, description="A source system confirms it erased the key of a task.")
