"""An account's asynchronous predictions: list, read, cancel; and the secret that
signs its webhook calls. (Submitting one is the task route's, answering 202:
api/predictions.py; running one is predictions/runner.py's.)"""

from sqlalchemy import func, select, update

from core.errors import NotFound, TooManyRequests
from core.tables import Account, Prediction, owned, utcnow
from predictions import webhooks
from predictions.webhook_pool import account_webhook_secret

from .account import ServiceContext

ACTIVE = ("queued", "running")


def get(ctx: ServiceContext, prediction_id: str) -> Prediction:
    """The account's prediction; another account's answers exactly as a missing one."""
    row = owned(ctx.db, Prediction, prediction_id, ctx.account_id)
    if row is None:
        raise NotFound(f"Prediction {prediction_id!r} not found (finished ones are kept for "
                       f"{ctx.config.prediction_retention_s} s: INFER_PREDICTION_RETENTION_S).")
    return row


def listing(ctx: ServiceContext, status: str | None = None, after: str | None = None):
    """(statement, after_row): the account's predictions (of that status) and the one
    a page starts after, for core/pages.py newest_first_page."""
    statement = select(Prediction).where(Prediction.account_id == ctx.account_id)
    if status:
        statement = statement.where(Prediction.status == status)
    return statement, (get(ctx, after) if after else None)


def cancel(ctx: ServiceContext, prediction_id: str) -> Prediction:
    """A queued prediction never runs; a running one's answer is dropped; an ended one stays as it is."""
    row = get(ctx, prediction_id)
    now = utcnow()
    # Conditional updates: the runner may claim or end it between the read and the write.
    ctx.db.execute(update(Prediction).where(Prediction.id == row.id, Prediction.status == "queued")
                   .values(status="cancelled", completed_at=now,
                           webhook_status="pending" if row.webhook else None, webhook_next_at=now))
    ctx.db.execute(update(Prediction).where(Prediction.id == row.id, Prediction.status == "running")
                   .values(cancel_requested=True))
    ctx.db.commit()
    ctx.db.refresh(row)
    return row


def check_room(ctx: ServiceContext) -> None:
    """429 when the account already has as many queued or running predictions as it may."""
    limit = ctx.config.account_max_queued_predictions
    active = ctx.db.scalar(select(func.count()).select_from(Prediction).where(
        Prediction.account_id == ctx.account_id, Prediction.status.in_(ACTIVE)))
    if active >= limit:
        raise TooManyRequests(f"This account has {active} queued or running predictions; the limit is {limit} "
                              "(INFER_ACCOUNT_MAX_QUEUED_PREDICTIONS). Poll them, or retry later.",
                              headers={"Retry-After": "5"})


def webhook_secret(ctx: ServiceContext) -> str:
    return account_webhook_secret(ctx.db, ctx.account_id)


def rotate_webhook_secret(ctx: ServiceContext) -> str:
    """A new secret; webhook calls from then on are signed with it."""
    ctx.db.execute(update(Account).where(Account.id == ctx.account_id).values(webhook_secret=webhooks.new_secret()))
    ctx.db.commit()
    return webhook_secret(ctx)
