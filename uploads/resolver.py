"""The one resolver: a request's model name -> what serves it.

Every route that takes a model name (the task routes, /v1, the prediction URLs
through the task routes) asks `ModelResolver.find_model` once per request. A
name is, in this order: the task's default (no name), a catalogue key serving
the task ("all-MiniLM-L6-v2", what GET /v1/models lists), one of the task's
public names ("english"), then one of the account's own models, "name" (its
serving version) or "name@N" (version N). /upload-url reserves the global
names, so an account's model is never hidden by a global one.

It lives in `uploads` because that is the lowest package that sees both the
catalogue's registry (model_registry, below it) and the account's models
(uploads.user_models); it imports no web framework: the web layer hands it the
request's database session as a callable.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from core.errors import NotFound
from model_registry.availability import presence_sentence
from model_registry.catalogue import default_name
from model_registry.registry import ModelRegistry
from model_registry.served_model import ServedModel

from .serving import cache_key
from .user_models import UserModels

CATALOGUE = "catalogue"
USER = "user"


@dataclass(frozen=True)
class Resolved:
    """What a request's model name stands for; `load()` gives the loaded model."""

    kind: Literal["catalogue", "user"]
    key: str  # its key in the model cache: a catalogue key, or "user-<version id>"
    name: str  # how answers name it: the name as sent, or the default's public name
    version: int | None  # a user model's version number; None for a catalogue model
    load: Callable[[], ServedModel]  # loads it (once, through the registry's cache) if need be


class UnknownModel(NotFound):
    """Neither a global model of the task nor one of the account's (404): /v1 words
    its own message for this case; the account's model that cannot answer (no
    build yet, another task, a version without files) is a plain NotFound."""


class ModelResolver:
    def __init__(self, registry: ModelRegistry, user_models: UserModels, current_session: Callable):
        self.registry = registry
        self.user_models = user_models
        self.current_session = current_session

    def find_model(self, account_id: int, task: str, name: str | None) -> Resolved:
        """What `name` (None: the task's default) stands for in `task`, for the
        account: never another account's model, which answers as a missing one."""
        key = self.registry.catalogue_key(task, name)
        if key is not None:
            shown = name or default_name(task)
            return Resolved(CATALOGUE, key, shown, None, lambda: self.registry.load(key))
        version = None
        if name is not None:
            version = self.user_models.find_version(self.current_session(), account_id, task, name)
        if version is None:
            raise UnknownModel(f"Model {name!r} not found for {task}. {self.choices(task)}")
        return Resolved(USER, cache_key(version.id), name, version.number,
                        lambda: self.user_models.load(version))

    def choices(self, task: str) -> str:
        """The names a 404 offers: the task's global models (saying which have
        their files here) and the account's own."""
        names = self.registry.names(task)
        if not names:
            return "Name one of your models."
        presence = presence_sentence(names, self.registry.model_dir, "GET /models?include_global=true")
        return f"Global models for {task}: {', '.join(names)}, or the name of one of your models. {presence}"
