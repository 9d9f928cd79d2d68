"""A user model's versions: which one serves, the record of every move, and
which versions keep their files. Builds (uploads/builder.py), training jobs
(training/jobs.py) and promotions (api/versions.py) all move the
serving version through here, so each move is recorded the same way.

The newest successful version serves unless its owner promotes another; a
version finishing out of order (an older upload whose build ends last) never
takes a newer one's place.
"""

import logging
import os
import re

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from core.errors import ApiError
from core.tables import ModelVersion, ServingChange, UserModel, utcnow

from .archive import remove_tree
from .bundles import StorageUnreachable
from .serving import version_dirs
from .version_bundles import delete_version_bundles

log = logging.getLogger(__name__)

# "name@3": version 3 of the account's model `name`.
VERSION_REF = re.compile(r"^(?P<name>[^@]+)@(?P<number>[0-9]{1,9})$")


# Tries at the next number before giving up: each conflict means another
# version of the same model was numbered in the same instant.
NUMBER_ATTEMPTS = 50


class NumberTaken(ApiError):
    """409: the model's versions were numbered by many others at once."""

    status = 409


def add_numbered_version(session, model_id: int, **fields) -> ModelVersion:
    """Add the model's next version (the highest number + 1) with `fields`, flushed,
    in the caller's transaction: the one way versions get their numbers, for
    uploads (api/models.py) and training jobs (training/jobs.py) alike.

    The number is read in the INSERT itself, and (model_id, number) is unique
    in the database. On SQLite writers take turns, so the INSERT reads the
    latest number; elsewhere (PostgreSQL) two transactions may read the same
    one, and the second's INSERT fails on the unique index when the first
    commits: it is rolled back to a savepoint and tried again with the next."""
    next_number = (select(func.coalesce(func.max(ModelVersion.number), 0) + 1)
                   .where(ModelVersion.model_id == model_id).scalar_subquery())
    savepoints = session.get_bind().dialect.name != "sqlite"  # pysqlite's SAVEPOINT would commit early
    for _attempt in range(NUMBER_ATTEMPTS):
        version = ModelVersion(model_id=model_id, number=next_number, **fields)
        if not savepoints:
            session.add(version)
            session.flush()
            return version
        try:
            with session.begin_nested():
                session.add(version)
                session.flush()
            return version
        except IntegrityError:
            continue
    raise NumberTaken(f"Could not number a new version after {NUMBER_ATTEMPTS} tries: this model's versions are "
                      "being created by many requests at once. Try again.")


def split_version_ref(model: str) -> tuple[str, int | None]:
    """("name", 3) for "name@3"; ("name", None) for a plain name."""
    match = VERSION_REF.match(model)
    if match is None:
        return model, None
    return match["name"], int(match["number"])


def version_numbered(session, model: UserModel, number: int) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.number == number))


def serving_number(session, model: UserModel) -> int | None:
    if model.current_version_id is None:
        return None
    current = session.get(ModelVersion, model.current_version_id)
    return current.number if current is not None else None


def move_serving(session, model: UserModel, version: ModelVersion, reason: str) -> None:
    """Make `version` the serving one and record the move (the caller commits)."""
    session.add(ServingChange(model_id=model.id, from_number=serving_number(session, model),
                              to_number=version.number, reason=reason))
    model.current_version_id = version.id
    model.tasks = list(version.tasks)
    model.description = version.description
    model.last_deployment = utcnow()


def serve_if_newest(session, model: UserModel, version: ModelVersion, reason: str) -> bool:
    """After a successful build or training: the new version serves, unless a
    newer one already does (builds may finish out of upload order)."""
    if model.current_version_id is not None and version.id < model.current_version_id:
        return False
    move_serving(session, model, version, reason)
    return True


def has_files(data_dir: str, version: ModelVersion) -> bool:
    """Whether the version keeps its files: the database's answer, the same on
    every replica (stored_bytes goes to 0 when remove_old_versions removes them),
    whether or not this replica's data dir holds a copy. `data_dir` is unused; it
    stays for the callers."""
    return version.status == "success" and (version.stored_bytes or 0) > 0


def remove_old_versions(sessions, data_dir: str, kept: int, model_id: int, storage=None) -> list[int]:
    """Remove the files of the model's successful versions beyond the newest
    `kept` (the serving one is always kept; failed ones never keep theirs); they
    no longer count against the account's stored bytes. Their records stay.
    With S3 storage their bundles go too; a version whose bundle the bucket does
    not let go keeps its files until the next call."""
    kept = max(1, kept)
    with sessions() as session:
        model = session.get(UserModel, model_id)
        if model is None:
            return []
        older = session.scalars(
            select(ModelVersion.id)
            .where(ModelVersion.model_id == model_id, ModelVersion.status == "success",
                   ModelVersion.stored_bytes > 0, ModelVersion.id != model.current_version_id)
            .order_by(ModelVersion.id.desc())
            .offset(kept - 1)
        ).all()
        removed = []
        for version_id in older:
            try:
                delete_version_bundles(storage, [version_id])
            except StorageUnreachable as exc:
                log.warning("model version %s keeps its files for now: %s", version_id, exc)
                continue
            remove_tree(os.path.dirname(version_dirs(data_dir, version_id)[0]))
            removed.append(version_id)
        if removed:
            session.execute(update(ModelVersion).where(ModelVersion.id.in_(removed)).values(stored_bytes=0))
            session.commit()
        return removed
