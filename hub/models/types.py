"""Column types that behave the same on PostgreSQL and SQLite."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

# BIGINT ids on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """A timestamp stored with its zone and always read back as an aware UTC datetime."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


# --- personal values sealed at rest (hub.privacy.sealing installs the sealer) ---------------------------------

class SealingNotConfigured(RuntimeError):
    """A sealed column was written or read before `hub.privacy.sealing.configure` ran in this process."""


class _Hook:
    """Where hub.privacy.sealing installs the process's sealer (the models sit below the privacy capability)."""

    sealer = None

    def get(self):
        sealer = self.sealer
        if sealer is None:
            raise SealingNotConfigured("encryption at rest is not configured in this process "
                                       "(hub.privacy.sealing.configure(settings) must run first)")
        return sealer.current()


SEALING = _Hook()


class SealedAttribute(TypeDecorator):
    """A person attribute stored sealed (AES-GCM) when the configuration says so, else as plain text.

    Writing takes the Python value (a str, or a date for date_of_birth) or an already sealed text
    (passed through); reading opens sealed text and gives the Python value back, so Core and ORM
    reads see clear values whatever the stored form.
    """

    impl = sa.String(200)
    cache_ok = True

    def __init__(self, attribute: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.attribute = attribute

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return SEALING.get().stored(self.attribute, value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return SEALING.get().value(self.attribute, value)

    def __repr__(self) -> str:  # how Alembic renders it in a migration
        return f"sa.String(length={self.impl.length})"


class SealedJSON(TypeDecorator):
    """A JSON document whose personal values (by `shape`: raw, changes, features) are sealed at rest."""

    impl = sa.JSON
    cache_ok = True

    def __init__(self, shape: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shape = shape

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return SEALING.get().seal_document(self.shape, value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return SEALING.get().open_document(self.shape, value)

    def __repr__(self) -> str:
        return "sa.JSON()"
