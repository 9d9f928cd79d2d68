"""The Batches page: upload a JSONL file of task requests, follow the batch's
counts while it runs, cancel it, download its output.

The same service as POST /batches checks and queues the file (its size, lines,
the account's active batches and stored bytes), as the signed-in account
(ui/acting.py); another account's batch is the page's 404, as in the API.
"""

from flask import flash, redirect, render_template, request, url_for

from api.batches import batch_object, output_response
from core.errors import PayloadTooLarge
from core.pages import newest_first_page
from core.tables import Batch
from predictions.batches import FINISHED
from services import batches as batch_service
from web.database import session
from web.settings import current_settings

from .acting import as_account, attempt
from .blueprint import bp
from .statuses import badge

BATCHES_PER_PAGE = 50
# How often the batch page's live part asks for the counts while the batch runs.
REFRESH_MS = 1500


@bp.route("/batches")
def batches():
    statement, after = batch_service.listing(as_account(), after=request.args.get("after") or None)
    page = newest_first_page(session(), statement, Batch, after, BATCHES_PER_PAGE, batch_object)
    return render_template("ui/batches.html", batches=page["data"], has_more=page["has_more"], badge=badge,
                           max_bytes=current_settings().batch_max_input_bytes,
                           max_lines=current_settings().batch_max_lines)


@bp.route("/batches", methods=["POST"])
def create_batch():
    """The upload form: the file goes to the service as POST /batches' multipart file does
    (the form's body may be as large as INFER_BATCH_MAX_INPUT_BYTES: ui/blueprint.py)."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a JSONL file of requests to upload.", "error")
        return redirect(url_for("ui.batches"))
    created, error = attempt(_create_from_upload, upload.stream)
    if error:
        flash(f"Could not start the batch: {error.message}", "error")
        return redirect(url_for("ui.batches"))
    return redirect(url_for("ui.batch", batch_id=created.id))


def _create_from_upload(stream) -> Batch:
    limit = current_settings().batch_max_input_bytes
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"The file is over {limit} bytes (INFER_BATCH_MAX_INPUT_BYTES). Split it into "
                              "several batches.")
    return batch_service.create_from_file(as_account(), data)


@bp.route("/batches/<string:batch_id>")
def batch(batch_id):
    details = batch_object(batch_service.get(as_account(), batch_id))
    return render_template("ui/batch.html", batch=details, refresh_ms=REFRESH_MS, **batch_state(details))


@bp.route("/batches/<string:batch_id>/live")
def batch_live(batch_id):
    """The live part of the batch page (status, counts, cancel): polled (ui.js data-refresh-url) until it ends."""
    details = batch_object(batch_service.get(as_account(), batch_id))
    return render_template("ui/_batch_live.html", batch=details, **batch_state(details))


@bp.route("/batches/<string:batch_id>/cancel", methods=["POST"])
def cancel_batch(batch_id):
    _done, error = attempt(batch_service.cancel, as_account(), batch_id)
    if error:
        flash(f"Could not cancel the batch: {error.message}", "error")
    else:
        flash("Cancelled the batch: the lines answered so far stay in its output.", "success")
    return redirect(url_for("ui.batch", batch_id=batch_id))


@bp.route("/batches/<string:batch_id>/output")
def batch_output(batch_id):
    """GET /batches/{id}/output as the account: the JSONL answers so far, as a download."""
    response = output_response(*batch_service.output_file(as_account(), batch_id))
    response.headers["Content-Disposition"] = f'attachment; filename="{batch_id}-output.jsonl"'
    return response


def batch_state(details: dict) -> dict:
    counts = details["request_counts"]
    answered = counts["completed"] + counts["failed"]
    return {"final": details["status"] in FINISHED, "badge": badge, "answered": answered,
            "percent": int(100 * answered / counts["total"]) if counts["total"] else 0}
