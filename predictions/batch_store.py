"""A batch's files on S3, for replicas: the input and the output travel through
the bucket, so any replica can run, resume or answer a batch another one took in.

With local storage (one machine) none of this runs: the data dir is the record.
With S3, the replica that takes in a batch puts its input in the bucket; the one
that runs it fetches the input when its data dir lacks it, and puts the output
there when it stops (the batch ended, or this process hands it back). A replica
whose output is behind the database's record (the batch ran elsewhere, and the
process that ran it died before putting its output) resumes from the lines the
best copy it can find holds: predictions/batches.py counts them.
"""

import os

from uploads import bundles

from . import batch_files


def _key(storage, batch_id: str, name: str) -> str:
    return storage.named(f"batches/{batch_id}/{name}")


def put(storage, data_dir: str, batch_id: str, name: str) -> None:
    """Share one of the batch's files (INPUT_FILE or OUTPUT_FILE) with the other replicas."""
    path = os.path.join(batch_files.batch_dir(data_dir, batch_id), name)
    if bundles.shared(storage) and os.path.exists(path):
        with bundles.storage_errors(f"storing batch {batch_id}'s {name}"):
            storage.put_file(_key(storage, batch_id, name), path)


def fetch_if_behind(storage, data_dir: str, batch_id: str, name: str, wanted_bytes: int, max_bytes: int) -> None:
    """Fetch the bucket's copy of a file this data dir lacks or holds less of than `wanted_bytes`."""
    path = os.path.join(batch_files.batch_dir(data_dir, batch_id), name)
    if not bundles.shared(storage):
        return
    if os.path.exists(path) and (wanted_bytes <= 0 or os.path.getsize(path) >= wanted_bytes):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fetched = path + ".fetched"
    with bundles.storage_errors(f"fetching batch {batch_id}'s {name}"):
        found = storage.download(_key(storage, batch_id, name), fetched, max_bytes, f"Batch {batch_id}'s {name}")
    if found and (not os.path.exists(path) or os.path.getsize(fetched) > os.path.getsize(path)):
        os.replace(fetched, path)
    elif os.path.exists(fetched):
        os.remove(fetched)


def forget(storage, batch_id: str) -> None:
    """Delete the batch's files from the bucket (retention)."""
    if bundles.shared(storage):
        for name in (batch_files.INPUT_FILE, batch_files.OUTPUT_FILE):
            with bundles.storage_errors(f"deleting batch {batch_id}'s {name}"):
                storage.delete_key(_key(storage, batch_id, name))
