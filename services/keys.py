"""An account's API keys: list them (never the keys themselves), create one
(shown once), revoke one. Another account's keys answer as missing ones."""

from sqlalchemy import select

from core.keys import create_key, revoke_key
from core.tables import Account, ApiKey

from .account import ServiceContext


def listed(ctx: ServiceContext) -> list[ApiKey]:
    return list(ctx.db.scalars(select(ApiKey).where(ApiKey.account_id == ctx.account_id)
                               .order_by(ApiKey.id)).all())


def create(ctx: ServiceContext, label: str = "") -> tuple[ApiKey, str]:
    """(the key's row, the key itself): the key in clear is handed out only here."""
    account = ctx.db.get(Account, ctx.account_id)
    return create_key(ctx.db, account.name, label)


def revoke(ctx: ServiceContext, key_id: int) -> ApiKey:
    """Revoke one of the account's keys; this process's cache of checked keys forgets it at once."""
    row = revoke_key(ctx.db, key_id, account_id=ctx.account_id)
    ctx.part("key_cache").forget(key_id)
    return row
