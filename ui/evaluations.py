"""The evaluation page of a model: evaluate one of its versions on one of the
account's datasets, follow its evaluations, and compare versions side by side
by their latest evaluation on one dataset (the same table as GET
/models/{name}/compare, through the same services)."""

from flask import flash, redirect, render_template, request, url_for

from api.evaluations import comparison_object, evaluation_object
from core.errors import InvalidInput
from core.pages import newest_first_page
from core.tables import Evaluation
from services import datasets as dataset_service
from services import evaluations as evaluation_service
from services import versions as version_service
from web.database import session

from .acting import as_account, attempt
from .blueprint import bp
from .statuses import badge

EVALUATIONS_SHOWN = 20


@bp.route("/models/<string:name>/compare")
def compare(name):
    ctx = as_account()
    model, listed = version_service.listed(ctx, name)  # another account's model: NotFound, the page's 404
    built = [version.number for version in listed if version.status == "success"]
    statement, _ = evaluation_service.listing(ctx, model=name)
    evaluations = newest_first_page(session(), statement, Evaluation, None, EVALUATIONS_SHOWN,
                                    evaluation_object)["data"]
    ready = [dataset for dataset in dataset_service.listed(ctx) if dataset.status == "ready"]
    versions_sent, dataset_sent = request.args.get("versions", ""), request.args.get("dataset_id", "")
    compared, error = None, None
    if versions_sent and dataset_sent:
        compared, error = attempt(_compare, ctx, name, versions_sent, dataset_sent)
    return render_template("ui/compare.html", model=model, built=built, evaluations=evaluations, datasets=ready,
                           compared=compared, error=error, versions_sent=versions_sent, dataset_sent=dataset_sent,
                           badge=badge)


def _compare(ctx, name: str, versions: str, dataset_id: str) -> dict:
    try:
        numbers = [int(part) for part in versions.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput("Name versions by their numbers separated by commas, such as 1,2.") from None
    return comparison_object(evaluation_service.compare(ctx, name, numbers, dataset_id))


@bp.route("/models/<string:name>/evaluate", methods=["POST"])
def evaluate(name):
    back = redirect(url_for("ui.compare", name=name))
    try:
        number = int(request.form.get("version", ""))
    except ValueError:
        flash("Choose the version to evaluate.", "error")
        return back
    started, error = attempt(evaluation_service.start, as_account(), name, number,
                             request.form.get("dataset_id", ""))
    if error:
        flash(f"Could not start the evaluation: {error.message}", "error")
        return back
    flash(f"Evaluation {started.id} of version {number} queued; this page lists it.", "success")
    return back


@bp.route("/evaluations/<string:evaluation_id>/cancel", methods=["POST"])
def cancel_evaluation(evaluation_id):
    evaluation = evaluation_service.get(as_account(), evaluation_id)
    _done, error = attempt(evaluation_service.cancel, as_account(), evaluation_id)
    flash(f"Could not cancel: {error.message}" if error else "Cancelled.", "error" if error else "success")
    return redirect(url_for("ui.compare", name=evaluation.model_name))
