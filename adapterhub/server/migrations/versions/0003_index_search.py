"""Index search speed and consistency: covering facet indexes, full-text index, repo -> index sync triggers.

* Each facet column of ``index_entries`` gets an index (column, is_adapter, private), which covers the facet
  count queries; the single-column indexes of 0002 are dropped.
* Full text (``search_text LIKE '%word%'``): on SQLite an FTS5 trigram table ``index_fts`` (external
  content, kept in sync by triggers; not a SQLAlchemy model, so autogenerate must leave it alone); on
  PostgreSQL a pg_trgm GIN index (if the extension can be created; otherwise LIKE scans).
* Triggers copy ``repos.downloads`` and ``repos.private`` into ``index_entries`` whenever they change, so
  search sorts by current downloads and never lists a repository that became private.
  NOTE for later migrations: on SQLite, a batch operation that recreates ``repos`` or ``index_entries``
  drops their triggers; such a migration must create ``index_sync_repo`` / ``index_fts_*`` again
  (tests/server/test_search.py::test_live_upload_is_indexed_and_searchable fails if the sync is lost).

Revision ID: 0003_index_search
Revises: 0002_index
Create Date: 2026-11-25
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0003_index_search"
down_revision = "0002_index"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic")
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
OLD_SINGLE = (
    "author",
    "method",
    "base_model",
    "model_type",
    "head_type",
    "task",
    "subtask",
    "language",
    "license",
)


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("index_entries", schema=None) as batch_op:
        for col in OLD_SINGLE:
            batch_op.drop_index(f"ix_index_entries_{col}")
        for col in FACETS:
            batch_op.create_index(f"ixf_index_entries_{col}", [col, "is_adapter", "private"], unique=False)
    if bind.dialect.name == "sqlite":
        _sqlite_fts(bind)
        op.execute("""CREATE TRIGGER index_sync_repo AFTER UPDATE OF downloads, private ON repos
            BEGIN UPDATE index_entries SET downloads = NEW.downloads, private = NEW.private WHERE repo_pk = NEW.id; END""")
    elif bind.dialect.name == "postgresql":
        try:
            with bind.begin_nested():
                bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
                bind.execute(
                    sa.text(
                        "CREATE INDEX ixt_index_entries_search_text ON index_entries "
                        "USING gin (search_text gin_trgm_ops)"
                    )
                )
        except sa.exc.DBAPIError as e:  # no pg_trgm or no right to create it: LIKE still works, by scanning
            log.warning("pg_trgm unavailable, full-text search will scan: %s", e)
        op.execute("""CREATE OR REPLACE FUNCTION index_sync_repo() RETURNS trigger AS $$
            BEGIN UPDATE index_entries SET downloads = NEW.downloads, private = NEW.private WHERE repo_pk = NEW.id;
            RETURN NEW; END $$ LANGUAGE plpgsql""")
        op.execute("""CREATE TRIGGER index_sync_repo AFTER UPDATE OF downloads, private ON repos
            FOR EACH ROW EXECUTE FUNCTION index_sync_repo()""")


def _sqlite_fts(bind) -> None:
    try:
        bind.execute(
            sa.text(
                "CREATE VIRTUAL TABLE index_fts USING fts5(search_text, content='index_entries', "
                "content_rowid='id', tokenize='trigram')"
            )
        )
    except sa.exc.OperationalError as e:  # SQLite built without FTS5 / trigram: LIKE scans
        log.warning("FTS5 trigram unavailable, full-text search will scan: %s", e)
        return
    op.execute("""CREATE TRIGGER index_fts_ai AFTER INSERT ON index_entries BEGIN
        INSERT INTO index_fts(rowid, search_text) VALUES (new.id, new.search_text); END""")
    op.execute("""CREATE TRIGGER index_fts_ad AFTER DELETE ON index_entries BEGIN
        INSERT INTO index_fts(index_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text); END""")
    op.execute("""CREATE TRIGGER index_fts_au AFTER UPDATE OF search_text ON index_entries BEGIN
        INSERT INTO index_fts(index_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
        INSERT INTO index_fts(rowid, search_text) VALUES (new.id, new.search_text); END""")
    op.execute("INSERT INTO index_fts(index_fts) VALUES ('rebuild')")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trig in ("index_sync_repo", "index_fts_ai", "index_fts_ad", "index_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trig}")
        op.execute("DROP TABLE IF EXISTS index_fts")
    elif bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS index_sync_repo ON repos")
        op.execute("DROP FUNCTION IF EXISTS index_sync_repo()")
        op.execute("DROP INDEX IF EXISTS ixt_index_entries_search_text")
    with op.batch_alter_table("index_entries", schema=None) as batch_op:
        for col in FACETS:
            batch_op.drop_index(f"ixf_index_entries_{col}")
        for col in OLD_SINGLE:
            batch_op.create_index(f"ix_index_entries_{col}", [col], unique=False)
