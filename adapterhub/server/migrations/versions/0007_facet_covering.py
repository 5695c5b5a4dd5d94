"""PostgreSQL: each facet index (``ixf_index_entries_<facet>``: the facet, ``is_adapter``, ``private``) also
carries the other facet columns and ``repo_pk`` (``INCLUDE``), so that a search under two or more filters counts
its facets with an index-only scan of the most selective filter's index instead of reading the wide entries
(their descriptions and search text) from the table.

Revision ID: 0007_facet_covering
Revises: 0006_search_sort
"""

from __future__ import annotations

from alembic import op

revision = "0007_facet_covering"
down_revision = "0006_search_sort"
branch_labels = None
depends_on = None


FACET_COLUMNS = (
    "base_model",
    "model_type",
    "task",
    "subtask",
    "language",
    "method",
    "head_type",
    "license",
    "author",
    "library",
    "source",
)


def _rebuild(include: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for col in FACET_COLUMNS:
        name = f"ixf_index_entries_{col}"
        others = [c for c in FACET_COLUMNS if c != col] + ["repo_pk"]
        extra = f" INCLUDE ({', '.join(others)})" if include else ""
        op.execute(f"DROP INDEX IF EXISTS {name}")
        op.execute(f"CREATE INDEX {name} ON index_entries ({col}, is_adapter, private){extra}")


def upgrade() -> None:
    _rebuild(include=True)


def downgrade() -> None:
    _rebuild(include=False)
