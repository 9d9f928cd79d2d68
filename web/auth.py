"""The request check: every endpoint except the public ones needs a valid API key
(core/keys.py hashes, finds and caches keys); the account it belongs to is the
request's account from then on."""

from flask import current_app, g, request

from core.errors import Unauthorized
from core.keys import KeyCache, find_active_key, hash_key
from core.request_context import current_account

from .database import session as request_session

HEADER = "x-api-key"
# Where the key may be sent, for messages: our header, or OpenAI's way (its SDKs
# and every client built on them send Authorization: Bearer).
HOW_TO_SEND = f"send it in the {HEADER} header or as Authorization: Bearer <key>"


def require_api_key():
    """before_request hook: every endpoint except the public ones needs a valid key."""
    endpoint = request.endpoint or ""
    if endpoint in current_app.config["PUBLIC_ENDPOINTS"] or request.method == "OPTIONS":
        return None
    if endpoint.startswith("api-docs.") or endpoint == "static":
        return None
    unrouted_ui_path = not endpoint and (request.path == "/ui" or request.path.startswith("/ui/"))
    if endpoint.startswith("ui.") or unrouted_ui_path:
        # The web UI signs in with a key once and checks its own session (ui/sessions.py). A /ui path
        # that routes nowhere yet (/ui, redirected to /ui/) is the UI's too: never the API's JSON 401.
        return None
    key_hash = hash_key(presented_key())
    cache: KeyCache = current_app.extensions["key_cache"]
    cached = cache.get(key_hash)
    if cached is None:
        row = find_active_key(request_session(), key_hash)
        if row is None:
            raise key_refused("Invalid or revoked API key.")
        cached = (row.id, row.account_id)
        cache.put(key_hash, *cached)
    g.api_key_id, g.account_id = cached
    current_account.set(g.account_id)
    return None


def presented_key() -> str:
    """The key the request sends: the x-api-key header when present, else the
    Authorization header's Bearer credentials; 401 when neither holds one."""
    key = request.headers.get(HEADER)
    if key:
        return key
    authorization = request.headers.get("Authorization", "").strip()
    if not authorization:
        raise key_refused(f"Missing API key: {HOW_TO_SEND}.")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise key_refused(f"The Authorization header's {scheme[:20]} scheme is not accepted: {HOW_TO_SEND}.")
    if not credentials.strip():
        raise key_refused(f"The Authorization header has no key after Bearer: {HOW_TO_SEND}.")
    return credentials.strip()


def key_refused(message: str) -> Unauthorized:
    # invalid_api_key: OpenAI's code for any key problem (missing, unknown, revoked), which its clients know.
    return Unauthorized(message, reason="invalid_api_key")


def current_account_id() -> int:
    return g.account_id
