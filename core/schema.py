"""The database schema's revision: Alembic migrations (migrations/) bring it up
to date, and a process refuses to run against a schema it does not know.

A process of an older release started against a database a newer release has
upgraded would read and write tables whose meaning it does not know: it stops
at start instead, naming the revision. One upgrade runs at a time (the schema
lock of core/database.py); the others wait, then find nothing to do.
"""

import functools
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
UPGRADE_COMMAND = "flask --app wsgi db upgrade"


class SchemaError(RuntimeError):
    """The database's schema revision is not the one this code runs on."""


def alembic_config(connection=None) -> Config:
    """Alembic's configuration, without an ini file: migrations/env.py runs on
    `connection` when given, else on the service's DATABASE_URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this code knows."""
    return _scripts().get_current_head()


def known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def current_revision(connection) -> str | None:
    """The database's revision; None for an empty database or one an older
    release made without migrations (create_all), which the baseline adopts."""
    return MigrationContext.configure(connection).get_current_revision()


def refuse_unknown(revision: str | None) -> None:
    if revision is not None and not known(revision):
        raise SchemaError(
            f"The database's schema is at revision {revision!r}, which this release does not know (its newest is "
            f"{head_revision()!r}): a newer release upgraded it. Run that release (or a newer one), or restore the "
            "database from before the upgrade; nothing was changed.")


def upgrade(engine, lock) -> tuple[str | None, str]:
    """Apply the migrations this database lacks, under `lock` (a context manager
    taking the schema lock); (revision before, revision after)."""
    with lock(engine), engine.connect() as connection, _foreign_keys_deferred(connection):
        with connection.begin():
            before = current_revision(connection)
            refuse_unknown(before)
            if before != head_revision():
                command.upgrade(alembic_config(connection), "head")
                _refuse_broken_references(connection)
    return before, head_revision()


@contextmanager
def _foreign_keys_deferred(connection):
    """SQLite alters a table by copying it and dropping the old one (batch
    mode); with its foreign keys enforced, that drop would delete every row
    pointing at the table ON DELETE CASCADE. Off for the upgrade (it must be
    set outside a transaction), checked before its commit, on again after."""
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        yield
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def _refuse_broken_references(connection) -> None:
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise SchemaError(f"The upgrade stopped: it would leave rows pointing at missing ones ({broken[:5]}). "
                              "A migration is wrong; restore the database from before the upgrade.")


def require_current(engine) -> str:
    """Refuse a database whose schema is not at this code's head revision (with
    INFER_MIGRATE_ON_START off, `db upgrade` must have run first)."""
    with engine.connect() as connection:
        revision = current_revision(connection)
    refuse_unknown(revision)
    if revision != head_revision():
        raise SchemaError(
            f"The database's schema is at revision {revision or 'none (empty, or made before migrations)'}, and "
            f"this release needs {head_revision()!r}: run `{UPGRADE_COMMAND}` first (the migration Job), or set "
            "INFER_MIGRATE_ON_START=true to upgrade at start.")
    return revision


def is_current(engine) -> bool:
    """True when nothing is to be done: the fast path of a process start."""
    with engine.connect() as connection:
        revision = current_revision(connection)
    refuse_unknown(revision)
    return revision == head_revision()


def history() -> list[tuple[str, str]]:
    """[(revision, the first line of its docstring)], newest first."""
    return [(script.revision, (script.doc or "").splitlines()[0] if script.doc else "")
            for script in _scripts().walk_revisions()]
