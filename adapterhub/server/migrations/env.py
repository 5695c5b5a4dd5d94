"""Alembic environment: runs on the engine handed in by ``adapterhub.server.migrate`` (config attribute
``connection``), or on ``sqlalchemy.url`` when run from the alembic command line."""

from alembic import context
from sqlalchemy import create_engine

from adapterhub.server.db import Base
from adapterhub.server import models  # noqa: F401  (registers the core tables)

try:  # index tables written by the search/index module, when present
    from adapterhub.server import index_models  # noqa: F401
except ImportError:
    pass

config = context.config
target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):
    """Autogenerate/check ignore what migrations create with raw SQL and the models do not describe
    (SQLite FTS5 tables, PostgreSQL trigram indexes): reflected objects with no model counterpart."""
    if reflected and compare_to is None and type_ in ("table", "index"):
        return False
    return True


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()


run()
