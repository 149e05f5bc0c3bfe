"""match model status: candidate / promoted / retired, promotion time, evaluation

Revision ID: 5e2b8c41d7a9
Revises: 5e2c0d41a7b3
Create Date: 2026-12-01 22:50:00

Existing rows: the newest stored model was the one in use ("latest"): it becomes promoted, the older
ones retired, so a hub upgraded with trained models keeps matching as before.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.models.types

revision: str = '5e2b8c41d7a9'
down_revision: str | None = '5e2c0d41a7b3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('match_model') as batch:
        batch.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False,
                                   server_default='candidate'))
        batch.add_column(sa.Column('promoted_at', hub.models.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('evaluation', sa.JSON(), nullable=True))
    with op.batch_alter_table('match_model') as batch:
        batch.alter_column('status', server_default=None)
    op.create_index('ix_match_model_status_id', 'match_model', ['status', 'id'], unique=False)
    op.execute("UPDATE match_model SET status = 'retired'")
    op.execute("UPDATE match_model SET status = 'promoted', promoted_at = created_at "
               "WHERE id = (SELECT max(id) FROM match_model)")


def downgrade() -> None:
    op.drop_index('ix_match_model_status_id', table_name='match_model')
    with op.batch_alter_table('match_model') as batch:
        batch.drop_column('evaluation')
        batch.drop_column('promoted_at')
        batch.drop_column('status')
