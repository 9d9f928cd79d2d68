"""What every /v1 route shares: finding the model a request names, and OpenAI's timestamps."""

from datetime import datetime, timezone

from core.errors import NotFound
from model_registry.availability import presence_sentence
from model_registry.catalogue import MODELS, TASK_MODELS, tasks_of
from tasks import rerank, text_generation, text_vectorisation
from uploads.resolver import UnknownModel
from web.settings import current_settings
from web.task_models import resolve

# The /v1 routes that take a model serving each task.
ENDPOINTS_FOR_TASK = {
    text_vectorisation.TASK: ["/v1/embeddings"],
    text_generation.TASK: ["/v1/completions", "/v1/chat/completions"],
    rerank.TASK: ["/v1/rerank"],
}


def endpoints_for(tasks: list[str]) -> list[str]:
    return [endpoint for task in tasks for endpoint in ENDPOINTS_FOR_TASK.get(task, [])]


def resolve_model(task: str, name: str):
    """(the loaded model, the name as sent) for a /v1 request's `model`.

    In order: a catalogue model key serving `task` ("all-MiniLM-L6-v2", the ids
    GET /v1/models lists), a Backprop public name of the task ("english"), one
    of the caller's own models (never another account's): the task endpoints'
    resolver (uploads/resolver.py). Anything else is a 404 naming the choices.
    """
    try:
        return resolve(task, name).load(), name
    except UnknownModel:
        raise model_not_found(name, task) from None
    except NotFound as exc:  # theirs, but not usable here (no successful build, another task): say why
        raise NotFound(exc.message, reason="model_not_found", param="model") from None


def model_not_found(name: str, task: str | None = None) -> NotFound:
    keys = [key for key in MODELS if task in tasks_of(key)] if task else []
    if keys:
        present = presence_sentence({key: key for key in keys}, current_settings().model_dir, "GET /v1/models")
        choices = (f"Models for {task}: {', '.join(keys)} (also known as {', '.join(TASK_MODELS[task])}), "
                   f"or one of your own models that declares {task}; GET /v1/models lists them. {present}")
    elif task:
        choices = f"Name one of your own models that declares {task}; GET /v1/models lists them."
    else:
        choices = "GET /v1/models lists the models your key can use."
    return NotFound(f"The model {name!r} does not exist or you do not have access to it. {choices}",
                    reason="model_not_found", param="model")


def unix_time(moment: datetime) -> int:
    """OpenAI's timestamps: whole seconds since the epoch."""
    # SQLite hands datetimes back without their zone; they are UTC.
    return int((moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp())
