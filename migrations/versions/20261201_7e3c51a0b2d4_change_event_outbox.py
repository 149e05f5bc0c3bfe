"""change-event outbox: commit-ordered positions, the head counter, durable consumers

Revision ID: 7e3c51a0b2d4
Revises: 5092035a9adc
Create Date: 2026-12-01 21:40:00

The stream starts at this upgrade: events written before it stay in the audit log (customer history)
and are not published.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.models.types

revision: str = '7e3c51a0b2d4'
down_revision: str | None = '5092035a9adc'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('outbox',
    sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('event_id', BigId, nullable=False),
    sa.Column('customer_id', BigId, nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('at', hub.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('position'),
    sa.UniqueConstraint('event_id')
    )
    head = op.create_table('outbox_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last', sa.BigInteger(), nullable=False),
    sa.Column('pruned_to', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('id = 1', name='ck_outbox_head_one_row'),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(head, [{'id': 1, 'last': 0, 'pruned_to': 0}])
    op.create_table('event_consumer',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', hub.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    _policy_upgrade()


def downgrade() -> None:
    op.drop_table('event_consumer')
    op.drop_table('outbox_head')
    op.drop_table('outbox')


# policy rows of the change events, for databases seeded before them (a fresh database already has them
# from authz/policy.csv); added only where missing, and the revision bumped so running servers reload
POLICY_ROWS = [("p", "steward", "Subscription.customerChanged", "call", "allow"),
               ("p", "steward", "Query.eventStream", "call", "deny"),
               ("p", "reader", "Subscription.customerChanged", "call", "allow"),
               ("p", "reader", "CustomerChange.*", "read", "allow")]


def _policy_upgrade() -> None:
    conn = op.get_bind()
    added = 0
    for ptype, subject, obj, action, effect in POLICY_ROWS:
        params = {"ptype": ptype, "subject": subject, "object": obj, "action": action, "effect": effect}
        found = conn.execute(sa.text("SELECT 1 FROM authz_rule WHERE ptype = :ptype AND subject = :subject AND "
                                     "object = :object AND action = :action AND effect = :effect"), params).first()
        if found is None:
            conn.execute(sa.text("INSERT INTO authz_rule (ptype, subject, object, action, effect) "
                                 "VALUES (:ptype, :subject, :object, :action, :effect)"), params)
            added += 1
    if added:
        conn.execute(sa.text("UPDATE authz_revision SET revision = revision + 1 WHERE id = 1"))
