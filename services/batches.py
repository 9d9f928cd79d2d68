"""An account's batches: create (from a JSONL file of requests, or over a
dataset's rows), list, read, cancel, and the output file.

Running one is predictions/batches.py's. Everything a batch could be refused
for as a whole is checked here, before it is queued: its size (lines, bytes),
the account's active batches, its stored-bytes quota. What is wrong with one
line is that line's error in the output, never the batch's.
"""

import json
import os
import secrets
import shutil
import time

from sqlalchemy import func, select

from core import leases
from core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, TooManyRequests
from core.tables import Batch, owned
from predictions import batch_files, batch_store
from predictions.batches import FINISHED, OUTPUT_MAX_BYTES
from training.dataset_bundles import ensure_parsed_datasets
from training.datasets import read_rows
from training.paths import dataset_dir
from uploads.quotas import check_room

from . import datasets
from .account import ServiceContext

ACTIVE = ("queued", "running")


def get(ctx: ServiceContext, batch_id: str) -> Batch:
    """The account's batch; another account's answers exactly as a missing one."""
    row = owned(ctx.db, Batch, batch_id, ctx.account_id)
    if row is None:
        raise NotFound(f"Batch {batch_id!r} not found (finished ones are kept for {ctx.config.batch_retention_s} s: "
                       "INFER_BATCH_RETENTION_S); GET /batches lists yours.")
    return row


def listing(ctx: ServiceContext, status: str | None = None, after: str | None = None):
    """(statement, after_row) for core/pages.py newest_first_page."""
    statement = select(Batch).where(Batch.account_id == ctx.account_id)
    if status:
        statement = statement.where(Batch.status == status)
    return statement, (get(ctx, after) if after else None)


def create_from_file(ctx: ServiceContext, data: bytes, webhook: str | None = None, metadata: dict | None = None,
                     input_file_id: str | None = None) -> Batch:
    """A batch of the JSONL requests in `data` (predictions/batch_files.py's
    shape); `input_file_id`: the /v1/files file it came from."""
    limit = ctx.config.batch_max_input_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"The file is {len(data)} bytes; a batch's input may be {limit} bytes at most "
                              "(INFER_BATCH_MAX_INPUT_BYTES). Split it into several batches.")
    return _create(ctx, data, _endpoint_of(data), None, webhook, metadata, input_file_id)


def create_from_dataset(ctx: ServiceContext, dataset_id: str, endpoint: str, model: str | None, params: dict,
                        webhook: str | None = None, metadata: dict | None = None) -> Batch:
    """A batch with one request to `endpoint` per row of one of the account's
    datasets: the row's text as `text`, with `model` and `params` (the rest of
    the endpoint's body) the same for every row. custom_id: row-<n>, from 1."""
    dataset = datasets.get(ctx, dataset_id)
    if dataset.status != "ready":
        raise Conflict(f"Dataset {dataset_id} is {dataset.status}; a batch needs a ready one.")
    if not endpoint.startswith("/"):
        raise _invalid("endpoint", "send the path of a task endpoint, such as /text-vectorisation.")
    if "text" in params or "model" in params:
        raise _invalid("params", "text comes from each row and model from `model`: leave them out of params.")
    ensure_parsed_datasets(ctx.config, ctx.part("storage"), dataset_id)
    rows = read_rows(dataset_dir(ctx.config.data_dir, dataset_id))
    if rows and not isinstance(rows[0].get("text"), str):
        raise _invalid("dataset_id", f"its rows ({dataset.format}) have no text: a batch over a dataset takes "
                                     "text rows (text-label datasets). Send a JSONL file of requests instead.")
    body = {**params, **({"model": model} if model else {})}
    lines = [json.dumps({"custom_id": f"row-{number}", "method": "POST", "url": endpoint,
                         "body": {**body, "text": row.get("text")}})
             for number, row in enumerate(rows, start=1)]
    data = ("\n".join(lines) + "\n").encode()
    return _create(ctx, data, endpoint, dataset_id, webhook, metadata)


def _create(ctx: ServiceContext, data: bytes, endpoint: str, dataset_id: str | None, webhook: str | None,
            metadata: dict | None, input_file_id: str | None = None) -> Batch:
    lines = batch_files.count_lines(data)
    if lines == 0:
        raise _invalid("file", "it holds no request line. Send one JSON request per line.")
    if lines > ctx.config.batch_max_lines:
        raise PayloadTooLarge(f"The batch has {lines} request lines; the limit is {ctx.config.batch_max_lines} "
                              "(INFER_BATCH_MAX_LINES). Split it into several batches.")
    _check_active(ctx)
    check_room(ctx.db, ctx.config, ctx.account_id, "start a batch")
    row = Batch(id="batch_" + secrets.token_hex(8), seq=time.time_ns(), account_id=ctx.account_id, endpoint=endpoint,
                dataset_id=dataset_id, input_file_id=input_file_id, total_lines=lines, stored_bytes=len(data),
                metadata_=metadata or {}, webhook=webhook)
    folder = batch_files.batch_dir(ctx.config.data_dir, row.id)
    os.makedirs(folder, exist_ok=True)
    with open(batch_files.input_path(ctx.config.data_dir, row.id), "wb") as stream:
        stream.write(data)
    ctx.db.add(row)
    try:
        batch_store.put(ctx.part("storage"), ctx.config.data_dir, row.id, batch_files.INPUT_FILE)
        ctx.db.commit()
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    ctx.part("work").submit("batch", row.id)
    return row


def _endpoint_of(data: bytes) -> str:
    """The url every line names, when they all name one ("" otherwise, or when a line is not JSON)."""
    urls = set()
    for raw in data.splitlines():
        if raw.strip():
            line = batch_files.parse_line(raw.decode("utf-8", errors="replace"))
            urls.add(line.url if not line.error else "")
            if len(urls) > 1:
                return ""
    return urls.pop() if urls else ""


def _check_active(ctx: ServiceContext) -> None:
    limit = ctx.config.account_max_active_batches
    active = ctx.db.scalar(select(func.count()).select_from(Batch).where(
        Batch.account_id == ctx.account_id, Batch.status.in_(ACTIVE)))
    if active >= limit:
        raise TooManyRequests(f"This account has {active} queued or running batches; the limit is {limit} "
                              "(INFER_ACCOUNT_MAX_ACTIVE_BATCHES). Wait for one to end, or cancel one.",
                              headers={"Retry-After": "30"})


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"Invalid request. {field}: {problem}", errors={field: [problem]})


def cancel(ctx: ServiceContext, batch_id: str) -> Batch:
    """A queued batch never runs; a running one stops after the lines in flight
    (its output keeps those answered); an ended one is a 409."""
    row = get(ctx, batch_id)
    if row.status in FINISHED:
        raise Conflict(f"Batch {batch_id} already {row.status}.")
    leases.cancel(ctx.db, row, "batch", ended_column="completed_at")
    return row


def output_file(ctx: ServiceContext, batch_id: str) -> tuple[str, int]:
    """(path, length) of the batch's output: the lines answered so far, in order."""
    row = get(ctx, batch_id)
    path = batch_files.output_path(ctx.config.data_dir, row.id)
    batch_store.fetch_if_behind(ctx.part("storage"), ctx.config.data_dir, row.id, batch_files.OUTPUT_FILE,
                                row.output_bytes, OUTPUT_MAX_BYTES)
    if not os.path.exists(path):
        if row.done_lines:
            raise NotFound(f"Batch {batch_id}'s output is not on this server's data dir yet (it runs on "
                           "another replica); retry when it has ended.")
        return path, 0
    # While it runs on another replica, this copy may hold fewer lines than the record.
    return path, min(row.output_bytes, os.path.getsize(path))
