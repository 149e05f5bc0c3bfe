"""authz policy table: the Casbin rows and a revision counter, seeded with authz/policy.csv

Revision ID: 01259584b5fd
Revises: fa530443681a
Create Date: 2026-11-23 19:51:10.536794
"""
import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.models.types
from authz import default_policy_rows

revision: str = '01259584b5fd'
down_revision: str | None = 'fa530443681a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns(row: tuple[str, ...]) -> dict[str, str]:
    """("p", role, object, action, effect) or ("g", member, parent) as authz_rule columns."""
    ptype, subject, obj, *rest = row
    action, effect = rest if rest else ("", "")
    return {"ptype": ptype, "subject": subject, "object": obj, "action": action, "effect": effect}


def upgrade() -> None:
    revision_table = op.create_table('authz_revision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', hub.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name='ck_authz_revision_one_row'),
    sa.PrimaryKeyConstraint('id')
    )
    rule_table = op.create_table('authz_rule',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ptype', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('object', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('effect', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ptype', 'subject', 'object', 'action', 'effect', name='uq_authz_rule')
    )
    # the default policy as of this migration; later edits go through `hub policy add|remove`
    op.bulk_insert(rule_table, [_columns(row) for row in default_policy_rows()])
    op.bulk_insert(revision_table, [{"id": 1, "revision": 1, "updated_at": dt.datetime.now(dt.UTC)}])


def downgrade() -> None:
    op.drop_table('authz_rule')
    op.drop_table('authz_revision')
