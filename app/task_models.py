"""The model a task request names, for the account that sends it: the web side of
finding a model (the app's registry and user models, the request's account).

The task routes (app/task_routes.py) and /v1 call it; the task specs never do, so
tasks/ stays free of Flask.
"""

from flask import current_app

from app.auth import current_account_id
from app.db import session


def find_model(task: str, model_name: str | None):
    """A global model by its public name or catalogue key, else one of the caller's
    own (404 if neither), loaded if need be. Its `run(task, items)` goes through
    its batcher."""
    registry = current_app.extensions["models"]
    if model_name is None or registry.serves(task, model_name):
        return registry.get(task, model_name)
    return current_app.extensions["user_models"].get(session(), current_account_id(), task, model_name)


def run_task(task: str, model_name: str | None, items: list) -> list:
    return find_model(task, model_name).run(task, items)
