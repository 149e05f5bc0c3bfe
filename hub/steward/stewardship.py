"""Steward decisions: resolve candidates, merge, split, unmerge, override; and reading the past.

Every decision runs in the caller's write transaction (one unit of work), is an event with its actor
and note, and is remembered as a steward rule where the matcher must respect it later.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.golden.attributes import API_NAME, STORAGE_NAME
from hub.errors import BadInput, Conflict, NotFound
from hub.golden.values import recompute, typed
from hub.models import (
    ACTIVE, ERASED, MANUAL_MERGE, MERGED, NOT_A_MATCH, SPLIT, Customer, Event, MatchCandidate, SourceRecord, StewardRule,
    utcnow,
)
from hub.models.matching import ACCEPTED, PENDING, REJECTED
from hub.ingest.records import merge_into
from hub.privacy.consent import follow as follow_consents
from hub.ingest.standardise import SystemProfile, standardise

CUSTOMER, SR, MC, RULE, EVENT = (Customer.__table__, SourceRecord.__table__, MatchCandidate.__table__,
                                 StewardRule.__table__, Event.__table__)
MERGE, NOT_A_MATCH_DECISION = "MERGE", "NOT_A_MATCH"
MAX_MERGE = 100  # golden records one mergeCustomers call may name (each is read under the write lock)


async def live_customer(session: AsyncSession, customer_id: int) -> Any:
    """The live golden record an id names (following a merge), or NOT_FOUND."""
    row = (await session.execute(select(CUSTOMER).where(CUSTOMER.c.id == customer_id))).first()
    if row is not None and row.status == MERGED:
        row = (await session.execute(select(CUSTOMER).where(CUSTOMER.c.id == row.merged_into))).first()
    if row is None or row.status != ACTIVE:
        raise NotFound(f"no customer {customer_id}")
    return row


def check_version(row: Any, expected: int | None) -> None:
    """Refuse a change made against a version that is no longer current."""
    if expected is not None and row.version != expected:
        raise Conflict(f"customer {row.id} is at version {row.version}, not {expected}: reload it and try again")


async def _rule(session: AsyncSession, kind: str, a: int, b: int, *, actor: str, now: dt.datetime,
                note: str | None, record: int | None = None) -> None:
    await session.execute(insert(RULE).values(kind=kind, customer_id=a, other_customer_id=b, source_record_id=record,
                                              active=True, actor=actor, at=now, note=note))


async def _forget_rules(session: AsyncSession, ids: Sequence[int], kinds: Sequence[str]) -> None:
    """Deactivate steward rules of these kinds between any two of these golden records."""
    await session.execute(update(RULE).where(RULE.c.active, RULE.c.kind.in_(kinds), RULE.c.customer_id.in_(ids),
                                             RULE.c.other_customer_id.in_(ids)).values(active=False))


async def merge_customers(*, session: AsyncSession, ids: Sequence[int], actor: str, note: str | None = None,
                          expected_versions: Sequence[int] | None = None, reason: str = "steward merge") -> int:
    """Merge golden records into the first one; return the survivor's id.

    A steward's merge overrides earlier "not a match" decisions between them, and is remembered so
    that no re-match ever splits them.
    """
    if not 2 <= len(ids) <= MAX_MERGE:
        raise BadInput(f"mergeCustomers takes 2 to {MAX_MERGE} ids; got {len(ids)}")
    rows = [await live_customer(session, i) for i in ids]
    if expected_versions is not None:
        if len(expected_versions) != len(ids):
            raise BadInput("expectedVersions must give one version per id")
        for row, version in zip(rows, expected_versions, strict=True):
            check_version(row, version)
    survivor = rows[0].id
    losers = list(dict.fromkeys(r.id for r in rows[1:] if r.id != survivor))
    if not losers:
        raise BadInput("mergeCustomers needs at least two different customers")
    now = utcnow()
    await _forget_rules(session, [survivor, *losers], (NOT_A_MATCH, SPLIT))
    await merge_into(session, {lo: survivor for lo in losers}, actor=actor, now=now, reason=reason, note=note)
    for lo in losers:
        await _rule(session, MANUAL_MERGE, survivor, lo, actor=actor, now=now, note=note)
    await recompute(session, {survivor: {"merged": losers}}, actor=actor, now=now, note=note)
    return survivor


async def resolve_candidate(*, session: AsyncSession, candidate_id: int, decision: str, actor: str,
                            note: str | None = None, expected_version: int | None = None) -> int:
    """Decide a match candidate: merge the two golden records, or remember they differ."""
    cand = (await session.execute(select(MC).where(MC.c.id == candidate_id))).first()
    if cand is None:
        raise NotFound(f"no match candidate {candidate_id}")
    if cand.status != PENDING:
        raise Conflict(f"match candidate {candidate_id} is already {cand.status}"
                       + (f" (by {cand.resolved_by})" if cand.resolved_by else ""))
    a, b = await live_customer(session, cand.customer_id), await live_customer(session, cand.other_customer_id)
    check_version(a, expected_version)
    now = utcnow()
    if decision == MERGE:
        older, newer = sorted((a.id, b.id))
        await merge_customers(session=session, ids=[older, newer], actor=actor, note=note,
                              reason=f"match candidate {candidate_id} accepted")
    elif decision == NOT_A_MATCH_DECISION:
        await _rule(session, NOT_A_MATCH, a.id, b.id, actor=actor, now=now, note=note)
        await session.execute(insert(EVENT), [
            {"customer_id": x, "kind": "NOT_A_MATCH", "at": now, "actor": actor, "note": note,
             "changes": {"other": y, "candidate": candidate_id}} for x, y in ((a.id, b.id), (b.id, a.id))])
    else:
        raise BadInput(f"unknown decision {decision!r}")
    await session.execute(update(MC).where(MC.c.id == candidate_id).values(
        status=ACCEPTED if decision == MERGE else REJECTED, resolved_by=actor, resolved_at=now, note=note))
    return candidate_id


async def split_record(*, session: AsyncSession, system: str, key: str, actor: str, note: str | None = None,
                       expected_version: int | None = None) -> int:
    """Move one source record out to a golden record of its own; it never links back."""
    rec = (await session.execute(select(SR.c.id, SR.c.customer_id).where(SR.c.system == system, SR.c.key == key))
           ).first()
    if rec is None:
        raise NotFound(f"no source record {system}/{key}")
    home = await live_customer(session, rec.customer_id)
    check_version(home, expected_version)
    others = await session.scalar(select(SR.c.id).where(SR.c.customer_id == home.id, SR.c.id != rec.id).limit(1))
    if others is None:
        raise BadInput(f"{system}/{key} is the only record of customer {home.id}: there is nothing to split from")
    now = utcnow()
    new_id = (await session.execute(insert(CUSTOMER).values(status=ACTIVE, version=0, created_at=now, updated_at=now)
                                    .returning(CUSTOMER.c.id))).scalar_one()
    await session.execute(update(SR).where(SR.c.id == rec.id).values(customer_id=new_id))
    await _forget_rules(session, [home.id, new_id], (MANUAL_MERGE,))
    await _rule(session, SPLIT, new_id, home.id, actor=actor, now=now, note=note, record=rec.id)
    await follow_consents(session, customers=[home.id, new_id])
    ref = {"system": system, "key": key}
    await recompute(session, {home.id: {"split": [ref], "into": new_id}, new_id: {"split": [ref], "from": home.id}},
                    actor=actor, now=now, note=note, kind="SPLIT")
    return new_id


async def unmerge_customer(*, session: AsyncSession, customer_id: int, actor: str, note: str | None = None) -> int:
    """Undo a merge: bring a merged-away golden record back with the records it had."""
    row = (await session.execute(select(CUSTOMER).where(CUSTOMER.c.id == customer_id))).first()
    if row is None:
        raise NotFound(f"no customer {customer_id}")
    if row.status != MERGED:
        raise Conflict(f"customer {customer_id} is {row.status}, not merged away")
    survivor = await live_customer(session, row.merged_into)
    merged = (await session.execute(select(EVENT.c.changes).where(EVENT.c.customer_id == customer_id,
                                                                  EVENT.c.kind == "MERGED_AWAY")
                                    .order_by(EVENT.c.id.desc()).limit(1))).scalar()
    records = list((merged or {}).get("records") or [])
    if not records:
        raise Conflict(f"customer {customer_id}'s merge did not record its source records; split them instead")
    now = utcnow()
    back = (await session.execute(update(SR).where(SR.c.id.in_(records), SR.c.customer_id == survivor.id)
                                  .values(customer_id=customer_id).returning(SR.c.id))).scalars().all()
    if not back:
        raise Conflict(f"none of customer {customer_id}'s records is still in customer {survivor.id}")
    remaining = await session.scalar(select(SR.c.id).where(SR.c.customer_id == survivor.id).limit(1))
    if remaining is None:
        await session.execute(update(SR).where(SR.c.id.in_(back)).values(customer_id=survivor.id))
        raise Conflict(f"every record of customer {survivor.id} came from {customer_id}: nothing would remain")
    await session.execute(update(CUSTOMER).where(CUSTOMER.c.id == customer_id).values(
        status=ACTIVE, merged_into=None, updated_at=now))
    await _forget_rules(session, [survivor.id, customer_id], (MANUAL_MERGE,))
    await _rule(session, NOT_A_MATCH, customer_id, survivor.id, actor=actor, now=now, note=note)
    await follow_consents(session, customers=[customer_id, survivor.id])
    await recompute(session, {customer_id: {"unmerged_from": survivor.id, "records": sorted(back)},
                              survivor.id: {"unmerged": customer_id, "records": sorted(back)}},
                    actor=actor, now=now, note=note, kind="UNMERGED")
    return customer_id


async def override_attribute(*, session: AsyncSession, customer_id: int, field: str, value: str | None,
                             actor: str, note: str, expected_version: int | None = None) -> int:
    """Set (or clear, with None) a steward's value for one attribute; it survives every recompute."""
    if field not in STORAGE_NAME:
        raise BadInput(f"unknown attribute {field!r}; use one of {', '.join(API_NAME.values())}")
    if not (note or "").strip():
        raise BadInput("an override needs a note saying why")
    row = await live_customer(session, customer_id)
    check_version(row, expected_version)
    text = None
    if value is not None:
        std = standardise({field: value}, SystemProfile(default_country=row.country))
        if std.errors:
            raise BadInput(f"{field}: {std.errors[0].message}")
        stored = std.values.get(STORAGE_NAME[field])
        if stored is None:
            raise BadInput(f"{field}: {value!r} is empty after standardisation; clear the override with null")
        text = stored.isoformat() if isinstance(stored, dt.date) else str(stored)
    now = utcnow()
    await recompute(session, {row.id: {"override": {"field": field, "value": text}}}, actor=actor, now=now,
                    note=note, kind="OVERRIDDEN", overrides={row.id: {field: text}})
    return row.id


async def customer_as_of(*, session: AsyncSession, customer_id: int, at: dt.datetime) -> Any | None:
    """The golden record as it was at a moment: its values and version replayed from its events.

    Nothing for an erased customer (nor for an id forwarding to one): its past is erased too.
    """
    state = (await session.execute(select(CUSTOMER.c.status, CUSTOMER.c.merged_into)
                                   .where(CUSTOMER.c.id == customer_id))).first()
    if state is not None and state.status == MERGED:
        state = (await session.execute(select(CUSTOMER.c.status, CUSTOMER.c.merged_into)
                                       .where(CUSTOMER.c.id == state.merged_into))).first()
    if state is None or state.status == ERASED:
        return None
    rows = (await session.execute(select(EVENT).where(EVENT.c.customer_id == customer_id, EVENT.c.at <= at)
                                  .order_by(EVENT.c.id))).all()
    if not rows:
        return None
    values: dict[str, Any] = {}
    version, status = 1, ACTIVE
    for ev in rows:
        changes = ev.changes or {}
        for name, change in (changes.get("fields") or {}).items():
            values[name] = change.get("after") if isinstance(change, dict) else change
        version = changes.get("version", version)
        status = {"MERGED_AWAY": MERGED, "RETIRED": "RETIRED", "UNMERGED": ACTIVE}.get(ev.kind, status)
    return SimpleNamespace(id=customer_id, version=version, status=status, created_at=rows[0].at,
                           updated_at=rows[-1].at, **{STORAGE_NAME[f]: typed(f, v) for f, v in values.items()
                                                     if f in STORAGE_NAME},
                           **{a: None for a in STORAGE_NAME.values() if API_NAME[a] not in values})


__all__ = ["MERGE", "NOT_A_MATCH_DECISION", "check_version", "customer_as_of", "live_customer", "merge_customers",
           "override_attribute", "resolve_candidate", "split_record", "unmerge_customer"]
