"""The task routes, generated from the task specs (tasks/spec.py): one Blueprint
and one MethodView per task, at the spec's path, with its request and response
schemas, so every task's POST and its OpenAPI entry come from one place.

What runs for a request is the same for every task: find the model the body
names (a 404 or 503 before anything costly), let the spec check that model can
answer this body, split the body into batch items, run them through the model's
batcher, post-process the outputs and answer. A task whose items can stop when
nobody waits (text generation) is run watched (web/client_gone.py).
"""

from flask.views import MethodView

import tasks
from tasks.common import read_settings_with
from tasks.spec import TaskSpec
from web import metrics
from web.blueprint import Blueprint
from web.client_gone import new_control, run_watched
from web.settings import current_settings
from web.task_models import loaded_model


def _setting(key: str):
    """A limit by its setting's name (INFER_<key>, named so in the messages)."""
    return getattr(current_settings(), key.lower())


def answer(spec: TaskSpec, body: dict) -> dict:
    """The response to a task request whose body the spec's request schema loaded."""
    model = loaded_model(spec.name, body["model"])
    if spec.check_model is not None:
        spec.check_model(model, body)
    items, is_batch = spec.items(body)
    if spec.stops_when_abandoned:
        outputs = _run_stoppable(model, spec.name, items)
    else:
        outputs = model.run(spec.name, items)
    if spec.finish is not None:
        outputs = spec.finish(outputs, body)
    return spec.answer(outputs, is_batch)


def _run_stoppable(served, task: str, items: list) -> list:
    """Run items that poll a control between tokens: they stop when the client has
    gone (499) or the request's deadline passed (504); the tokens made are counted."""
    control = new_control(served.batch_settings.timeout_s)
    items = [{**item, "control": control} for item in items]

    def count_generated(done):
        if not done.cancelled() and not done.exception():
            metrics.on_generated_rows(served.key, control.rows())

    return run_watched(served, task, items, control, on_done=count_generated)


def view_name(spec: TaskSpec) -> str:
    """The view's class name (its endpoint is <task>.<this>): "text-vectorisation" -> "TextVectorisation"."""
    return "".join(part.capitalize() for part in spec.name.split("-"))


def task_blueprint(spec: TaskSpec) -> Blueprint:
    blp = Blueprint(spec.name, __name__, url_prefix=spec.path, description=spec.description)

    def post(self, body):
        return answer(spec, body)

    post.__doc__ = spec.summary  # flask-smorest's summary of the operation
    post = blp.arguments(spec.request_schema)(blp.response(200, spec.response_schema)(post))
    blp.route("")(type(view_name(spec), (MethodView,), {"post": post}))
    return blp


def inference_routes() -> dict[str, str]:
    """URL rule -> task of every task route."""
    return {spec.path: spec.name for spec in tasks.in_catalogue_order()}


def register(api) -> None:
    """Every task's route, in the catalogue's order (the API docs' order). The
    blueprints are made for each app: a spec registered later (a test's) has its
    route in the apps made after it."""
    read_settings_with(_setting)
    for spec in tasks.in_catalogue_order():
        api.register_blueprint(task_blueprint(spec))
