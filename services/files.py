"""An account's files for OpenAI's Batch API (/v1/files, purpose "batch"): send
one, list, read, delete, and read its content. A batch's output is a file too,
named after its batch (`file-<batch id>-output`), read-only: it goes when its
batch does (INFER_BATCH_RETENTION_S)."""

import os
import secrets
import time

from sqlalchemy import select

from core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from core.tables import Batch, UploadedFile, owned
from uploads.quotas import check_room

from . import batches
from .account import ServiceContext

PURPOSES = ("batch",)
OUTPUT_SUFFIX = "-output"


def file_path(data_dir: str, file_id: str) -> str:
    return os.path.join(data_dir, "files", file_id)


def output_file_id(batch_id: str) -> str:
    return f"file-{batch_id}{OUTPUT_SUFFIX}"


def _batch_of_output(file_id: str) -> str | None:
    if file_id.startswith("file-batch_") and file_id.endswith(OUTPUT_SUFFIX):
        return file_id[len("file-"):-len(OUTPUT_SUFFIX)]
    return None


def create(ctx: ServiceContext, data: bytes, filename: str, purpose: str) -> UploadedFile:
    if purpose not in PURPOSES:
        raise InvalidInput(f"Invalid request. purpose: this service keeps files for {', '.join(PURPOSES)} only.",
                           errors={"purpose": [f"One of {', '.join(PURPOSES)}."]})
    limit = ctx.config.batch_max_input_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"The file is {len(data)} bytes; a batch's input may be {limit} bytes at most "
                              "(INFER_BATCH_MAX_INPUT_BYTES).")
    check_room(ctx.db, ctx.config, ctx.account_id, "store a file")
    row = UploadedFile(id="file-" + secrets.token_hex(12), seq=time.time_ns(), account_id=ctx.account_id,
                       purpose=purpose, filename=os.path.basename(filename or "")[:255], bytes=len(data))
    path = file_path(ctx.config.data_dir, row.id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(data)
    ctx.db.add(row)
    ctx.db.commit()
    return row


def get(ctx: ServiceContext, file_id: str) -> UploadedFile | Batch:
    """The account's file, or for a batch's output file its batch; another
    account's answers exactly as a missing one."""
    batch_id = _batch_of_output(file_id)
    row = batches.get(ctx, batch_id) if batch_id else owned(ctx.db, UploadedFile, file_id, ctx.account_id)
    if row is None:
        raise NotFound(f"File {file_id!r} not found.")
    return row


def listed(ctx: ServiceContext) -> list[UploadedFile]:
    return list(ctx.db.scalars(select(UploadedFile).where(UploadedFile.account_id == ctx.account_id)
                               .order_by(UploadedFile.seq.desc())).all())


def content(ctx: ServiceContext, file_id: str) -> tuple[str, int]:
    """(path, length) of the file's bytes."""
    row = get(ctx, file_id)
    if isinstance(row, Batch):
        return batches.output_file(ctx, row.id)
    return file_path(ctx.config.data_dir, row.id), row.bytes


def read(ctx: ServiceContext, file_id: str) -> bytes:
    """An uploaded file's bytes (a batch's input)."""
    row = get(ctx, file_id)
    if isinstance(row, Batch):
        raise Conflict(f"{file_id} is a batch's output; send a file you uploaded with purpose batch.")
    with open(file_path(ctx.config.data_dir, row.id), "rb") as stream:
        return stream.read()


def delete(ctx: ServiceContext, file_id: str) -> str:
    row = get(ctx, file_id)
    if isinstance(row, Batch):
        raise Conflict(f"{file_id} is a batch's output: it goes with its batch (INFER_BATCH_RETENTION_S).")
    ctx.db.delete(row)
    ctx.db.commit()
    try:
        os.remove(file_path(ctx.config.data_dir, row.id))
    except FileNotFoundError:
        pass
    return file_id
