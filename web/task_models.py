"""The model a request names, for the account that sends it: the web side of the
model resolver (uploads/resolver.py), with the app's resolver and the request's
account. The task routes (api/task_routes.py) and /v1 call it; the task specs
never do, so tasks/ stays free of Flask.
"""

from flask import current_app

from uploads.resolver import Resolved

from .auth import current_account_id


def resolve(task: str, model_name: str | None) -> Resolved:
    """What the request's model name stands for (ModelResolver.find_model, once per request)."""
    return current_app.extensions["resolver"].find_model(current_account_id(), task, model_name)


def loaded_model(task: str, model_name: str | None):
    """The model the request names, loaded if need be (404 or 503 first if it
    cannot be). Its `run(task, items)` goes through its batcher."""
    return resolve(task, model_name).load()
