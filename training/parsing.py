"""One parse of a dataset, from its upload to its outcome: the request written
for the child (training/datasets/child.py), the child run in the sandbox
(training/sandboxed.py), what it left checked, and its size held against the
account's stored-bytes quota.

The request and the outcome are typed records (training/child_records.py); the
runner (training/dataset_parses.py) records the outcome on the dataset's row.
"""

import os
import shutil

from core.settings import Settings
from core.tables import Dataset
from uploads.quotas import over_quota_message, stored_usage

from .child_records import ParseOutcome, ParseRequest
from .datasets.child import OUT_OF_MEMORY
from .paths import dataset_source
from .records import log_line
from .sandboxed import UnsafeOutput, open_no_links, read_json_no_links, write_json_no_links

RESULT_FILE = "parse_result.json"
# Largest parse_result.json read back (its statistics and log are far smaller).
RESULT_MAX_BYTES = 16 * 2**20
# What a parse that took its account over the quota keeps: the upload and its log.
KEPT_OVER_QUOTA = ("source", "parse.out", "parse_request.json")


failed = ParseOutcome.failed


def fetch_source(config: Settings, storage, dataset_id: str, folder: str) -> ParseOutcome | None:
    """With S3 storage, a dataset uploaded to the bucket (or sent to another
    replica) is fetched into `folder` first; a failed outcome if it cannot be."""
    if os.path.isfile(dataset_source(config.data_dir, dataset_id)) or storage.kind != "s3":
        return None
    from uploads.storage import UploadTooLarge

    os.makedirs(folder, exist_ok=True)
    try:
        fetched = storage.fetch(0, folder, config.dataset_max_bytes, key=storage.dataset_key(dataset_id),
                                filename="source")
    except UploadTooLarge:
        return failed(f"The upload is over {config.dataset_max_bytes} bytes (INFER_DATASET_MAX_BYTES).")
    if not os.path.isfile(fetched):
        return failed("The upload is missing from the bucket: create the dataset again.")
    return None


def parse_request(config: Settings, dataset: Dataset) -> ParseRequest:
    return ParseRequest(
        source=dataset_source(config.data_dir, dataset.id), format=dataset.format or None,
        options=dict(dataset.options or {}), nice=config.training_nice, limits={
                "max_rows": config.dataset_max_rows, "max_line_bytes": config.dataset_max_line_bytes,
                "max_image_pixels": config.max_image_pixels,
                "max_label_count": config.dataset_max_labels,
                "max_archive_bytes": config.dataset_max_bytes,
                "max_members": config.upload_max_members,
                "max_uncompressed_bytes": config.upload_max_uncompressed_bytes,
                "max_ratio": config.upload_max_ratio,
                "max_memory_mb": config.dataset_parse_memory_mb})


def run_parse(config: Settings, sessions, storage, children, dataset_id: str, folder: str) -> ParseOutcome:
    """Parse the dataset in `folder` in its child; the outcome (SandboxUnavailable
    when the child cannot be confined)."""
    missing = fetch_source(config, storage, dataset_id, folder)
    if missing is not None:
        return missing
    with sessions() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            return failed("deleted")
        account_id, request = dataset.account_id, parse_request(config, dataset)
    result_path = os.path.join(folder, RESULT_FILE)
    if os.path.lexists(result_path):  # an earlier attempt's; the parser clears its own other output
        os.remove(result_path)
    write_json_no_links(os.path.join(folder, "parse_request.json"), children.parse_request(request).to_dict())
    with open_no_links(os.path.join(folder, "parse.out"), "wb") as output:
        child = children.start_parse(account_id, folder, output)
    try:
        child.wait()
    finally:
        over_memory = children.killed_for_memory(child)
        children.stop(child)
    try:
        children.reclaim(folder)
    except UnsafeOutput as exc:
        return failed(f"The dataset could not be parsed: the parser left something unexpected ({exc}).")
    if over_memory or child.returncode == OUT_OF_MEMORY:  # its control group, or its address-space cap
        return failed(f"The parser went over its memory limit of {config.dataset_parse_memory_mb} MiB "
                      "(INFER_DATASET_PARSE_MEMORY_MB) and was stopped: the file needs more memory to parse than "
                      "that. Split it, or make its images smaller.")
    if not os.path.isfile(result_path) or os.path.islink(result_path):
        return failed(f"The parser stopped without a result (exit status {child.returncode}); a file that needs "
                      f"more than INFER_DATASET_PARSE_MEMORY_MB ({config.dataset_parse_memory_mb} MB) ends "
                      "this way.")
    try:
        written = read_json_no_links(result_path, RESULT_MAX_BYTES)
    except (UnsafeOutput, ValueError) as exc:
        return failed(f"The dataset could not be parsed: its result could not be read ({exc}).")
    try:
        outcome = ParseOutcome.from_dict(written)
    except TypeError:
        outcome = None
    if outcome is None or outcome.status not in ("ready", "failed"):
        return failed("The dataset could not be parsed: the parser's result is not one it writes.")
    return within_quota(config, sessions, dataset_id, folder, outcome)


def within_quota(config: Settings, sessions, dataset_id: str, folder: str, outcome: ParseOutcome) -> ParseOutcome:
    """A ready dataset whose files take its account over the stored-bytes quota
    fails instead, keeping only its upload (which counted before the parse)."""
    if outcome.status != "ready":
        return outcome
    from uploads.archive import tree_bytes

    size = tree_bytes(folder)
    with sessions() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            return outcome
        usage = stored_usage(session, dataset.account_id, excluding_dataset=dataset_id)
    problem = over_quota_message(config, usage, "This dataset (its upload and its parsed rows and images)", size)
    if problem is None:
        return outcome
    for name in os.listdir(folder):
        if name not in KEPT_OVER_QUOTA:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
    return failed(problem, [*outcome.log, log_line(f"Failed: {problem}")])
