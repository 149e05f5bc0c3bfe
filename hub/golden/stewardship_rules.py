"""What follows a golden record when it is merged away: candidates, steward rules, overrides."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import any_of, value_rows
from hub.models import NOT_A_MATCH, SPLIT, Lineage, MatchCandidate, StewardRule
from hub.models.matching import PENDING, SUPERSEDED
from hub.golden.survivorship import STEWARD_OVERRIDE

MC, RULE, LINEAGE = MatchCandidate.__table__, StewardRule.__table__, Lineage.__table__


def has_rules(customer_id_column) -> Any:
    """A column telling whether a steward rule concerns the golden record in `customer_id_column`."""
    return exists(select(RULE.c.id).where(RULE.c.active, or_(RULE.c.customer_id == customer_id_column,
                                                             RULE.c.other_customer_id == customer_id_column))
                  ).label("has_rules")


async def load_steward_memory(session: AsyncSession, planner, golden_ids: set[int]) -> None:
    """Teach the planner the steward decisions that concern these golden records."""
    if not golden_ids:
        return
    ids = sorted(golden_ids)
    rows = await session.execute(select(RULE.c.kind, RULE.c.customer_id, RULE.c.other_customer_id,
                                        RULE.c.source_record_id).where(
        RULE.c.active, or_(any_of(session, RULE.c.customer_id, ids), any_of(session, RULE.c.other_customer_id, ids))))
    for kind, a, b, record in rows:
        if kind in (NOT_A_MATCH, SPLIT):
            planner.apart.add((a, b))
        if kind == SPLIT and record is not None:
            planner.forbidden.setdefault(record, set()).add(b)


async def follow_merges(session: AsyncSession, merges: Mapping[int, int], *, now: dt.datetime) -> None:
    """Point candidates and steward rules of merged-away golden records at their survivors, set-based.

    Candidates left with both sides in one golden record are SUPERSEDED; rules between two records now
    in one golden record are deactivated (they say nothing any more). Overrides: `carry_overrides`.
    """
    pairs = value_rows(session, {"lo": (BigInteger, list(merges)), "su": (BigInteger, list(merges.values()))})
    for column in ("customer_id", "other_customer_id"):
        for table in (MC, RULE):
            await session.execute(update(table).where(table.c[column] == pairs.c.lo).values({column: pairs.c.su}))
    survivors = sorted(set(merges.values()))
    await session.execute(update(MC).where(MC.c.status == PENDING, MC.c.customer_id == MC.c.other_customer_id,
                                           any_of(session, MC.c.customer_id, survivors))
                          .values(status=SUPERSEDED, resolved_at=now))
    await session.execute(update(RULE).where(RULE.c.customer_id == RULE.c.other_customer_id,
                                             any_of(session, RULE.c.customer_id, survivors)).values(active=False))


async def carry_overrides(session: AsyncSession, merges: Mapping[int, int]) -> None:
    """Give a survivor the merged-away records' steward overrides for fields it does not override itself."""
    losers = list(merges)
    rows = (await session.execute(select(LINEAGE).where(LINEAGE.c.customer_id.in_(losers),
                                                        LINEAGE.c.rule == STEWARD_OVERRIDE))).all()
    if not rows:
        return
    for row in rows:
        survivor = merges[row.customer_id]
        taken = await session.scalar(select(LINEAGE.c.field).where(
            LINEAGE.c.customer_id == survivor, LINEAGE.c.field == row.field, LINEAGE.c.rule == STEWARD_OVERRIDE))
        if taken is None:
            # the survivor's own (computed) lineage for that field is rewritten by its recompute
            await session.execute(delete(LINEAGE).where(and_(LINEAGE.c.customer_id == survivor,
                                                             LINEAGE.c.field == row.field)))
            await session.execute(LINEAGE.insert().values(customer_id=survivor, field=row.field, value=row.value,
                                                          source_record_id=None, rule=STEWARD_OVERRIDE,
                                                          actor=row.actor))
