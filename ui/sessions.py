"""Who is signed in to the web UI: a signed cookie holding a random session token.

Signing in checks a key exactly as the API does, then stores a session row
(core/tables.py UiSession: the token's sha256, the key's id, when it expires); the
cookie holds only the token and the CSRF token, signed with a key derived from
the service's secret. Every UI request looks the row up with its key: signing
out, the session's expiry (INFER_UI_SESSION_HOURS) or revoking the key (through
the UI, the API or the CLI) ends the session at once, for every copy of the
cookie.

The cookie is HttpOnly (scripts cannot read it), SameSite=Lax, scoped to /ui (the
JSON API never reads it, so the API gains no cookie-borne authority to forge
requests with), and Secure whenever the request came over HTTPS or PUBLIC_URL
says it does. Every POST also needs the session's CSRF token.
"""

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone

from flask import current_app, request, session
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import delete, select, update

from core.keys import find_active_key, hash_key
from core.tables import Account, ApiKey, UiSession, utcnow
from uploads.storage import load_secret
from web.settings import current_settings, settings_of

COOKIE_NAME = "infer_ui"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class UiSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, keyed from the service secret (not Flask's SECRET_KEY,
    which is the upload-signing setting here), Secure over HTTPS."""

    def __init__(self, signing_key: bytes):
        from itsdangerous import URLSafeTimedSerializer

        # One serializer, not one per request (Flask opens a session for every request,
        # the API's too): it holds only the key and the settings below.
        self._serializer = URLSafeTimedSerializer(
            signing_key, salt="infer-ui-session", serializer=self.serializer,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256})

    def get_signing_serializer(self, app):
        return self._serializer

    def open_session(self, app, request):
        # The cookie is scoped to /ui: a browser never sends it elsewhere, so any other
        # request (every API call) starts with an empty session without reading cookies.
        if request.path != "/ui" and not request.path.startswith("/ui/"):
            return self.session_class()
        return super().open_session(app, request)

    def get_cookie_secure(self, app) -> bool:
        return request.is_secure or settings_of(app).public_url.startswith("https://")


def init_sessions(app) -> None:
    secret = load_secret(settings_of(app))
    # A key of its own: a leaked session key must not sign upload URLs, nor the reverse.
    signing_key = hmac.new(secret, b"infer web UI sessions", hashlib.sha256).digest()
    app.session_interface = UiSessionInterface(signing_key)
    app.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_PATH="/ui", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax",
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=settings_of(app).ui_session_hours))


def sign_in(database_session, key: str) -> bool:
    """Start a session for this key if it is active; a fresh cookie (new CSRF token)
    either way, so a session planted before sign-in is never reused."""
    row = find_active_key(database_session, hash_key(key.strip()))
    session.clear()  # the next page shows a new CSRF token (csrf_token makes one)
    if row is None:
        return False
    now = utcnow()
    database_session.execute(delete(UiSession).where(UiSession.expires_at < now))  # sessions long over
    token = secrets.token_urlsafe(32)
    lifetime = current_app.permanent_session_lifetime
    database_session.add(UiSession(token_hash=_hashed(token), key_id=row.id, created_at=now,
                                   expires_at=now + lifetime))
    _keep_newest(database_session, row.id, _hashed(token), current_settings().ui_sessions_per_key)
    database_session.commit()
    session.permanent = True
    session["sid"] = token
    return True


def _keep_newest(database_session, key_id: int, new_hash: str, most: int) -> None:
    """End the key's oldest sessions past `most` (the new one kept): signing in again
    and again cannot grow the table without bound before they expire."""
    others = database_session.scalars(select(UiSession.token_hash)
                                      .where(UiSession.key_id == key_id, UiSession.token_hash != new_hash)
                                      .order_by(UiSession.created_at.desc())).all()
    if len(others) >= most:
        database_session.execute(delete(UiSession).where(UiSession.token_hash.in_(others[max(0, most - 1):])))


def sign_out(database_session) -> None:
    """End the session: its row is marked ended, so a copy of the cookie is refused too."""
    token = session.get("sid")
    if token:
        database_session.execute(update(UiSession).where(UiSession.token_hash == _hashed(token))
                                 .values(ended_at=utcnow()))
        database_session.commit()
    session.clear()


def signed_in_account(database_session) -> tuple[int, str, int] | None:
    """(account id, account name, key id) of the session, if it has not ended or
    expired and its key is still active; else None, and the cookie is cleared."""
    token = session.get("sid")
    if not token:
        return None
    row = database_session.execute(
        select(UiSession.expires_at, UiSession.ended_at, ApiKey.id.label("key_id"), ApiKey.revoked_at,
               Account.id.label("account_id"), Account.name)
        .join(ApiKey, ApiKey.id == UiSession.key_id).join(Account, Account.id == ApiKey.account_id)
        .where(UiSession.token_hash == _hashed(token))
    ).first()
    if row is None or row.ended_at is not None or row.revoked_at is not None or _aware(row.expires_at) <= utcnow():
        session.clear()
        return None
    return row.account_id, row.name, row.key_id


def _hashed(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def csrf_token() -> str:
    """The session's CSRF token, made when a page first needs one: a form is never
    shown without a token that its POST can match (the sign-in form included, so no
    other site can sign a browser in to the attacker's account)."""
    return session.setdefault("csrf", secrets.token_urlsafe(32))


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
    ours = {request.host_url.rstrip("/"), current_settings().public_url.rstrip("/")} - {""}
    return origin in ours
