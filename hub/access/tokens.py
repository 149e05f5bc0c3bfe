"""Bearer tokens: minted once, stored as a SHA-256 hash, revoked by subject."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authz import Authorizer
from hub.access.policy import list_rows
from hub.db import Reads
from hub.errors import BadInput
from hub.models import ApiToken, SourceSystem, utcnow

PREFIX = "hub_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, role and, for a source, its system."""

    subject: str
    role: str
    system: str | None = None


def hash_token(token: str) -> str:
    """Hash a token for storage and lookup.

    Tokens carry 256 random bits, so a plain SHA-256 is enough: there is nothing to brute-force,
    and lookup stays one indexed equality.
    """
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(*, session: AsyncSession, subject: str, role: str, system: str | None = None,
                       authorizer: Authorizer | None = None) -> str:
    """Mint a token for a subject and role; return it (it is not stored).

    A role the policy binds to one system (`Authorizer.system_bound`: it may register records, and not
    for every system) gets a token only with a system. `authorizer` holds the policy to decide by;
    by default the stored one.
    """
    subject, role = subject.strip(), role.strip()
    if not subject or not role:
        raise BadInput("subject and role must not be empty")
    if not system:
        if authorizer is None:
            authorizer = Authorizer(await list_rows(session=session) or None)
        if authorizer.system_bound(role):
            raise BadInput(f"role {role!r} may register records, so its token needs --system: the one system "
                           "it registers for")
    if system and await session.get(SourceSystem, system) is None:
        raise BadInput(f"unknown source system {system!r}; register it first")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=hash_token(token), subject=subject, role=role, system=system))
    await session.flush()
    return token


async def revoke_tokens(*, session: AsyncSession, subject: str) -> int:
    """Revoke every live token of a subject; return how many."""
    result = await session.execute(update(ApiToken).where(ApiToken.subject == subject, ApiToken.revoked_at.is_(None))
                                   .values(revoked_at=utcnow()))
    return result.rowcount or 0


_T = ApiToken.__table__
_LOOKUP = select(_T.c.subject, _T.c.role, _T.c.system).where(_T.c.token_hash == bindparam("h"),
                                                             _T.c.revoked_at.is_(None))


async def authenticate(*, reads: Reads, token: str) -> Principal | None:
    """Return the principal of a live token, or None (one indexed lookup: revocation applies at once)."""
    if not token.startswith(PREFIX):
        return None
    row = await reads.first(_LOOKUP, {"h": hash_token(token)})
    return Principal(row.subject, row.role, row.system) if row else None
