"""`flask --app wsgi db ...`: the database schema's Alembic migrations.

`db upgrade` is the step a deployment runs once per release before the new
release's processes start (the Kubernetes migration Job), with
INFER_MIGRATE_ON_START off; by default every process start does the same.
"""

import os

import click
from flask.cli import AppGroup

from core import schema
from core.database import one_process_at_a_time
from web.database import get_db

db_cli = AppGroup("db", help="The database schema (Alembic migrations).")

# flask's own options that take a value, before the command's name.
_FLASK_VALUE_OPTIONS = {"--app", "-A", "--env-file", "-e"}


def loaded_for_db_command(argv: list[str]) -> bool:
    """Whether this process is `flask ... db ...`: the app it loads must leave
    the schema to the command (wsgi.py)."""
    if not argv or not (os.path.basename(argv[0]) == "flask"
                        or argv[0].endswith(os.path.join("flask", "__main__.py"))):  # python -m flask
        return False
    args = iter(argv[1:])
    for arg in args:
        if arg in _FLASK_VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg == "db"
    return False


@db_cli.command("upgrade")
def upgrade_command():
    """Apply the migrations the database lacks, under the schema lock (a second run waits, then does nothing)."""
    try:
        before, after = schema.upgrade(get_db().engine, one_process_at_a_time)
    except schema.SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    if before == after:
        click.echo(f"The schema is up to date (revision {after}).")
    else:
        click.echo(f"Upgraded the schema from revision {before or 'none'} to {after}.")


@db_cli.command("current")
def current_command():
    """Print the database's schema revision and the newest this release knows."""
    with get_db().engine.connect() as connection:
        revision = schema.current_revision(connection)
    head = schema.head_revision()
    if revision == head:
        state = "up to date"
    elif revision is not None and not schema.known(revision):
        state = "NEWER than this release knows: run the release that upgraded it"
    else:
        state = f"behind: run `{schema.UPGRADE_COMMAND}`"
    click.echo(f"database: {revision or 'none'}; this release: {head} ({state})")


@db_cli.command("history")
def history_command():
    """List the migrations this release knows, newest first."""
    for revision, title in schema.history():
        click.echo(f"{revision}\t{title}")
