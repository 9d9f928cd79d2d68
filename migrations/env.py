"""Alembic's environment: the service's tables (core/tables.py) on the
service's database.

core/schema.py hands in the connection it upgrades under the schema lock; the
`alembic` command line (writing a new revision: docs/architecture.md) connects to
DATABASE_URL / INFER_DATABASE_URL as the service would. SQLite cannot alter a
column in place: batch mode rebuilds the table (render_as_batch).
"""

from alembic import context
from sqlalchemy import create_engine

from core.settings import Settings
from core.tables import Base

config = context.config


def run_on(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    # The baseline inspects the database to adopt an older one: it needs a connection.
    raise SystemExit("Offline (--sql) migrations are not supported: run them against the database.")

given = config.attributes.get("connection")
if given is not None:
    run_on(given)
else:
    engine = create_engine(Settings.from_environ().database_url)
    try:
        with engine.begin() as connection:
            run_on(connection)
    finally:
        engine.dispose()
