"""The metadata tables of the last release made without migrations (core/tables.py
at commit fadb6c6, before issue 26's tables and columns), kept verbatim below this
docstring so that tests/core/test_migrations.py can make the database that
release made, fill it, and upgrade it. Never change it: it is that release.
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
    validation_dataset_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    validation_split: Mapped[float | None] = mapped_column(nullable=True)
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
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Bytes its folder (checkpoints, output) takes while it runs, measured by its
    # runner; counted in the account's stored bytes until the job ends.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
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
