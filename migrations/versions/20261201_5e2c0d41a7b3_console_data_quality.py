"""console: source_record.invalid_fields (backfilled), the event index of the data-quality dashboard; policy rows for
dataQuality and a steward's unmerge

Revision ID: 5e2c0d41a7b3
Revises: 7e3c51a0b2d4
Create Date: 2026-12-01 22:40:00
"""
import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '5e2c0d41a7b3'
down_revision: str | None = '7e3c51a0b2d4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the policy rows of this migration, as appended to authz/policy.csv (stored policies are edited here, not
# re-seeded: a policy an operator changed with `hub policy` keeps its changes)
POLICY_ROWS = (
    ("p", "steward", "Query.dataQuality", "call", "allow"),
    ("p", "steward", "Mutation.unmergeCustomer", "call", "allow"),
)
_RULE = sa.table("authz_rule", sa.column("ptype"), sa.column("subject"), sa.column("object"), sa.column("action"),
                 sa.column("effect"))
_REVISION = sa.table("authz_revision", sa.column("id"), sa.column("revision"), sa.column("updated_at"))


def _policy_rows() -> list[dict[str, str]]:
    return [dict(zip(("ptype", "subject", "object", "action", "effect"), row, strict=True)) for row in POLICY_ROWS]


def _bump_revision() -> None:
    op.execute(_REVISION.update().where(_REVISION.c.id == 1).values(
        revision=_REVISION.c.revision + 1, updated_at=dt.datetime.now(dt.UTC)))


# hub.golden.attributes.ATTRIBUTES as of this revision (bit i of invalid_fields: attribute i), by API name
_ATTRIBUTES = ("given_name", "family_name", "date_of_birth", "email", "phone", "address_line1", "address_line2",
               "locality", "postcode", "region", "country", "national_id")
_API = {a: a.split("_")[0] + "".join(p.capitalize() for p in a.split("_")[1:]) for a in _ATTRIBUTES}


def _backfill() -> None:
    """Derive invalid_fields of stored records: an attribute sent (raw) but absent from its column was refused."""
    sr = sa.table("source_record", sa.column("raw", sa.JSON), sa.column("invalid_fields", sa.Integer),
                  *(sa.column(a) for a in _ATTRIBUTES))
    bits = []
    for i, a in enumerate(_ATTRIBUTES):
        raw = sr.c.raw[_API[a]].as_string()
        bits.append(sa.case((sa.and_(raw.is_not(None), sa.func.trim(raw) != "", sr.c[a].is_(None)), 1 << i),
                            else_=0))
    op.execute(sr.update().values(invalid_fields=sum(bits[1:], bits[0])))


def upgrade() -> None:
    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('invalid_fields', sa.Integer(), server_default='0', nullable=False))
    _backfill()
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.create_index('ix_event_kind_at', ['kind', 'at'], unique=False)
    # a database created from scratch got these rows already: the policy migration seeds today's policy.csv
    stored = {tuple(r) for r in op.get_bind().execute(sa.select(
        _RULE.c.ptype, _RULE.c.subject, _RULE.c.object, _RULE.c.action, _RULE.c.effect))}
    missing = [row for row in _policy_rows() if tuple(row.values()) not in stored]
    if missing:
        op.bulk_insert(_RULE, missing)
        _bump_revision()  # running servers reload the policy


def downgrade() -> None:
    for row in _policy_rows():
        op.execute(_RULE.delete().where(*(_RULE.c[k] == v for k, v in row.items())))
    _bump_revision()
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index('ix_event_kind_at')
    with op.batch_alter_table('source_record', schema=None) as batch_op:
        batch_op.drop_column('invalid_fields')
