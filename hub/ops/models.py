"""Match model versions: a trained model is a candidate until promoted; the hub matches with the promoted one.

`hub train` stores a candidate and evaluates it against the promoted model (`evaluate`: what a rematch
with it would change: merges, splits, records moved, golden record sizes); `promote` makes a version the
one registration and `hub rematch` use (the previous one is retired), `rollback` promotes again the
version promoted before the current one. At most one version is promoted; none means the shipped model.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select, update

from hub.config import Settings
from hub.db import Database
from hub.errors import BadInput, NotFound
from hub.models import utcnow
from hub.models.matching import CANDIDATE, PROMOTED, RETIRED, MatchModelVersion

MODEL = MatchModelVersion.__table__
LISTED = (MODEL.c.id, MODEL.c.status, MODEL.c.created_at, MODEL.c.promoted_at, MODEL.c.actor, MODEL.c.records,
          MODEL.c.seconds, MODEL.c.note, MODEL.c.evaluation)


async def promoted(*, db: Database) -> tuple[int, dict[str, Any]] | None:
    """(id, model JSON) of the promoted version, or None (the shipped model is in use)."""
    async with db.session() as session:
        row = (await session.execute(select(MODEL.c.id, MODEL.c.model).where(MODEL.c.status == PROMOTED)
                                     .order_by(MODEL.c.id.desc()).limit(1))).first()
    return (row.id, row.model) if row is not None else None


async def list_models(*, db: Database) -> list[dict[str, Any]]:
    """Every stored version, newest first, without the model JSON."""
    async with db.session() as session:
        rows = (await session.execute(select(*LISTED).order_by(MODEL.c.id.desc()))).mappings().all()
    return [dict(r) for r in rows]


async def get_model(*, db: Database, model_id: int) -> dict[str, Any]:
    """One version with its model JSON, parameters and evaluation."""
    async with db.session() as session:
        row = (await session.execute(select(MODEL).where(MODEL.c.id == model_id))).mappings().first()
    if row is None:
        raise NotFound(f"no stored match model {model_id}")
    return dict(row)


async def promote(*, db: Database, model_id: int) -> int | None:
    """Make a stored version the one in use; the previously promoted one is retired. Returns the previous id."""
    async with db.write() as session:
        status = await session.scalar(select(MODEL.c.status).where(MODEL.c.id == model_id))
        if status is None:
            raise NotFound(f"no stored match model {model_id}")
        if status == PROMOTED:
            return model_id
        before = await session.scalar(select(MODEL.c.id).where(MODEL.c.status == PROMOTED))
        await session.execute(update(MODEL).where(MODEL.c.status == PROMOTED).values(status=RETIRED))
        await session.execute(update(MODEL).where(MODEL.c.id == model_id).values(status=PROMOTED,
                                                                                 promoted_at=utcnow()))
    return before


async def rollback(*, db: Database) -> tuple[int, int | None]:
    """Retire the promoted version and promote again the one promoted before it (none: the shipped model);
    each rollback goes one promotion further back.

    Returns (retired id, now promoted id or None)."""
    async with db.write() as session:
        current = (await session.execute(select(MODEL.c.id, MODEL.c.promoted_at).where(
            MODEL.c.status == PROMOTED))).first()
        if current is None:
            raise BadInput("no promoted match model to roll back (the shipped model is in use)")
        previous = await session.scalar(
            select(MODEL.c.id).where(MODEL.c.status == RETIRED, MODEL.c.promoted_at.is_not(None),
                                     MODEL.c.promoted_at < current.promoted_at)
            .order_by(MODEL.c.promoted_at.desc(), MODEL.c.id.desc()).limit(1))
        await session.execute(update(MODEL).where(MODEL.c.id == current.id).values(status=RETIRED))
        if previous is not None:
            # its promotion time stays: a second rollback goes further back, not forth again
            await session.execute(update(MODEL).where(MODEL.c.id == previous).values(status=PROMOTED))
    return current.id, previous


def size_distribution(sizes: Counter) -> dict[str, int]:
    """Golden records / clusters by size: 1, 2, 3, 4, 5-9, 10+ records."""
    out: Counter = Counter()
    for size, n in sizes.items():
        out[str(size) if size < 5 else ("5-9" if size < 10 else "10+")] += n
    return {k: out[k] for k in ("1", "2", "3", "4", "5-9", "10+") if out[k]}


async def evaluate(*, db: Database, settings: Settings, model_id: int, model_json: dict[str, Any],
                   progress=None) -> dict[str, Any]:
    """What a rematch with this model would change in the golden records (formed by the model in use), stored
    with the version: the plan's counts, the share of golden records it splits, golden record sizes now and
    after; and, where stewards decided (MANUAL_MERGE, NOT_A_MATCH, SPLIT rules), how this model's clusters
    and the model in use's agree with those decisions (`label_agreement`)."""
    from hub.ops.rematch import plan_rematch
    from hub.ops.training import default_model_json

    plan = await plan_rematch(db=db, settings=settings, model_json=model_json, progress=progress,
                              model_version=model_id)
    counts = plan.counts
    before, after = plan.size_counts
    in_use = await promoted(db=db)
    labels = {"candidate": plan.labels}
    if plan.labels.get("labels"):   # steward decisions: the model in use against the same labels
        current = await plan_rematch(db=db, settings=settings, progress=progress,
                                     model_json=in_use[1] if in_use else default_model_json())
        labels["in_use"] = current.labels
    evaluation = {"against": in_use[0] if in_use else "default", "rematch": counts, "steward_labels": labels,
                  "split_share": round(counts["splits"] / counts["golden"], 6) if counts["golden"] else 0.0,
                  "golden_sizes_now": size_distribution(before), "cluster_sizes": size_distribution(after),
                  "examples": plan_examples(plan)}
    async with db.write() as session:
        await session.execute(update(MODEL).where(MODEL.c.id == model_id).values(evaluation=evaluation))
    return evaluation


def plan_examples(plan, limit: int = 10) -> list[str]:
    from hub.ops.rematch import examples

    return examples(plan, limit)


__all__ = ["CANDIDATE", "PROMOTED", "RETIRED", "evaluate", "get_model", "list_models", "promote", "promoted",
           "rollback", "size_distribution"]
