"""The check of a `webhook` URL a request body brings (an asynchronous
prediction, a training job, an upload, a batch): at POST time, through the
destination guard its calls will go through (predictions/webhooks.py), so a URL
that could never be called is a 422 now rather than a failed delivery later."""

from flask import current_app

from core.errors import InvalidInput
from predictions import webhooks


def check_webhook(url, field: str = "webhook") -> str | None:
    """The URL, checked (None stays None); InvalidInput saying what to change."""
    if url is None:
        return None
    if not isinstance(url, str):
        raise InvalidInput(f"Invalid request. {field}: send a URL string.", errors={field: ["Not a string."]})
    try:
        runner = current_app.extensions["predictions"]
        webhooks.destination(url, runner.networks, runner.resolver)  # parsed once, at start; a bounded lookup
    except webhooks.WebhookRefused as exc:
        raise InvalidInput(f"Invalid request. {field}: {exc}.", errors={field: [str(exc)]}) from None
    return url
