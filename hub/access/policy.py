"""The authorization policy stored in the database: list, add and remove rows, each edit audited.

Rows are Casbin rows as `authz` reads them: ("p", role, object, action, allow|deny) or ("g", member role,
parent role). Every edit bumps the revision in `authz_revision` in the same transaction, so a running
server notices it with one primary-key read (`REVISION_QUERY`) and then reloads `RULES_QUERY`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authz import validate_row
from hub.errors import BadInput
from hub.models import AuthzRevision, AuthzRule, Event, utcnow

POLICY_CHANGED = "POLICY_CHANGED"
RULE, REVISION = AuthzRule.__table__, AuthzRevision.__table__
RULES_QUERY = select(RULE.c.ptype, RULE.c.subject, RULE.c.object, RULE.c.action, RULE.c.effect).order_by(RULE.c.id)
REVISION_QUERY = select(REVISION.c.revision).where(REVISION.c.id == 1)
_LIMITS = {"subject": 100, "object": 200}


def as_row(stored: Any) -> tuple[str, ...]:
    """An authz_rule row (ptype, subject, object, action, effect) as a Casbin row."""
    ptype, subject, obj, action, effect = stored
    return (ptype, subject, obj, action, effect) if ptype == "p" else (ptype, subject, obj)


def parse_row(words: Sequence[str]) -> tuple[str, ...]:
    """Validate a row; `role object action effect` without the leading "p" is a p row. Raises BadInput."""
    words = [w.strip().rstrip(",") for w in words]
    if words and words[0] not in ("p", "g"):
        words = ["p", *words]
    try:
        row = validate_row(words)
    except ValueError as e:
        raise BadInput(str(e)) from None
    for name, value in (("subject", row[1]), ("object", row[2])):
        if len(value) > _LIMITS[name]:
            raise BadInput(f"invalid policy row {row!r}: {name} longer than {_LIMITS[name]} characters")
    return row


def _columns(row: tuple[str, ...]) -> dict[str, str]:
    """A Casbin row as authz_rule columns (a g row leaves action and effect empty)."""
    ptype, subject, obj, *rest = row
    action, effect = rest if rest else ("", "")
    return {"ptype": ptype, "subject": subject, "object": obj, "action": action, "effect": effect}


def _matches(row: tuple[str, ...]) -> list:
    """The conditions that find a row's stored copy."""
    return [RULE.c[name] == value for name, value in _columns(row).items()]


async def list_rows(*, session: AsyncSession) -> list[tuple[str, ...]]:
    """Return the stored policy rows in the order they were added."""
    return [as_row(r) for r in await session.execute(RULES_QUERY)]


async def current_revision(*, session: AsyncSession) -> int | None:
    """Return the stored policy's revision (None when it has never been seeded)."""
    return (await session.execute(REVISION_QUERY)).scalar_one_or_none()


async def add_row(*, session: AsyncSession, row: Sequence[str], actor: str) -> int | None:
    """Add a row; return the new revision, or None when the row is already there (nothing written)."""
    row = parse_row(row)
    if await session.scalar(select(RULE.c.id).where(*_matches(row))) is not None:
        return None
    await session.execute(insert(RULE).values(_columns(row)))
    return await _changed(session, actor, added=row)


async def remove_row(*, session: AsyncSession, row: Sequence[str], actor: str) -> int | None:
    """Remove a row; return the new revision, or None when the row is not there (nothing written)."""
    row = parse_row(row)
    rule_id = await session.scalar(select(RULE.c.id).where(*_matches(row)))
    if rule_id is None:
        return None
    if await session.scalar(select(RULE.c.id).where(RULE.c.id != rule_id).limit(1)) is None:
        # an empty table means "not seeded" and servers fall back to the default policy file
        raise BadInput(f"{row!r} is the last policy row; an empty policy would fall back to the default one")
    await session.execute(delete(RULE).where(RULE.c.id == rule_id))
    return await _changed(session, actor, removed=row)


async def _changed(session: AsyncSession, actor: str, **change: tuple[str, ...]) -> int:
    """Bump the revision and write the audit event of one edit; return the new revision."""
    now = utcnow()
    revision = (await session.execute(update(REVISION).where(REVISION.c.id == 1)
                                      .values(revision=REVISION.c.revision + 1, updated_at=now)
                                      .returning(REVISION.c.revision))).scalar_one_or_none()
    if revision is None:
        revision = 1
        await session.execute(insert(REVISION).values(id=1, revision=revision, updated_at=now))
    session.add(Event(customer_id=None, kind=POLICY_CHANGED, at=now, actor=actor,
                      changes={**{k: list(v) for k, v in change.items()}, "revision": revision}))
    await session.flush()
    return revision
