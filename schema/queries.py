"""Read operations: thin resolvers that ask the hub and shape the answer."""
from __future__ import annotations

import datetime
import enum
import math

import strawberry
from sqlalchemy import exists, or_, select, tuple_

from hub import validation
from hub.errors import BadInput, Forbidden
from hub.steward.stewardship import customer_as_of
from hub.models import ACTIVE, Customer as CustomerRow, MatchCandidate as CandidateRow, SourceRecord as RecordRow
from hub.models import SourceSystem as SystemRow
from hub.privacy.consent import granted_join, visible
from schema.errors import operation
from schema.subject import SensitiveReadConnection, SubjectAccessReport, report, sensitive_reads
from schema.search import CustomerMatch, search
from schema.types import (
    CandidateStatus, Customer, CustomerAttributesInput, CustomerConnection, CustomerEdge, MatchCandidate, MatchCandidateConnection,
    MatchCandidateEdge, PageInfo, SourceRecord, SourceRecordConnection, SourceRecordEdge, SourceSystem,
    decode_cursor, encode_cursor,
)

MAX_PAGE = 1000


def parse_id(value: str, what: str = "customer id") -> int:
    """Read a golden-record (or other) id: decimal digits within the BIGINT range, else BAD_USER_INPUT."""
    return validation.parse_id(value, what)


def page_size(first: int) -> int:
    """Check a page size."""
    if not 1 <= first <= MAX_PAGE:
        raise BadInput(f"first must be between 1 and {MAX_PAGE}")
    return first


def check_system(info: strawberry.Info, system: str) -> None:
    """A source system's token reaches its own system's records only."""
    own = info.context.principal.system
    if own is not None and own != system:
        raise Forbidden(f"this token belongs to system {own!r}; it may not reach records of {system!r}")


async def _page(info: strawberry.Info, stmt, first: int):
    rows = await info.context.reads.all(stmt.limit(first + 1))
    return rows[:first], len(rows) > first


@strawberry.enum
class CandidateOrder(enum.Enum):
    MOST_UNCERTAIN = "MOST_UNCERTAIN"
    NEWEST = "NEWEST"
    OLDEST = "OLDEST"


def _uncertainty_position(value: str) -> tuple[float, int]:
    """A most-uncertain-first cursor's value: (uncertainty, id)."""
    uncertainty, cid = value.split("/")
    number = float(uncertainty)
    if not math.isfinite(number):
        raise ValueError(uncertainty)
    return number, validation.parse_id(cid, "cursor")


def _candidate_filters(stmt, t, system: str | None, low: float | None, high: float | None):
    """Narrow the queue to one source system (either golden record holds a record of it) and a probability band.

    The system test is an EXISTS probe per candidate on ix_source_record_customer_id; the band filters the
    rows the status index serves in order.
    """
    for name, value in (("minProbability", low), ("maxProbability", high)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise BadInput(f"{name} must be between 0 and 1")
    if low is not None and high is not None and low > high:
        raise BadInput("minProbability must not exceed maxProbability")
    if low is not None:
        stmt = stmt.where(t.c.probability >= low)
    if high is not None:
        stmt = stmt.where(t.c.probability <= high)
    if system is not None:
        sr = RecordRow.__table__
        stmt = stmt.where(or_(exists().where(sr.c.customer_id == t.c.customer_id, sr.c.system == system),
                              exists().where(sr.c.customer_id == t.c.other_customer_id, sr.c.system == system)))
    return stmt


@strawberry.type
class Query:
    @strawberry.field(description="One match candidate, whatever its status.")
    @operation
    async def match_candidate(self, info: strawberry.Info, id: strawberry.ID) -> MatchCandidate | None:
        row = await info.context.loaders.candidate.load(parse_id(id))
        return MatchCandidate(row=row) if row is not None else None

    @strawberry.field(description="A golden record; an id merged away resolves to the surviving record. With asOf, "
                                  "the record's values and version as they were at that moment (no forwarding).")
    @operation
    async def customer(self, info: strawberry.Info, id: strawberry.ID,
                       as_of: datetime.datetime | None = None) -> Customer | None:
        if as_of is not None:
            customer_id = parse_id(id)
            purposes = info.context.purposes
            if purposes and await info.context.reads.first(
                    select(CustomerRow.__table__.c.id).where(CustomerRow.__table__.c.id == customer_id,
                                                            visible(CustomerRow.__table__.c.id, purposes))) is None:
                return None  # without the consent the caller's role needs, the customer does not exist for it
            async with info.context.db.session() as session:
                row = await customer_as_of(session=session, customer_id=customer_id, at=as_of)
            return Customer(row=row) if row is not None else None
        row = await info.context.loaders.customer.load(parse_id(id))
        return Customer(row=row) if row is not None else None

    @strawberry.field
    @operation
    async def customers(self, info: strawberry.Info, first: int = 50, after: str | None = None) -> CustomerConnection:
        t = CustomerRow.__table__
        position = decode_cursor("customer", after)
        stmt = select(t)
        if info.context.purposes:  # only customers who granted the caller's purposes: driven by the consent index
            stmt = granted_join(stmt, t.c.id, sorted(info.context.purposes), after=position)
        stmt = stmt.where(t.c.id > position, t.c.status == ACTIVE).order_by(t.c.id)
        rows, more = await _page(info, stmt, page_size(first))
        edges = [CustomerEdge(cursor=encode_cursor("customer", r.id), node=Customer(row=r)) for r in rows]
        return CustomerConnection(edges=edges, page_info=PageInfo(has_next_page=more,
                                                                  end_cursor=edges[-1].cursor if edges else after))

    @strawberry.field(description="Ranked probabilistic search with the hub's own match model.")
    @operation
    async def find_customers(self, info: strawberry.Info, attributes: CustomerAttributesInput,
                             first: int = 10) -> list[CustomerMatch]:
        return await search(info, attributes, first)

    @strawberry.field
    @operation
    async def source_systems(self, info: strawberry.Info) -> list[SourceSystem]:
        t = SystemRow.__table__
        return [SourceSystem(row=s) for s in await info.context.reads.all(select(t).order_by(t.c.name))]

    @strawberry.field
    @operation
    async def source_record(self, info: strawberry.Info, system: str, key: str) -> SourceRecord | None:
        check_system(info, system)
        t = RecordRow.__table__
        stmt = select(t).where(t.c.system == system, t.c.key == key)
        if info.context.purposes:
            stmt = stmt.where(visible(t.c.customer_id, info.context.purposes))
        row = await info.context.reads.first(stmt)
        return SourceRecord(row=row) if row is not None else None

    @strawberry.field
    @operation
    async def source_records(self, info: strawberry.Info, system: str, first: int = 100,
                             after: str | None = None) -> SourceRecordConnection:
        check_system(info, system)
        t = RecordRow.__table__
        stmt = select(t).where(t.c.system == system, t.c.id > decode_cursor("record", after)).order_by(t.c.id)
        if info.context.purposes:
            stmt = stmt.where(visible(t.c.customer_id, info.context.purposes))
        rows, more = await _page(info, stmt, page_size(first))
        edges = [SourceRecordEdge(cursor=encode_cursor("record", r.id), node=SourceRecord(row=r)) for r in rows]
        return SourceRecordConnection(edges=edges, page_info=PageInfo(
            has_next_page=more, end_cursor=edges[-1].cursor if edges else after))

    @strawberry.field(description="Match candidates for stewards; by default the most uncertain first "
                                  "(probability nearest the middle of the review band).")
    @operation
    async def match_candidates(self, info: strawberry.Info, status: CandidateStatus | None = CandidateStatus.PENDING,
                               first: int = 50, after: str | None = None,
                               order_by: CandidateOrder = CandidateOrder.MOST_UNCERTAIN,
                               system: str | None = None,
                               min_probability: float | None = None,
                               max_probability: float | None = None) -> MatchCandidateConnection:
        t = CandidateRow.__table__
        stmt = select(t)
        if status is not None:
            stmt = stmt.where(t.c.status == status.value)
        stmt = _candidate_filters(stmt, t, system or None, min_probability, max_probability)
        if info.context.purposes:  # both sides must exist for the caller
            stmt = stmt.where(visible(t.c.customer_id, info.context.purposes),
                              visible(t.c.other_customer_id, info.context.purposes))
        if order_by is CandidateOrder.MOST_UNCERTAIN:
            position = decode_cursor("uncertain", after, _uncertainty_position, None)
            if position is not None:
                stmt = stmt.where(tuple_(t.c.uncertainty, t.c.id) > tuple_(*position))
            stmt = stmt.order_by(t.c.uncertainty, t.c.id)
        elif order_by is CandidateOrder.OLDEST:
            stmt = stmt.where(t.c.id > decode_cursor("candidate", after)).order_by(t.c.id)
        else:
            if after:
                stmt = stmt.where(t.c.id < decode_cursor("candidate", after))
            stmt = stmt.order_by(t.c.id.desc())
        rows, more = await _page(info, stmt, page_size(first))
        cursor = (lambda r: encode_cursor("uncertain", f"{r.uncertainty!r}/{r.id}")) \
            if order_by is CandidateOrder.MOST_UNCERTAIN else (lambda r: encode_cursor("candidate", r.id))
        edges = [MatchCandidateEdge(cursor=cursor(r), node=MatchCandidate(row=r)) for r in rows]
        return MatchCandidateConnection(edges=edges, page_info=PageInfo(
            has_next_page=more, end_cursor=edges[-1].cursor if edges else after))


    @strawberry.field(description="Everything the hub holds on one person, as one JSON document and a readable "
                                  "summary (GDPR Art. 15). Admin only by the default policy; the sensitive values "
                                  "it discloses are audited.")
    @operation
    async def subject_access(self, info: strawberry.Info, id: strawberry.ID) -> SubjectAccessReport:
        return await report(info, parse_id(id))

    @strawberry.field(description="Who read a customer's sensitive fields (national id, date of birth, whatever "
                                  "the policy marks with `audit`), oldest first; optionally one field. Admin only "
                                  "by the default policy.")
    @operation
    async def sensitive_reads(self, info: strawberry.Info, customer_id: strawberry.ID, field: str | None = None,
                              first: int = 100, after: str | None = None) -> SensitiveReadConnection:
        return await sensitive_reads(info, parse_id(customer_id), field, page_size(first), after)
