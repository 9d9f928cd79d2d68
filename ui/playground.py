"""The playground: pick a task and a model, fill in the task's fields, run it, and
get the curl command that sends the same request.

The form is built from each task's own request schema (its TaskSpec's,
tasks/*.py), so a task added to tasks/ shows up here with its fields. The page
runs the task's route as the signed-in account (api/prediction_dispatch.py): the
answer, and the error message, are exactly what the account's key would get.
"""

import json
import re
import secrets
import shlex
from dataclasses import dataclass

from flask import current_app, g, jsonify, render_template, request
from marshmallow import INCLUDE, fields, missing

from api.models import model_listing
from api.prediction_dispatch import run_as
from core.request_context import current_request_id
from model_registry.resolve import hub_offline
from tasks import in_catalogue_order
from tasks.spec import TASK_SPECS, TaskSpec
from web.settings import current_settings

from .acting import as_account
from .blueprint import bp

# Names a person reads better than the API's.
LABELS = {"prev_q": "Previous questions", "prev_a": "Previous answers", "top_k": "Top k", "top_p": "Top p"}

# The body field that carries a custom task's free-form fields (merged into the body, not sent as itself).
CUSTOM_INPUT = "input"


@dataclass(frozen=True)
class FormField:
    """One input of a task's form; `kind` tells playground.js how to turn it into JSON:
    text (a string), lines (a list of strings, one per line), integer, number, boolean,
    image (a file, sent base64), json (any JSON value) or json-object (merged into the body)."""

    name: str
    kind: str
    required: bool
    help: str = ""
    default: object = None

    @property
    def id(self) -> str:
        return f"field-{self.name}"

    @property
    def label(self) -> str:
        text = LABELS.get(self.name, self.name.replace("_", " ").capitalize())
        return text + " (one per line)" if self.kind == "lines" else text

    @property
    def advanced(self) -> bool:
        """Tuning knobs (numbers, switches) fold away under "More options"."""
        return self.kind in ("integer", "number", "boolean") and not self.required


# The task fields' kinds (their input_kind, tasks/) the form has an input for; a row
# of a tabular model's columns is typed as JSON.
FORM_KINDS = {"image", "text", "lines"}


def _kind(field: fields.Field) -> str:
    # The task fields' own kinds first: their classes subclass the generic ones.
    kind = getattr(field, "input_kind", None)
    if kind is not None:
        return kind if kind in FORM_KINDS else "json"
    for field_class, kind in ((fields.Boolean, "boolean"), (fields.Integer, "integer"), (fields.Number, "number"),
                              (fields.String, "text")):
        if isinstance(field, field_class):
            return kind
    return "json"


IMAGE_HELP = "An image file (PNG, JPEG, …): the page sends it base64 encoded, as the API takes it."


def _first_sentence(description: str) -> str:
    """The gist of a field's API description; the rest (Backprop client details) is in the API docs."""
    return re.split(r"(?<=[.:])\s+(?=[A-Z])", description, maxsplit=1)[0]


def form_fields(spec: TaskSpec) -> list[FormField]:
    """The task's body fields as form inputs; the model has its own select."""
    schema = spec.request_schema()
    found = []
    for name, field in schema.fields.items():
        if name == "model":
            continue
        default = field.metadata.get("default", field.load_default)
        kind = _kind(field)
        help_text = IMAGE_HELP if kind == "image" else _first_sentence(field.metadata.get("description", ""))
        found.append(FormField(name, kind, field.required, help_text, None if default is missing else default))
    if schema.unknown == INCLUDE:  # /custom: whatever fields the user's model takes
        found.append(FormField(CUSTOM_INPUT, "json-object", False,
                               'Your model\'s fields, as a JSON object, e.g. {"numbers": [1, 2]}. '
                               "Each becomes a field of the request."))
    return found


@dataclass(frozen=True)
class ModelChoice:
    """One option of the model select: the name to send, what the option says, and
    for a global model whose files are not on this server, the command that gets them."""

    name: str
    label: str
    download: str | None = None

    @property
    def present(self) -> bool:
        return self.download is None


def model_choices(task: str, listed: list[dict]) -> dict[str, list[ModelChoice]]:
    """{group: [choices]}: the catalogue's names for the task (its default first, as
    Backprop's reference has it), each saying whether its files are here, then the
    account's own models that serve it. `listed` is GET /models?include_global=true."""
    absent = {model["name"]: model.get("download") for model in listed
              if model["id"].startswith("global_") and not model.get("available", True)}
    built_in = []
    for position, (name, key) in enumerate(TASK_SPECS[task].models.items()):
        notes = (["default"] if position == 0 else []) + (["files not here"] if key in absent else [])
        label = (name if name == key else f"{name}: {key}") + (f" ({', '.join(notes)})" if notes else "")
        built_in.append(ModelChoice(name, label, absent.get(key)))
    own = [ModelChoice(model["name"], model["name"] + ("" if model["build_status"] == "success"
                                                        else f" ({model['build_status']})"))
           for model in listed if model["id"].startswith("model_") and task in (model.get("tasks") or [])]
    return {group: choices for group, choices in (("Built-in", built_in), ("Your models", own)) if choices}


def default_choice(choices: dict[str, list[ModelChoice]], listed: list[dict]) -> str | None:
    """The model the form starts with: one that answers here. The task's default
    when its files are here, else the first built-in model whose files are, else
    one of the account's own built models, else the default all the same (its
    option and hint say how to get its files)."""
    built_in, own = choices.get("Built-in", []), choices.get("Your models", [])
    built = {model["name"] for model in listed
             if model["id"].startswith("model_") and model["build_status"] == "success"}
    answering = [choice for choice in built_in if choice.present] + [choice for choice in own if choice.name in built]
    first = (answering or built_in or own or [None])[0]
    return first.name if first else None


def _task_form_context(task: str, model: str | None = None) -> dict:
    spec = TASK_SPECS[task]
    listed = model_listing(as_account(), include_global=True)
    choices = model_choices(task, listed)
    names = [choice.name for group in choices.values() for choice in group]
    return {"spec": spec, "route": spec.path, "fields": form_fields(spec), "choices": choices,
            "chosen_model": model if model in names else default_choice(choices, listed),
            "hub_offline": hub_offline()}


def _chosen_task() -> str:
    task = request.args.get("task", "")
    return task if task in TASK_SPECS else in_catalogue_order()[0].name


@bp.route("/playground")
def playground():
    """The page; the script takes a task's fields from /ui/playground?task=... when the task changes."""
    task = _chosen_task()
    form = _task_form_context(task, request.args.get("model"))
    # The command for the empty form, as the script would build it (it takes over as the fields change).
    empty = {field.name: "" for field in form["fields"] if field.kind == "text" and field.required}
    if form["chosen_model"]:
        empty["model"] = form["chosen_model"]
    return render_template("ui/playground.html", specs=in_catalogue_order(), task=task,
                           curl=_curl_for(form["spec"], empty, {}), **form)


# --- running a request, and its curl command ---------------------------------

class BadRun(ValueError):
    """The playground's own request is malformed (not the API's body: the API judges that)."""


def _run_request() -> tuple[TaskSpec, dict, dict[str, str]]:
    """(task, API body, {image field: file name}) from the script's JSON."""
    sent = request.get_json(silent=True)
    if not isinstance(sent, dict):
        raise BadRun("Send a JSON object: {task, body, files}.")
    task = sent.get("task")
    spec = TASK_SPECS.get(task) if isinstance(task, str) else None
    if spec is None:
        raise BadRun(f"No task {sent.get('task')!r}.")
    body, files = sent.get("body"), sent.get("files") or {}
    if not isinstance(body, dict):
        raise BadRun("body must be a JSON object: the request sent to the task.")
    if not isinstance(files, dict) or not all(isinstance(v, str) and k in body for k, v in files.items()):
        raise BadRun("files must map the body's image fields to file names.")
    return spec, body, files


def public_url() -> str:
    return (current_settings().public_url or request.host_url).rstrip("/")


def curl_command(url: str, body: dict, files: dict[str, str] | None = None) -> str:
    """A curl command that sends `body` to `url` with the key from $INFER_API_KEY.

    An image field named in `files` is read from that file when the command runs
    (base64 on the fly), not pasted in: a photo's base64 would be too long for one
    command-line argument. The body then goes through curl's stdin."""
    headers = ["--header 'Content-Type: application/json'", '--header "x-api-key: $INFER_API_KEY"']
    curl = ["curl --request POST", f"--url {shlex.quote(url)}", *headers]
    if not files:
        return " \\\n  ".join([*curl, f"--data {shlex.quote(json.dumps(body, ensure_ascii=False))}"])
    # Each file's value is a marker in the JSON text; the parts between markers are printed as they are.
    markers = {f"file-{secrets.token_hex(8)}": name for name in files}
    text = json.dumps({**body, **{field: marker for marker, field in markers.items()}}, ensure_ascii=False)
    steps = []
    for marker, field in sorted(markers.items(), key=lambda pair: text.index(json.dumps(pair[0]))):
        before, text = text.split(json.dumps(marker), 1)
        # The JSON up to the value's opening quote, the file's base64 on one line, then from its closing quote on.
        steps += ["printf %s " + shlex.quote(before + '"'), f"base64 < {shlex.quote(files[field])} | tr -d '\\n'"]
        text = '"' + text
    steps.append("printf %s " + shlex.quote(text))
    producer = "{ " + "\n  ".join(steps) + "\n}"
    return producer + " | " + " \\\n  ".join([*curl, "--data-binary @-"])


def _curl_for(spec: TaskSpec, body: dict, files: dict[str, str]) -> str:
    return curl_command(public_url() + spec.path, body, files)


@bp.errorhandler(BadRun)
def bad_run(problem: BadRun):
    """What playground.js sent is not a run: its message, as JSON for the script."""
    return jsonify(message=str(problem)), 400


@bp.route("/playground/curl", methods=["POST"])
def playground_curl():
    """The curl command for the form as it is (the script shows it before any run)."""
    spec, body, files = _run_request()
    return jsonify(curl=_curl_for(spec, body, files))


@bp.route("/playground/run", methods=["POST"])
def playground_run():
    """Send the body to the task's route as the account; the API's status and answer."""
    spec, body, files = _run_request()
    status, answer = run_as(current_app._get_current_object(), g.ui_account_id, spec.path, body,
                            current_request_id.get())
    ok = 200 <= status < 300
    return jsonify(status=status, ok=ok, answer=answer, message=None if ok else error_message(status, answer),
                   curl=_curl_for(spec, body, files))


def error_message(status: int, answer) -> str:
    """The API's error message, for showing to a person: the service's shape, or
    OpenAI's (/v1), which nests it under "error"."""
    error = answer.get("error") if isinstance(answer, dict) else None
    text = answer.get("message") if isinstance(answer, dict) else None
    text = text or (error.get("message") if isinstance(error, dict) else None) or ""
    return text.strip() or f"HTTP {status}"
