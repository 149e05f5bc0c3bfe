"""Consent per customer and purpose: statements (history, append-only), the current state, the row filter.

A statement says that a person granted or withdrew one purpose (``HUB_CONSENT_PURPOSES``) at a time,
reported by a source system alongside a record or set in the hub by an admin or steward, with the actor
and evidence text. Statements are never updated or deleted; the current state (table ``consent``) is,
per golden record and purpose, the latest statement by ``at`` (then by id).

Merges and splits (the rule): a statement that came with a source record belongs to that record and
follows it wherever it goes (merge, split, unmerge, rematch); one set in the hub follows merges of its
golden record and stays with the survivor on an unmerge. After a move the current state of every golden
record involved is recomputed from its statements, so a merged customer holds, per purpose, the most
recent thing the person said through any of its records.

Row-level access: a role bound to purposes (``p, role, <purpose>, require-consent, allow``) sees a golden
record only if its current state grants every one of them: ``visible(column, purposes)`` is the
condition, an EXISTS probe on the primary key of ``consent`` (or, to drive a list, a join on the index
(purpose, granted, customer_id)).

Functions flush, never commit: the caller holds the write transaction.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, and_, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import any_of, value_rows
from hub.errors import BadInput, NotFound
from hub.models import ACTIVE, MERGED, Consent, ConsentStatement, Customer, SourceRecord, utcnow
from hub.validation import MULTILINE, Limit, text_problem

STATEMENT, CONSENT = ConsentStatement.__table__, Consent.__table__
CUSTOMER, SR = Customer.__table__, SourceRecord.__table__
MAX_EVIDENCE = 1000
EVIDENCE_LIMIT = Limit(MAX_EVIDENCE, MULTILINE)
FUTURE_SLACK = dt.timedelta(minutes=5)  # clocks of source systems differ a little


@dataclass(frozen=True)
class Statement:
    """One consent statement on its way in."""

    purpose: str
    granted: bool
    at: dt.datetime | None = None
    evidence: str | None = None


def check_statement(statement: Statement, purposes: Collection[str]) -> str | None:
    """Why a statement cannot be taken (unknown purpose, evidence too long), or None."""
    if statement.purpose not in purposes:
        return f"unknown consent purpose {statement.purpose[:64]!r}; configured: {', '.join(purposes)}"
    if statement.evidence is not None and (why := text_problem(statement.evidence, EVIDENCE_LIMIT)) is not None:
        return f"consent evidence {why}"
    if statement.at is not None and _aware(statement.at, statement.at) > utcnow() + FUTURE_SLACK:
        return "a consent cannot be given in the future (at is later than now)"
    return None


def _aware(ts: dt.datetime | None, default: dt.datetime) -> dt.datetime:
    if ts is None:
        return default
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def visible(customer_id, purposes: Iterable[str]):
    """The condition that a golden record (its id column) has granted every purpose; None when unbound."""
    conditions = [exists().where(CONSENT.c.customer_id == customer_id, CONSENT.c.purpose == p,
                                 CONSENT.c.granted.is_(True)) for p in sorted(purposes)]
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else and_(*conditions)


def granted_join(stmt, customer_id, purposes: Sequence[str], after: int | None = None):
    """Join a select on the customers that granted the first purpose (an index range on consent, in
    customer order, so a page is read without scanning the customers who did not); EXISTS for the rest.
    `after`: the page's keyset cursor, also applied to the consent index (the planner does not carry it
    across the join by itself, and a deep page would read the index from its start)."""
    first, *rest = sorted(purposes)
    c = CONSENT.alias("granted_consent")
    on = [c.c.customer_id == customer_id, c.c.purpose == first, c.c.granted.is_(True)]
    if after is not None:
        on.append(c.c.customer_id > after)
    stmt = stmt.join(c, and_(*on))
    return stmt.where(visible(customer_id, rest)) if rest else stmt


async def record_statements(session: AsyncSession, items: Sequence[tuple[int, int | None, Statement]], *,
                            system: str | None, actor: str, now: dt.datetime) -> list[bool]:
    """Take statements for golden records: (customer id, source record id or None, statement).

    A statement that says what the customer's current state already says, or that is older than it,
    changes nothing and is not stored (the same batch twice writes nothing the second time). Returns,
    per item, whether it was stored. Statements for one customer and purpose apply in their order.
    """
    if not items:
        return []
    customers = sorted({c for c, _, _ in items})
    current = {(r.customer_id, r.purpose): (r.granted, r.at) for r in await session.execute(
        select(CONSENT.c.customer_id, CONSENT.c.purpose, CONSENT.c.granted, CONSENT.c.at)
        .where(any_of(session, CONSENT.c.customer_id, customers)))}
    rows, stored = [], []
    for customer_id, record_id, s in items:
        at = _aware(s.at, now)
        held = current.get((customer_id, s.purpose))
        if held is not None and (held[0] == s.granted or at < held[1]):
            stored.append(False)
            continue
        current[customer_id, s.purpose] = (s.granted, at)
        rows.append({"customer_id": customer_id, "purpose": s.purpose, "granted": s.granted, "at": at,
                     "recorded_at": now, "system": system, "source_record_id": record_id, "actor": actor,
                     "evidence": s.evidence})
        stored.append(True)
    if rows:
        await session.execute(insert(STATEMENT), rows)
        await recompute(session, {r["customer_id"] for r in rows})
    return stored


async def set_consent(*, session: AsyncSession, customer_id: int, statement: Statement, purposes: Collection[str],
                      actor: str, system: str | None = None) -> int:
    """Record one statement set in the hub for a live golden record (a merged-away id: its survivor).

    Returns the golden record's id. Raises BadInput, NotFound.
    """
    problem = check_statement(statement, purposes)
    if problem:
        raise BadInput(problem)
    row = (await session.execute(select(CUSTOMER.c.id, CUSTOMER.c.status, CUSTOMER.c.merged_into)
                                 .where(CUSTOMER.c.id == customer_id))).first()
    if row is not None and row.status == MERGED:
        row = (await session.execute(select(CUSTOMER.c.id, CUSTOMER.c.status, CUSTOMER.c.merged_into)
                                     .where(CUSTOMER.c.id == row.merged_into))).first()
    if row is None or row.status != ACTIVE:
        raise NotFound(f"no customer {customer_id}")
    await record_statements(session, [(row.id, None, statement)], system=system, actor=actor, now=utcnow())
    return row.id


async def follow(session: AsyncSession, *, customers: Iterable[int] = (), records: Iterable[int] = ()) -> None:
    """Move statements after source records or golden records moved, then recompute the current states.

    `customers`: the golden records that gained or lost records, or were merged away; `records`: records
    that moved (their statements follow them wherever they were). A few indexed statements, whatever
    the number of customers.
    """
    customers, records = sorted(set(customers)), sorted(set(records))
    if not customers and not records:
        return
    where = []
    if customers:
        where.append(any_of(session, STATEMENT.c.customer_id, customers))
    if records:
        where.append(any_of(session, STATEMENT.c.source_record_id, records))
    # a record's statements follow the record
    moved = (await session.execute(
        select(STATEMENT.c.id, STATEMENT.c.customer_id, SR.c.customer_id.label("target"))
        .join(SR, SR.c.id == STATEMENT.c.source_record_id)
        .where(where[0] if len(where) == 1 else where[0] | where[1], SR.c.customer_id != STATEMENT.c.customer_id)
    )).all()
    # statements set in the hub follow their golden record when it is merged away
    if customers:
        moved += (await session.execute(
            select(STATEMENT.c.id, STATEMENT.c.customer_id, CUSTOMER.c.merged_into.label("target"))
            .join(CUSTOMER, CUSTOMER.c.id == STATEMENT.c.customer_id)
            .where(any_of(session, STATEMENT.c.customer_id, customers), STATEMENT.c.source_record_id.is_(None),
                   CUSTOMER.c.status == MERGED))).all()
    if moved:
        v = value_rows(session, {"s": (BigInteger, [m.id for m in moved]), "t": (BigInteger, [m.target for m in moved])})
        await session.execute(update(STATEMENT).where(STATEMENT.c.id == v.c.s).values(customer_id=v.c.t))
    touched = set(customers) | {m.customer_id for m in moved} | {m.target for m in moved}
    if touched:
        await recompute(session, touched)


async def recompute(session: AsyncSession, customers: Iterable[int]) -> None:
    """Rebuild the current state of these golden records from their statements (set-based)."""
    ids = sorted(set(customers))
    if not ids:
        return
    await session.execute(delete(CONSENT).where(any_of(session, CONSENT.c.customer_id, ids)))
    ranked = (select(STATEMENT.c.customer_id, STATEMENT.c.purpose, STATEMENT.c.granted, STATEMENT.c.id,
                     STATEMENT.c.at, func.row_number().over(
                         partition_by=(STATEMENT.c.customer_id, STATEMENT.c.purpose),
                         order_by=(STATEMENT.c.at.desc(), STATEMENT.c.id.desc())).label("n"))
              .where(any_of(session, STATEMENT.c.customer_id, ids)).subquery())
    await session.execute(insert(CONSENT).from_select(
        ["customer_id", "purpose", "granted", "statement_id", "at"],
        select(ranked.c.customer_id, ranked.c.purpose, ranked.c.granted, ranked.c.id, ranked.c.at)
        .where(ranked.c.n == 1)))


def current_query(customer_ids: Sequence[int]):
    """The current consents of golden records, joined to the statement that set each."""
    return (select(CONSENT.c.customer_id, CONSENT.c.purpose, CONSENT.c.granted, STATEMENT.c.at, STATEMENT.c.system,
                   STATEMENT.c.actor, STATEMENT.c.evidence, STATEMENT.c.recorded_at, STATEMENT.c.id)
            .join(STATEMENT, STATEMENT.c.id == CONSENT.c.statement_id)
            .where(CONSENT.c.customer_id.in_(customer_ids))
            .order_by(CONSENT.c.customer_id, CONSENT.c.purpose))


def history_query(customer_ids: Sequence[int]):
    """Every statement of golden records, oldest first."""
    return (select(STATEMENT.c.customer_id, STATEMENT.c.purpose, STATEMENT.c.granted, STATEMENT.c.at,
                   STATEMENT.c.system, STATEMENT.c.actor, STATEMENT.c.evidence, STATEMENT.c.recorded_at,
                   STATEMENT.c.id)
            .where(STATEMENT.c.customer_id.in_(customer_ids))
            .order_by(STATEMENT.c.customer_id, STATEMENT.c.at, STATEMENT.c.id))
