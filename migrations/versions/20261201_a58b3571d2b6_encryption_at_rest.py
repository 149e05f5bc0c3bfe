"""encryption at rest: keyed-hash columns, wider sealed columns, existing values sealed

Revision ID: a58b3571d2b6
Revises: 7c1e5a9d0b34
Create Date: 2026-12-01 21:30:00

National id and date of birth become text columns wide enough for sealed values (date of birth was a
DATE), source records get their keyed hashes (`national_id_hash`, `date_of_birth_hash`, indexed: the
deterministic rules look records up by them), and every value already stored is sealed in place, in
batches: the columns, the raw payloads, the stored match features, lineage values and event changes;
the stored blocking keys and the payloads' content hashes become keyed hashes. It needs the keys (HUB_KEYS / HUB_KEY_FILE) only when the
hub holds data. Downgrading opens every value again and drops the blocking keys (run `hub reindex` then).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a58b3571d2b6'
down_revision: str | None = '7c1e5a9d0b34'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000
SEALED_FIELDS = ("nationalId", "dateOfBirth")

# the tables as stored, around the hub's sealing column types
SR = sa.table("source_record", sa.column("id", sa.BigInteger), sa.column("national_id", sa.String),
              sa.column("content_hash", sa.String),
              sa.column("date_of_birth", sa.String), sa.column("raw", sa.JSON), sa.column("match_features", sa.JSON),
              sa.column("national_id_hash", sa.String), sa.column("date_of_birth_hash", sa.String))
CUSTOMER = sa.table("customer", sa.column("id", sa.BigInteger), sa.column("national_id", sa.String),
                    sa.column("date_of_birth", sa.String))
LINEAGE = sa.table("lineage", sa.column("customer_id", sa.BigInteger), sa.column("field", sa.String),
                   sa.column("value", sa.String))
EVENT = sa.table("event", sa.column("id", sa.BigInteger), sa.column("changes", sa.JSON))
BK = sa.table("blocking_key", sa.column("key", sa.String), sa.column("source_record_id", sa.BigInteger))


def _sealer():
    """The process's sealer (the hub's keys); configured from the environment if nothing did it yet."""
    from hub.config import get_settings
    from hub.models.types import SEALING
    from hub.privacy.sealing import configure

    return SEALING.sealer.current() if SEALING.sealer is not None else configure(get_settings())


def _has_data(bind) -> bool:
    return any(bind.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is not None
               for t in (SR, CUSTOMER, EVENT))


def _types(to_text: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in ("source_record", "customer"):
        if sqlite and not to_text:
            # SQLite copies the table with CAST(date_of_birth AS DATE), which keeps only the year of an ISO
            # text: the texts wait in a column of their own and come back after the copy (stored as text)
            with op.batch_alter_table(table) as batch:
                batch.add_column(sa.Column("dob_text", sa.String(200), nullable=True))
            op.execute(f"UPDATE {table} SET dob_text = date_of_birth")
        with op.batch_alter_table(table) as batch:
            if to_text:
                batch.alter_column("national_id", existing_type=sa.String(64), type_=sa.String(200))
                batch.alter_column("date_of_birth", existing_type=sa.Date(), type_=sa.String(200),
                                   postgresql_using="to_char(date_of_birth, 'YYYY-MM-DD')")
            else:
                batch.alter_column("national_id", existing_type=sa.String(200), type_=sa.String(64))
                batch.alter_column("date_of_birth", existing_type=sa.String(200), type_=sa.Date(),
                                   postgresql_using="CAST(date_of_birth AS date)")
        if sqlite and not to_text:
            op.execute(f"UPDATE {table} SET date_of_birth = dob_text")
            with op.batch_alter_table(table) as batch:
                batch.drop_column("dob_text")


def _by_id(bind, table, columns, transform) -> None:
    """Rewrite rows of a table with an integer id, in batches: transform(row) -> new values or None."""
    last = 0
    while True:
        rows = bind.execute(sa.select(table.c.id, *(table.c[c] for c in columns)).where(table.c.id > last)
                            .order_by(table.c.id).limit(BATCH)).all()
        if not rows:
            return
        changes = [{"_id": r.id, **{f"b_{k}": v for k, v in new.items()}}
                   for r in rows if (new := transform(r)) is not None]
        if changes:
            keys = [k[2:] for k in changes[0] if k != "_id"]
            bind.execute(table.update().where(table.c.id == sa.bindparam("_id"))
                         .values({k: sa.bindparam(f"b_{k}") for k in keys}), changes)
        last = rows[-1].id


def _lineage(bind, transform) -> None:
    last = (0, "")
    while True:
        rows = bind.execute(sa.select(LINEAGE.c.customer_id, LINEAGE.c.field, LINEAGE.c.value)
                            .where(LINEAGE.c.field.in_(SEALED_FIELDS),
                                   sa.tuple_(LINEAGE.c.customer_id, LINEAGE.c.field)
                                   > sa.tuple_(sa.literal(last[0]), sa.literal(last[1])))
                            .order_by(LINEAGE.c.customer_id, LINEAGE.c.field).limit(BATCH)).all()
        if not rows:
            return
        changes = [{"_c": r.customer_id, "_f": r.field, "b_value": transform(r.field, r.value)}
                   for r in rows if r.value is not None]
        if changes:
            bind.execute(LINEAGE.update().where(LINEAGE.c.customer_id == sa.bindparam("_c"),
                                                LINEAGE.c.field == sa.bindparam("_f"))
                         .values(value=sa.bindparam("b_value")), changes)
        last = (rows[-1].customer_id, rows[-1].field)


def _rehash_keys(bind, seal, first: int, last: int) -> None:
    """The blocking keys of the records first..last become keyed hashes (delete + insert, set-based)."""
    rows = bind.execute(sa.select(BK.c.key, BK.c.source_record_id)
                        .where(BK.c.source_record_id.between(first, last))).all()
    if not rows:
        return
    bind.execute(BK.delete().where(BK.c.source_record_id.between(first, last)))
    fresh = {(h, r.source_record_id) for r in rows for h in seal.block_keys([r.key])}
    bind.execute(BK.insert(), [{"key": k, "source_record_id": rid} for k, rid in sorted(fresh)])


def upgrade() -> None:
    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.drop_index('ix_source_record_email_dob')
        batch_op.drop_index('ix_source_record_national_id')
        batch_op.add_column(sa.Column('national_id_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('date_of_birth_hash', sa.String(length=64), nullable=True))
    _types(to_text=True)
    bind = op.get_bind()
    if _has_data(bind):
        seal = _sealer()

        from hub.ingest.records import content_hash

        def record(r):
            return {"content_hash": content_hash(r.raw or {}),  # now a keyed hash (HMAC) of the clear payload
                    "national_id": None if r.national_id is None else seal.stored("national_id", r.national_id),
                    "date_of_birth": None if r.date_of_birth is None else seal.stored("date_of_birth",
                                                                                      r.date_of_birth),
                    "national_id_hash": seal.hash("national_id", seal.open("national_id", r.national_id))
                    if r.national_id is not None else None,
                    "date_of_birth_hash": seal.hash("date_of_birth", seal.open("date_of_birth", r.date_of_birth))
                    if r.date_of_birth is not None else None,
                    "raw": None if r.raw is None else seal.seal_document("raw", r.raw),
                    "match_features": None if r.match_features is None
                    else seal.seal_document("features", r.match_features)}

        last = 0
        while True:  # source records and their blocking keys, batch by batch
            ids = bind.execute(sa.select(SR.c.id).where(SR.c.id > last).order_by(SR.c.id).limit(BATCH)).scalars().all()
            if not ids:
                break
            _by_id_range(bind, SR, ("national_id", "date_of_birth", "raw", "match_features"), record, last, ids[-1])
            _rehash_keys(bind, seal, ids[0], ids[-1])
            last = ids[-1]
        _by_id(bind, CUSTOMER, ("national_id", "date_of_birth"), lambda r: {
            "national_id": None if r.national_id is None else seal.stored("national_id", r.national_id),
            "date_of_birth": None if r.date_of_birth is None else seal.stored("date_of_birth", r.date_of_birth)}
            if r.national_id is not None or r.date_of_birth is not None else None)
        _lineage(bind, seal.seal_lineage)

        def event(r):
            sealed = seal.seal_document("changes", r.changes) if r.changes is not None else None
            return {"changes": sealed} if sealed != r.changes else None

        _by_id(bind, EVENT, ("changes",), event)
    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.create_index('ix_source_record_email_dob_hash', ['email', 'date_of_birth_hash'], unique=False)
        batch_op.create_index('ix_source_record_national_id_hash', ['national_id_hash'], unique=False)


def _by_id_range(bind, table, columns, transform, after: int, upto: int) -> None:
    rows = bind.execute(sa.select(table.c.id, *(table.c[c] for c in columns))
                        .where(table.c.id > after, table.c.id <= upto)).all()
    changes = [{"_id": r.id, **{f"b_{k}": v for k, v in transform(r).items()}} for r in rows]
    if changes:
        keys = [k[2:] for k in changes[0] if k != "_id"]
        bind.execute(table.update().where(table.c.id == sa.bindparam("_id"))
                     .values({k: sa.bindparam(f"b_{k}") for k in keys}), changes)


def downgrade() -> None:
    bind = op.get_bind()
    if _has_data(bind):
        seal = _sealer()

        def opened(attr, v):
            return None if v is None else seal.open(attr, v)

        _by_id(bind, SR, ("national_id", "date_of_birth", "raw", "match_features"), lambda r: {
            "national_id": opened("national_id", r.national_id),
            "date_of_birth": opened("date_of_birth", r.date_of_birth),
            "raw": None if r.raw is None else seal.open_document("raw", r.raw),
            "match_features": None if r.match_features is None else seal.open_document("features", r.match_features)})
        _by_id(bind, CUSTOMER, ("national_id", "date_of_birth"), lambda r: {
            "national_id": opened("national_id", r.national_id),
            "date_of_birth": opened("date_of_birth", r.date_of_birth)})
        _lineage(bind, seal.open_lineage)
        _by_id(bind, EVENT, ("changes",), lambda r: {"changes": seal.open_document("changes", r.changes)}
               if r.changes is not None else None)
        bind.execute(BK.delete())  # keyed hashes cannot be turned back into keys: `hub reindex` rebuilds them
    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.drop_index('ix_source_record_national_id_hash')
        batch_op.drop_index('ix_source_record_email_dob_hash')
        batch_op.drop_column('date_of_birth_hash')
        batch_op.drop_column('national_id_hash')
    _types(to_text=False)
    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.create_index('ix_source_record_national_id', ['national_id'], unique=False)
        batch_op.create_index('ix_source_record_email_dob', ['email', 'date_of_birth'], unique=False)
