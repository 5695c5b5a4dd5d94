"""Validation queue: which ``adapterhub worker`` holds a validation (``claimed_by``), until when its claim lasts
without a heartbeat (``lease_until``), and how many times it was taken (``attempts``).

Revision ID: 0004_validation_queue
Revises: 0003_index_search
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_validation_queue"
down_revision = "0003_index_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("validations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("validations", schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("claimed_by")
