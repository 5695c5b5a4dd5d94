"""PostgreSQL: an index in the order of the search's ``sort=score`` (score, highest first, entries without a score
last, then newest id), so that a page of the best-scored hits is read from the index instead of sorting every hit.

Revision ID: 0006_search_sort
Revises: 0005_facet_counts
"""

from __future__ import annotations

from alembic import op

revision = "0006_search_sort"
down_revision = "0005_facet_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX IF NOT EXISTS ixs_index_entries_score ON index_entries (score DESC NULLS LAST, id DESC)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ixs_index_entries_score")
