"""GET /v1/models and /v1/models/{model}: OpenAI's model list, for clients that
discover or check models (LangChain, LlamaIndex, chat front-ends)."""

from flask.views import MethodView
from marshmallow import Schema, fields
from sqlalchemy import select

from core.tables import Account, ModelVersion, UserModel
from model_registry.availability import presence_of
from model_registry.catalogue import MODELS, TASK_MODELS, tasks_of
from tasks.common import presence_fields
from web.auth import current_account_id
from web.blueprint import Blueprint
from web.database import session
from web.settings import current_settings

from .common import ENDPOINTS_FOR_TASK, endpoints_for, model_not_found, unix_time
from .errors import documented_errors

blp = Blueprint("openai-models", __name__, url_prefix="/v1/models",
                description="OpenAI-compatible: the models your key can use.")

# The catalogue pins a revision, not a release date: 0 stands for "unknown",
# keeps every answer the same and is the integer OpenAI's SDKs expect.
CATALOGUE_CREATED = 0
CATALOGUE_OWNER = "system"


class OpenAIModel(Schema):
    id = fields.String(
        metadata={"description": "What to send as `model`: a catalogue model key, or your model's name."})
    object = fields.String(metadata={"description": "Always model."})
    created = fields.Integer(
        metadata={"description": "Unix time of your model's serving version; 0 for global models."})
    owned_by = fields.String(metadata={"description": "system for global models, else your account's name."})
    tasks = fields.List(fields.String(), metadata={"description": "The service's tasks the model serves."})
    endpoints = fields.List(fields.String(), metadata={"description": "The /v1 routes that take this model."})
    available, download = presence_fields()


class OpenAIModelList(Schema):
    object = fields.String(metadata={"description": "Always list."})
    data = fields.List(fields.Nested(OpenAIModel))


def catalogue_entry(key: str) -> dict:
    tasks = tasks_of(key)
    # OpenAI's clients ignore fields they do not know: the presence fields ride along.
    return {"id": key, "object": "model", "created": CATALOGUE_CREATED, "owned_by": CATALOGUE_OWNER,
            "tasks": tasks, "endpoints": endpoints_for(tasks),
            **presence_of(key, current_settings().model_dir).fields()}


def public_name_entry(name: str) -> dict | None:
    """A Backprop public name ("english"), which /v1 takes as `model` as it takes a
    catalogue key: the entry of the model it means on the /v1 routes (the first task
    with a /v1 route that knows the name), under the name asked for, with every task
    that knows it. None when no task does."""
    tasks = [task for task, names in TASK_MODELS.items() if name in names]
    if not tasks:
        return None
    on_v1 = [task for task in tasks if task in ENDPOINTS_FOR_TASK] or tasks
    key = TASK_MODELS[on_v1[0]][name]
    entry = catalogue_entry(key)
    # Only the routes where the name means this model: "english" is also /v1/rerank's
    # default, a cross-encoder, which GET /v1/models lists under its own id.
    same_model = [task for task in tasks if TASK_MODELS[task][name] == key]
    return {**entry, "id": name, "tasks": tasks, "endpoints": list(dict.fromkeys(endpoints_for(same_model)))}


def own_entries(name: str | None = None) -> list[dict]:
    """The caller's models that have a serving version (all, or the one named)."""
    query = (
        select(UserModel.name, ModelVersion.tasks, ModelVersion.created_at, Account.name.label("owner"))
        .join(ModelVersion, ModelVersion.id == UserModel.current_version_id)
        .join(Account, Account.id == UserModel.account_id)
        .where(UserModel.account_id == current_account_id())
        .order_by(UserModel.name)
    )
    if name is not None:
        query = query.where(UserModel.name == name)
    return [
        {"id": row.name, "object": "model", "created": unix_time(row.created_at), "owned_by": row.owner,
         "tasks": list(row.tasks), "endpoints": endpoints_for(row.tasks)}
        for row in session().execute(query)
    ]


@blp.route("")
class Models(MethodView):
    @blp.response(200, OpenAIModelList)
    @documented_errors()
    def get(self):
        """List the models your key can use: the global ones, then your own"""
        return {"object": "list", "data": [catalogue_entry(key) for key in MODELS] + own_entries()}


@blp.route("/<string:model>")
class Model(MethodView):
    @blp.response(200, OpenAIModel)
    @documented_errors()
    def get(self, model):
        """One model by id, or by a public name /v1 accepts as model (404 model_not_found for another account's)"""
        if model in MODELS:
            return catalogue_entry(model)
        public = public_name_entry(model)
        if public is not None:
            return public
        entries = own_entries(model)
        if not entries:
            raise model_not_found(model)
        return entries[0]
