"""Every setting of the service, its default, and what it means.

Each key can be overridden from the environment as ``INFER_<KEY>`` (for example
``INFER_MAX_BATCH_SIZE=128``). ``DATABASE_URL`` is also read without the prefix,
as most platforms set it that way. Values are parsed to the type of the default.
"""

import os

ENV_PREFIX = "INFER_"

DEFAULTS = {
    # Where the SQLite database, local model dir and uploads live.
    "DATA_DIR": "./data",
    # SQLAlchemy URL; empty means a SQLite file under DATA_DIR.
    "DATABASE_URL": "",
    # Database connections kept per process (8 more may open under load);
    # match it to gunicorn's threads per worker, and mind PostgreSQL's
    # max_connections across workers and replicas.
    "DB_POOL_SIZE": 32,
    # Seconds a verified API key is trusted without asking the database again.
    # A key revoked through another process (the CLI, another gunicorn worker)
    # keeps working that long there; 0 checks the database on every request.
    "AUTH_CACHE_TTL_S": 2.0,
    # Largest accepted request body, in bytes (413 above it).
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    # Most items in one batch request (422 above it).
    "MAX_BATCH_SIZE": 64,
    # Longest accepted text item, in characters (422 above it). Models also
    # truncate to their own token limit; this bounds the work before that.
    "MAX_TEXT_LENGTH": 20_000,
    # Most labels per item for zero-shot text and image classification (422 above).
    "MAX_LABELS": 32,
    # Largest decoded image, in pixels (400 above): guards against decompression bombs.
    "MAX_IMAGE_PIXELS": 40_000_000,
    # Most decoded pixels in one request, all its images together (400 above): a
    # batch of small files that each decode to a large image must not take
    # gigabytes (16 PNGs of 6300x6300 1-bit pixels are 104 KB on the wire and
    # ~1.9 GB as RGB).
    "MAX_REQUEST_PIXELS": 50_000_000,
    # Generation bounds (422 above): new tokens per output, beams, outputs per input.
    "GEN_MAX_NEW_TOKENS": 256,
    "GEN_MAX_BEAMS": 8,
    "GEN_MAX_GENERATIONS": 8,
    # /emotion answers the labels whose probability is at least this.
    "EMOTION_THRESHOLD": 0.5,
    # A folder of models: <MODEL_DIR>/<public name> or <MODEL_DIR>/<org>/<repo>
    # is used before the Hugging Face cache, packages and the hub.
    "MODEL_DIR": "",
    # Memory the loaded models may take together, in MiB; least recently used
    # models are unloaded to make room. 0 means no limit.
    "MODEL_MEMORY_BUDGET_MB": 8192,
    # Comma-separated "task:name" pairs (or bare model keys) to load at start.
    "PRELOAD_MODELS": "",
    # Batching across requests (model_registry/batcher.py): most items in one
    # forward pass; how long a batch may be held open for the requests expected
    # to join it (only when several requests were in flight at once lately, so a
    # lone client never waits; 0: never hold a batch open); and how many requests may
    # queue per model and task before new ones get 429.
    "BATCH_MAX_SIZE": 32,
    "BATCH_MAX_WAIT_MS": 10.0,
    "BATCH_MAX_QUEUE": 256,
    # A request still waiting for its model after this many seconds gets 504 and
    # its work is dropped.
    "REQUEST_TIMEOUT_S": 60.0,
    # "auto" picks cuda, then mps, then cpu; or name a torch device.
    "DEVICE": "auto",
    # Half precision for models on a GPU ("auto": on cuda only, where it is safe
    # for inference of the encoders we serve). "off" keeps float32 everywhere.
    "HALF_PRECISION": "auto",
    # torch intra-op threads per worker process. Threads x workers must not
    # exceed the cores: oversubscription was 5-9x slower on 2 cores.
    "TORCH_THREADS": 1,
    # On start with no API key in the database, create one and print it once.
    "BOOTSTRAP_KEY": True,
    # Name of the account that the bootstrap key belongs to.
    "BOOTSTRAP_ACCOUNT": "default",
    # User model uploads: "local" (the service's own signed PUT URLs, files
    # under DATA_DIR) or "s3" (presigned PUT URLs to S3_BUCKET).
    "STORAGE": "local",
    "S3_BUCKET": "",
    "S3_PREFIX": "uploads/",
    # For MinIO, SeaweedFS and other S3-compatible stores.
    "S3_ENDPOINT_URL": "",
    "S3_REGION": "",
    # Signs local upload URLs; empty: a random key kept in DATA_DIR/secret_key.
    "SECRET_KEY": "",
    # Public base URL for upload URLs; empty: the URL the request came in on.
    "PUBLIC_URL": "",
    # Upload and archive limits (the build fails above them).
    "UPLOAD_MAX_BYTES": 5 * 1024**3,
    # Files and folders in the zip, counted from its central directory before it is parsed.
    "UPLOAD_MAX_MEMBERS": 10_000,
    "UPLOAD_MAX_UNCOMPRESSED_BYTES": 10 * 1024**3,
    # Most times a zip may expand (zip bombs): the whole archive (uncompressed
    # total over the file's size), and each member over 1 MB on its own.
    "UPLOAD_MAX_RATIO": 200,
    # Seconds an upload PUT may go without receiving a byte of its body (408):
    # a client that stops sending must not hold a server thread forever.
    "UPLOAD_IDLE_TIMEOUT_S": 60.0,
    # Whether this process runs build jobs (every gunicorn worker does; the
    # database decides which one builds what). Its loop also unloads the user
    # model versions this process holds that were replaced or deleted elsewhere.
    "BUILDER": True,
    # Successful versions of a user model whose files stay on disk: the serving
    # one and those before it (a worker may still be loading the previous one).
    # Older versions keep their record; their files are removed.
    "USER_MODEL_VERSIONS_KEPT": 2,
    # Build jobs: how often to look for uploads and abandoned builds, and limits.
    "BUILD_POLL_S": 2.0,
    "BUILD_REQUIREMENTS_TIMEOUT_S": 900.0,
    # A user model's worker process: seconds per call (taking its lock, writing
    # the request, reading the answer: each bounded) and to load, and the memory
    # of every sandboxed process: each one's address space, and all its tree holds
    # (its control group: see SANDBOX_CGROUP below).
    "WORKER_CALL_TIMEOUT_S": 60.0,
    "WORKER_LOAD_TIMEOUT_S": 300.0,
    "WORKER_MEMORY_MB": 4096,
    # Largest answer a worker may send for one call (502 and a restart above).
    "WORKER_MAX_REPLY_MB": 64,
    # --- The sandbox of uploaded code (sandbox/, uploads/model_sandbox.py) ---
    # "bwrap": every process that runs uploaded code or installs its packages
    # runs under bubblewrap (own user, namespaces, no network, seccomp, limits).
    # "none": no isolation at all; only for a trusted single-user install, as
    # any account that can upload a model can then act as the service.
    "SANDBOX": "bwrap",
    # As root, each model version's sandbox runs as uid BASE + (version id mod
    # COUNT): uids that own nothing on the host. Pick a free range (a rootless
    # container may map only 65536 uids).
    "SANDBOX_UID_BASE": 200_000,
    "SANDBOX_UID_COUNT": 100_000,
    # Limits of every sandboxed process: processes and threads (per sandbox
    # uid, and per process tree where a control group holds it), CPU seconds
    # (a worker that reaches it is killed and restarted on its next call),
    # open files, largest file written, size of its private
    # /tmp and of /dev/shm (each, in RAM), and its scheduling niceness.
    "SANDBOX_MAX_PROCESSES": 256,
    "SANDBOX_CPU_S": 3600,
    "SANDBOX_MAX_OPEN_FILES": 1024,
    "SANDBOX_MAX_FILE_MB": 2048,
    "SANDBOX_TMP_MB": 512,
    "SANDBOX_NICE": 10,
    # Comma-separated names of environment variables passed into sandboxes
    # (say PIP_INDEX_URL); nothing else of the service's environment is. Names
    # starting with INFER_ or AWS_, and DATABASE_URL, are refused.
    "SANDBOX_ENV_ALLOW": "",
    # The network of a requirements.txt install: "index" reaches only the hosts
    # of SANDBOX_INSTALL_HOSTS through a filtering proxy ("host" means port 443,
    # or "host:port"); "none" reaches nothing (packages must be in the service
    # already or in SANDBOX_PIP_FIND_LINKS). Model workers never have a network.
    "SANDBOX_INSTALL_NETWORK": "index",
    "SANDBOX_INSTALL_HOSTS": "pypi.org,files.pythonhosted.org",
    # Comma-separated host folders of wheels/sdists that installs may use
    # (mounted read-only, passed to pip as --find-links; as root, make their
    # files readable by all: sandboxes run under uids of their own).
    "SANDBOX_PIP_FIND_LINKS": "",
    # Most a model's venv may grow to during its install (the install is stopped).
    "SANDBOX_INSTALL_MAX_MB": 4096,
    # --- Per-account limits on user models ---
    "ACCOUNT_MAX_MODELS": 100,
    # Versions awaiting their upload (unexpired URLs), queued or building.
    "ACCOUNT_MAX_PENDING_UPLOADS": 5,
    # Disk taken by everything the account stores: its model versions (files and
    # venvs), datasets (upload and parsed files) and unfinished jobs' checkpoints.
    "ACCOUNT_MAX_STORED_MB": 20_480,
    # --- Datasets and training (training/) ---
    # Largest dataset sent in the body of POST /datasets (JSON "data" or a
    # multipart file); bigger ones go through an upload URL, up to DATASET_MAX_BYTES.
    "DATASET_MAX_DIRECT_BYTES": 10 * 1024**2,
    "DATASET_MAX_BYTES": 1024**3,
    # Parsing limits: rows kept, bytes per line (a longer line fails the
    # dataset), distinct labels of a classification dataset.
    "DATASET_MAX_ROWS": 1_000_000,
    "DATASET_MAX_LINE_BYTES": 1024**2,
    "DATASET_MAX_LABELS": 1000,
    # Memory of the process that parses a dataset: its address-space cap and its
    # sandbox's memory limit (a hostile file cannot take the host's memory).
    "DATASET_PARSE_MEMORY_MB": 4096,
    "ACCOUNT_MAX_DATASETS": 100,
    # Whether this process runs training jobs and dataset parsing (every
    # gunicorn worker does; the database decides which one runs what), how
    # often it looks for work, and how many jobs it trains at once.
    "TRAINER": True,
    "TRAINING_POLL_S": 2.0,
    "TRAINING_JOBS_PER_PROCESS": 1,
    # torch threads of a training process: with the web workers' threads, keep
    # them within the cores, or serving slows while a job trains.
    "TRAINING_TORCH_THREADS": 1,
    # Memory of a training process (its address-space cap on CPU, and its
    # sandbox's memory limit): a job whose batch or model does not fit fails
    # saying so, instead of taking the host's memory.
    "TRAINING_MEMORY_MB": 16384,
    # Scheduling niceness of training and dataset-parsing processes: when the
    # cores are busy, requests come first and a job takes what is left.
    "TRAINING_NICE": 10,
    # A job whose training process dies (killed, out of memory) is resumed
    # from its last epoch checkpoint, up to this many starts in all.
    "TRAINING_MAX_ATTEMPTS": 3,
    # Seconds a job or a dataset parse stays claimed by a process that stopped
    # renewing its claim (it died) before another process takes it over.
    "TRAINING_LEASE_S": 60.0,
    # Queued or running jobs an account may have at once (429 above).
    "ACCOUNT_MAX_ACTIVE_JOBS": 4,
    # Calls a private prediction URL answers per minute (429 above): the URL
    # needs no key, so whoever holds it spends its owner's compute.
    "PREDICTION_URL_RATE_PER_MIN": 60,
    # Asynchronous predictions (a task request sent with Prefer: respond-async):
    # whether this process runs them (every gunicorn worker does), how many it
    # runs at once (they share the models' batchers with the synchronous
    # requests), how often it looks for those queued through other processes,
    # how long one stays claimed by a process that stopped renewing its claim
    # (it died) before another runs it again, how many starts it gets, how many
    # an account may have queued or running (429 above), and how long a
    # finished one is kept (then deleted: GET /predictions/{id} answers 404).
    "PREDICTIONS": True,
    "PREDICTION_THREADS": 4,
    "PREDICTION_POLL_S": 1.0,
    "PREDICTION_LEASE_S": 30.0,
    "PREDICTION_MAX_ATTEMPTS": 3,
    "ACCOUNT_MAX_QUEUED_PREDICTIONS": 100,
    "PREDICTION_RETENTION_S": 86_400,
    # Webhooks of finished predictions: networks they may reach besides public
    # addresses (comma-separated CIDRs, e.g. "10.0.0.0/8"; loopback, private,
    # link-local and reserved addresses are refused unless listed), seconds per
    # call, calls before giving up, and the wait before the first retry
    # (doubled after each failure).
    "WEBHOOK_ALLOWED_NETWORKS": "",
    "WEBHOOK_TIMEOUT_S": 10.0,
    "WEBHOOK_MAX_ATTEMPTS": 5,
    "WEBHOOK_RETRY_S": 5.0,
    # Background work on a queue (app/work_queue.py): a Redis URL
    # (redis://host:6379/0) makes web processes only hand builds, dataset
    # parses, training jobs and asynchronous predictions to Redis, and
    # `flask --app wsgi worker` processes run them; empty runs them in every web
    # process, as the embedded default. The sweep: how often each worker looks
    # in the database for work whose message was lost or whose worker died.
    "QUEUE_URL": "",
    "QUEUE_SWEEP_S": 5.0,
    # The web UI (/ui): hours a sign-in lasts (the session also ends when its key
    # is revoked).
    "UI_SESSION_HOURS": 12.0,
    # Sessions one key may have at once; signing in again ends its oldest.
    "UI_SESSIONS_PER_KEY": 20,
    # Seconds a build stays claimed by a process that stopped renewing its
    # claim (it died) before another process takes it over.
    "BUILD_LEASE_S": 60.0,
    # --- Inference backend and token-aware batching (model_registry/onnx_*.py,
    # model_registry/token_batching.py) ---
    # "onnx": encoder models (sentence-transformers vectorisers, the emotion
    # classifier, NLI and extractive QA) are exported to ONNX once per model,
    # revision and library versions, and run with ONNX Runtime on the CPU
    # (TORCH_THREADS intra-op threads). "torch": none are. "auto": the catalogue's
    # vectorisers on ONNX on a CPU (measured 1.4-2x torch, bench/text_vectorisation.py),
    # everything else on torch. A model that does not export, or whose export does
    # not give torch's answers, is served with torch; the log says why.
    "BACKEND": "auto",
    # Per model, over BACKEND: comma-separated "catalogue key:backend" pairs
    # (all-MiniLM-L6-v2:onnx,bart-large-mnli:torch).
    "BACKEND_OVERRIDES": "",
    # Where exports are kept. Empty: beside the model's files when they are under
    # MODEL_DIR and writable, else DATA_DIR/onnx (packaged models, the Hugging
    # Face cache, user models). A shared volume lets replicas export once.
    "ONNX_CACHE_DIR": "",
    # int8 dynamic quantisation of ONNX vectorisers: empty (off) or which matrix
    # products: "all", "attention" (the attention projections) or
    # "attention-inner" (those of all but the first and last layers). A quantised
    # model whose worst cosine to its fp32 vectors on the calibration sentences
    # (model_registry/calibration.py) is below ONNX_INT8_MIN_COSINE is refused
    # (an error in the log) and its fp32 ONNX export serves instead.
    "ONNX_INT8": "",
    "ONNX_INT8_MIN_COSINE": 0.99,
    # Token-aware batching of text vectorisers: the most padded tokens (items x
    # the longest item) in one forward pass; a batch is cut into passes of
    # similar lengths within it. 0: passes are bounded by BATCH_MAX_SIZE only.
    # On one CPU thread, MiniLM's throughput is flat from 128 to 512 and falls
    # above (2.1x at 512 over no budget on mixed lengths); a GPU wants far more.
    "BATCH_MAX_TOKENS": 512,
    # Whether /metrics needs an API key (Prometheus scrapers usually have none).
    "METRICS_REQUIRE_KEY": False,
    # Per-account usage (app/usage.py, GET /usage, the UI's Usage page): each
    # account's inference requests, errors and latency per task and model, in
    # time buckets of USAGE_BUCKET_S seconds, kept USAGE_RETENTION_HOURS (older
    # buckets are deleted). Each process counts in memory and adds its counts to
    # the database every USAGE_FLUSH_S seconds (and when it stops), never once per
    # request; the counts of another process show up that late.
    "USAGE_BUCKET_S": 300,
    "USAGE_RETENTION_HOURS": 168,
    "USAGE_FLUSH_S": 5.0,
    # --- Resource limits of sandboxed processes (sandbox/cgroups.py) ---
    # Each sandboxed process tree (install, worker, training and dataset-parse
    # children) runs in a control group of its own: WORKER_MEMORY_MB bounds all
    # the memory the tree holds (memfd, shared memory, its /tmp and /dev/shm,
    # all its processes; no swap), SANDBOX_MAX_PROCESSES its processes and
    # threads (pids.max, bwrap's own two included). "auto": cgroup v2 where the
    # service's group has the memory and pids controllers, else cgroup v1 where
    # its memory hierarchy is writable, else none; "v2" / "v1": that one or no
    # user code at all; "off": none. Without one, memfd_create and System V
    # shared memory are denied instead (/readyz says which holds).
    "SANDBOX_CGROUP": "auto",
    # Where the groups are made: a group path within the hierarchy (v2: an
    # empty group delegated to the service, e.g. systemd's DelegateSubgroup;
    # v1: the same path in the memory and pids hierarchies). "": a folder
    # "infer-sandbox" in the service's own group (in v2, the service's processes
    # move to a leaf "service" first, as v2 asks of a group with children).
    "SANDBOX_CGROUP_PARENT": "",
    # --- Training and dataset-parsing children in the sandbox; stored-bytes quotas ---
    # As root, an account's training and dataset-parse children run as uid
    # BASE + (account id mod SANDBOX_UID_COUNT): uids that own nothing on the
    # host, in a range apart from the model versions' (SANDBOX_UID_BASE...).
    "TRAINING_SANDBOX_UID_BASE": 300_000,
    # CPU seconds one training attempt may use (all its threads together; past
    # it the process is killed and the job resumes from its last checkpoint,
    # within TRAINING_MAX_ATTEMPTS), and one dataset parse (past it the parse
    # fails): a bound on a child that spins, far above any real run.
    "TRAINING_CPU_S": 7 * 24 * 3600,
    "DATASET_PARSE_CPU_S": 3600,
    # --- Fair claiming of background work; webhook delivery ---
    # Background work is claimed fairly between accounts (app/fair_claims.py):
    # the next claim goes to the account with the fewest of that kind running,
    # and one account runs at most this many of each kind at once, counted in
    # the database across every process and replica (the rest wait, queued).
    # Defaults: half of what a default host (2 gunicorn workers) runs at once,
    # so another account always finds room: predictions 4 of 2 x 4
    # PREDICTION_THREADS; builds, dataset parses and training jobs 1 of 2.
    "ACCOUNT_MAX_RUNNING_PREDICTIONS": 4,
    "ACCOUNT_MAX_RUNNING_BUILDS": 1,
    "ACCOUNT_MAX_RUNNING_PARSES": 1,
    "ACCOUNT_MAX_RUNNING_JOBS": 1,
    # Webhooks are called on a pool of their own in each process that runs
    # predictions (predictions/webhook_pool.py), never on a prediction's thread:
    # WEBHOOK_THREADS calls at once, at most WEBHOOK_ACCOUNT_THREADS of them for
    # one account (a slow endpoint costs its thread up to WEBHOOK_TIMEOUT_S,
    # which bounds the whole call: connect, TLS, sending, the answer's status
    # and headers). Looking the host up is bounded apart, by
    # WEBHOOK_RESOLVE_TIMEOUT_S (2 x WEBHOOK_THREADS lookups at once).
    "WEBHOOK_THREADS": 4,
    "WEBHOOK_ACCOUNT_THREADS": 2,
    "WEBHOOK_RESOLVE_TIMEOUT_S": 5.0,
    # --- Uploaded Hugging Face folders and tokenizers, checked before loading ---
    # Largest config.json of an upload: the build parses it in the service's own
    # process (every format's), before any other check.
    "UPLOAD_MAX_CONFIG_KB": 1024,
    # Before an uploaded Hugging Face folder is loaded (uploads/hf_checks.py), a
    # process of its own, in the version's sandbox, builds the model from its
    # config on the meta device and compares it with the safetensors headers: its
    # memory cap (MiB; importing torch and transformers takes ~900 MB of address
    # space, an 8B-parameter model's meta build a few MB more) and its time limit
    # (seconds; ~5-20 s on 2 busy cores). A config whose model cannot be built
    # within them fails the build.
    "HF_CHECK_MEMORY_MB": 2048,
    "HF_CHECK_TIMEOUT_S": 120.0,
    # Most memory one uploaded folder's model may take as loaded (parameters and
    # buffers; MiB, also bounded by MODEL_MEMORY_BUDGET_MB; 0: only the budget).
    # The same as a code model's worker may use (WORKER_MEMORY_MB), so one account
    # cannot fill the budget shared with every other account's models.
    "HF_MAX_MODEL_MB": 4096,
    # Largest JSON or tokenizer file in an uploaded folder (config.json,
    # tokenizer.json, vocabularies, merges, SentencePiece models; MiB): the
    # loaders read them into the service's own memory. The largest widely used
    # ones are ~35 MB (Gemma 3's tokenizer.json).
    "HF_FILE_MAX_MB": 64,
    # --- Abandoned generations ---
    # While a non-streamed generation (/v1/completions, /v1/chat/completions,
    # /text-generation) waits for its model, its request thread looks at the
    # client's connection this often (seconds); a client found gone has its
    # rows stopped at their next token (a queued request is dropped unrun).
    # A look is one getsockopt call, so a short interval costs nothing; it
    # bounds the tokens generated for nobody to about this long's worth.
    # (The deadline, REQUEST_TIMEOUT_S from the submit, also ends every
    # generation, streamed or not, at its next token: 504.)
    "CLIENT_GONE_CHECK_S": 0.25,
    # --- Rate limits and per-account limits (app/rate_limits.py, app/account_limits.py) ---
    # Every account's default limits; an account's own (`flask accounts limits NAME`,
    # PUT /admin/accounts/{name}/limits) replace them. 0 means no limit. Requests per
    # minute count POSTs to the inference routes (the tasks, /custom, /predict, /v1
    # embeddings and completions, and their asynchronous submits); generation tokens
    # per minute are charged when a generation is admitted, as OpenAI does: the
    # prompt's estimated tokens (characters / 4) plus max tokens x outputs. Both are
    # off by default: a self-hosted install sets them for its tenants.
    "ACCOUNT_REQUESTS_PER_MIN": 0,
    "ACCOUNT_TOKENS_PER_MIN": 0,
    # How many of one account's requests one process serves at once (per process;
    # see app/admission.py).
    "ACCOUNT_MAX_IN_FLIGHT": 48,
    # Seconds a process trusts the limits it read for an account: a change through
    # the CLI or another process applies there within that time (0: read every request).
    "ACCOUNT_LIMITS_CACHE_TTL_S": 5.0,
    # Where the rate-limit counters live, as a `limits` storage URI: "redis://host:6379/1"
    # holds across workers and replicas; "memory://" counts per process (each gunicorn
    # worker would allow the whole limit); "sqlite:////path/file.db" one host's processes.
    # Empty: the Redis of QUEUE_URL when set, else DATA_DIR/rate_limits.db (this host's
    # processes). Unreachable storage lets requests pass (logged) rather than refusing all.
    "RATE_LIMIT_STORAGE": "",
    # Comma-separated account names whose keys may read and set any account's limits
    # (GET/PUT /admin/accounts/{name}/limits); every other key gets 404 there. Empty:
    # no operator API (the CLI still works).
    "ADMIN_ACCOUNTS": "",
    # --- Fair share of the server and the models between accounts (app/admission.py) ---
}


def _parse(raw: str, default):
    if isinstance(default, bool):
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def load_config(environ=None) -> dict:
    """Defaults overridden by INFER_* environment variables."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        raw = environ.get(ENV_PREFIX + key)
        if raw is None and key == "DATABASE_URL":
            raw = environ.get("DATABASE_URL")
        if raw is not None:
            try:
                config[key] = _parse(raw, default)
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{key}: {exc}") from None
    return config


def finalise(config: dict) -> dict:
    """Fill in the settings that are derived from others."""
    data_dir = os.path.abspath(config["DATA_DIR"])
    config["DATA_DIR"] = data_dir
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = "sqlite:///" + os.path.join(data_dir, "infer.db")
    if not config["MODEL_DIR"]:
        config["MODEL_DIR"] = os.path.join(data_dir, "models")
    return config
