"""PostgreSQL: writes to ``index_entries`` (and the writes to ``repos`` that reach it) take one transaction-level
lock before they change any row, so that concurrent transactions do not deadlock on the stored facet counts
(migration 0005).

The counts' statement triggers lock the count rows of each statement in one order, but a transaction of several
statements (an entry inserted, another one changed) locked them in several rounds, so that two such transactions
could each wait for the other. A ``BEFORE ... FOR EACH STATEMENT`` trigger now takes an advisory lock (keyed by the
schema, so other schemas of the database are not affected) that the transaction holds until it ends: the count
rows are only ever locked by its holder. A transaction that locks other rows first and then waits for this lock
can still deadlock with its holder; ``Database.write`` runs such a transaction again. Writes to the index were already serialised by the count rows that every
public adapter touches (the total), so this costs no concurrency. SQLite, which serialises writers anyway, is
unchanged.

Revision ID: 0008_facet_counts_lock
Revises: 0007_facet_covering
"""

from __future__ import annotations

from alembic import op

revision = "0008_facet_counts_lock"
down_revision = "0007_facet_covering"
branch_labels = None
depends_on = None


LOCK = """CREATE FUNCTION index_facet_counts_lock() RETURNS trigger AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('adapterhub.index_facet_counts'), hashtext(TG_TABLE_SCHEMA));
    RETURN NULL;
END $$ LANGUAGE plpgsql"""
#: table -> the writes that take the lock first
TRIGGERS = {
    "index_entries": "INSERT OR UPDATE OR DELETE",
    "repos": "UPDATE OF downloads, private OR DELETE",  # copied into index_entries (0003) or cascaded to it
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(LOCK)
    for table, events in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER index_facet_counts_lock BEFORE {events} ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION index_facet_counts_lock()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS index_facet_counts_lock ON {table}")
    op.execute("DROP FUNCTION IF EXISTS index_facet_counts_lock()")
