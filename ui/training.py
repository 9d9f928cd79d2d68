"""The Datasets and Training pages: upload a dataset and follow its parsing, see its
statistics, start a training job from a form, follow the job's curves, cancel it.

Everything goes through the JSON API as the signed-in account (ui/api.py): the
pages show and change exactly what the account's key could.
"""

from datetime import datetime, timezone

from flask import flash, jsonify, redirect, render_template, request, url_for

from training.datasets_api import UPLOAD_URL_LIFETIME

from . import api
from .blueprint import bp
from .statuses import badge

DATASET_FINAL = {"ready", "failed"}
JOB_ACTIVE = {"queued", "running"}
JOB_FINAL = {"succeeded", "failed", "cancelled"}
JOBS_PER_PAGE = 50
# The upload form's optional fields, passed to POST /datasets as they are.
DATASET_OPTIONS = ("name", "format", "label_column", "text_column")

# ----------------------------------------------------------------------------- datasets


@bp.route("/datasets")
def datasets():
    listed = api.get("/datasets")
    formats = sorted({name for trainer in api.get("/trainers") for name in trainer["dataset_formats"]})
    return render_template("ui/datasets.html", datasets=listed, formats=formats, badge=badge)


@bp.route("/datasets", methods=["POST"])
def create_dataset():
    """The upload form without JavaScript: the file in the request (up to the UI's
    body limit), passed on to POST /datasets as a multipart file."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a dataset file to upload.", "error")
        return redirect(url_for("ui.datasets"))
    fields = _dataset_fields(request.form, upload.filename)
    answer = api.call("POST", "/datasets", data={**fields, "file": (upload.stream, upload.filename)},
                      content_type="multipart/form-data")
    if not answer.ok:
        flash(f"Could not upload the dataset: {answer.message}", "error")
        return redirect(url_for("ui.datasets"))
    flash(f"Uploaded {upload.filename}; it is being parsed.", "success")
    return redirect(url_for("ui.dataset", dataset_id=answer.body["id"]))


@bp.route("/datasets/upload-url", methods=["POST"])
def dataset_upload_url():
    """The upload form with JavaScript (dataset.js): a dataset waiting for its file,
    and the URL the browser PUTs the file to (any size up to INFER_DATASET_MAX_BYTES)."""
    sent = request.get_json(silent=True)
    sent = sent if isinstance(sent, dict) else {}
    fields = _dataset_fields(sent, str(sent.get("filename") or ""))
    answer = api.call("POST", "/datasets", json={**fields, "upload": True})
    if not answer.ok:
        return jsonify({"message": answer.message}), answer.status
    return jsonify({"id": answer.body["id"], "upload_url": answer.body["upload_url"],
                    "page_url": url_for("ui.dataset", dataset_id=answer.body["id"])}), 201


def _dataset_fields(sent, filename: str) -> dict:
    """The upload form's fields the person filled in; the name defaults to the file's."""
    fields = {key: str(sent.get(key) or "").strip() for key in DATASET_OPTIONS}
    fields = {key: value for key, value in fields.items() if value}
    stem = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1].rsplit(".", 1)[0].strip()
    if "name" not in fields and stem:
        fields["name"] = stem[:200]
    return fields


@bp.route("/datasets/<string:dataset_id>")
def dataset(dataset_id):
    details = api.get(api.path("datasets", dataset_id))
    trainers = []
    if details["status"] == "ready":
        trainers = [trainer for trainer in api.get("/trainers") if details["format"] in trainer["dataset_formats"]]
    return render_template("ui/dataset.html", dataset=details, trainers=trainers, final=dataset_final(details),
                           badge=badge)


@bp.route("/datasets/<string:dataset_id>/parse-log")
def dataset_parse_log(dataset_id):
    """The live part of the dataset page: polled (ui.js data-refresh-url) until parsed."""
    details = api.get(api.path("datasets", dataset_id))
    return render_template("ui/_dataset_parse.html", dataset=details, final=dataset_final(details), badge=badge)


def dataset_final(details: dict) -> bool:
    if details["status"] in DATASET_FINAL:
        return True
    if details["status"] == "awaiting_upload" and details.get("created_at"):
        # Its upload URL has expired: nothing will arrive, so stop asking.
        created = datetime.strptime(details["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        return datetime.now(timezone.utc) - created > UPLOAD_URL_LIFETIME
    return False


@bp.route("/datasets/<string:dataset_id>/delete", methods=["POST"])
def delete_dataset(dataset_id):
    answer = api.call("DELETE", api.path("datasets", dataset_id))
    api.not_found_as_page(answer)
    if not answer.ok:
        flash(f"Could not delete the dataset: {answer.message}", "error")
        return redirect(url_for("ui.dataset", dataset_id=dataset_id))
    flash("Deleted the dataset and its files.", "success")
    return redirect(url_for("ui.datasets"))


@bp.route("/datasets/<string:dataset_id>/train", methods=["POST"])
def train(dataset_id):
    """The training form: POST /models/{name}/train with the chosen trainer's settings."""
    back = redirect(url_for("ui.dataset", dataset_id=dataset_id))
    task = request.form.get("task", "")
    name = request.form.get("model_name", "").strip()
    if not name:
        flash("Name the model the job trains.", "error")
        return back
    trainer = next((t for t in api.get("/trainers") if t["task"] == task), None)
    if trainer is None:
        flash(f"{task!r} cannot be trained: choose a trainer from the list.", "error")
        return back
    body = {"task": task, "dataset_id": dataset_id,
            "hyperparameters": _hyperparameters(request.form, task, trainer["hyperparameters"])}
    base_model = request.form.get(f"base_model:{task}", "").strip()
    if base_model:
        body["base_model"] = base_model
    split = request.form.get("validation_split", "").strip()
    if split:
        body["validation_split"] = split  # the API checks it is a number in 0..0.5
    answer = api.call("POST", api.path("models", name, "train"), json=body)
    api.not_found_as_page(answer)  # another account's dataset
    if not answer.ok:
        flash(f"Could not start training: {answer.message}", "error")
        return back
    # No flash: "queued" would outlive the state it names. The job page's live part says it while it is so.
    return redirect(url_for("ui.job", job_id=answer.body["id"]))


def _hyperparameters(form, task: str, described: dict) -> dict:
    """The filled-in settings of the chosen trainer (its fields are named hp:<task>:<name>;
    an empty one keeps the trainer's default). Numbers and booleans go as typed: the
    API's schema reads them and says what is wrong with one that is not."""
    chosen = {}
    for name, about in described.items():
        raw = form.get(f"hp:{task}:{name}", "").strip()
        if not raw:
            continue
        if about["type"] == "list":
            chosen[name] = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            chosen[name] = raw
    return chosen


# ----------------------------------------------------------------------------- jobs


@bp.route("/jobs")
def jobs():
    query = {"limit": JOBS_PER_PAGE}
    if request.args.get("after"):
        query["after"] = request.args["after"]
    page = api.get("/jobs", query=query)
    return render_template("ui/jobs.html", jobs=page["data"], has_more=page["has_more"], badge=badge)


@bp.route("/jobs/<string:job_id>")
def job(job_id):
    details = api.get(api.path("jobs", job_id))
    return render_template("ui/job.html", job=details, **job_state(details))


@bp.route("/jobs/<string:job_id>/live")
def job_live(job_id):
    """The live part of the job page (status, epochs table, confusion matrix, log):
    polled (ui.js data-refresh-url) until the job ends."""
    details = api.get(api.path("jobs", job_id))
    return render_template("ui/_job_live.html", job=details, **job_state(details))


@bp.route("/jobs/<string:job_id>/json")
def job_json(job_id):
    """The API's GET /jobs/{id} as the account, for job.js's charts."""
    answer = api.call("GET", api.path("jobs", job_id))
    return jsonify(answer.body), answer.status


@bp.route("/jobs/<string:job_id>/cancel", methods=["POST"])
def cancel_job(job_id):
    answer = api.call("POST", api.path("jobs", job_id, "cancel"))
    api.not_found_as_page(answer)
    if answer.ok:
        flash("Cancelled the job.", "success")
    else:
        flash(f"Could not cancel the job: {answer.message}", "error")
    return redirect(url_for("ui.job", job_id=job_id))


def job_state(details: dict) -> dict:
    """What the job page shows besides the job: its log, the confusion matrix to draw
    (the kept epoch's, else the newest epoch's) and whether the job has ended."""
    log_answer = api.call("GET", api.path("jobs", details["id"], "log"))
    log = log_answer.body.get("log", "") if log_answer.ok and isinstance(log_answer.body, dict) else ""
    return {"log": log, "confusion": confusion_heatmap(details), "epoch_columns": epoch_columns(details),
            "final": details["status"] in JOB_FINAL, "active": details["status"] in JOB_ACTIVE, "badge": badge}


def epoch_columns(details: dict) -> list[str]:
    """The numbers the epochs carry (losses, learning rate, the task's metrics), in the order they come."""
    columns = []
    for epoch in details.get("epochs") or []:
        for key, value in epoch.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in columns \
                    and key not in ("epoch", "step", "elapsed_s"):
                columns.append(key)
    return columns


def confusion_heatmap(details: dict) -> dict | None:
    """{labels, epoch, rows: [(label, [(count, level 0-9)])]}: each cell's level is its
    share of its row (the true label's examples), so a rare class reads as clearly
    as a common one."""
    sources = [(details.get("best_epoch"), details.get("metrics") or {})]
    sources += [(epoch.get("epoch"), epoch) for epoch in reversed(details.get("epochs") or [])]
    for epoch, stats in sources:
        matrix = stats.get("confusion_matrix")
        if matrix and matrix.get("labels"):
            rows = []
            for label, counts in zip(matrix["labels"], matrix["matrix"]):
                total = sum(counts) or 1
                rows.append((label, [(count, min(9, int(10 * count / total))) for count in counts]))
            return {"labels": matrix["labels"], "epoch": epoch, "rows": rows}
    return None
