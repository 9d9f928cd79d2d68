"""The web UI's blueprint: sign-in required, CSRF on every POST, HTML errors, strict headers.

Pages read and change everything through the domain services (services/) as the
signed-in account (ui/acting.py), the same services and checks the JSON API's
views call, so the UI can show or touch only what that account's key could.
"""

import os

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from api.batches import FORM_OVERHEAD_BYTES
from core.errors import ApiError
from web.database import session as database_session
from web.settings import current_settings

from .sessions import csrf_ok, csrf_token, signed_in_account

HERE = os.path.dirname(__file__)
bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder=os.path.join(HERE, "templates"),
               static_folder=os.path.join(HERE, "static"), static_url_path="/static")

# Reached without a session: the sign-in page itself and the CSS/JS it needs.
OPEN_ENDPOINTS = {"ui.sign_in", "ui.static"}
# Forms whose file may be larger than INFER_MAX_CONTENT_LENGTH: endpoint -> the setting of its limit.
LARGER_FORMS = {"ui.create_batch": "batch_max_input_bytes"}
# The methods a browser or script may send to a path under /ui: no_such_page takes each of them.
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]

# Pages only run the UI's own scripts and styles (no inline script: an injected
# tag would not run), are never framed (clickjacking of the delete buttons), and
# send no Referer outside the service.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self' {upload_origins}; frame-ancestors 'none'; form-action 'self'; "
                           "base-uri 'none'; object-src 'none'")


@bp.before_request
def require_session():
    g.ui_account = None
    _allow_larger_form()
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    account = signed_in_account(database_session())
    if account is None:
        if request.method == "GET" and request.accept_mimetypes.accept_html:
            return redirect(url_for("ui.sign_in", next=request.full_path.rstrip("?")))
        return render_template("ui/error.html", status=401, message="Sign in again: this session has ended."), 401
    g.ui_account_id, g.ui_account, g.ui_key_id = account
    # no_such_page changes nothing: a stray POST there is told "not found", not "form out of date".
    if request.method == "POST" and request.endpoint != "ui.no_such_page" and not csrf_ok():
        return render_template("ui/error.html", status=403,
                               message="This form is out of date or was not sent from this site (CSRF check). "
                                       "Go back, reload the page and send it again."), 403
    return None


def _allow_larger_form() -> None:
    """The limit of a form that takes a larger file, set before anything reads the body
    (the CSRF check reads the form): the same as its API route's, and a 413 names it."""
    setting = LARGER_FORMS.get(request.endpoint) if request.method == "POST" else None
    if setting is not None:
        request.max_content_length = getattr(current_settings(), setting) + FORM_OVERHEAD_BYTES
        request.body_limit_setting = f"INFER_{setting.upper()}"


@bp.context_processor
def ui_context():
    # The menu names only pages that exist (current_app.view_functions), and the account signed in.
    return {"ui_account": g.get("ui_account"), "csrf_token": csrf_token,
            "nav_endpoints": set(current_app.view_functions)}


@bp.after_request
def security_headers(response):
    storage_origin = _upload_origins()
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.format(upload_origins=storage_origin)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "ui.static":
        response.headers["Cache-Control"] = "no-store"  # pages show keys once and private data
    return response


def _upload_origins() -> str:
    """Where the browser PUTs an upload: this service (local storage, or PUBLIC_URL) or the S3 endpoint."""
    origins = []
    for url in (current_settings().public_url, current_settings().s3_endpoint_url):
        if url:
            scheme, _, rest = url.partition("://")
            origins.append(f"{scheme}://{rest.split('/')[0]}")
    if current_settings().storage == "s3" and not current_settings().s3_endpoint_url:
        origins.append("https://*.amazonaws.com")
    return " ".join(origins)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    message = error.description
    if error.code == 413:  # the page says which setting limits the form (a form with a file names its own)
        message = (f"The form is too large; the limit is set by "
                   f"{getattr(request, 'body_limit_setting', 'INFER_MAX_CONTENT_LENGTH')}.")
    page = render_template("ui/error.html", status=error.code, message=message)
    # The error's own headers that still apply to a page (a 405's Allow), not its Content-Type.
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    return page, error.code, headers


@bp.errorhandler(ApiError)
def api_error(error: ApiError):
    return render_template("ui/error.html", status=error.status, message=str(error)), error.status


@bp.route("/", defaults={"unknown": ""}, methods=[method for method in ANY_METHOD if method != "GET"])
@bp.route("/<path:unknown>", methods=ANY_METHOD)
def no_such_page(unknown):
    """Every path under /ui that no page has: without this, routing fails before the
    request belongs to the blueprint, and the app's JSON errors would answer it.
    Here it is a page like any other (sign-in first, then this page's 404 or 405)."""
    allowed = _methods_of_other_pages(request.path)
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed,
                               description=f"{request.path} does not take {request.method}; it takes "
                                           f"{', '.join(allowed)}.")
    abort(404, f"There is no page at {request.path}. The menu above lists the pages.")


def _methods_of_other_pages(path: str) -> list[str]:
    """The methods that a real page at `path` takes (a POST-only form's URL opened in
    the browser is a 405, not a 404). Empty when no page but no_such_page matches."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in ANY_METHOD:
        try:
            rule, _arguments = adapter.match(path, method=method, return_rule=True)
        except HTTPException:  # no such rule for this method (or a redirect to one)
            continue
        if rule.endpoint != request.endpoint:
            allowed.append(method)
    return allowed
