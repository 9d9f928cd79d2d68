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
