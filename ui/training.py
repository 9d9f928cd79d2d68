"""The Datasets and Training pages: upload a dataset and follow its parsing, see its
statistics and revisions, add a text sample or remove one, start a training job from a form, follow the job's curves, cancel it.

Everything goes through the domain services as the signed-in account (ui/acting.py):
the pages show and change exactly what the account's key could through the API.
"""

from datetime import datetime, timezone

from flask import flash, jsonify, redirect, render_template, request, url_for

from api.datasets import DatasetBody, dataset_object, revision_object
from api.jobs import TrainBody, job_object
from core.errors import ApiError, NotFound
from core.pages import newest_first_page
from core.tables import TrainingJob
from services import dataset_edits as edit_service
from services import datasets as dataset_service
from services import jobs as job_service
from services.datasets import UPLOAD_URL_LIFETIME
from services.trainers import described_trainers
from training.search import SEARCHABLE_TASKS
from web.database import session
from web.errors import error_response
from web.settings import current_settings

from .acting import as_account, attempt, read_form
from .blueprint import bp
from .statuses import badge

DATASET_FINAL = {"ready", "failed"}
JOB_ACTIVE = {"queued", "running"}
JOB_FINAL = {"succeeded", "failed", "cancelled"}
JOBS_PER_PAGE = 50
# Samples the dataset page lists (the API pages through all of them).
SAMPLES_SHOWN = 20
# The upload form's optional fields, passed to POST /datasets as they are.
DATASET_OPTIONS = ("name", "format", "label_column", "text_column")
# The training form's optional search section (fields search:<task>:<name>), passed to the API's `search` as typed.
SEARCH_FIELDS = ("method", "trials", "time_budget_s", "max_latency_ms", "max_size_mb")

# ----------------------------------------------------------------------------- datasets


@bp.route("/datasets")
def datasets():
    listed = [dataset_object(dataset) for dataset in dataset_service.listed(as_account())]
    formats = sorted({name for trainer in trainers() for name in trainer["dataset_formats"]})
    return render_template("ui/datasets.html", datasets=listed, formats=formats, badge=badge)


@bp.route("/datasets", methods=["POST"])
def create_dataset():
    """The upload form without JavaScript: the file in the request (up to the UI's
    body limit), passed on to POST /datasets as a multipart file."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a dataset file to upload.", "error")
        return redirect(url_for("ui.datasets"))
    created, error = attempt(_create_dataset, _dataset_fields(request.form, upload.filename), file=upload.stream)
    if error:
        flash(f"Could not upload the dataset: {error.message}", "error")
        return redirect(url_for("ui.datasets"))
    flash(f"Uploaded {upload.filename}; it is being parsed.", "success")
    return redirect(url_for("ui.dataset", dataset_id=created[0].id))


def _create_dataset(fields: dict, **source):
    """POST /datasets as the account: the fields read by its schema, then the service."""
    body = read_form(DatasetBody(), {**fields, "upload": source.get("upload", False)})
    return dataset_service.create(as_account(), body, **source)


@bp.route("/datasets/upload-url", methods=["POST"])
def dataset_upload_url():
    """The upload form with JavaScript (dataset.js): a dataset waiting for its file,
    and the URL the browser PUTs the file to (any size up to INFER_DATASET_MAX_BYTES)."""
    sent = request.get_json(silent=True)
    sent = sent if isinstance(sent, dict) else {}
    created, error = attempt(_create_dataset, _dataset_fields(sent, str(sent.get("filename") or "")), upload=True)
    if error:
        return jsonify({"message": error.message}), error.status
    dataset, upload_url = created
    return jsonify({"id": dataset.id, "upload_url": upload_url,
                    "page_url": url_for("ui.dataset", dataset_id=dataset.id)}), 201


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
    """The dataset, its latest revision's statistics (or ?revision=N's), its
    revisions, a page of samples with a form to add or remove one, and the training
    form (which may keep training from one of the account's versions, with a test set)."""
    ctx = as_account()
    row = dataset_service.get(ctx, dataset_id)
    number = request.args.get("revision", type=int)
    details = dataset_object(row, revision=None if number is None else edit_service.revision(ctx, dataset_id, number))
    fitting, revisions, samples, own_versions, test_datasets = [], [], None, {}, []
    if details["status"] == "ready":
        fitting = [trainer for trainer in trainers() if details["format"] in trainer["dataset_formats"]]
        revisions = [revision_object(revision) for revision in edit_service.revisions(ctx, dataset_id)]
        shown, page, total = edit_service.samples(ctx, dataset_id, details["revision"], 0, SAMPLES_SHOWN)
        samples = {"revision": shown, "rows": page, "total": total}
        own_versions = {trainer["task"]: job_service.continuable_versions(ctx, trainer["task"])
                        for trainer in fitting}
        # Any other ready dataset of the same format can be the job's test set.
        test_datasets = [other for other in dataset_service.listed(ctx)
                         if other.status == "ready" and other.format == details["format"] and other.id != dataset_id]
    return render_template("ui/dataset.html", dataset=details, trainers=fitting, final=dataset_final(details),
                           badge=badge, revisions=revisions, samples=samples,
                           can_add_text=details["format"] == "text-label", own_versions=own_versions,
                           test_datasets=test_datasets, searchable=SEARCHABLE_TASKS,
                           search_limits=(current_settings().training_search_max_trials,
                                          current_settings().training_search_max_time_s))


@bp.route("/datasets/<string:dataset_id>/samples", methods=["POST"])
def add_sample(dataset_id):
    """The page's form: one text sample and its label (a new label makes a new class)."""
    sample = {"text": request.form.get("text", ""), "label": request.form.get("label", "")}
    made, error = attempt(edit_service.add_samples, as_account(), dataset_id, [sample])
    if error:
        flash(f"Could not add the sample: {error.message}", "error")
    else:
        flash(f"Added the sample ({made[1][0]}): revision {made[0].revision}.", "success")
    return redirect(url_for("ui.dataset", dataset_id=dataset_id))


@bp.route("/datasets/<string:dataset_id>/samples/<string:sample_id>/delete", methods=["POST"])
def remove_sample(dataset_id, sample_id):
    dataset_service.get(as_account(), dataset_id)  # another account's: the page's 404
    try:
        made, error = attempt(edit_service.remove_samples, as_account(), dataset_id, [sample_id], [])
    except NotFound as missing:  # removed already (a second click): say so on the page
        made, error = None, missing
    if error:
        flash(f"Could not remove the sample: {error.message}", "error")
    else:
        flash(f"Removed sample {sample_id}: revision {made.revision}.", "success")
    return redirect(url_for("ui.dataset", dataset_id=dataset_id))


@bp.route("/datasets/<string:dataset_id>/parse-log")
def dataset_parse_log(dataset_id):
    """The live part of the dataset page: polled (ui.js data-refresh-url) until parsed."""
    details = dataset_object(dataset_service.get(as_account(), dataset_id))
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
    _done, error = attempt(dataset_service.delete, as_account(), dataset_id)
    if error:
        flash(f"Could not delete the dataset: {error.message}", "error")
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
    trainer = next((t for t in trainers() if t["task"] == task), None)
    if trainer is None:
        flash(f"{task!r} cannot be trained: choose a trainer from the list.", "error")
        return back
    body = {"task": task, "dataset_id": dataset_id,
            "hyperparameters": _hyperparameters(request.form, task, trainer["hyperparameters"])}
    # Keeping on from one of the account's versions takes the place of a global base model.
    base_model = (request.form.get(f"keep_from:{task}", "").strip()
                  or request.form.get(f"base_model:{task}", "").strip())
    if base_model:
        body["base_model"] = base_model
    test_dataset = request.form.get("test_dataset_id", "").strip()
    if test_dataset:
        body["test_dataset_id"] = test_dataset
    split = request.form.get("validation_split", "").strip()
    if split:
        body["validation_split"] = split  # the API checks it is a number in 0..0.5
    search = _search(request.form, task)
    if search is not None:
        body["search"] = search  # the API's schema and the service check it (a 422 is the form's error)
    # Another account's dataset: NotFound, the page's 404.
    job, error = attempt(lambda: job_service.start(as_account(), name, read_form(TrainBody(), body)))
    if error:
        flash(f"Could not start training: {error.message}", "error")
        return back
    # No flash: "queued" would outlive the state it names. The job page's live part says it while it is so.
    return redirect(url_for("ui.job", job_id=job.id))


def trainers() -> list[dict]:
    """GET /trainers' answer: what can be trained, and from what."""
    return described_trainers(current_settings().model_dir)


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


def _search(form, task: str) -> dict | None:
    """The `search` object of the chosen trainer's search section: None unless its box
    is ticked or one of its numbers is filled in (the method alone has a default)."""
    chosen = {name: form.get(f"search:{task}:{name}", "").strip() for name in SEARCH_FIELDS}
    chosen = {name: value for name, value in chosen.items() if value}
    if form.get(f"search:{task}") != "on" and not chosen.keys() - {"method"}:
        return None
    return chosen


# ----------------------------------------------------------------------------- jobs


@bp.route("/jobs")
def jobs():
    statement, after = job_service.listing(as_account(), after=request.args.get("after") or None)
    page = newest_first_page(session(), statement, TrainingJob, after, JOBS_PER_PAGE,
                             lambda job: job_object(job, with_epochs=False))
    return render_template("ui/jobs.html", jobs=page["data"], has_more=page["has_more"], badge=badge)


@bp.route("/jobs/<string:job_id>")
def job(job_id):
    found = job_service.get(as_account(), job_id)
    details = job_object(found)
    return render_template("ui/job.html", job=details, **job_state(details, found.log))


@bp.route("/jobs/<string:job_id>/live")
def job_live(job_id):
    """The live part of the job page (status, epochs table, confusion matrix, log):
    polled (ui.js data-refresh-url) until the job ends."""
    found = job_service.get(as_account(), job_id)
    details = job_object(found)
    return render_template("ui/_job_live.html", job=details, **job_state(details, found.log))


@bp.route("/jobs/<string:job_id>/json")
def job_json(job_id):
    """The API's GET /jobs/{id} as the account, for job.js's charts."""
    try:
        return jsonify(job_object(job_service.get(as_account(), job_id)))
    except ApiError as error:  # the API's JSON error, not a page: job.js reads it
        return error_response(error.status, error.message, error.errors, error.headers)


@bp.route("/jobs/<string:job_id>/cancel", methods=["POST"])
def cancel_job(job_id):
    _done, error = attempt(job_service.cancel, as_account(), job_id)
    if error:
        flash(f"Could not cancel the job: {error.message}", "error")
    else:
        flash("Cancelled the job.", "success")
    return redirect(url_for("ui.job", job_id=job_id))


def job_state(details: dict, log: str) -> dict:
    """What the job page shows besides the job: its log, the confusion matrix to draw
    (the kept epoch's, else the newest epoch's) and whether the job has ended."""
    return {"log": log, "confusion": confusion_heatmap(details), "epoch_columns": epoch_columns(details),
            "test_numbers": test_numbers(details),
            "final": details["status"] in JOB_FINAL, "active": details["status"] in JOB_ACTIVE, "badge": badge}


def epoch_columns(details: dict) -> list[str]:
    """The numbers the epochs carry (losses, learning rate, the task's metrics), in the order they come."""
    columns = []
    for epoch in details.get("epochs") or []:
        for key, value in epoch.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in columns \
                    and key not in ("epoch", "step", "elapsed_s", "train_metrics_rows"):
                columns.append(key)
    return columns


def test_numbers(details: dict) -> list[tuple[str, float]]:
    """The test dataset's scalar metrics (accuracy, macro_f1, loss, perplexity...), as the job page lists them."""
    return [(key, value) for key, value in (details.get("test_metrics") or {}).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


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
