"""PostgreSQL: the word index of 0009 takes words of any length. A B-tree or GIN key holds at most about 2.7 kB, so
a text with a longer run of ``a-z0-9`` (a hash or an encoded blob pasted into a card) could not be indexed at all.
The words of a text are now ``index_words_of(search_text)``: each word of up to 200 characters as it is, a longer
one as its pieces of 200 characters that start every 100 characters (so that every part of up to 100 characters
lies wholly inside one piece; query words of up to 100 characters use the word index, ``search_query.WORD``). The
GIN index and the trigger that fills ``index_words`` use it; the pieces of the long words already there are added.

Revision ID: 0010_search_long_words
Revises: 0009_search_words
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_search_long_words"
down_revision = "0009_search_words"
branch_labels = None
depends_on = None

WORDS_OF = """CREATE FUNCTION index_words_of(t text) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT piece), '{}') FROM unnest(regexp_split_to_array(t, '[^a-z0-9]+')) AS w,
        LATERAL (SELECT substr(w, k, 200) FROM generate_series(1, greatest(length(w) - 100, 1), 100) AS k) AS p(piece)
    WHERE w <> ''
$$"""


def _add_words(words: str) -> None:
    op.execute("DROP TRIGGER IF EXISTS index_words_add ON index_entries")
    op.execute(f"""CREATE OR REPLACE FUNCTION index_words_add() RETURNS trigger AS $$
BEGIN
    INSERT INTO index_words (word)
    SELECT DISTINCT w FROM unnest({words}) AS w WHERE w <> '' ORDER BY 1 ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$ LANGUAGE plpgsql""")
    op.execute(
        "CREATE TRIGGER index_words_add AFTER INSERT OR UPDATE OF search_text ON index_entries "
        "FOR EACH ROW EXECUTE FUNCTION index_words_add()"
    )


def _has_word_index() -> bool:
    return op.get_bind().execute(sa.text("SELECT to_regclass('index_words') IS NOT NULL")).scalar()


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql" or not _has_word_index():  # 0009 made nothing: no pg_trgm
        return
    op.execute(WORDS_OF)
    _add_words("index_words_of(NEW.search_text)")
    op.execute(
        "INSERT INTO index_words (word) SELECT DISTINCT w FROM index_entries, unnest(index_words_of(search_text)) "
        "AS w WHERE search_text ~ '[a-z0-9]{201}' ON CONFLICT DO NOTHING"
    )
    op.execute("DROP INDEX IF EXISTS ixw_index_entries_words")
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute(
        "CREATE INDEX ixw_index_entries_words ON index_entries USING gin (index_words_of(search_text))"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql" or not _has_word_index():
        return
    words = "regexp_split_to_array(search_text, '[^a-z0-9]+')"
    _add_words(words.replace("search_text", "NEW.search_text"))
    op.execute("DROP INDEX IF EXISTS ixw_index_entries_words")
    op.execute(f"CREATE INDEX ixw_index_entries_words ON index_entries USING gin (({words}))")
    op.execute("DROP FUNCTION IF EXISTS index_words_of(text)")
