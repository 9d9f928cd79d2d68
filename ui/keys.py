"""The Keys page: list the account's API keys, create one (shown once), revoke one.

A new key is shown only in the answer to the POST that created it: never stored
in the session or a flash message (the cookie would carry it), and the blueprint
sends Cache-Control: no-store, so the browser keeps no copy of the page.
"""

from flask import flash, g, redirect, render_template, request, url_for

from app.db import session as database_session

from . import api
from .blueprint import bp
from .sessions import sign_out


def _page(status: int = 200, **shown):
    """The keys page; `shown` adds new_key (the key just made) or error (what the API refused)."""
    keys = api.get("/keys")
    return render_template("ui/keys.html", keys=keys, session_key_id=g.ui_key_id, **shown), status


@bp.route("/keys")
def keys():
    return _page()


@bp.route("/keys", methods=["POST"])
def create_key():
    answer = api.call("POST", "/keys", json={"label": request.form.get("label", "").strip()})
    if not answer.ok:
        return _page(answer.status, error=answer.message)
    return _page(201, new_key=answer.body)


@bp.route("/keys/<int:key_id>/revoke", methods=["POST"])
def revoke_key(key_id: int):
    answer = api.call("DELETE", f"/keys/{key_id}")
    if not answer.ok:  # another account's key, or none: the API's 404, and nothing revoked
        return _page(answer.status, error=answer.message)
    if key_id == g.ui_key_id:
        # This session's own key: the session ended with it (it would on the next page anyway).
        sign_out(database_session())
        flash("You revoked the key this session was signed in with: sign in with another key.", "success")
        return redirect(url_for("ui.sign_in"))
    flash(f"Key {answer.body['prefix']}… revoked: it no longer works.", "success")
    return redirect(url_for("ui.keys"))
