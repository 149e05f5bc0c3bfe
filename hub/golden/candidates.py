"""Match candidates: uncertain pairs of golden records queued for a steward."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import MatchCandidate
from hub.models.matching import PENDING

MC = MatchCandidate.__table__


def explanation_json(explanation) -> list[dict] | None:
    """Turn a model's explanation into JSON rows (comparison, level, matchWeight)."""
    if explanation is None:
        return None
    return [{"comparison": e.comparison, "level": e.level, "matchWeight": round(float(e.match_weight), 6)}
            for e in explanation]


async def queue_candidates(session: AsyncSession, pairs: Iterable[tuple[int, int, float, object]], *,
                           now: dt.datetime, middle: float) -> None:
    """Queue (new golden record, best existing one, probability, explanation) pairs for review.

    `middle` is the middle of the review band: the queue serves the candidates nearest it first.
    """
    rows = [{"customer_id": a, "other_customer_id": b, "probability": float(p), "uncertainty": abs(float(p) - middle),
             "explanation": explanation_json(e), "status": PENDING, "created_at": now}
            for a, b, p, e in pairs if a != b]
    if rows:
        await session.execute(insert(MC), rows)
