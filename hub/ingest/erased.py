"""Erasure blocks: registration refuses the records of erased people, recognised by keyed hashes only.

An erasure (hub.privacy.erasure) stores, per erased person, the keyed hash (HMAC, hub.privacy.keys) of each
(source system, key) they had and of each exact-rule value tuple (HUB_EXACT_RULES: national id; email +
date of birth). A record whose own hashes meet a block is refused with code ERASED; nothing else of it is
kept. The hashes are computed here for both sides, so the erasure and the registration can never disagree.
"""
from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ARRAY, String, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.config import Settings
from hub.golden.attributes import as_text
from hub.models import ErasureBlock
from hub.privacy.keys import KeyRing

BLOCK = ErasureBlock.__table__
KEY_PURPOSE = "erasure-key"


def keyed(ring: KeyRing, value: str, purpose: str) -> str:
    """`ring.keyed_hash(value, purpose=purpose)`, by the one-shot C HMAC (a registration hashes thousands)."""
    return hmac.digest(ring.hash_key, f"{purpose}\x1f{value}".encode(), "sha256").hex()


def key_hash(ring: KeyRing, system: str, key: str) -> str:
    """The keyed hash of a source record's identity (system + key)."""
    return keyed(ring, f"{system}\x1f{key}", KEY_PURPOSE)


def rule_hashes(ring: KeyRing, values: Mapping[str, Any], rules: Sequence[Sequence[str]]) -> list[str]:
    """The keyed hashes of the exact-rule value tuples a record's standardised values fill."""
    out = []
    for rule in rules:
        parts = [as_text(values.get(a)) for a in rule]
        if all(parts):
            out.append(keyed(ring, "\x1f".join(parts), "erasure-rule:" + "+".join(rule)))
    return out


def text_in(session: AsyncSession, column, values: Sequence[str]) -> Any:
    """`column IN values` as a single parameter, however many values."""
    if session.bind.dialect.name == "postgresql":
        return column == func.any(literal(list(values), ARRAY(String)))
    return column.in_(select(func.json_each(json.dumps(list(values))).table_valued("value").c.value)
                      .scalar_subquery())


async def blocked(session: AsyncSession, hashes: Iterable[str]) -> set[str]:
    """The hashes among these that an erasure blocks (one indexed lookup)."""
    wanted = sorted(set(hashes))
    if not wanted:
        return set()
    return set((await session.execute(select(BLOCK.c.hash).where(text_in(session, BLOCK.c.hash, wanted))
                                      .distinct())).scalars())


async def any_blocks(session: AsyncSession) -> bool:
    """Tell whether any erasure block exists (one index probe): until the first erasure, no hashing at all."""
    return (await session.execute(_ANY)).first() is not None


_ANY = select(BLOCK.c.id).limit(1)


def record_hashes(ring: KeyRing, settings: Settings, system: str, key: str, values: Mapping[str, Any]) -> list[str]:
    """Every hash a record could be blocked on."""
    return [key_hash(ring, system, key), *rule_hashes(ring, values, settings.exact_rules)]
