"""The model a task request names, for the account that sends it: the web side of
finding a model (the app's resolver, uploads/resolver.py, and the request's account).

The task routes (api/task_routes.py) and /v1 call it; the task specs never do, so
tasks/ stays free of Flask.
"""

from flask import current_app

from web.auth import current_account_id
from uploads.resolver import Resolved


def resolve(task: str, model_name: str | None) -> Resolved:
    """What the request's model name stands for, for the caller (uploads/resolver.py)."""
    return current_app.extensions["resolver"].find_model(current_account_id(), task, model_name)


def find_model(task: str, model_name: str | None):
    """A global model by its public name or catalogue key, else one of the caller's
    own (404 if neither), loaded if need be. Its `run(task, items)` goes through
    its batcher."""
    return resolve(task, model_name).load()


def run_task(task: str, model_name: str | None, items: list) -> list:
    return find_model(task, model_name).run(task, items)
