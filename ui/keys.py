"""The Keys page: list the account's API keys, create one (shown once), revoke one.

A new key is shown only in the answer to the POST that created it: never stored
in the session or a flash message (the cookie would carry it), and the blueprint
sends Cache-Control: no-store, so the browser keeps no copy of the page.
"""

from flask import flash, g, redirect, render_template, request, url_for

from api.keys import ApiKeyInfo, NewKey, NewKeyBody
from core.errors import ApiError
from services import keys as key_service
from web.database import session as database_session

from .acting import as_account, read_form
from .blueprint import bp
from .sessions import sign_out


def _page(status: int = 200, **shown):
    """The keys page; `shown` adds new_key (the key just made) or error (what was refused)."""
    listed = ApiKeyInfo(many=True).dump(key_service.listed(as_account()))
    return render_template("ui/keys.html", keys=listed, session_key_id=g.ui_key_id, **shown), status


@bp.route("/keys")
def keys():
    return _page()


@bp.route("/keys", methods=["POST"])
def create_key():
    try:
        body = read_form(NewKeyBody(), {"label": request.form.get("label", "").strip()})
    except ApiError as error:
        return _page(error.status, error=error.message)
    row, key = key_service.create(as_account(), body["label"])
    shown = {name: getattr(row, name) for name in ApiKeyInfo().fields}
    return _page(201, new_key=NewKey().dump({**shown, "key": key}))


@bp.route("/keys/<int:key_id>/revoke", methods=["POST"])
def revoke_key(key_id: int):
    try:
        row = key_service.revoke(as_account(), key_id)
    except ApiError as error:  # another account's key, or none: NotFound, and nothing revoked
        database_session().rollback()
        return _page(error.status, error=error.message)
    if key_id == g.ui_key_id:
        # This session's own key: the session ended with it (it would on the next page anyway).
        sign_out(database_session())
        flash("You revoked the key this session was signed in with: sign in with another key.", "success")
        return redirect(url_for("ui.sign_in"))
    flash(f"Key {row.prefix}… revoked: it no longer works.", "success")
    return redirect(url_for("ui.keys"))
