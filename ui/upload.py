"""The Upload page: a model zip goes through the API's own upload-URL flow.

The browser asks /ui/upload-url, which starts the upload as the account (the same
service as POST /upload-url) and hands back the URL; the browser then PUTs the zip
to that URL itself (the service's signed URL, or S3's presigned one), so the file
never passes through the UI, and follows the build on the model page
(ui/static/upload.js).
"""

from flask import jsonify, render_template, request, url_for

from api.models import UploadUrlBody
from core.errors import ApiError
from services import models as model_service
from web.database import session as database_session
from web.settings import current_settings

from .acting import as_account, read_form
from .blueprint import bp


@bp.route("/upload")
def upload():
    return render_template("ui/upload.html", name=request.args.get("name", ""),
                           max_bytes=current_settings().upload_max_bytes,
                           max_size=readable_size(current_settings().upload_max_bytes))


def readable_size(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{round(size / scale, 1):g} {unit}"
    return f"{size} bytes"


@bp.route("/upload-url", methods=["POST"])
def upload_url():
    """JSON in and out, for upload.js: {"model_name"} -> {"upload_url", "model_page"},
    or {"message"} with the API's status (a bad name, a global model's name, a quota)."""
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    name = body.get("model_name", request.form.get("model_name", ""))
    try:
        name = read_form(UploadUrlBody(), {"model_name": name})["model_name"]
        url = model_service.start_upload(as_account(), name)
    except ApiError as error:
        database_session().rollback()  # a model made for the upload that could not start
        return jsonify(message=error.message), error.status
    return jsonify(upload_url=url, model_name=name, model_page=url_for("ui.model", name=name))
