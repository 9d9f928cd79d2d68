"""Webhooks of an account's training jobs, builds, batches and evaluations.

What ends such an object (training/records.py, uploads/builder.py,
predictions/batches.py, an evaluation's runner) calls `notify` when it reaches
a final state and its row has a webhook URL. That only adds a WebhookDelivery
row, pending: the pool that delivers prediction webhooks
(predictions/webhook_pool.py) finds it, signs the body with the account's
webhook secret, calls the URL through the same destination guard, and retries
it with the same back-off. The call never runs on the thread that ends the
work, and the work never waits for it.

Here in core, below every kind of work, so any of them can call it; the body is
made by the pool at its first call (the object as its GET answers it: the app
hands the pool what makes it), unless the caller gives one.
"""

import secrets

from core.tables import WebhookDelivery, utcnow

# The kinds of object a delivery may be about: what its body shows.
EVENTS = ("training_job", "build", "batch", "evaluation")


def notify(session, account_id: int, event: str, object_id, url: str | None, payload: dict | None = None) -> None:
    """Queue a webhook call about `object_id` (a finished `event`) to `url`, in the
    caller's session and transaction (it commits it). No URL: nothing to do."""
    if not url:
        return
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}: one of {', '.join(EVENTS)}")
    session.add(WebhookDelivery(id="whd_" + secrets.token_hex(8), account_id=account_id, event=event,
                                object_id=str(object_id), payload=payload, webhook=url,
                                webhook_status="pending", webhook_next_at=utcnow()))
