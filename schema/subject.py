"""Privacy in the API: subject access reports and the audit of sensitive reads (admin only by policy)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from sqlalchemy import select
from strawberry.scalars import JSON

from hub.golden.attributes import STORAGE_NAME
from hub.errors import BadInput
from hub.models import Customer as CustomerRow
from hub.privacy.audit import reads_query
from hub.privacy.subject import resolve, subject_access
from schema.types import PageInfo, decode_cursor, encode_cursor

CUSTOMER = CustomerRow.__table__


@strawberry.type(description="Everything the hub holds on one person (GDPR Art. 15).")
class SubjectAccessReport:
    customer_id: strawberry.ID = strawberry.field(description="The golden record reported on (a merged-away id "
                                                              "resolves to its survivor).")
    document: JSON = strawberry.field(description="The whole report as one JSON document, to hand to the person.")
    summary: str = strawberry.field(description="A readable account of the report (Markdown).")


@strawberry.type(description="One read of a sensitive field (the policy's `audit` rows): who, what, when.")
class SensitiveRead:
    row: strawberry.Private[Any]

    @strawberry.field
    def at(self) -> dt.datetime:
        return self.row.at

    @strawberry.field(description="Subject of the token that read it.")
    def subject(self) -> str:
        return self.row.subject

    @strawberry.field
    def role(self) -> str:
        return self.row.role

    @strawberry.field(description="The golden record read (as it was identified at the time of reading).")
    def customer_id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.customer_id))

    @strawberry.field(description="The attribute read, e.g. nationalId.")
    def field(self) -> str:
        return self.row.field

    @strawberry.field(description="The type that served it: Customer, SourceRecord, AttributeLineage, "
                                  "CustomerEvent, SubjectAccess.")
    def via(self) -> str:
        return self.row.via

    @strawberry.field(description="Only the masked form was served.")
    def masked(self) -> bool:
        return self.row.masked

    @strawberry.field
    def request_id(self) -> str | None:
        return self.row.request_id


@strawberry.type
class SensitiveReadEdge:
    cursor: str
    node: SensitiveRead


@strawberry.type
class SensitiveReadConnection:
    edges: list[SensitiveReadEdge]
    page_info: PageInfo


async def report(info: strawberry.Info, customer_id: int) -> SubjectAccessReport:
    """Build the subject access report and audit the sensitive values it discloses."""
    ctx = info.context
    sensitive = [f for f in STORAGE_NAME if ctx.services.authorizer.audited(ctx.principal.role, "Customer", f)]
    async with ctx.db.session() as session:
        found = await subject_access(session=session, customer_id=customer_id, sensitive=sensitive)
    ctx.sensitive_reads.extend(found.reads)
    return SubjectAccessReport(customer_id=strawberry.ID(str(found.customer_id)), document=found.document,
                               summary=found.summary)


async def sensitive_reads(info: strawberry.Info, customer_id: int, field: str | None, first: int,
                          after: str | None) -> SensitiveReadConnection:
    """Page through who read a customer's sensitive fields (a merged-away id: its survivor and every id
    merged into it), oldest first. Pending entries of this process are written first."""
    if field is not None and field not in STORAGE_NAME:
        raise BadInput(f"unknown field {field!r}; one of {', '.join(STORAGE_NAME)}")
    ctx = info.context
    if ctx.services.audit is not None:
        await ctx.services.audit.flush()
    async with ctx.db.session() as session:
        golden = await resolve(session, customer_id)
        family = [golden.id, *(await session.execute(select(CUSTOMER.c.id).where(
            CUSTOMER.c.merged_into == golden.id))).scalars()]
    rows = await ctx.reads.all(reads_query(family, field, after=decode_cursor("read", after), first=first + 1))
    edges = [SensitiveReadEdge(cursor=encode_cursor("read", r.id), node=SensitiveRead(row=r)) for r in rows[:first]]
    return SensitiveReadConnection(edges=edges, page_info=PageInfo(
        has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else after))
