"""PostgreSQL: facet counts of the public adapters, kept up to date by the database on every write.

``index_facet_counts`` holds, for the public adapters (``is_adapter`` and not ``private``):

* ``('', '', '', '')``: how many there are;
* ``('', '', facet, value)``: how many have ``facet = value``;
* ``(facet2, value2, facet, value)``: how many have both ``facet2 = value2`` and ``facet = value``.

Facets are the facet columns of ``index_entries``. Statement-level triggers with transition tables add the
changes of each INSERT / UPDATE / DELETE of ``index_entries`` (one aggregated upsert per statement, keys in
one order within a statement), so bulk loads stay fast. A search with
at most one filter and no full text reads its facet counts and total from here instead of counting the hits;
private entries a viewer may see are counted on the fly and added (see ``search_facets``). SQLite is unchanged.

Also makes the trigram index of 0003 where it is missing (see :func:`_trigram_index`).

Revision ID: 0005_facet_counts
Revises: 0004_validation_queue
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

log = logging.getLogger("alembic")

revision = "0005_facet_counts"
down_revision = "0004_validation_queue"
branch_labels = None
depends_on = None

FACETS = (
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
COLS = ", ".join(FACETS)
PUBLIC = "is_adapter AND NOT private"


def _upsert(src: str) -> str:
    """The statement adding the counts of ``src`` (rows ``id, sign, <facets>``; sign +1 adds, -1 removes)."""
    pairs = ", ".join(f"('{c}', src.{c}::text)" for c in FACETS)
    return f"""WITH src AS MATERIALIZED ({src}),
d AS (SELECT '' AS f2, '' AS v2, '' AS f, '' AS v, sum(sign) AS n FROM src
      UNION ALL SELECT '', '', a.f, a.v, sum(sign) FROM src CROSS JOIN LATERAL (VALUES {pairs}) AS a(f, v)
                WHERE a.v IS NOT NULL GROUP BY a.f, a.v
      UNION ALL SELECT b.f, b.v, a.f, a.v, sum(sign) FROM src CROSS JOIN LATERAL (VALUES {pairs}) AS a(f, v)
                CROSS JOIN LATERAL (VALUES {pairs}) AS b(f, v)
                WHERE a.v IS NOT NULL AND b.v IS NOT NULL AND a.f <> b.f GROUP BY b.f, b.v, a.f, a.v)
INSERT INTO index_facet_counts AS c (facet2, value2, facet, value, n)
SELECT f2, v2, f, v, n FROM d WHERE n <> 0 ORDER BY f2, v2, f, v
ON CONFLICT (facet2, value2, facet, value) DO UPDATE SET n = c.n + EXCLUDED.n"""


def _rows(table: str, sign: int) -> str:
    return f"SELECT id, {sign} AS sign, {COLS} FROM {table} WHERE {PUBLIC}"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    _trigram_index(bind)
    op.execute("""CREATE TABLE index_facet_counts (
        facet2 varchar(16) NOT NULL, value2 text NOT NULL, facet varchar(16) NOT NULL, value text NOT NULL,
        n bigint NOT NULL,
        CONSTRAINT pk_index_facet_counts PRIMARY KEY (facet2, value2, facet, value))""")
    op.execute(f"""CREATE FUNCTION index_facet_counts_sync() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_upsert(_rows("new_rows", 1))};
    ELSIF TG_OP = 'DELETE' THEN
        {_upsert(_rows("old_rows", -1))};
    ELSE
        {_upsert(_rows("new_rows", 1) + " UNION ALL " + _rows("old_rows", -1))};
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql SET work_mem = '128MB'""")  # a bulk statement's counts aggregate in memory
    for event, refs in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    ):
        op.execute(
            f"CREATE TRIGGER index_facet_counts_{event.lower()} AFTER {event} ON index_entries "
            f"REFERENCING {refs} FOR EACH STATEMENT EXECUTE FUNCTION index_facet_counts_sync()"
        )
    op.execute("SET LOCAL work_mem = '256MB'")
    op.execute(_upsert(_rows("index_entries", 1)))  # the entries already there


def _trigram_index(bind) -> None:
    """The full-text index of 0003, where 0003 could not make it: ``pg_trgm`` lives in one schema of the database,
    and a database whose tables are in another schema did not see its ``gin_trgm_ops`` (LIKE then scanned)."""
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as e:
        log.warning("pg_trgm unavailable, full-text search will scan: %s", e)
    schema = bind.execute(
        sa.text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        )
    ).scalar()
    if schema is not None:
        op.execute(
            "CREATE INDEX IF NOT EXISTS ixt_index_entries_search_text ON index_entries "
            f'USING gin (search_text "{schema}".gin_trgm_ops)'
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS index_facet_counts_{event} ON index_entries")
    op.execute("DROP FUNCTION IF EXISTS index_facet_counts_sync()")
    op.execute("DROP TABLE IF EXISTS index_facet_counts")
