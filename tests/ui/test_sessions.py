"""Signing in to the web UI: the session cookie, CSRF, revocation, headers."""

import base64
import json
import re
from datetime import timedelta

from sqlalchemy import update

from core.keys import revoke_key
from core.tables import ApiKey, UiSession, utcnow

from ..conftest import new_key
from .conftest import UiClient


def test_a_wrong_key_is_refused_and_a_right_one_signs_in(ui_app):
    ui = UiClient(ui_app)
    refused = ui.sign_in("ik_not-a-key")
    assert refused.status_code == 401 and "not valid or has been revoked" in refused.get_data(as_text=True)
    # The form shown again after a refusal carries a token that works.
    ui.csrf = ui.token_from(refused)
    assert ui.csrf
    signed_in = ui.client.post("/ui/sign-in", data={"key": new_key(ui_app, "alice"), "csrf_token": ui.csrf})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/ui/models"
    page = ui.get("/ui/models")
    assert page.status_code == 200 and "alice" in page.get_data(as_text=True)


def test_pages_need_a_session(ui_app):
    anonymous = UiClient(ui_app)
    page = anonymous.get("/ui/models")
    assert page.status_code == 302 and page.headers["Location"].startswith("/ui/sign-in?next=/ui/models")
    # Not a browser navigation (a script's fetch): a 401, not a redirect.
    assert anonymous.client.get("/ui/models", headers={"Accept": "application/json"}).status_code == 401


def test_the_session_cookie_is_http_only_same_site_scoped_to_the_ui_and_never_holds_the_key(ui_app):
    ui = UiClient(ui_app)
    key = new_key(ui_app, "alice")
    ui.csrf = ui.token_from(ui.client.get("/ui/sign-in"))
    answer = ui.client.post("/ui/sign-in", data={"key": key, "csrf_token": ui.csrf})
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http here
    assert key not in cookie and key[3:20] not in cookie
    # Only a random session token and the CSRF token (made by the first page): no key id, no account.
    ui.client.get("/ui/models")
    payload = ui.client.get_cookie("infer_ui", path="/ui").value.split(".")[0]
    assert set(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))) == {
        "_permanent", "csrf", "sid"}


def test_the_cookie_is_secure_over_https_and_behind_an_https_public_url(make_app):
    over_https = make_app()
    ui = UiClient(over_https)
    ui.client = over_https.test_client()
    token = ui.token_from(ui.client.get("/ui/sign-in", base_url="https://localhost"))
    answer = ui.client.post("/ui/sign-in", base_url="https://localhost",
                            data={"key": new_key(over_https, "alice"), "csrf_token": token})
    assert "Secure" in answer.headers["Set-Cookie"]

    behind_tls = make_app(PUBLIC_URL="https://infer.example.com")
    ui = UiClient(behind_tls)
    token = ui.token_from(ui.client.get("/ui/sign-in"))
    answer = ui.client.post("/ui/sign-in", data={"key": new_key(behind_tls, "alice"), "csrf_token": token})
    assert "Secure" in answer.headers["Set-Cookie"]


def test_signing_out_ends_every_copy_of_the_cookie(ui_app, ui_for):
    alice = ui_for("alice")
    stolen = UiClient(ui_app)
    cookie = alice.client.get_cookie("infer_ui", path="/ui")
    stolen.client.set_cookie("infer_ui", cookie.value, path="/ui")
    assert stolen.get("/ui/models").status_code == 200  # a copy works while the session lasts

    assert alice.post("/ui/sign-out").status_code == 302
    assert stolen.get("/ui/models").status_code == 302  # the session ended on the server, not only in one browser


def test_signing_in_again_and_again_keeps_only_the_newest_sessions_of_a_key(make_app):
    app = make_app(UI_SESSIONS_PER_KEY=3)
    key = new_key(app, "alice")
    browsers = [UiClient(app, key) for _ in range(5)]
    assert [browser.get("/ui/models").status_code for browser in browsers] == [302, 302, 200, 200, 200]
    with app.extensions["db"].sessions() as session:
        assert session.query(UiSession).count() == 3


def test_an_expired_session_is_refused(make_app):
    app = make_app(UI_SESSION_HOURS=1)
    alice = UiClient(app, new_key(app, "alice"))
    assert alice.get("/ui/models").status_code == 200
    with app.extensions["db"].sessions() as session:
        session.execute(update(UiSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert alice.get("/ui/models").status_code == 302


def test_sign_in_needs_the_forms_token(ui_app):
    ui = UiClient(ui_app)
    ui.client.get("/ui/sign-in")
    # Another site's form cannot sign a browser in to the attacker's account.
    answer = ui.client.post("/ui/sign-in", data={"key": new_key(ui_app, "mallory")})
    assert answer.status_code == 403
    assert ui.get("/ui/models").status_code == 302  # still signed out


def test_a_post_without_the_token_or_from_another_origin_is_refused(ui_for):
    alice = ui_for("alice")
    assert alice.post("/ui/sign-out", csrf=False).status_code == 403
    assert alice.post("/ui/sign-out", data={"csrf_token": "forged"}).status_code == 403
    other_site = alice.post("/ui/sign-out", headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 403
    assert alice.get("/ui/models").status_code == 200  # none of them signed her out
    assert alice.post("/ui/sign-out", headers={"Origin": "http://localhost"}).status_code == 302
    assert alice.get("/ui/models").status_code == 302


def test_revoking_the_key_ends_its_sessions_wherever_it_is_revoked(ui_app, ui_for):
    alice = ui_for("alice")
    assert alice.get("/ui/models").status_code == 200
    with ui_app.extensions["db"].sessions() as session:
        key_id = session.query(ApiKey.id).order_by(ApiKey.id.desc()).first()[0]
        revoke_key(session, key_id)  # as the CLI or another process would
    assert alice.get("/ui/models").status_code == 302
    assert alice.client.get("/ui/models", headers={"Accept": "application/json"}).status_code == 401


def test_the_api_never_accepts_the_ui_cookie(ui_for):
    """The JSON API reads keys only: a signed-in browser gives another site's
    requests to the API no authority (no CSRF through the API)."""
    alice = ui_for("alice")
    assert alice.client.get("/models").status_code == 401
    assert alice.client.post("/keys", json={"label": "x"}).status_code == 401


def test_sign_in_redirects_only_inside_the_ui(ui_app):
    for target, expected in (("/ui/keys", "/ui/keys"), ("https://evil.example/", "/ui/models"),
                             ("//evil.example/ui/", "/ui/models"), ("/ui/jobs?page=2", "/ui/jobs?page=2")):
        ui = UiClient(ui_app)
        ui.csrf = ui.token_from(ui.client.get("/ui/sign-in"))
        answer = ui.client.post("/ui/sign-in", data={"key": new_key(ui_app, "alice"), "csrf_token": ui.csrf,
                                                     "next": target})
        assert answer.headers["Location"] == expected


def test_pages_forbid_framing_inline_scripts_and_caching(ui_for):
    page = ui_for("alice").get("/ui/models")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    # No inline script anywhere (the policy would block it; pages must not need one).
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", page.get_data(as_text=True))


def test_no_ui_form_fails_on_a_body_nested_too_deeply_or_of_the_wrong_shape(ui_app, ui_for):
    alice = ui_for("alice")
    posts = sorted(rule.rule for rule in ui_app.url_map.iter_rules()
                   if rule.endpoint.startswith("ui.") and "POST" in rule.methods
                   and rule.endpoint not in ("ui.sign_out", "ui.revoke_key"))  # these two end the session
    assert {"/ui/playground/run", "/ui/upload-url", "/ui/keys"} <= set(posts)
    for rule in posts:
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda match: "1" if "number" in match[1] or "id" == match[1][-2:] else "x",
                      rule)
        for body in ("[" * 100_000, '["a list"]', '{"task": ["x"], "filename": [1], "model_name": {}}'):
            answer = alice.client.post(path, data=body, headers={"Content-Type": "application/json",
                                                                 "X-CSRF-Token": alice.csrf})
            assert answer.status_code < 500, (path, body[:20], answer.status_code)
