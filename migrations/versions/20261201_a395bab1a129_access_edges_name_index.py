"""access edges: what a source learns from registering (policy rows); the name index of name-only search

Revision ID: a395bab1a129
Revises: d65f972307d8
Create Date: 2026-12-01 21:45:00
"""
import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.models.types import UTCDateTime

revision: str = 'a395bab1a129'
down_revision: str | None = 'd65f972307d8'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows of authz/policy.csv added since the policy table was seeded. A database seeded from the current
# file has them already; one seeded before gets them here (an operator's own edits are kept), with a
# revision bump and an audit event, so running servers reload the policy.
NEW_ROWS = [
    {"ptype": "p", "subject": "source", "object": "RegistrationResult.action", "action": "read-masked",
     "effect": "allow"},
    {"ptype": "p", "subject": "source", "object": "SourceRecord.customer", "action": "read", "effect": "deny"},
]

rule = sa.table("authz_rule", sa.column("ptype"), sa.column("subject"), sa.column("object"), sa.column("action"),
                sa.column("effect"))
revision_table = sa.table("authz_revision", sa.column("id"), sa.column("revision"),
                          sa.column("updated_at", UTCDateTime()))
event = sa.table("event", sa.column("customer_id"), sa.column("kind"), sa.column("at", UTCDateTime()), sa.column("actor"),
                 sa.column("note"), sa.column("changes", sa.JSON))


def upgrade() -> None:
    op.create_index('ix_source_record_family_given', 'source_record', ['family_name', 'given_name'], unique=False)
    bind = op.get_bind()
    missing = [row for row in NEW_ROWS if bind.execute(sa.select(sa.func.count()).select_from(rule).where(
        *(rule.c[k] == v for k, v in row.items()))).scalar_one() == 0]
    if not missing:
        return
    op.bulk_insert(rule, missing)
    now = dt.datetime.now(dt.UTC)
    current = bind.execute(sa.select(revision_table.c.revision).where(revision_table.c.id == 1)).scalar()
    if current is None:
        op.bulk_insert(revision_table, [{"id": 1, "revision": 1, "updated_at": now}])
        new_revision = 1
    else:
        new_revision = current + 1
        bind.execute(sa.update(revision_table).where(revision_table.c.id == 1)
                     .values(revision=new_revision, updated_at=now))
    bind.execute(sa.insert(event).values(customer_id=None, kind="POLICY_CHANGED", at=now, actor="migration:a395bab1a129",
                                         note="what a source learns from its registrations",
                                         changes={"added": [[r["ptype"], r["subject"], r["object"], r["action"],
                                                             r["effect"]] for r in missing],
                                                  "revision": new_revision}))


def downgrade() -> None:
    # the policy rows stay: a downgrade must not quietly reopen what a source may learn
    op.drop_index('ix_source_record_family_given', table_name='source_record')
