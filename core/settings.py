"""Every setting of the service: its type, its default and what it means, read once.

``Settings.from_environ()`` reads each field from the environment as ``INFER_<NAME>``
(``INFER_MAX_BATCH_SIZE=128`` sets ``max_batch_size``), parsed to the field's type;
``DATABASE_URL`` is also read without the prefix, as most platforms set it that way.
The result is frozen: code reads ``settings.max_batch_size``, typed, and nothing
changes a setting after start. docs/operations/settings.md's table is generated
from the fields below (scripts/settings_reference.py), so each field's doc is what
an operator reads; the comments above a group say why it is so.
"""

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "INFER_"
# Read without the prefix too: platforms (Heroku, Render, Fly) set it so.
UNPREFIXED = {"database_url"}


def setting(default, doc: str, *, section: str | None = None, shown: str | None = None, secret: bool = False):
    """A field of Settings. section starts a new group of the reference page at this
    field; shown replaces the default in the page where the value is derived; a
    secret one may also be read from a file named by INFER_<NAME>_FILE (a mounted
    Kubernetes or Docker secret), so that it need not be in the environment."""
    return field(default=default, metadata={"doc": doc, "section": section, "shown": shown, "secret": secret})


@dataclass(frozen=True)
class Settings:
    data_dir: str = setting(
        "./data", "where the SQLite database, the local model dir, uploads and datasets live",
        section="Data, database and keys",
    )
    # Also read as DATABASE_URL, without the prefix: most platforms set it so.
    database_url: str = setting(
        "", "SQLAlchemy URL, e.g. `postgresql+psycopg://user:pw@host/db`",
        shown="SQLite under the data dir", secret=True,
    )
    # Database connections kept per process (8 more may open under load);
    # match it to gunicorn's threads per worker, and mind PostgreSQL's
    # max_connections across workers and replicas.
    db_pool_size: int = setting(32, "database connections kept per process; match gunicorn's threads")
    # Off where a separate step upgrades the schema once per release (the
    # Kubernetes migration Job runs `flask --app wsgi db upgrade`): a process
    # then only checks that the database is at the revision it knows.
    migrate_on_start: bool = setting(
        True, "bring the database schema up to date (Alembic migrations) when a process starts; off: refuse "
              "to start unless `flask --app wsgi db upgrade` did it",
    )
    # Seconds a verified API key is trusted without asking the database again.
    # A key revoked through another process (the CLI, another gunicorn worker)
    # keeps working that long there; 0 checks the database on every request.
    auth_cache_ttl_s: float = setting(
        2.0,
        "seconds a verified key is trusted without a database lookup; a key revoked by the CLI or another "
        "worker works that long there (0: look up every request)",
    )
    max_content_length: int = setting(
        2 * 1024 * 1024, "largest request body in bytes (413)",
        section="Request limits",
    )
    max_batch_size: int = setting(
        64,
        "most items in one batch request (422); on `/v1`: inputs of an embedding request, messages of a chat, "
        "prompts x `n` of a completion (400)",
    )
    # Longest accepted text item, in characters (422 above it). Models also
    # truncate to their own token limit; this bounds the work before that.
    max_text_length: int = setting(
        20_000,
        "longest text item in characters (422); models also truncate to their token limit",
    )
    # Retrieval frameworks index a corpus in requests of 100 (LlamaIndex) to 1,000
    # (LangChain) texts, and OpenAI takes 2,048: the vectorising routes take that
    # many, bounded by their characters, and run them as passes of
    # BATCH_MAX_SIZE that take turns with other accounts' requests.
    max_embedding_inputs: int = setting(
        2048, "most texts in one `/text-vectorisation` (422) or `/v1/embeddings` (400) request; a request of more "
              "than `INFER_MAX_BATCH_SIZE` counts as one request per `INFER_MAX_BATCH_SIZE` texts against "
              "`INFER_REQUESTS_PER_MIN`",
    )
    max_embedding_chars: int = setting(
        4_000_000, "most characters of all the texts of one vectorising request (422 / 400): 1,000 chunks of "
                   "4,000 characters, LangChain's defaults; also of the documents of one rerank request",
    )
    max_rerank_documents: int = setting(
        1000, "most documents in one `/rerank` (422) or `/v1/rerank` (400) request; like a large embedding "
              "request, it runs in parts and counts as one request per `INFER_MAX_BATCH_SIZE` documents against "
              "`INFER_REQUESTS_PER_MIN`",
    )
    max_embedding_body_bytes: int = setting(
        32 * 1024 * 1024, "largest body of a vectorising or rerank request (413); other routes have "
                          "`INFER_MAX_CONTENT_LENGTH`",
    )
    max_labels: int = setting(32, "most labels per item in zero-shot text and image classification (422)")
    max_image_pixels: int = setting(40_000_000, "largest decoded image (400); guards against decompression bombs")
    # Most decoded pixels in one request, all its images together (400 above): a
    # batch of small files that each decode to a large image must not take
    # gigabytes (16 PNGs of 6300x6300 1-bit pixels are 104 KB on the wire and
    # ~1.9 GB as RGB).
    max_request_pixels: int = setting(
        50_000_000,
        "most decoded pixels of all the images of one request (400), read from their headers before any is "
        "decoded",
    )
    gen_max_new_tokens: int = setting(
        256,
        "most tokens generated per output (422); `max_tokens` on `/v1` (400), and a chat's default",
    )
    gen_max_beams: int = setting(8, "widest beam search (422)")
    gen_max_generations: int = setting(8, "most outputs per input (422); `n` on `/v1` (400)")
    # Continuous batching of decoder-only generation (model_registry/loaders/continuous):
    # requests join a model's running batch between decoding steps and leave it as
    # they end, instead of waiting for a whole batch to finish.
    gen_continuous_batching: bool = setting(
        True,
        "run decoder-only generation (/text-generation, /v1 completions and chat) in one running batch per "
        "model that requests join between steps; false: one generate() call per batch, which ends with its "
        "longest row",
    )
    gen_max_running: int = setting(
        16,
        "most sequences a model decodes together (a request's `n` choices are `n`); more wait in its queue; "
        "keep it at least GEN_MAX_GENERATIONS",
    )
    gen_kv_cache_mb: int = setting(
        1024,
        "KV cache a model's running sequences may take together, in MiB, reckoned for their worst case (each "
        "padded to the longest prompt plus max tokens among them); a request too large alone gets 400",
    )
    gen_prefill_chunk_tokens: int = setting(
        512,
        "prompt tokens fed to the model per pass while other sequences decode, so a long prompt delays them "
        "by one such pass per step",
    )
    emotion_threshold: float = setting(
        0.5,
        "probability a GoEmotions label needs to be answered (given to the model when it loads)",
    )
    # A folder of models: <MODEL_DIR>/<public name> or <MODEL_DIR>/<org>/<repo>
    # is used before the Hugging Face cache, packages and the hub.
    model_dir: str = setting(
        "", "local models, looked at first", shown="`$INFER_DATA_DIR/models`",
        section="Models, batching and devices",
    )
    # Memory the loaded models may take together, in MiB; least recently used
    # models are unloaded to make room. 0 means no limit.
    model_memory_budget_mb: int = setting(8192, "memory for loaded models; 0 = unlimited")
    preload_models: str = setting(
        "",
        "`task:name` pairs or model keys to load at start; under gunicorn a worker accepts no request until "
        'they are in, and the serve command prints `ready:` when every worker has them (see "Starting: '
        'preloaded models")',
        shown="empty (`scripts/serve`: `text-vectorisation:english`)",
    )
    # Batching across requests (model_registry/batcher.py): most items in one
    # forward pass; how long a batch may be held open for the requests expected
    # to join it (only when several requests were in flight at once lately, so a
    # lone client never waits; 0: never hold a batch open); and how many requests may
    # queue per model and task before new ones get 429.
    batch_max_size: int = setting(32, "most items in one forward pass")
    batch_max_wait_ms: float = setting(
        10.0,
        "longest a batch is held open for the requests expected to join it (as many as were in flight at once "
        "lately; a lone client never waits; 0: never)",
    )
    batch_max_queue: int = setting(
        256,
        "requests queued per model and task, shared between the accounts waiting: each may have this divided "
        "by their number (all of it when alone; 429 above its share); the whole queue holds at most twice it",
    )
    # A request still waiting for its model after this many seconds gets 504 and
    # its work is dropped.
    request_timeout_s: float = setting(
        60.0,
        "a request waiting longer for its model gets 504; a generation (streamed or not) is stopped at its "
        "next token then",
    )
    device: str = setting(
        "auto", "`auto` (cuda, else mps, else cpu), or a torch device: `cpu`, `cuda`, `cuda:1`, `mps`",
    )
    # Half precision for models on a GPU ("auto": on cuda only, where it is safe
    # for inference of the encoders we serve). "off" keeps float32 everywhere.
    half_precision: str = setting("auto", "`auto` (fp16 on cuda), `on`, `off`")
    # torch intra-op threads per worker process. Threads x workers must not
    # exceed the cores: oversubscription was 5-9x slower on 2 cores.
    torch_threads: int = setting(1, "torch threads per worker; keep threads x workers <= cores")
    bootstrap_key: bool = setting(
        True, "create a key on the first start with none (see `INFER_BOOTSTRAP_KEY_FILE`)",
        section="The first key",
    )
    bootstrap_account: str = setting("default", "the account the first key belongs to")
    # A log stream (journald, a container's log, log aggregation) keeps what it
    # is sent: the first key goes to a file only its owner reads, and is printed
    # only to a terminal.
    bootstrap_key_file: str = setting(
        "", "where the first key is written, readable by the service's user only (printed too when the output "
            "is a terminal, never to a log)", shown="`$INFER_DATA_DIR/first-api-key`",
    )
    # User model uploads: "local" (the service's own signed PUT URLs, files
    # under DATA_DIR) or "s3" (presigned PUT URLs to S3_BUCKET).
    storage: str = setting(
        "local",
        "`local` or `s3` (with `INFER_S3_BUCKET`, `INFER_S3_PREFIX`, `INFER_S3_ENDPOINT_URL`, "
        "`INFER_S3_REGION`)",
        section="User model uploads",
    )
    s3_bucket: str = setting("", "the bucket of uploads (and of the files replicas share) when `INFER_STORAGE=s3`")
    s3_prefix: str = setting("uploads/", "where in the bucket they go")
    s3_endpoint_url: str = setting("", "the S3 API's URL for MinIO, SeaweedFS and other S3-compatible stores")
    s3_region: str = setting("", "the bucket's region")
    secret_key: str = setting(
        "", "signs local upload URLs (kept in `$INFER_DATA_DIR/secret_key` when generated)", shown="generated",
        secret=True,
    )
    public_url: str = setting("", "base URL put in upload URLs", shown="the request's")
    upload_max_bytes: int = setting(5 * 1024**3, "largest zip (413 at the PUT)")
    upload_max_members: int = setting(
        10_000,
        "most files and folders in a zip, counted from its central directory before it is parsed (the build "
        "fails above)",
    )
    upload_max_uncompressed_bytes: int = setting(10 * 1024**3, "most data a zip may expand to (the build fails above)")
    # Most times a zip may expand (zip bombs): the whole archive (uncompressed
    # total over the file's size), and each member over 1 MB on its own.
    upload_max_ratio: int = setting(
        200,
        "highest expansion of the whole zip, and of each member over 1 MB (zip bombs)",
    )
    # Seconds an upload PUT may go without receiving a byte of its body (408):
    # a client that stops sending must not hold a server thread forever.
    upload_idle_timeout_s: float = setting(60.0, "longest pause in an upload PUT's body (408)")
    # Whether this process runs build jobs (every gunicorn worker does; the
    # database decides which one builds what). Its loop also unloads the user
    # model versions this process holds that were replaced or deleted elsewhere.
    builder: bool = setting(
        True,
        "whether this process runs build jobs (its loop also unloads user model versions replaced or deleted "
        "through another worker)",
        section="Builds and user model workers",
    )
    # Successful versions of a user model whose files stay on disk: the serving
    # one and those before it (a worker may still be loading the previous one).
    # Older versions keep their record; their files are removed.
    user_model_versions_kept: int = setting(
        2,
        "successful versions of a user model whose files stay on disk (the serving one and the one before); "
        "older ones keep their record, not their files",
    )
    build_poll_s: float = setting(2.0, "how often the builder looks for new uploads and abandoned builds")
    build_requirements_timeout_s: float = setting(900.0, "longest `pip install -r requirements.txt`")
    # Seconds a build stays claimed by a process that stopped renewing its
    # claim (it died) before another process takes it over.
    build_lease_s: float = setting(60.0, "seconds before another process takes over a build whose process died")
    # A user model's worker process: seconds per call (taking its lock, writing
    # the request, reading the answer: each bounded) and to load, and the memory
    # of every sandboxed process: each one's address space, and all its tree holds
    # (its control group: see SANDBOX_CGROUP below).
    worker_call_timeout_s: float = setting(
        60.0,
        'longest wait for a user model\'s worker, for each of: taking it from other requests (504 "busy", '
        "`Retry-After: 1`), writing the request to it, reading its answer (504, worker restarted)",
    )
    worker_load_timeout_s: float = setting(300.0, "longest load of a user model")
    worker_memory_mb: int = setting(
        4096,
        "memory of every sandboxed process tree (workers, installs, build checks): each process's address "
        "space, and all the tree holds (its control group: memfd, shared memory, its `/tmp` and `/dev/shm`; "
        "no swap); over it the tree is stopped: 502 for a request, a failed build or install, each saying so",
    )
    worker_max_reply_mb: int = setting(64, "largest answer of a worker to one call (502, worker restarted)")
    # "bwrap": every process that runs uploaded code or installs its packages
    # runs under bubblewrap (own user, namespaces, no network, seccomp, limits).
    # "none": no isolation at all; only for a trusted single-user install, as
    # any account that can upload a model can then act as the service.
    sandbox: str = setting(
        "bwrap",
        "isolation of uploaded code: `bwrap`, or `none` (no isolation: trusted single-user installs only; see "
        "Security model)",
        section="The sandbox of uploaded code (sandbox/, uploads/model_sandbox.py)",
    )
    # As root, each model version's sandbox runs as uid BASE + (version id mod
    # COUNT): uids that own nothing on the host. Pick a free range (a rootless
    # container may map only 65536 uids).
    sandbox_uid_base: int = setting(
        200_000, "as root, a version's sandbox runs as uid BASE + (version id mod `INFER_SANDBOX_UID_COUNT`)",
    )
    sandbox_uid_count: int = setting(100_000, "how many uids the sandboxes take from `INFER_SANDBOX_UID_BASE` on")
    # Limits of every sandboxed process: processes and threads (per sandbox
    # uid, and per process tree where a control group holds it), CPU seconds
    # (a worker that reaches it is killed and restarted on its next call),
    # open files, largest file written, size of its private
    # /tmp and of /dev/shm (each, in RAM), and its scheduling niceness.
    sandbox_max_processes: int = setting(
        256,
        "processes and threads per sandbox uid (RLIMIT_NPROC), and per sandboxed process tree (its control "
        "group's `pids.max`, bubblewrap's own two included)",
    )
    sandbox_cpu_s: int = setting(
        3600,
        "CPU seconds per sandboxed process (a worker is then killed and restarted on its next call)",
    )
    sandbox_max_open_files: int = setting(1024, "open files per sandboxed process")
    sandbox_max_file_mb: int = setting(2048, "largest file a sandboxed process may write")
    sandbox_tmp_mb: int = setting(512, "size of a sandbox's private `/tmp` and of its `/dev/shm` (each, in RAM)")
    sandbox_nice: int = setting(10, "scheduling niceness of sandboxed processes")
    # Comma-separated names of environment variables passed into sandboxes
    # (say PIP_INDEX_URL); nothing else of the service's environment is. Names
    # starting with INFER_ or AWS_, and DATABASE_URL, are refused.
    sandbox_env_allow: str = setting(
        "",
        "names of environment variables passed into sandboxes (never `INFER_*`, `AWS_*`, `DATABASE_URL`)",
    )
    # The network of a requirements.txt install: "index" reaches only the hosts
    # of SANDBOX_INSTALL_HOSTS through a filtering proxy ("host" means port 443,
    # or "host:port"); "none" reaches nothing (packages must be in the service
    # already or in SANDBOX_PIP_FIND_LINKS). Model workers never have a network.
    sandbox_install_network: str = setting(
        "index",
        "a requirements install reaches only `INFER_SANDBOX_INSTALL_HOSTS` through a filtering proxy; `none`: "
        "no network",
    )
    sandbox_install_hosts: str = setting(
        "pypi.org,files.pythonhosted.org",
        "hosts (port 443) or `host:port` an install may reach",
    )
    # Comma-separated host folders of wheels/sdists that installs may use
    # (mounted read-only, passed to pip as --find-links; as root, make their
    # files readable by all: sandboxes run under uids of their own).
    sandbox_pip_find_links: str = setting(
        "",
        "host folders of wheels/sdists mounted read-only into installs (`--find-links`); their files must be "
        "readable by all",
    )
    sandbox_install_max_mb: int = setting(
        4096, "most a model's venv may grow to during its install (the install is stopped)",
    )
    account_max_models: int = setting(
        100, "models per account (403)",
        section="Per-account limits on user models",
    )
    account_max_pending_uploads: int = setting(
        5,
        "versions per account awaiting their upload (unexpired URLs), queued or building (429)",
    )
    # Disk taken by everything the account stores: its model versions (files and
    # venvs), datasets (upload and parsed files) and unfinished jobs' checkpoints.
    account_max_stored_mb: int = setting(
        20_480,
        "disk everything the account stores may take: model versions (files and venvs), datasets (upload and "
        "parsed files), checkpoints of unfinished jobs (403 for a new upload URL, dataset or training job; a "
        "build, parse or job over it fails)",
    )
    # Largest dataset sent in the body of POST /datasets (JSON "data" or a
    # multipart file); bigger ones go through an upload URL, up to DATASET_MAX_BYTES.
    dataset_max_direct_bytes: int = setting(
        10 * 1024**2,
        "largest dataset sent in the request (413); larger ones through an upload URL",
        section="Datasets and training (training/)",
    )
    dataset_max_bytes: int = setting(1024**3, "largest uploaded dataset (413 at the PUT)")
    # Parsing limits: rows kept, bytes per line (a longer line fails the
    # dataset), distinct labels of a classification dataset.
    dataset_max_rows: int = setting(1_000_000, "most rows in a dataset (it fails above)")
    dataset_max_line_bytes: int = setting(1024**2, "longest line of a CSV or JSONL dataset (it fails above)")
    dataset_max_labels: int = setting(1000, "most distinct labels of a classification dataset")
    # Memory of the process that parses a dataset: its address-space cap and its
    # sandbox's memory limit (a hostile file cannot take the host's memory).
    dataset_parse_memory_mb: int = setting(
        4096,
        "memory of the process that parses a dataset (its address-space cap and its sandbox's memory limit); "
        "a parse over it fails saying so",
    )
    account_max_datasets: int = setting(100, "datasets per account (403)")
    # Editing a dataset (POST /datasets/{id}/samples...): samples one edit may add
    # (422 above; its body has DATASET_MAX_DIRECT_BYTES) and fetch by URL (each
    # fetch holds the request for up to WEBHOOK_TIMEOUT_S), the largest image one
    # sample may bring (base64 or by URL: 422 above; the pixels are
    # MAX_IMAGE_PIXELS'), and revisions one dataset may have (409 above: each
    # copies the parsed rows, counted in the account's stored bytes).
    dataset_edit_max_samples: int = setting(1000, "samples one edit of a dataset may add (422)")
    dataset_edit_max_urls: int = setting(
        8, "images one edit of a dataset may fetch by URL (422): each may take INFER_WEBHOOK_TIMEOUT_S and "
        "INFER_DATASET_IMAGE_MAX_BYTES of the request's time and memory")
    dataset_image_max_bytes: int = setting(
        10 * 1024**2, "largest image a sample added to a dataset may have, as base64 or fetched by URL (422)")
    dataset_max_revisions: int = setting(100, "revisions one dataset may have (409 for an edit past it)")
    # Whether this process runs training jobs and dataset parsing (every
    # gunicorn worker does; the database decides which one runs what), how
    # often it looks for work, and how many jobs it trains at once.
    trainer: bool = setting(True, "whether this process parses datasets and runs training jobs")
    training_poll_s: float = setting(2.0, "how often it looks for datasets to parse and jobs to run")
    training_jobs_per_process: int = setting(1, "jobs one process trains at once")
    # torch threads of a training process: with the web workers' threads, keep
    # them within the cores, or serving slows while a job trains.
    training_torch_threads: int = setting(
        1,
        "torch threads of a training process (keep serving threads + these <= cores)",
    )
    # Memory of a training process (its address-space cap on CPU, and its
    # sandbox's memory limit): a job whose batch or model does not fit fails
    # saying so, instead of taking the host's memory.
    training_memory_mb: int = setting(
        16384,
        "memory of a training process (address-space cap on CPU, and its sandbox's memory limit); a job over "
        "it fails saying so",
    )
    # Scheduling niceness of training and dataset-parsing processes: when the
    # cores are busy, requests come first and a job takes what is left.
    training_nice: int = setting(
        10,
        "scheduling niceness of training and dataset-parsing processes: requests come first when the cores "
        "are busy",
    )
    # A job whose training process dies (killed, out of memory) is resumed
    # from its last epoch checkpoint, up to this many starts in all.
    training_max_attempts: int = setting(3, "starts of a job whose training process dies before it fails")
    # Every epoch also scores the training rows (train_accuracy...): on a large
    # set, a seeded sample of this many, so the extra pass stays small.
    training_train_metrics_rows: int = setting(
        1000, "training rows each epoch's train_ metrics are computed on (a seeded sample of a larger set)")
    # Seconds a job or a dataset parse stays claimed by a process that stopped
    # renewing its claim (it died) before another process takes it over.
    training_lease_s: float = setting(
        60.0,
        "seconds before another process takes over a job or parse whose process died",
    )
    account_max_active_jobs: int = setting(4, "queued or running training jobs per account (429)")
    # A search job (POST /models/{name}/train with `search`) trains up to this
    # many configurations in one training process, within a time budget of up
    # to this many seconds (a trial started within it runs to its end).
    training_search_max_trials: int = setting(20, "most configurations one search job tries (422)")
    training_search_max_time_s: int = setting(
        3600, "longest time budget of a search job, in seconds (422); also the budget of one that sends none",
    )
    # Calls a private prediction URL answers per minute (429 above): the URL
    # needs no key, so whoever holds it spends its owner's compute.
    prediction_url_rate_per_min: int = setting(
        60, "calls a private prediction URL answers per minute (429)",
        section="Prediction URLs, asynchronous predictions and webhooks",
    )
    # Asynchronous predictions (a task request sent with Prefer: respond-async):
    # whether this process runs them (every gunicorn worker does), how many it
    # runs at once (they share the models' batchers with the synchronous
    # requests), how often it looks for those queued through other processes,
    # how long one stays claimed by a process that stopped renewing its claim
    # (it died) before another runs it again, how many starts it gets, how many
    # an account may have queued or running (429 above), and how long a
    # finished one is kept (then deleted: GET /predictions/{id} answers 404).
    predictions: bool = setting(True, "whether this process runs asynchronous predictions")
    prediction_threads: int = setting(4, "asynchronous predictions one process runs at once")
    prediction_poll_s: float = setting(
        1.0,
        "how often it looks for predictions queued through another process, webhooks to retry and old "
        "predictions to delete",
    )
    prediction_lease_s: float = setting(
        30.0,
        "seconds before another process runs again a prediction whose process died",
    )
    prediction_max_attempts: int = setting(3, "starts of such a prediction before it fails")
    account_max_queued_predictions: int = setting(100, "queued or running predictions per account (429)")
    prediction_retention_s: int = setting(
        86_400,
        "seconds a finished prediction (input, output) is kept before it is deleted",
    )
    # Evaluations (predictions/evaluations.py): a version run on a dataset, its
    # rows sent as asynchronous predictions are, a chunk at a time (at most
    # INFER_MAX_BATCH_SIZE rows a request), by the processes that run
    # predictions. How many one process runs at once, how many rows go in one
    # request, and how many an account may have queued or running (429 above).
    evaluation_threads: int = setting(1, "evaluations one process runs at once (where predictions run)")
    evaluation_chunk_rows: int = setting(
        32, "dataset rows sent to the version in one request of an evaluation (at most INFER_MAX_BATCH_SIZE)")
    account_max_active_evaluations: int = setting(2, "queued or running evaluations per account (429)")
    compare_max_versions: int = setting(10, "versions one comparison (GET /models/{name}/compare) names (422)")
    # Webhooks of finished predictions: networks they may reach besides public
    # addresses (comma-separated CIDRs, e.g. "10.0.0.0/8"; loopback, private,
    # link-local and reserved addresses are refused unless listed), seconds per
    # call, calls before giving up, and the wait before the first retry
    # (doubled after each failure).
    webhook_allowed_networks: str = setting(
        "",
        "comma-separated CIDRs webhooks may reach besides public addresses (loopback, private, link-local, "
        "reserved are refused otherwise)",
    )
    webhook_timeout_s: float = setting(
        10.0,
        "longest webhook call, all of it: connect, TLS handshake, sending, the answer's status and headers "
        "(then it is retried)",
    )
    webhook_max_attempts: int = setting(5, "webhook calls before giving up")
    webhook_retry_s: float = setting(5.0, "wait before the first webhook retry (doubled after each failure)")
    # Batch predictions (POST /batches, predictions/batches.py): a file of
    # requests run on the background workers. Limits of one batch (its lines,
    # its input's bytes), of an account (batches queued or running: 429
    # above), how many lines of one batch are in flight at once (each goes
    # through the task's batcher and fair queue like an interactive request,
    # so a batch never holds more of them than this), and how long a finished
    # batch and its files are kept (then deleted: GET answers 404).
    batch_max_lines: int = setting(50_000, "request lines one batch may hold (413 above)",
                                   section="Batch predictions (predictions/batches.py)")
    batch_max_input_bytes: int = setting(100 * 1024 * 1024, "bytes of one batch's input file (413 above)")
    account_max_active_batches: int = setting(4, "queued or running batches per account (429)")
    batch_lines_in_flight: int = setting(
        8, "lines of one batch sent to the models at once; the output is written in the input's order")
    batch_threads: int = setting(2, "batches one process runs at once")
    account_max_running_batches: int = setting(1, "batches of one account running at once, across processes")
    batch_retention_s: int = setting(
        7 * 86_400, "seconds a finished batch and its input and output files are kept before they are deleted")
    # Background work on a queue (core/work_queue.py): a Redis URL
    # (redis://host:6379/0) makes web processes only hand builds, dataset
    # parses, training jobs and asynchronous predictions to Redis, and
    # `flask --app wsgi worker` processes run them; empty runs them in every web
    # process, as the embedded default. The sweep: how often each worker looks
    # in the database for work whose message was lost or whose worker died.
    queue_url: str = setting(
        "",
        "Redis URL (`redis://host:6379/0`): web processes hand builds, parses, training jobs and asynchronous "
        "predictions to RQ, and `flask --app wsgi worker` processes run them; empty: every web process runs "
        "them",
        section="Background work on a queue (core/work_queue.py)", secret=True,
    )
    queue_sweep_s: float = setting(
        5.0,
        "how often each queue worker looks in the database for work whose message was lost or whose worker "
        "died",
    )
    # The web UI (/ui): hours a sign-in lasts (the session also ends when its key
    # is revoked).
    ui_session_hours: float = setting(
        12.0, "how long a web UI sign-in lasts (revoking its key ends it sooner)",
        section="The web UI (/ui)",
    )
    ui_sessions_per_key: int = setting(
        20,
        "web UI sessions one key may have at once; signing in again ends its oldest",
    )
    # "onnx": encoder models (sentence-transformers vectorisers, the emotion
    # classifier, NLI and extractive QA) are exported to ONNX once per model,
    # revision and library versions, and run with ONNX Runtime on the CPU
    # (TORCH_THREADS intra-op threads). "torch": none are. "auto": the catalogue's
    # vectorisers on ONNX on a CPU (measured 1.4-2x torch, bench/text_vectorisation.py),
    # everything else on torch. A model that does not export, or whose export does
    # not give torch's answers, is served with torch; the log says why.
    backend: str = setting(
        "auto",
        "`auto`, `torch` or `onnx`: which encoder models (vectorisers, emotion, NLI, extractive QA) are "
        "exported to ONNX and run with ONNX Runtime on the CPU; `auto`: the catalogue's vectorisers (see "
        '"ONNX Runtime backend")',
        section="Inference backend and token-aware batching (model_registry/onnx_*.py, token_batching.py)",
    )
    # Per model, over BACKEND: comma-separated "catalogue key:backend" pairs
    # (all-MiniLM-L6-v2:onnx,bart-large-mnli:torch).
    backend_overrides: str = setting(
        "",
        "per model, over `INFER_BACKEND`: `key:backend` pairs by catalogue key, e.g. `all-MiniLM-L6-v2:onnx`",
    )
    # Where exports are kept. Empty: beside the model's files when they are under
    # MODEL_DIR and writable, else DATA_DIR/onnx (packaged models, the Hugging
    # Face cache, user models). A shared volume lets replicas export once.
    onnx_cache_dir: str = setting(
        "",
        "where ONNX exports are kept; empty: `<model>/.onnx` for models in the model dir, else "
        "`$INFER_DATA_DIR/onnx`",
    )
    # int8 dynamic quantisation of ONNX vectorisers: empty (off) or which matrix
    # products: "all", "attention" (the attention projections) or
    # "attention-inner" (those of all but the first and last layers). A quantised
    # model whose worst cosine to its fp32 vectors on the calibration sentences
    # (model_registry/calibration.py) is below ONNX_INT8_MIN_COSINE is refused
    # (an error in the log) and its fp32 ONNX export serves instead.
    onnx_int8: str = setting(
        "",
        "int8 quantisation of ONNX vectorisers: `all`, `attention`, `attention-inner` (empty: off)",
    )
    onnx_int8_min_cosine: float = setting(
        0.99,
        "worst cosine to fp32 on the calibration sentences below which a quantised model is refused (its fp32 "
        "export serves)",
    )
    # Token-aware batching of text vectorisers: the most padded tokens (items x
    # the longest item) in one forward pass; a batch is cut into passes of
    # similar lengths within it. 0: passes are bounded by BATCH_MAX_SIZE only.
    # On one CPU thread, MiniLM's throughput is flat from 128 to 512 and falls
    # above (2.1x at 512 over no budget on mixed lengths); a GPU wants far more.
    batch_max_tokens: int = setting(
        512,
        "most padded tokens (items x the longest) in one forward pass of a text vectoriser; a batch is cut "
        "into passes of similar lengths; 0: by item count only",
    )
    metrics_require_key: bool = setting(
        False, "make `/metrics` need a key (Prometheus scrapers usually have none)",
        section="Metrics and per-account usage (core/usage.py)",
    )
    # Per-account usage (core/usage.py, GET /usage, the UI's Usage page): each
    # account's inference requests, errors and latency per task and model, in
    # time buckets of USAGE_BUCKET_S seconds, kept USAGE_RETENTION_HOURS (older
    # buckets are deleted). Each process counts in memory and adds its counts to
    # the database every USAGE_FLUSH_S seconds (and when it stops), never once per
    # request; the counts of another process show up that late.
    usage_bucket_s: int = setting(300, "seconds per bucket of the per-account usage (`GET /usage`)")
    usage_retention_hours: int = setting(
        168,
        "hours usage is kept (older buckets are deleted); the longest `GET /usage` window",
    )
    usage_flush_s: float = setting(5.0, "how often each process adds its usage counts to the database")
    # Each sandboxed process tree (install, worker, training and dataset-parse
    # children) runs in a control group of its own: WORKER_MEMORY_MB bounds all
    # the memory the tree holds (memfd, shared memory, its /tmp and /dev/shm,
    # all its processes; no swap), SANDBOX_MAX_PROCESSES its processes and
    # threads (pids.max, bwrap's own two included). "auto": cgroup v2 where the
    # service's group has the memory and pids controllers, else cgroup v1 where
    # its memory hierarchy is writable, else none; "v2" / "v1": that one or no
    # user code at all; "off": none. Without one, memfd_create and System V
    # shared memory are denied instead (/readyz says which holds).
    sandbox_cgroup: str = setting(
        "auto",
        "control group of each sandboxed process tree: `auto` (cgroup v2 where the service's group has the "
        "memory and pids controllers, else v1 where its hierarchies are writable, else none), `v2`, `v1` "
        "(that one, or user code does not run: `/readyz` says why), `off`. Without one, `memfd_create` and "
        "System V shared memory are refused instead",
        section="Resource limits of sandboxed processes (sandbox/cgroups.py)",
    )
    # Where the groups are made: a group path within the hierarchy (v2: an
    # empty group delegated to the service, e.g. systemd's DelegateSubgroup;
    # v1: the same path in the memory and pids hierarchies). "": a folder
    # "infer-sandbox" in the service's own group (in v2, the service's processes
    # move to a leaf "service" first, as v2 asks of a group with children).
    sandbox_cgroup_parent: str = setting(
        "",
        "where those groups are made: a group path in the hierarchy (v2: an empty group delegated to the "
        "service; v1: the same path in the memory and pids hierarchies); empty: `infer-sandbox` in the "
        "service's own group",
    )
    # As root, an account's training and dataset-parse children run as uid
    # BASE + (account id mod SANDBOX_UID_COUNT): uids that own nothing on the
    # host, in a range apart from the model versions' (SANDBOX_UID_BASE...).
    training_sandbox_uid_base: int = setting(
        300_000,
        "as root, an account's training and parse children run as uid BASE + (account id mod "
        "`INFER_SANDBOX_UID_COUNT`), a range apart from the model versions'",
        section="Training and dataset-parsing children in the sandbox",
    )
    # CPU seconds one training attempt may use (all its threads together; past
    # it the process is killed and the job resumes from its last checkpoint,
    # within TRAINING_MAX_ATTEMPTS), and one dataset parse (past it the parse
    # fails): a bound on a child that spins, far above any real run.
    training_cpu_s: int = setting(
        7 * 24 * 3600,
        "CPU seconds of one training attempt (killed past it; the job resumes from its checkpoint)",
    )
    dataset_parse_cpu_s: int = setting(3600, "CPU seconds of one dataset parse (it fails past it)")
    # Background work is claimed fairly between accounts (core/fair_claims.py):
    # the next claim goes to the account with the fewest of that kind running,
    # and one account runs at most this many of each kind at once, counted in
    # the database across every process and replica (the rest wait, queued).
    # Defaults: half of what a default host (2 gunicorn workers) runs at once,
    # so another account always finds room: predictions 4 of 2 x 4
    # PREDICTION_THREADS; builds, dataset parses and training jobs 1 of 2.
    account_max_running_predictions: int = setting(
        4,
        "asynchronous predictions one account runs at once, across all processes and replicas (the rest wait "
        "queued)",
        section="Fair claiming of background work; webhook delivery",
    )
    account_max_running_builds: int = setting(1, "builds one account runs at once (the rest wait queued)")
    account_max_running_parses: int = setting(1, "dataset parses one account runs at once (the rest wait)")
    account_max_running_jobs: int = setting(1, "training jobs one account runs at once (the rest wait queued)")
    account_max_running_evaluations: int = setting(1, "evaluations one account runs at once (the rest wait queued)")
    # Webhooks are called on a pool of their own in each process that runs
    # predictions (predictions/webhook_pool.py), never on a prediction's thread:
    # WEBHOOK_THREADS calls at once, at most WEBHOOK_ACCOUNT_THREADS of them for
    # one account (a slow endpoint costs its thread up to WEBHOOK_TIMEOUT_S,
    # which bounds the whole call: connect, TLS, sending, the answer's status
    # and headers). Looking the host up is bounded apart, by
    # WEBHOOK_RESOLVE_TIMEOUT_S (2 x WEBHOOK_THREADS lookups at once).
    webhook_threads: int = setting(
        4,
        "webhook calls one process makes at once, on a pool of their own (never on a prediction's thread)",
    )
    webhook_account_threads: int = setting(2, "webhook calls of one account in flight at once in one process")
    webhook_resolve_timeout_s: float = setting(
        5.0,
        "longest wait for a webhook host's DNS lookup (a late one is retried)",
    )
    # Largest config.json of an upload: the build parses it in the service's own
    # process (every format's), before any other check.
    upload_max_config_kb: int = setting(
        1024, "largest `config.json` of an upload (the build fails above)",
        section="Uploaded Hugging Face folders and tokenizers, checked before loading",
    )
    # Before an uploaded Hugging Face folder is loaded (uploads/hf_checks.py), a
    # process of its own, in the version's sandbox, builds the model from its
    # config on the meta device and compares it with the safetensors headers: its
    # memory cap (MiB; importing torch and transformers takes ~900 MB of address
    # space, an 8B-parameter model's meta build a few MB more) and its time limit
    # (seconds; ~5-20 s on 2 busy cores). A config whose model cannot be built
    # within them fails the build.
    hf_check_memory_mb: int = setting(
        2048,
        "memory of the process that checks an uploaded Hugging Face folder before it is loaded",
    )
    hf_check_timeout_s: float = setting(120.0, "seconds that check may take (the build fails after)")
    # Most memory one uploaded folder's model may take as loaded (parameters and
    # buffers; MiB, also bounded by MODEL_MEMORY_BUDGET_MB; 0: only the budget).
    # The same as a code model's worker may use (WORKER_MEMORY_MB), so one account
    # cannot fill the budget shared with every other account's models.
    hf_max_model_mb: int = setting(
        4096,
        "most memory one uploaded Hugging Face folder's model may take as loaded (also bounded by "
        "`INFER_MODEL_MEMORY_BUDGET_MB`); 0: the budget only",
    )
    # Largest JSON or tokenizer file in an uploaded folder (config.json,
    # tokenizer.json, vocabularies, merges, SentencePiece models; MiB): the
    # loaders read them into the service's own memory. The largest widely used
    # ones are ~35 MB (Gemma 3's tokenizer.json).
    hf_file_max_mb: int = setting(64, "largest JSON or tokenizer file in an uploaded Hugging Face folder")
    # While a non-streamed generation (/v1/completions, /v1/chat/completions,
    # /text-generation) waits for its model, its request thread looks at the
    # client's connection this often (seconds); a client found gone has its
    # rows stopped at their next token (a queued request is dropped unrun).
    # A look is one getsockopt call, so a short interval costs nothing; it
    # bounds the tokens generated for nobody to about this long's worth.
    # (The deadline, REQUEST_TIMEOUT_S from the submit, also ends every
    # generation, streamed or not, at its next token: 504.)
    client_gone_check_s: float = setting(
        0.25,
        "how often a non-streamed generation looks whether its client is still connected (it stops when not)",
        section="Abandoned generations",
    )
    # Every account's default limits; an account's own (`flask accounts limits NAME`,
    # PUT /admin/accounts/{name}/limits) replace them. 0 means no limit. Requests per
    # minute count POSTs to the inference routes (the tasks, /custom, /predict, /v1
    # embeddings and completions, and their asynchronous submits); generation tokens
    # per minute are charged when a generation is admitted, as OpenAI does: the
    # prompt's estimated tokens (characters / 4) plus max tokens x outputs. Both are
    # off by default: a self-hosted install sets them for its tenants.
    account_requests_per_min: int = setting(
        0,
        "default inference requests per minute per account, all workers and replicas together (429 above); 0: "
        "no limit; an account's own value replaces it",
        section="Rate limits and per-account limits (web/rate_limits.py, web/account_limits.py)",
    )
    account_tokens_per_min: int = setting(
        0,
        "default generation tokens per minute per account, charged at admission: prompt characters / 4 + most "
        "new tokens x outputs (429 above); 0: no limit",
    )
    # How many of one account's requests one process serves at once (per process;
    # see web/admission.py).
    account_max_in_flight: int = setting(
        48,
        "one account's requests one server process works on at once (429 above, at once); gunicorn's pool "
        "also gives one client at most this many threads (at most three quarters of `INFER_THREADS`); 0: no "
        "limit",
    )
    # Seconds a process trusts the limits it read for an account: a change through
    # the CLI or another process applies there within that time (0: read every request).
    account_limits_cache_ttl_s: float = setting(
        5.0,
        "seconds a process trusts the limits it read for an account (a change made elsewhere applies within "
        "it; 0: read every request)",
    )
    # Where the rate-limit counters live, as a `limits` storage URI: "redis://host:6379/1"
    # holds across workers and replicas; "memory://" counts per process (each gunicorn
    # worker would allow the whole limit); "sqlite:////path/file.db" one host's processes.
    # Empty: the Redis of QUEUE_URL when set, else DATA_DIR/rate_limits.db (this host's
    # processes). Unreachable storage lets requests pass (logged) rather than refusing all.
    rate_limit_storage: str = setting(
        "",
        "where rate-limit counters live, a `limits` storage URI: `redis://host:6379/1` (across replicas), "
        "`sqlite:////path/file.db` (one host's processes), `memory://` (per process). Empty: the Redis of "
        "`INFER_QUEUE_URL`, else `$INFER_DATA_DIR/rate_limits.db`", secret=True,
    )
    # Comma-separated account names whose keys may read and set any account's limits
    # (GET/PUT /admin/accounts/{name}/limits); every other key gets 404 there. Empty:
    # no operator API (the CLI still works).
    admin_accounts: str = setting(
        "",
        "comma-separated accounts whose keys may read and set any account's limits "
        "(`/admin/accounts/{name}/limits`); every other key gets 404 there",
    )
    # gunicorn.conf.py reads these; the app does not.
    bind: str = setting(
        "127.0.0.1:8000", "where gunicorn listens (`host:port`)",
        section="Server processes (gunicorn.conf.py)",
    )
    workers: int = setting(2, "gunicorn worker processes")
    # Requests mostly wait on the batcher, not on a core.
    threads: int = setting(
        64, "threads per worker: requests mostly wait on the batcher; keep it above `INFER_ACCOUNT_MAX_IN_FLIGHT`",
    )
    # After answering a kept-alive connection, a gunicorn thread waits this long
    # for the client's next request and serves it itself, while no other request
    # waits for a thread (app/fair_worker.py); else the connection goes back to
    # the worker's poller, which hands it to a thread again when it is readable.
    keepalive_linger_ms: float = setting(
        2.0,
        "milliseconds a thread that answered a kept-alive connection waits for its next request and serves it "
        "itself, while no other request waits for a thread (saves two thread hand-offs per request); 0: off",
    )
    worker_timeout: int = setting(300, "seconds gunicorn lets a worker go silent before it restarts it")
    access_log: str = setting("", "where gunicorn writes its access log (`-`: standard output); empty: none")
    # Stopping under an orchestrator (docs/operations/kubernetes.md): on SIGTERM
    # /readyz answers 503 at once, the server keeps serving for drain_s (while
    # the load balancer takes it out of rotation), then stops taking
    # connections and lets requests in progress finish for graceful_timeout_s.
    # Kubernetes' terminationGracePeriodSeconds must exceed their sum.
    graceful_timeout_s: int = setting(
        30, "seconds gunicorn lets requests in progress finish after it stopped taking connections on SIGTERM",
        section="Stopping, probes and metrics (docs/operations/kubernetes.md)",
    )
    drain_s: float = setting(
        0.0,
        "seconds the server keeps serving after SIGTERM with /readyz answering 503, so a load balancer takes it "
        "out of rotation before it stops taking connections (a second SIGTERM ends the drain early); 0: none",
    )
    # A database blip must not take every replica out of rotation at once:
    # /readyz fails only once the database has been unreachable this long.
    ready_db_grace_s: float = setting(
        30.0, "seconds the database may be unreachable before /readyz answers 503 (0: at the first failure)",
    )
    # /metrics answers anyone who reaches it (scrapers have no key); the work
    # gauges cost a few database queries, so a flood of scrapes costs at most
    # one round of them per process this often.
    work_metrics_max_age_s: float = setting(
        2.0, "seconds /metrics reuses its figures of background work (waiting, running, queue depth) before it asks "
        "the database and the queue again",
    )
    worker_health_port: int = setting(
        0, "port on which `flask --app wsgi worker` serves /healthz and /metrics (0: none)",
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None,
                     overrides: Mapping[str, Any] | None = None) -> "Settings":
        """Defaults, then INFER_* environment variables, then overrides (by setting
        name, as in INFER_<NAME> without the prefix: what create_app's test_config
        passes), then the values derived from others."""
        environ = os.environ if environ is None else environ
        values = {}
        for item in dataclasses.fields(cls):
            raw = environ.get(env_name(item.name))
            if raw is None and item.name in UNPREFIXED:
                raw = environ.get(item.name.upper())
            if item.metadata["secret"]:
                raw = _with_secret_file(environ, item.name, raw)
            if raw is not None:
                try:
                    values[item.name] = parse(raw, item.type)
                except ValueError as exc:
                    raise ValueError(f"{env_name(item.name)}: {exc}") from None
        values.update(field_values(overrides or {}))
        return cls(**values).derived()

    def derived(self) -> "Settings":
        """The settings whose empty default means a place under DATA_DIR, filled in."""
        data_dir = os.path.abspath(self.data_dir)
        return dataclasses.replace(
            self,
            data_dir=data_dir,
            database_url=self.database_url or "sqlite:///" + os.path.join(data_dir, "infer.db"),
            model_dir=self.model_dir or os.path.join(data_dir, "models"),
            bootstrap_key_file=self.bootstrap_key_file or os.path.join(data_dir, "first-api-key"),
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """These settings with some replaced, by name (MAX_BATCH_SIZE); derived values
        are not recomputed (use from_environ(overrides=...) for that)."""
        return dataclasses.replace(self, **field_values(overrides))


FIELDS = {item.name: item for item in dataclasses.fields(Settings)}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _with_secret_file(environ: Mapping[str, str], name: str, raw: str | None) -> str | None:
    """A secret setting's value: from the environment, or from the file its
    INFER_<NAME>_FILE (or, unprefixed ones, <NAME>_FILE) names, without the file's
    trailing line break; both at once is an error, not a silent choice."""
    names = [env_name(name) + "_FILE"] + ([name.upper() + "_FILE"] if name in UNPREFIXED else [])
    variable = next((each for each in names if environ.get(each)), None)
    if variable is None:
        return raw
    if raw is not None:
        raise ValueError(f"{env_name(name)} and {variable} are both set: set one of them.")
    path = environ[variable]
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{variable}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def parse(raw: str, kind: type):
    """An environment value as the field's type."""
    if kind is bool:
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    return kind(raw)  # int, float or str: int("many") says "invalid literal for int()"


def field_values(overrides: Mapping[str, Any]) -> dict:
    """Overrides by setting name (MAX_BATCH_SIZE or max_batch_size) as field values,
    checked: an unknown name or a value of the wrong type is an error, not a setting
    that silently does nothing. A string is parsed as the environment's would be."""
    values = {}
    for key, value in overrides.items():
        name = key.lower()
        if name not in FIELDS:
            raise ValueError(f"{key} is not a setting (see core/settings.py)")
        kind = FIELDS[name].type
        if isinstance(value, str) and kind is not str:
            value = parse(value, kind)
        elif kind is str and isinstance(value, os.PathLike):  # a folder given as a pathlib.Path
            value = os.fspath(value)
        elif kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise ValueError(f"{key} must be {kind.__name__}, not {type(value).__name__} ({value!r})")
        values[name] = value
    return values
