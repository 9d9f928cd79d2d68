"""Find an account's user model by name and hand back its loaded version.

A key only ever sees its own account's models: every lookup filters by account,
and another account's model answers exactly as a model that does not exist.
"""

import time
from dataclasses import dataclass

from sqlalchemy import select

from core.errors import NotFound
from core.settings import Settings
from core.tables import ModelVersion, UserModel
from model_registry.registry import Placement

from . import formats
from .serving import KEY_PREFIX, cache_key, version_dirs
from .storage import make_storage
from .version_bundles import ensure_version_files, forget_removed_versions
from .versions import has_files, split_version_ref, version_numbered


def lookup_model(session, account_id: int, name: str) -> UserModel | None:
    """The account's model of that name; never another account's."""
    return session.scalar(select(UserModel).where(UserModel.account_id == account_id, UserModel.name == name))


def owned_model(session, account_id: int, name: str) -> UserModel:
    """The account's model of that name, else NotFound: another account's answers as a missing one."""
    model = lookup_model(session, account_id, name)
    if model is None:
        raise NotFound(f"model {name} not found")
    return model


@dataclass(frozen=True)
class ServableVersion:
    """The version of a user model chosen to answer a request: what loading it needs."""

    id: int
    number: int
    format: str
    tasks: tuple[str, ...]
    label: str  # how load errors name it: "Version 2 of model 'mine'"


# How long a version called by number (not the serving one) stays loaded unused.
PINNED_IDLE_S = 600.0


class UserModels:
    def __init__(self, config: Settings, registry, model_sandbox, storage=None):
        self.config = config
        self.registry = registry
        self.model_sandbox = model_sandbox
        self._storage = storage
        self._called_by_number: dict[int, float] = {}

    @property
    def storage(self):
        """Where a version this replica lacks is fetched from (S3 storage only)."""
        if self._storage is None and self.config.storage == "s3":
            self._storage = make_storage(self.config)
        return self._storage

    def find_version(self, session, account_id: int, task: str, name: str) -> ServableVersion | None:
        """The version of the account's model that answers `name` for `task`: "name"
        its serving version, "name@N" version N. None when the account has no model
        of that name (another account's included); a 404 saying why when it has one
        that cannot answer."""
        name, number = split_version_ref(name)
        model = lookup_model(session, account_id, name)
        if model is None:
            return None
        if number is None:
            version = session.get(ModelVersion, model.current_version_id) if model.current_version_id else None
            if version is None:
                raise NotFound(f"Model {name!r} has no successful build yet; see GET /models/{name} for its build status.")
        else:
            version = version_numbered(session, model, number)
            if version is None or version.status != "success":
                raise NotFound(f"Model {name!r} has no successful version {number}; "
                               f"GET /models/{name}/versions lists them.")
            if not has_files(self.config.data_dir, version):
                raise NotFound(f"Version {number} of {name!r} no longer has its files (only the newest "
                               f"{self.config.user_model_versions_kept} keep theirs: INFER_USER_MODEL_VERSIONS_KEPT).")
        if task not in version.tasks:
            raise NotFound(f"Model {name!r} does not do {task}; it serves {', '.join(version.tasks)}.")
        if number is not None:
            self._called_by_number[version.id] = time.monotonic()
        return ServableVersion(version.id, version.number, version.format, tuple(version.tasks),
                               f"Version {version.number} of model {name!r}")

    def load(self, version: ServableVersion):
        """The version loaded (once, in the registry's cache; its files fetched first if need be)."""
        return self.registry.load_other(cache_key(version.id), lambda placement: self._load(version, placement))

    def ensure_files(self, session, model: UserModel) -> None:
        """The serving version's files on this replica (fetched if need be), for
        reading them (GET /models/{name}/files): its venv is not needed."""
        version = session.get(ModelVersion, model.current_version_id) if model.current_version_id else None
        if version is not None:
            ensure_version_files(self.config, self.storage, self.model_sandbox, version.id, version.format,
                                 f"Version {version.number} of model {model.name!r}", with_venv=False)

    def unload_stale(self, sessions) -> list[str]:
        """Unload the versions this process holds that no model serves any more
        (replaced by a newer build, or deleted, possibly through another worker),
        and drop this replica's copies of versions removed elsewhere."""
        loaded = [key for key in self.registry.loaded_keys() if key.startswith(KEY_PREFIX)]
        stale = self._stale(sessions, loaded) if loaded else []
        for key in stale:
            self.registry.unload(key)
        in_use = {int(key.removeprefix(KEY_PREFIX)) for key in loaded if key not in stale}
        forget_removed_versions(sessions, self.config.data_dir, self.storage, in_use)
        return stale

    def _stale(self, sessions, loaded: list[str]) -> list[str]:
        with sessions() as session:
            serving = set(session.scalars(select(UserModel.current_version_id)).all())
        # A version called by number (name@N) lately stays, or a client pinning a
        # version would reload it after every poll; it goes once unused that long.
        now = time.monotonic()
        serving |= {version_id for version_id, used in self._called_by_number.items() if now - used < PINNED_IDLE_S}
        return [key for key in loaded if int(key.removeprefix(KEY_PREFIX)) not in serving]

    def _load(self, version: ServableVersion, placement: Placement):
        # Inside the cache's load-once: this process's concurrent first requests wait for this one fetch.
        ensure_version_files(self.config, self.storage, self.model_sandbox, version.id, version.format, version.label)
        files_dir, venv_dir = version_dirs(self.config.data_dir, version.id)
        return formats.named(version.format).serve(formats.Version(
            version.id, list(version.tasks), files_dir, venv_dir, self.config, self.model_sandbox,
            placement.device, placement.half, placement.settings))
