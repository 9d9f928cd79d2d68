"""The Models pages: the account's models and the global ones, one model's versions,
its live build (status, message, log) and its delete and promote buttons."""

from datetime import datetime, timezone

from flask import flash, redirect, render_template, url_for

from api.models import model_details, model_listing
from api.versions import version_summary
from core.errors import NotFound
from model_registry.catalogue import TASK_MODELS
from model_registry.resolve import hub_offline
from services import models as model_service
from services import versions as version_service
from services.models import UPLOAD_URL_LIFETIME

from .acting import as_account, attempt
from .blueprint import bp
from .statuses import badge

# A build has ended (the live part stops polling) once its version is one of these.
FINAL_STATUSES = {"success", "fail"}


@bp.route("/models")
def models():
    listed = model_listing(as_account(), include_global=True)
    own = [model for model in listed if model["id"].startswith("model_")]
    global_models = [{**model, "public_names": names_by_task(model["name"])}
                     for model in listed if model["id"].startswith("global_")]
    # Whether a model whose files are not here still answers: online, its first request downloads them.
    return render_template("ui/models.html", own=own, global_models=global_models, badge=badge,
                           hub_offline=hub_offline())


def names_by_task(key: str) -> list[tuple[str, str]]:
    """(public name, task) for each name a global model answers to: "english" means
    a different model on each task, so a name is shown with its task."""
    return [(name, task) for task, names in TASK_MODELS.items() for name, model_key in names.items()
            if model_key == key]


@bp.route("/models/<string:name>")
def model(name):
    details = model_details(as_account(), name)  # another account's model: NotFound, the page's 404
    return render_template("ui/model.html", model=details, **build_state(name, details))


@bp.route("/models/<string:name>/build")
def model_build(name):
    """The live part of the model page: polled (ui.js data-refresh-url) until the build ends."""
    details = model_details(as_account(), name)
    return render_template("ui/_model_build.html", model=details, **build_state(name, details))


def build_state(name: str, details: dict) -> dict:
    """What the live part shows: the versions, the latest build's status and log, and
    whether that build has ended."""
    model, listed = version_service.listed(as_account(), name)
    versions = [version_summary(version, model.current_version_id) for version in listed]
    latest = versions[-1] if versions else None
    # The latest version's own status, not the model's summary: with a serving
    # version, the summary says "success" while a new upload is still on its way.
    status = latest["status"] if latest else details["build_status"]
    try:
        build = model_service.latest_build(as_account(), name)
        log = build.build_log or build.build_message
    except NotFound:  # no build yet
        log = ""
    return {"versions": list(reversed(versions)), "latest": latest, "status": status, "log": log,
            "final": build_ended(status, latest), "badge": badge}


def build_ended(status: str, latest: dict | None) -> bool:
    if status in FINAL_STATUSES:
        return True
    if status == "awaiting_upload" and latest is not None and latest.get("created_at"):
        # Its upload URL has expired: nothing will arrive, so stop asking.
        created = datetime.strptime(latest["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        return datetime.now(timezone.utc) - created > UPLOAD_URL_LIFETIME
    # A model with no version yet and no training under way has nothing to wait for.
    return latest is None and status != "building"


@bp.route("/models/<string:name>/delete", methods=["POST"])
def delete_model(name):
    _done, error = attempt(model_service.delete, as_account(), name)
    if error:
        flash(f"Could not delete {name}: {error.message}", "error")
        return redirect(url_for("ui.model", name=name))
    flash(f"Deleted model {name}, its versions and files.", "success")
    return redirect(url_for("ui.models"))


@bp.route("/models/<string:name>/versions/<int:number>/promote", methods=["POST"])
def promote_version(name, number):
    _done, error = attempt(version_service.promote, as_account(), name, number)
    if error:
        flash(f"Could not promote version {number}: {error.message}", "error")
    else:
        flash(f"Version {number} of {name} now serves.", "success")
    return redirect(url_for("ui.model", name=name))
