"""`flask --app wsgi keys ...`: create, list and revoke API keys;
`flask --app wsgi accounts ...`: list accounts, show and set their limits."""

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from core.errors import NotFound
from core.keys import create_key, revoke_key
from core.tables import Account, ApiKey
from web.account_limits import LIMIT_NAMES, MOST, effective, find_account, overrides_of, set_overrides
from web.database import get_db
from web.settings import current_settings

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
        ttl = current_settings().auth_cache_ttl_s
        click.echo(f"revoked key {key_id}" + (f"; running servers refuse it within {ttl:g} s" if ttl > 0 else ""))


# --- accounts and their limits ---------------------------------------------------------

accounts_cli = AppGroup("accounts", help="Accounts and their limits.")


class LimitValue(click.ParamType):
    """A limit on the command line: a whole number (0: no limit) or "default"."""

    name = "N|default"

    def convert(self, value, param, ctx):
        if value is None or value == "default":
            return value
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a whole number nor 'default'", param, ctx)
        if not 0 <= number <= MOST:
            self.fail(f"{number} is not between 0 (no limit) and {MOST}", param, ctx)
        return number


def _describe_limits(session, account) -> str:
    own = overrides_of(session, account.id)
    limits = effective(current_app.extensions["account_limits"].defaults, own)
    parts = []
    for name in LIMIT_NAMES:
        value = getattr(limits, name)
        shown = f"{value}" if value else "0 (no limit)"
        parts.append(f"{name} {shown} ({'own' if own[name] is not None else 'default'})")
    return f"{account.name}: " + ", ".join(parts)


@accounts_cli.command("list")
def accounts_list_command():
    """List accounts: name, keys, and their effective limits (own or default)."""
    with get_db().sessions() as session:
        counts = dict(session.execute(select(ApiKey.account_id, func.count()).where(ApiKey.revoked_at.is_(None))
                                      .group_by(ApiKey.account_id)).all())
        for account in session.scalars(select(Account).order_by(Account.name)):
            click.echo(f"{_describe_limits(session, account)}; active keys: {counts.get(account.id, 0)}")


@accounts_cli.command("limits")
@click.argument("name")
@click.option("--requests-per-min", type=LimitValue(), metavar="N|default",
              help="Inference requests per minute (0: no limit).")
@click.option("--tokens-per-min", type=LimitValue(), metavar="N|default",
              help="Generation tokens per minute (0: no limit).")
@click.option("--max-in-flight", type=LimitValue(), metavar="N|default",
              help="Requests served at once per server process (0: no limit).")
@click.option("--reset", is_flag=True, help="Return every limit to its default first.")
def accounts_limits_command(name, requests_per_min, tokens_per_min, max_in_flight, reset):
    """Show an account's limits, or set its own ("default": back to the setting's)."""
    given = {"requests_per_min": requests_per_min, "tokens_per_min": tokens_per_min, "max_in_flight": max_in_flight}
    changes = {key: None if value == "default" else value for key, value in given.items() if value is not None}
    with get_db().sessions() as session:
        account = find_account(session, name)
        if account is None:
            raise click.ClickException(f"No account is named {name!r}; `accounts list` lists them "
                                       "(`keys create --account NAME` makes one).")
        if changes or reset:
            set_overrides(session, account.id, changes, reset=reset)
        click.echo(_describe_limits(session, account))
        ttl = current_settings().account_limits_cache_ttl_s
        if (changes or reset) and ttl > 0:
            click.echo(f"Running servers apply the change within {ttl:g} s (INFER_ACCOUNT_LIMITS_CACHE_TTL_S).")
