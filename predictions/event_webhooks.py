"""The pool that delivers the webhooks of training jobs, builds, batches and
evaluations (core/webhook_events.py queues them): the prediction webhooks' pool
(predictions/webhook_pool.py) over the WebhookDelivery table, so the signature,
destination guard, deadlines, fair turns between accounts and retries are the
same code.

The body is the object as its GET answers it. That view lives in the API layer,
above this one: the app hands the pool `payload_of(event, object_id)` (api/
webhook_payloads.py). It is made at the first call and stored, so every retry
sends the same bytes; an object deleted before the first call (a batch past its
retention) sends the little the delivery knows.
"""

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete

from core.tables import WebhookDelivery, utcnow

from .webhook_pool import WebhookPool

log = logging.getLogger(__name__)

EVENT_HEADER = "X-Infer-Event"

# (event, object id) -> the object as its GET answers it, or None when it is gone.
PayloadOf = Callable[[str, str], dict | None]


class EventWebhookPool(WebhookPool):
    table = WebhookDelivery
    what = "event delivery"

    def __init__(self, config, sessions, networks: list, resolver, payload_of: PayloadOf | None):
        super().__init__(config, sessions, networks, resolver)
        self.payload_of = payload_of

    def body_of(self, session, row) -> dict:
        if row.payload is None:
            made = self.payload_of(row.event, row.object_id) if self.payload_of else None
            row.payload = made or {"id": row.object_id, "object": row.event, "status": "deleted"}
            session.commit()
        return row.payload

    def headers_of(self, row) -> dict:
        return {EVENT_HEADER: f"{row.event}.finished"}

    def housekeeping(self) -> None:
        """Forget deliveries past the predictions' retention (made or given up)."""
        kept = timedelta(seconds=float(self.config.prediction_retention_s))
        with self.sessions() as session:
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < utcnow() - kept,
                                                          WebhookDelivery.webhook_status != "pending"))
            session.commit()
