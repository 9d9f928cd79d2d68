"""GET /models/{name}/versions, POST /models/{name}/versions/{n}/promote and the
record of serving moves: a model's versions, uploaded or trained, side by side."""

from flask.views import MethodView
from marshmallow import Schema, fields

from core.tables import ModelVersion
from core.times import iso_time
from services import versions
from uploads.versions import has_files
from web.blueprint import Blueprint
from web.service_context import api_context
from web.settings import current_settings

blp = Blueprint("versions", __name__, description="Versions of your models, uploaded or trained.")


class VersionSummary(Schema):
    version = fields.Integer(metadata={"description": "Its number; call it as model \"name@N\"."})
    status = fields.String(metadata={"description": "awaiting_upload, queued, building, success or fail"})
    serving = fields.Boolean(metadata={"description": "Whether calls naming the model without @N get this version."})
    source = fields.String(metadata={"description": "upload (a zip) or training (a job)"})
    format = fields.String()
    tasks = fields.List(fields.String())
    description = fields.String()
    job_id = fields.String(allow_none=True)
    dataset_id = fields.String(allow_none=True)
    metrics = fields.Dict(allow_none=True, metadata={
        "description": "A trained version's kept epoch's statistics (and test_ ones, scored on its job's test "
                       "dataset)."})
    parent = fields.Dict(allow_none=True, metadata={
        "description": "Lineage: the version it was trained on from, {model, version}; null when it started from a "
                       "global model, from nothing, or was uploaded. dataset_id is what it trained on."})
    message = fields.String()
    has_files = fields.Boolean(metadata={"description": "False once removed (INFER_USER_MODEL_VERSIONS_KEPT): "
                                                        "it can no longer serve or be promoted."})
    created_at = fields.String()
    finished_at = fields.String(allow_none=True)


class ServingMove(Schema):
    from_version = fields.Integer(allow_none=True)
    to_version = fields.Integer()
    reason = fields.String(metadata={"description": "build, training or promote"})
    created_at = fields.String()


def version_summary(version: ModelVersion, serving_id: int | None) -> dict:
    return {
        "version": version.number, "status": version.status, "serving": version.id == serving_id,
        "source": version.source, "format": version.format, "tasks": list(version.tasks or []),
        "description": version.description, "job_id": version.job_id, "dataset_id": version.dataset_id,
        "metrics": version.metrics, "parent": version.parent, "message": version.build_message,
        "has_files": version.status == "success" and has_files(current_settings().data_dir, version),
        "created_at": iso_time(version.created_at), "finished_at": iso_time(version.finished_at),
    }


@blp.route("/models/<string:name>/versions")
class Versions(MethodView):
    @blp.response(200, VersionSummary(many=True))
    def get(self, name):
        """Every version of one of your models, oldest first"""
        model, listed = versions.listed(api_context(), name)
        return [version_summary(version, model.current_version_id) for version in listed]


@blp.route("/models/<string:name>/versions/<int:number>")
class VersionResource(MethodView):
    @blp.response(200, VersionSummary)
    def get(self, name, number):
        """One version of one of your models: its source, metrics and lineage (parent, dataset)"""
        model, version = versions.numbered(api_context(), name, number)
        return version_summary(version, model.current_version_id)


@blp.route("/models/<string:name>/versions/<int:number>/promote")
class Promote(MethodView):
    @blp.response(200, VersionSummary)
    def post(self, name, number):
        """Make version N the one that serves (back or forth); the move is recorded"""
        model, version = versions.promote(api_context(), name, number)
        return version_summary(version, model.current_version_id)


@blp.route("/models/<string:name>/serving-history")
class ServingHistory(MethodView):
    @blp.response(200, ServingMove(many=True))
    def get(self, name):
        """Every move of the serving version, oldest first: builds, training jobs and promotions"""
        return [{"from_version": move.from_number, "to_version": move.to_number, "reason": move.reason,
                 "created_at": iso_time(move.created_at)} for move in versions.serving_history(api_context(), name)]
