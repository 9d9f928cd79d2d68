"""Who is signed in to the web UI: a signed session cookie naming an API key.

Signing in checks a key exactly as the API does; the cookie then holds the key's
id (never the key) and the account, signed with a key derived from the service's
secret, so it cannot be forged or altered. Every UI request checks that the key
is still active: revoking it (through the UI, the API or the CLI) ends every
session signed in with it at once.

The cookie is HttpOnly (scripts cannot read it), SameSite=Lax, scoped to /ui (the
JSON API never reads it, so the API gains no cookie-borne authority to forge
requests with), and Secure whenever the request came over HTTPS or PUBLIC_URL
says it does. Every POST also needs the session's CSRF token.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app, request, session
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select

from app.auth import find_active_key, hash_key
from app.db import Account, ApiKey
from uploads.storage import load_secret

COOKIE_NAME = "infer_ui"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class UiSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, keyed from the service secret (not Flask's SECRET_KEY,
    which is the upload-signing setting here), Secure over HTTPS."""

    def __init__(self, signing_key: bytes):
        self._signing_key = signing_key

    def get_signing_serializer(self, app):
        from itsdangerous import URLSafeTimedSerializer

        return URLSafeTimedSerializer(self._signing_key, salt="infer-ui-session", serializer=self.serializer,
                                      signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256})

    def get_cookie_secure(self, app) -> bool:
        return request.is_secure or app.config.get("PUBLIC_URL", "").startswith("https://")


def init_sessions(app) -> None:
    secret = load_secret(app.config)
    # A key of its own: a leaked session key must not sign upload URLs, nor the reverse.
    signing_key = hmac.new(secret, b"infer web UI sessions", hashlib.sha256).digest()
    app.session_interface = UiSessionInterface(signing_key)
    app.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_PATH="/ui", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax",
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=float(app.config["UI_SESSION_HOURS"])))


def sign_in(database_session, key: str) -> bool:
    """Start a session for this key if it is active; a fresh session (new CSRF token)
    either way, so a session planted before sign-in is never reused."""
    row = find_active_key(database_session, hash_key(key.strip()))
    session.clear()
    session["csrf"] = secrets.token_urlsafe(32)  # the sign-in form shown again after a refusal needs one
    if row is None:
        return False
    session.permanent = True
    session.update(key_id=row.id, account_id=row.account_id)
    return True


def sign_out() -> None:
    session.clear()


def signed_in_account(database_session) -> tuple[int, str] | None:
    """(account id, account name) of the session, if its key is still active; else
    None, and the session is cleared (a revoked key's session ends)."""
    key_id, account_id = session.get("key_id"), session.get("account_id")
    if key_id is None or account_id is None:
        return None
    row = database_session.execute(
        select(ApiKey.revoked_at, Account.name).join(Account, Account.id == ApiKey.account_id)
        .where(ApiKey.id == key_id, ApiKey.account_id == account_id)
    ).first()
    if row is None or row.revoked_at is not None:
        session.clear()
        return None
    return account_id, row.name


def csrf_token() -> str:
    return session.get("csrf", "")


def csrf_ok() -> bool:
    """The form field or header carries this session's token, and a browser that
    names the page's origin names ours (a second line behind the token)."""
    expected = session.get("csrf")
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(expected, sent):
        return False
    origin = request.headers.get("Origin")
    if origin is None:  # older browsers and same-origin GET-born forms may not send it
        return True
    ours = {request.host_url.rstrip("/"), current_app.config.get("PUBLIC_URL", "").rstrip("/")} - {""}
    return origin in ours
