"""`flask --app wsgi keys ...`: create, list and revoke API keys."""

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from .auth import create_key, revoke_key
from .db import Account, ApiKey, get_db
from core.errors import NotFound

keys_cli = AppGroup("keys", help="Manage API keys.")


@keys_cli.command("create")
@click.option("--account", required=True, help="Account name; created if new.")
@click.option("--label", default="", help="A note to tell the key apart later.")
def create_command(account, label):
    """Create a key and print it (it is shown only this once)."""
    with get_db().sessions() as session:
        row, key = create_key(session, account, label)
        click.echo(f"id {row.id} for account {account!r}. Store this key now; it is not shown again:")
        click.echo(key)


@keys_cli.command("list")
@click.option("--account", default=None, help="Only this account's keys.")
def list_command(account):
    """List keys: id, account, prefix, label, created, revoked."""
    with get_db().sessions() as session:
        query = select(ApiKey, Account.name).join(Account).order_by(ApiKey.id)
        if account:
            query = query.where(Account.name == account)
        for key, account_name in session.execute(query):
            revoked = key.revoked_at.isoformat() if key.revoked_at else "active"
            click.echo(
                f"{key.id}\t{account_name}\t{key.prefix}...\t{key.label or '-'}\t"
                f"{key.created_at.isoformat()}\t{revoked}"
            )


@keys_cli.command("revoke")
@click.argument("key_id", type=int)
def revoke_command(key_id):
    """Revoke the key with this id (see `keys list`)."""
    with get_db().sessions() as session:
        try:
            revoke_key(session, key_id)
        except NotFound as exc:
            raise click.ClickException(exc.message) from None
        current_app.extensions["key_cache"].forget(key_id)  # this process; servers keep theirs
        ttl = float(current_app.config["AUTH_CACHE_TTL_S"])
        click.echo(f"revoked key {key_id}" + (f"; running servers refuse it within {ttl:g} s" if ttl > 0 else ""))
