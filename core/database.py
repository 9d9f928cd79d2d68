"""The metadata database: one engine and session factory per process.

SQLite by default, PostgreSQL (or anything SQLAlchemy speaks) through
DATABASE_URL. At process start the schema is brought up to date (the Alembic
migrations of migrations/, through core/schema.py) under a lock when several
replicas start at once, or, with INFER_MIGRATE_ON_START off, only checked. The
web layer's per-request session is web/database.py.
"""

import logging
import os
from contextlib import contextmanager

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.orm import sessionmaker

from . import schema
from .tables import VERSION_NUMBER_INDEX


class Database:
    """Engine and session factory of one process."""

    def __init__(self, url: str, pool_size: int = 5, migrate: bool = True, check: bool = True):
        """migrate: apply the migrations the database lacks (and refuse one a
        newer release upgraded); else check: refuse a database not at this
        code's revision. Neither: a process that manages the schema itself
        (`flask --app wsgi db`), or whose parent already did (gunicorn's workers)."""
        # Every request checks its API key, so every web thread wants a
        # connection: a pool smaller than the thread count would open and close
        # connections on the hot path.
        kwargs = {"pool_size": pool_size, "max_overflow": 8}
        if url.startswith("sqlite"):
            path = url.partition(":///")[2]
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            # Web threads share the engine; SQLite must allow that, and wait for
            # a writer instead of failing at once. A local file cannot drop a
            # connection, so no pre-ping round trip.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if path in ("", ":memory:"):
                kwargs = {"connect_args": kwargs["connect_args"]}
        else:
            kwargs["pool_pre_ping"] = True  # a server may have closed an idle connection
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            if migrate:
                if not schema.is_current(self.engine):  # the usual start: one query, no lock
                    schema.upgrade(self.engine, one_process_at_a_time)
            elif check:
                schema.require_current(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True


# The PostgreSQL advisory lock held while a process creates or migrates the
# schema or the first key: an arbitrary constant, the same in every release.
SCHEMA_LOCK_KEY = 0x1F3A_5EED


@contextmanager
def one_process_at_a_time(engine):
    """Several replicas starting at once on an empty PostgreSQL database would race
    to create the same tables (one fails) and each print a "first" key: they take
    turns. SQLite lives on one host, where gunicorn's master does it once."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
            conn.commit()


def add_missing_columns(connection, metadata) -> list[str]:
    """Add the columns `metadata` defines to the tables of an older database
    (the baseline migration adopting a database made before migrations).

    create_all makes missing tables only. Every column added since a table
    first shipped has a server default (or is nullable), so adding it keeps
    every row valid; nothing is ever dropped or changed.
    """
    added = []
    existing_tables = set(inspect(connection).get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        present = {column["name"] for column in inspect(connection).get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=connection.dialect)
            default = ""
            if column.server_default is not None:  # every old row takes it, so it can be NOT NULL as defined
                default = f" DEFAULT {column.server_default.arg}" + ("" if column.nullable else " NOT NULL")
            connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{default}'))
            added.append(f"{table.name}.{column.name}")
    return added


def add_missing_indexes(connection, metadata) -> list[str]:
    """Make the indexes of `metadata` an older database lacks (on the columns
    add_missing_columns added, say): create_all makes a table's indexes only
    with the table."""
    made = []
    for table in metadata.sorted_tables:
        present = {index["name"] for index in inspect(connection).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in present:
                index.create(connection)
                made.append(index.name)
    return made


def migrate_version_numbers(connection) -> list[tuple[int, int, int]]:
    """Give a database of an older release the unique index on (model_id,
    number). An upload and a training job that finished at once may have given
    two versions of a model the same number there: the later of each such pair
    (by id) gets the model's next free number first, and the job that made it
    records the new one. [(version id, old number, new number)] of those moved."""
    existing = {index["name"] for index in inspect(connection).get_indexes("model_versions")}
    if VERSION_NUMBER_INDEX in existing:
        return []
    moved = []
    later = connection.execute(text(  # each version whose number an older one (lower id) of its model has
        "SELECT v.id, v.model_id, v.number FROM model_versions v WHERE EXISTS (SELECT 1 FROM model_versions w "
        "WHERE w.model_id = v.model_id AND w.number = v.number AND w.id < v.id) ORDER BY v.model_id, v.id")).all()
    for version_id, model_id, number in later:
        free = connection.scalar(text("SELECT MAX(number) FROM model_versions WHERE model_id = :model"),
                                 {"model": model_id}) + 1
        connection.execute(text("UPDATE model_versions SET number = :free WHERE id = :id"),
                           {"free": free, "id": version_id})
        connection.execute(text("UPDATE training_jobs SET version_number = :free WHERE model_id = :model AND "
                                "version_number = :number AND id = (SELECT job_id FROM model_versions WHERE id = :id)"),
                           {"free": free, "model": model_id, "number": number, "id": version_id})
        moved.append((version_id, number, free))
    connection.execute(text(f"CREATE UNIQUE INDEX IF NOT EXISTS {VERSION_NUMBER_INDEX} "
                            "ON model_versions (model_id, number)"))
    if moved:
        logging.getLogger(__name__).warning(
            "model versions renumbered (an older release gave two versions one number): %s",
            ", ".join(f"version id {vid}: {old} -> {new}" for vid, old, new in moved))
    return moved


def _sqlite_pragmas(dbapi_conn, _record):
    cursor = dbapi_conn.cursor()
    # WAL lets readers work while a build or key change writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
