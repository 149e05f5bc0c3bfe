"""Register and list source systems."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.errors import BadInput, NotFound
from hub.models import Event, SourceSystem
from hub.ingest.standardise import SystemProfile, standardise

DATE_ORDERS = ("YMD", "DMY", "MDY")
# a system's settings change rarely and are read by every registration: each process keeps them this long
# (a change made through this process applies at once; through another, within this many seconds)
CACHE_SECONDS = 5.0
_cache: dict[str, tuple[float, Any]] = {}


async def system_settings(conn, name: str) -> Any:
    """A source system's row (name, date order, default country, trust, ...), or NOT_FOUND."""
    hit = _cache.get(name)
    if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    table = SourceSystem.__table__
    row = (await conn.execute(select(table).where(table.c.name == name))).first()
    if row is None:
        raise NotFound(f"unknown source system {name!r}; register it with registerSourceSystem first")
    _cache[name] = (time.monotonic(), row)
    return row


async def register_system(*, session: AsyncSession, name: str, description: str | None, date_order: str,
                          default_country: str | None, trust: int, actor: str,
                          retention_days: int | None = None) -> SourceSystem:
    """Create a source system or update its settings (retention_days None: records are kept)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise BadInput("name must be 1 to 100 characters")
    if date_order not in DATE_ORDERS:
        raise BadInput(f"dateOrder must be one of {', '.join(DATE_ORDERS)}")
    if not 0 <= trust <= 100:
        raise BadInput("trust must be between 0 and 100")
    if retention_days is not None and not 1 <= retention_days <= 36_500:
        raise BadInput("retentionDays must be between 1 and 36500 (or null: no retention period)")
    country = None
    if default_country:
        country = standardise({"country": default_country}, SystemProfile()).values.get("country")
        if country is None:
            raise BadInput(f"defaultCountry {default_country!r} is not a known country")
    system = await session.get(SourceSystem, name)
    before = None
    if system is None:
        system = SourceSystem(name=name)
        session.add(system)
    else:
        before = _settings(system)
    system.description, system.date_order, system.default_country, system.trust, system.retention_days = (
        description, date_order, country, trust, retention_days)
    after = _settings(system)
    _cache.pop(name, None)
    if before != after:
        session.add(Event(kind="SYSTEM_REGISTERED" if before is None else "SYSTEM_UPDATED", actor=actor,
                          changes={"system": name, "before": before, "after": after}))
    await session.flush()
    return system


def _settings(s: SourceSystem) -> dict:
    return {"description": s.description, "dateOrder": s.date_order, "defaultCountry": s.default_country,
            "trust": s.trust, "retentionDays": s.retention_days}


async def get_system(*, session: AsyncSession, name: str) -> SourceSystem:
    """Return a source system or fail with NOT_FOUND."""
    system = await session.get(SourceSystem, name)
    if system is None:
        raise NotFound(f"unknown source system {name!r}; register it with registerSourceSystem first")
    return system
