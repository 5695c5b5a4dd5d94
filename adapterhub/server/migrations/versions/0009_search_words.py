"""PostgreSQL: full text through a word index. ``search_text`` is split into its words (runs of ``a-z0-9``) by the
expression ``regexp_split_to_array(search_text, '[^a-z0-9]+')``, which a GIN index (``ixw_index_entries_words``)
indexes; ``index_words`` holds every word that occurs (kept by a trigger on ``index_entries``; words that no
longer occur stay, which only costs a row) with a trigram index, so that the words *containing* a query word are
found first and the entries are then looked up by those words: the same matches as ``search_text LIKE '%word%'``
(a word of ``a-z0-9`` only occurs inside one word of the text), read from much shorter posting lists than the
trigram index's. Query words with other characters still use the trigram index (``search_query``). Needs
``pg_trgm`` (see 0005); without it nothing is made and full text stays on the trigram path. SQLite is unchanged.

Revision ID: 0009_search_words
Revises: 0008_facet_counts_lock
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

log = logging.getLogger("alembic")

revision = "0009_search_words"
down_revision = "0008_facet_counts_lock"
branch_labels = None
depends_on = None

WORDS = "regexp_split_to_array(search_text, '[^a-z0-9]+')"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.execute(
        sa.text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        )
    ).scalar()
    if schema is None:
        log.warning("pg_trgm unavailable, full text stays on the LIKE path")
        return
    op.execute("CREATE TABLE index_words (word text NOT NULL, CONSTRAINT pk_index_words PRIMARY KEY (word))")
    op.execute(f"""CREATE FUNCTION index_words_add() RETURNS trigger AS $$
BEGIN
    INSERT INTO index_words (word)
    SELECT DISTINCT w FROM unnest({WORDS.replace("search_text", "NEW.search_text")}) AS w WHERE w <> ''
    ORDER BY 1 ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$ LANGUAGE plpgsql""")
    op.execute(
        "CREATE TRIGGER index_words_add AFTER INSERT OR UPDATE OF search_text ON index_entries "
        "FOR EACH ROW EXECUTE FUNCTION index_words_add()"
    )
    op.execute("SET LOCAL work_mem = '256MB'")
    op.execute(
        f"INSERT INTO index_words (word) SELECT DISTINCT w FROM index_entries, unnest({WORDS}) AS w "
        "WHERE w <> '' ON CONFLICT DO NOTHING"
    )
    op.execute(f'CREATE INDEX ixt_index_words_word ON index_words USING gin (word "{schema}".gin_trgm_ops)')
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute(f"CREATE INDEX ixw_index_entries_words ON index_entries USING gin (({WORDS}))")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ixw_index_entries_words")
    op.execute("DROP TRIGGER IF EXISTS index_words_add ON index_entries")
    op.execute("DROP FUNCTION IF EXISTS index_words_add()")
    op.execute("DROP TABLE IF EXISTS index_words")
