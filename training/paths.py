"""Where datasets and training jobs keep their files, under the data dir."""

import os
import secrets


def new_id(prefix: str) -> str:
    """A public id that cannot be guessed ("ds_" or "job_" + 16 hex digits)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def dataset_dir(data_dir: str, dataset_id: str) -> str:
    return os.path.join(data_dir, "datasets", dataset_id)


def dataset_source(data_dir: str, dataset_id: str) -> str:
    """The file as uploaded (parsed into rows.jsonl beside it)."""
    return os.path.join(dataset_dir(data_dir, dataset_id), "source")


def job_dir(data_dir: str, job_id: str) -> str:
    return os.path.join(data_dir, "training", job_id)



def revisions_root(data_dir: str, dataset_id: str) -> str:
    """Where a dataset's edited revisions live: beside its folder, not in it, so
    that revision 1's folder (fetched whole from S3 on another replica) never
    holds, or replaces, another revision's files."""
    return os.path.join(data_dir, "dataset-revisions", dataset_id)


def revision_dir(data_dir: str, dataset_id: str, revision: int | None) -> str:
    """A revision's parsed rows (and images): revision 1 is the parse beside the
    upload, each edit's revision a folder of its own."""
    if not revision or revision == 1:
        return dataset_dir(data_dir, dataset_id)
    return os.path.join(revisions_root(data_dir, dataset_id), str(int(revision)))
