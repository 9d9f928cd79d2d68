"""Who acts, and what a service acts with.

Every service function takes a ServiceContext: the account it acts for (an
Actor), the database session it reads and writes through, the settings, and the
app's long-lived parts (storage, the work queue, the training runner, the model
cache...). The web layer builds one per request (the API from the key, the UI
from the signed-in session); nothing here reads flask.g or current_app.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from core.settings import Settings


@dataclass(frozen=True)
class Actor:
    """The account a service call is made for: it sees and changes only its own things.

    `name` is known where the caller has it (the UI's session); the API's views
    know the account by its key's id alone."""

    account_id: int
    name: str | None = None


@dataclass(frozen=True)
class ServiceContext:
    actor: Actor
    db: object  # the SQLAlchemy session of this request or job; the service commits its changes
    config: Settings  # core/settings.py: the service's typed settings
    # The app's parts by name (Flask's app.extensions, or any mapping): "storage",
    # "work", "training", "models", "user_models", "key_cache", "usage".
    parts: Mapping
    # Where clients reach the service, for URLs it hands out (an upload URL without INFER_PUBLIC_URL).
    base_url: str = "http://localhost/"

    @property
    def account_id(self) -> int:
        return self.actor.account_id

    def part(self, name: str):
        return self.parts[name]
