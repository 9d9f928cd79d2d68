"""A file an account names by URL (an image to add to a dataset), fetched through
the webhooks' destination guard.

The URL comes from an account and the service fetches it from inside the
operator's network, as it calls a webhook: so the same rules hold (webhooks.py):
the host must resolve to public addresses only, or to a network listed in
INFER_WEBHOOK_ALLOWED_NETWORKS; the connection goes to the address that was
checked; redirects are not followed; one deadline bounds the whole fetch
(INFER_WEBHOOK_TIMEOUT_S), and the body is read up to a size limit, no further.
"""

import threading
from urllib.parse import urlsplit

from . import webhook_http, webhooks


class FetchFailed(ValueError):
    """The URL was refused or did not give a file: the message says why."""


_resolvers: dict[tuple, webhooks.Resolver] = {}
_resolvers_lock = threading.Lock()


def _resolver(threads: int, timeout_s: float) -> webhooks.Resolver:
    """One resolver per setting: its lookup slots are shared by every fetch of the process."""
    with _resolvers_lock:
        return _resolvers.setdefault((threads, timeout_s), webhooks.Resolver(threads, timeout_s))


def fetch(url: str, config, max_bytes: int) -> bytes:
    """The body of a GET of `url`, at most `max_bytes`; FetchFailed says what went wrong."""
    networks = webhooks.allowed_networks(config.webhook_allowed_networks)
    resolver = _resolver(config.webhook_threads, config.webhook_resolve_timeout_s)
    try:
        scheme, host, port, address = webhooks.destination(url, networks, resolver)
    except webhooks.WebhookRefused as exc:
        raise FetchFailed(str(exc).replace("webhooks go to", "URLs fetched go to")) from None
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        status, body = webhook_http.get(scheme, host, port, address, target, {"User-Agent": "infer-fetch/1"},
                                        config.webhook_timeout_s, max_bytes)
    except OSError as exc:
        raise FetchFailed(f"{host} did not send the file: {exc}") from None
    if 300 <= status < 400:
        raise FetchFailed(f"{url} answered with a redirect (HTTP {status}), which is not followed; send the "
                          "file's own URL")
    if status != 200:
        raise FetchFailed(f"{url} answered HTTP {status}")
    return body
