"""Sign in with an API key, sign out."""

from urllib.parse import urlsplit

from flask import redirect, render_template, request, url_for

from web.database import session as database_session

from .blueprint import bp
from .sessions import csrf_ok
from .sessions import sign_in as start_session
from .sessions import sign_out as end_session


def _safe_next(target: str | None) -> str:
    """Only a path inside the UI: an open redirect would let a link send a
    freshly signed-in user anywhere."""
    if target and target.startswith("/ui/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("ui.models")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if request.method == "GET":
        # The form carries a token (csrf_token) before sign-in too: no login CSRF.
        return render_template("ui/sign_in.html", next=request.args.get("next", ""))
    if not csrf_ok():
        return render_template("ui/sign_in.html", next="", error="The sign-in form expired: try again."), 403
    key = request.form.get("key", "")
    if not key.strip() or not start_session(database_session(), key):
        return render_template("ui/sign_in.html", next=request.form.get("next", ""),
                               error="That key is not valid or has been revoked."), 401
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/sign-out", methods=["POST"])
def sign_out():
    # Reached only through require_session, which checked the CSRF token: a
    # cross-site form cannot sign a user out.
    end_session(database_session())
    return redirect(url_for("ui.sign_in"))


@bp.route("/")
def home():
    return redirect(url_for("ui.models"))
