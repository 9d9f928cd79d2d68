"""The metadata tables: accounts and API keys, user models and their versions,
datasets, training jobs, asynchronous predictions, batches, webhook deliveries,
usage, UI sessions and limits.

Plain SQLAlchemy 2 declarative classes; core/database.py makes and migrates them.
"""

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Signs the account's webhook calls (HMAC-SHA256). Kept in clear: the service
    # must sign with it; it grants nothing on this API. Made on first use.
    webhook_secret: Mapped[str | None] = mapped_column(String(80), nullable=True)

    keys: Mapped[list["ApiKey"]] = relationship(back_populates="account")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # The first characters of the key, kept in clear so a person can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    # sha256 of the whole key; the key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    account: Mapped[Account] = relationship(back_populates="keys")


class UserModel(Base):
    """A model an account uploaded; it serves its current (last successful) version."""

    __tablename__ = "user_models"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    tasks: Mapped[list] = mapped_column(JSON, default=list)
    # The version that serves; a failed newer build leaves it as it was.
    current_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_deployment: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list["ModelVersion"]] = relationship(
        back_populates="model", cascade="all, delete-orphan", order_by="ModelVersion.number"
    )


# The unique index on (model_id, number), made by create_all on a new database
# and by migrate_version_numbers on an older one.
VERSION_NUMBER_INDEX = "uq_model_versions_model_number"


class ModelVersion(Base):
    """One upload of a model and its build: awaiting_upload -> queued -> building -> success | fail."""

    __tablename__ = "model_versions"
    # A version's id names its files, its bundle and its loaded copy in every
    # process: SQLite must never hand a deleted version's id to a new one.
    # Numbers are unique per model: an upload and a training job finishing at
    # once cannot both take the next one (uploads/versions.py allocates them).
    __table_args__ = (Index(VERSION_NUMBER_INDEX, "model_id", "number", unique=True), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("user_models.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="awaiting_upload", index=True)
    format: Mapped[str] = mapped_column(String(20), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    tasks: Mapped[list] = mapped_column(JSON, default=list)
    build_message: Mapped[str] = mapped_column(Text, default="")
    build_log: Mapped[str] = mapped_column(Text, default="")
    upload_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # A build belongs to whoever holds the lease; an expired lease (its process
    # died) lets another process, or this one after a restart, take it over.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Bytes this version's files and venv take on disk (0 once they are removed):
    # the account's stored-bytes quota adds these up.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    # Where the version came from: "upload" (a zip) or "training" (a job), and
    # for a trained one its job, dataset and the kept epoch's metrics.
    source: Mapped[str] = mapped_column(String(20), default="upload", server_default=text("'upload'"))
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    dataset_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # Called when its build ends (core/webhook_events.py), as the upload asked.
    webhook: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    # A version trained on from another of the model's account's versions (issue 26's
    # "keep training"): {"model": name, "version": number}; None when it started from a
    # catalogue model, from nothing, or was uploaded.
    parent: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    model: Mapped[UserModel] = relationship(back_populates="versions")


class ServingChange(Base):
    """One move of a model's serving version: a build or a training job that made
    a newer version serve, or a promotion back or forth. Never updated."""

    __tablename__ = "serving_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("user_models.id", ondelete="CASCADE"), index=True)
    from_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(20))  # build, training or promote
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PredictionUrl(Base):
    """A private URL that answers one model's task without an API key (OneClick's
    model URL). Only the sha256 of its secret is kept, as for API keys."""

    __tablename__ = "prediction_urls"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "pu_" + random; not the secret
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("user_models.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(40))
    # Pinned to a version ("name@N"), or None: whichever version serves.
    version_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    uses: Mapped[int] = mapped_column(BigInteger, default=0)
    # Uses in the current minute, for INFER_PREDICTION_URL_RATE_PER_MIN.
    window_minute: Mapped[int] = mapped_column(BigInteger, default=0)
    window_uses: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Dataset(Base):
    """Training data an account uploaded: awaiting_upload -> processing -> ready | failed."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "ds_" + random: not guessable
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # As sent (may be empty: detected while parsing), then the format found.
    format: Mapped[str] = mapped_column(String(40), default="")
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="processing", index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    # [{timestamp, message}], as Ersatz's parse_logs.
    parse_log: Mapped[list] = mapped_column(JSON, default=list)
    stats: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bytes its folder takes on disk (the upload and its parsed rows and images),
    # measured after each parse: the account's stored-bytes quota adds these up.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    upload_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The latest revision: 1 as parsed, +1 for each edit (DatasetRevision keeps
    # each one's statistics; its rows stay on disk, readable and trainable).
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class DatasetRevision(Base):
    """One revision of a dataset: what the edit changed and the statistics after it.
    Revision 1's row is written at the first edit (until then the dataset's row is
    its only record). One row per (dataset, revision): two edits racing for the
    same number cannot both land."""

    __tablename__ = "dataset_revisions"
    __table_args__ = (UniqueConstraint("dataset_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    # {"kind": "upload" | "add" | "remove" | "remove-class", "added", "removed", "label"}
    change: Mapped[dict] = mapped_column(JSON, default=dict)
    stats: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingJob(Base):
    """A training job: queued -> running -> succeeded | failed | cancelled.

    Like builds, jobs live here: a job whose process died keeps `running` with a
    lease nobody renews, and the next process to look resumes it from its last
    epoch checkpoint (attempts counts the starts)."""

    __tablename__ = "training_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "job_" + random
    # Creation order, for cursor pagination (ids are random).
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("user_models.id", ondelete="CASCADE"), index=True)
    model_name: Mapped[str] = mapped_column(String(100))
    task: Mapped[str] = mapped_column(String(40))
    base_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    dataset_id: Mapped[str] = mapped_column(String(40))
    # The dataset's revision it trains on (pinned when it starts; NULL: a job from
    # before revisions, which trained on revision 1).
    dataset_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    validation_dataset_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    validation_dataset_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)  # its latest, at the start
    validation_split: Mapped[float | None] = mapped_column(nullable=True)
    # Keep training: the account's version it continues from ({"model", "version"} as
    # asked, and the version's row id, whose files the child starts from).
    parent: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    parent_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Scored once at the end, on the kept epoch: the dataset and its metrics.
    test_dataset_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    test_dataset_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)  # its latest, at the start
    test_metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    hyperparameters: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str] = mapped_column(Text, default="")
    log: Mapped[str] = mapped_column(Text, default="")
    # [{epoch, step, train_loss, validation_loss, learning_rate, elapsed_s, ...}]
    epochs: Mapped[list] = mapped_column(JSON, default=list)
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    train_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    validation_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    samples_per_second: Mapped[float | None] = mapped_column(nullable=True)
    version_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A search job's request (method, trials, time_budget_s, space, limits,
    # metric; None: a plain training job) and its leaderboard, one entry per
    # configuration tried, saved as the child reports them (training/search.py).
    search: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    trials: Mapped[list | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Bytes its folder (checkpoints, output) takes while it runs, measured by its
    # runner; counted in the account's stored bytes until the job ends.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Called when the job ends (core/webhook_events.py).
    webhook: Mapped[str | None] = mapped_column(String(2000), nullable=True)


class Evaluation(Base):
    """A version run on a dataset and scored: queued -> running -> succeeded |
    failed | cancelled (predictions/evaluations.py). Its rows go through the
    version as asynchronous predictions do; the metrics are the task's
    (predictions/evaluation_metrics.py). An evaluation whose process died runs
    again from the start (attempts counts the starts)."""

    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "eval_" + random
    seq: Mapped[int] = mapped_column(BigInteger, index=True)  # creation order, for cursor pagination
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("user_models.id", ondelete="CASCADE"), index=True)
    model_name: Mapped[str] = mapped_column(String(100))
    version_number: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(40))
    dataset_id: Mapped[str] = mapped_column(String(40), index=True)
    dataset_format: Mapped[str] = mapped_column(String(40))
    # The dataset's revision it read (its latest when it was started, or the one asked for).
    dataset_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str] = mapped_column(Text, default="")
    rows_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)  # answered or failed
    rows_failed: Mapped[int] = mapped_column(Integer, default=0)
    # The first failed rows: [{row, status, message}] (the count is rows_failed).
    failures: Mapped[list] = mapped_column(JSON, default=list)
    metrics: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # Called when it ends, with the evaluation object (core/webhook_events.py).
    webhook: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Prediction(Base):
    """An asynchronous prediction (a task request sent with Prefer: respond-async):
    queued -> running -> succeeded | failed | cancelled. Kept for
    INFER_PREDICTION_RETENTION_S after it ends, then deleted."""

    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "pred_" + random
    seq: Mapped[int] = mapped_column(BigInteger, index=True)  # creation order, for cursor pagination
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    task: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200), default="")  # as the request named it
    path: Mapped[str] = mapped_column(String(200))  # the endpoint it was sent to, replayed as it was
    input: Mapped[dict] = mapped_column(JSON)
    request_id: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    output: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # The error body the synchronous call would have answered, and its HTTP status.
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    predict_seconds: Mapped[float | None] = mapped_column(nullable=True)
    # The webhook: its URL, and its delivery (pending -> delivered | failed).
    webhook: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    webhook_status: Mapped[str | None] = mapped_column(String(20), nullable=True, index=True)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    webhook_error: Mapped[str] = mapped_column(Text, default="")


class Batch(Base):
    """Batch predictions over a file of requests (OpenAI's Batch API shape):
    queued -> running -> completed | failed | cancelled. The input and output
    files live in the data dir (predictions/batch_files.py); progress is the
    lines whose answers are in the output, so a batch whose process died
    resumes after them. Kept for INFER_BATCH_RETENTION_S after it ends."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "batch_" + random
    seq: Mapped[int] = mapped_column(BigInteger, index=True)  # creation order, for cursor pagination
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # The endpoint every line names ("" when the lines name several); a dataset's batch also its dataset.
    endpoint: Mapped[str] = mapped_column(String(200), default="")
    dataset_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    input_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # a file of /v1/files
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str] = mapped_column(Text, default="")
    total_lines: Mapped[int] = mapped_column(Integer, default=0)
    # Lines answered, in order: the output holds exactly these, output_bytes long.
    done_lines: Mapped[int] = mapped_column(Integer, default=0)
    failed_lines: Mapped[int] = mapped_column(Integer, default=0)
    output_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # The input and output files' bytes: the account's stored-bytes quota adds these up.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    metadata_: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    webhook: Mapped[str | None] = mapped_column(String(2000), nullable=True)


class UploadedFile(Base):
    """A file sent to OpenAI's POST /v1/files (purpose "batch"): a batch's input,
    named by its id (openai_api/files.py). Kept until deleted; its bytes count in
    the account's stored bytes. The file is under the data dir, files/<id>."""

    __tablename__ = "uploaded_files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "file-" + random
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(String(255), default="")
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """A webhook call for an event of an account's training job, build, batch or
    evaluation (core/webhook_events.py). Its delivery columns are a prediction's,
    named alike, so one pool delivers both (predictions/webhook_pool.py):
    pending -> delivered | failed. Kept for INFER_PREDICTION_RETENTION_S after."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "whd_" + random
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    event: Mapped[str] = mapped_column(String(40))  # "training_job", "build", "batch", "evaluation"
    object_id: Mapped[str] = mapped_column(String(40))
    # The body sent: the object as its GET answers it, made at the first call when None.
    payload: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    webhook: Mapped[str] = mapped_column(String(2000))
    webhook_status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    webhook_error: Mapped[str] = mapped_column(Text, default="")


class UsageBucket(Base):
    """An account's inference requests to one task and model in one time bucket
    (core/usage.py). Processes add their counts to the row, never overwrite it."""

    __tablename__ = "usage_buckets"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    # Unix seconds, a multiple of INFER_USAGE_BUCKET_S; indexed for the retention delete.
    bucket_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)
    task: Mapped[str] = mapped_column(String(40), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)  # as the request named it
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)  # answered with a status >= 400
    latency_ms_total: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms_max: Mapped[float] = mapped_column(Float, default=0.0)


class UiSession(Base):
    """A sign-in to the web UI (ui/sessions.py). The browser's cookie holds only a
    random token; its sha256 finds this row, so signing out ends the session for
    every copy of the cookie, and the row names the key it was signed in with."""

    __tablename__ = "ui_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Indexed: expired rows are deleted at sign-in.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AccountLimitOverride(Base):
    """An account's own limits, set by the operator (web/account_limits.py); a NULL
    column means the default setting (INFER_ACCOUNT_REQUESTS_PER_MIN...), 0 no limit."""

    __tablename__ = "account_limits"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    requests_per_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_per_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_in_flight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def owned(session, table, row_id, account_id: int):
    """The row of `table` with that id if `account_id` owns it, else None: another
    account's row answers exactly as a missing one."""
    row = session.get(table, row_id)
    return row if row is not None and row.account_id == account_id else None
