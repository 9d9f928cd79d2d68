"""The application factory."""

import dataclasses
import logging
import os
from functools import partial

from flask import Flask
from flask_smorest import Api

from api import limits as limits_api
from api.keys import blp as keys_blp
from api.usage import blp as usage_blp
from core.database import Database, one_process_at_a_time
from core.keys import KeyCache, ensure_bootstrap_key
from core.settings import FIELDS, Settings
from web import account_limits, admission, body_limits
from web import database as web_database
from web import errors, metrics, rate_limits, request_id, usage
from web.auth import require_api_key
from web.json_provider import OrjsonProvider

from .cli import accounts_cli, keys_cli
from .db_cli import db_cli
from .docs_assets import URL_PREFIX as DOCS_ASSETS_URL
from .docs_assets import docs_assets
from .front_door import front_door
from .health import health
from .worker_cli import worker_command

API_TITLE = "Task inference API"
API_VERSION = "1.0.0"

OPENAPI_SETTINGS = {
    "API_TITLE": API_TITLE,
    "API_VERSION": API_VERSION,
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": DOCS_ASSETS_URL,
    "API_SPEC_OPTIONS": {
        "info": {
            "description": "Self-hosted task inference, compatible with the Backprop API. "
            "Every task and model endpoint needs an API key, in the x-api-key header or as "
            "Authorization: Bearer <key>. /v1 follows OpenAI's API: OpenAI SDKs work by changing their base URL."
        },
        "components": {
            "securitySchemes": {
                "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                # OpenAI's SDKs send the key this way.
                "BearerAuth": {"type": "http", "scheme": "bearer"},
            }
        },
        # Either one: a list of alternatives.
        "security": [{"ApiKeyAuth": []}, {"BearerAuth": []}],
    },
}

# The upload PUTs are authorised by their URL's signature, a prediction URL by its
# secret, not by an API key.
PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz", "health.metrics", "models.receive_upload",
                    "datasets.receive_dataset_upload", "prediction_urls.predict_with_url", "docs_assets.asset",
                    "front_door.index"}


def create_app(test_config: dict | None = None, bootstrap_key: bool | None = None,
               start_builder: bool | None = None, manage_schema: bool = True, preload: bool = True) -> Flask:
    """Build the app from defaults, INFER_* environment variables and test_config.

    bootstrap_key overrides the BOOTSTRAP_KEY setting; gunicorn passes False to
    its workers because its master already did it once (see gunicorn.conf.py).
    start_builder overrides the BUILDER, TRAINER and PREDICTIONS settings: wsgi.py passes
    False so that a CLI command never claims a build or training job; gunicorn
    starts them in each worker. manage_schema False: neither upgrade nor check
    the database's schema revision (wsgi.py, for the `db` commands, which do).
    preload False: load no model ahead (the `db` commands serve nothing).
    """
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    flask_keys, overrides = split_test_config(app, test_config or {})
    settings = Settings.from_environ(overrides=overrides)
    app.extensions["settings"] = settings  # read through web/settings.py current_settings()
    app.config.update(flask_keys)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length  # Flask answers 413 above it
    app.config.update(OPENAPI_SETTINGS)
    app.config["PUBLIC_ENDPOINTS"] = set(PUBLIC_ENDPOINTS)
    if settings.metrics_require_key:
        app.config["PUBLIC_ENDPOINTS"].discard("health.metrics")
    make_data_dir_private(settings.data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    _configure_torch(settings)

    database = web_database.init_app(app, Database(
        settings.database_url, pool_size=settings.db_pool_size,
        migrate=manage_schema and settings.migrate_on_start, check=manage_schema))
    from model_registry import ModelRegistry

    registry = ModelRegistry(
        settings, on_load=metrics.on_model_load, on_evict=metrics.on_model_evict, on_batch=metrics.on_batch
    )
    app.extensions["models"] = registry

    from uploads.builder import Builder
    from uploads.model_sandbox import ModelSandbox, sandbox_from_config
    from uploads.resolver import ModelResolver
    from uploads.storage import make_storage
    from uploads.user_models import UserModels

    app.extensions["sandbox"] = model_sandbox = ModelSandbox(settings, sandbox_from_config(settings))
    app.extensions["storage"] = storage = make_storage(settings)
    app.extensions["user_models"] = user_models = UserModels(settings, registry, model_sandbox, storage)
    app.extensions["resolver"] = ModelResolver(registry, user_models, web_database.session)
    app.extensions["builder"] = builder = Builder(
        settings, database.sessions, storage, registry.device, registry.half, model_sandbox,
        after_poll=lambda: user_models.unload_stale(database.sessions),
    )

    from training.dataset_parses import DatasetParses
    from training.jobs import TrainingJobs
    from training.sandboxed import ChildSandbox

    children = ChildSandbox(settings, model_sandbox.sandbox)  # parses' and training jobs' sandboxes
    app.extensions["dataset_parses"] = parses = DatasetParses(settings, database.sessions, storage, children)
    app.extensions["training"] = training_jobs = TrainingJobs(settings, database.sessions, storage, children)

    from api.prediction_dispatch import run_in_background, run_metered
    from api.webhook_payloads import payload_of
    from core.work import make_work, start_unloading_stale
    from predictions.batches import BatchRunner
    from predictions.evaluations import EvaluationRunner
    from predictions.runner import PredictionRunner

    app.extensions["predictions"] = prediction_runner = PredictionRunner(
        partial(run_in_background, app), settings, database.sessions, partial(payload_of, app))
    # A batch's lines and an evaluation's requests go down the asynchronous predictions'
    # path, each charged to the account's rate limits as it runs (waiting for room).
    app.extensions["batches"] = batch_runner = BatchRunner(partial(run_metered, app), settings,
                                                           database.sessions, storage)
    app.extensions["evaluations"] = evaluation_runner = EvaluationRunner(partial(run_metered, app), settings,
                                                                         database.sessions, storage)
    app.extensions["work"] = work = make_work(settings)
    for runner in (builder, parses, training_jobs, prediction_runner, batch_runner, evaluation_runner):
        work.add(runner)
    if work.queued:
        # Workers (`flask --app wsgi worker`) run the work; this process only
        # submits it. gunicorn's post_worker_init reads these settings too.
        # (The local `settings` keeps what was asked: its `builder` starts the thread
        # that unloads replaced versions below.)
        app.extensions["settings"] = dataclasses.replace(settings, builder=False, trainer=False, predictions=False)

    metrics.init_app(app)
    usage.init_app(app, database)  # per-account usage, counted where the metrics are
    app.extensions["key_cache"] = KeyCache(settings.auth_cache_ttl_s)
    account_limits.init_app(app, database)  # each account's limits, cached per process
    request_id.init_app(app)  # before require_api_key: a 401 carries an id too
    body_limits.init_app(app)  # before any hook reads a body
    app.before_request(require_api_key)
    admission.init_app(app)  # after the key check: it counts the account's requests
    rate_limits.init_app(app)  # after the key check, before an async submit is queued: it charges the account

    rest_api = Api(app)
    import openai_api
    from api import predictions as async_api
    from api import task_routes
    from api.batches import blp as batches_blp
    from api.datasets import blp as datasets_blp
    from api.evaluations import blp as evaluations_blp
    from api.jobs import blp as jobs_blp
    from api.models import blp as models_blp
    from api.prediction_urls import blp as prediction_urls_blp
    from api.versions import blp as versions_blp
    from openai_api import common as openai_common

    task_routes.register(rest_api)
    openai_api.register(rest_api)
    # What usage counts and rate limits charge (web/usage.py): every route that runs a model.
    app.extensions["inference_routes"] = {**task_routes.inference_routes(),
                                          **{path: task for task, paths in openai_common.ENDPOINTS_FOR_TASK.items()
                                             for path in paths}}
    rest_api.register_blueprint(models_blp)
    rest_api.register_blueprint(versions_blp)
    rest_api.register_blueprint(datasets_blp)
    rest_api.register_blueprint(jobs_blp)
    rest_api.register_blueprint(evaluations_blp)
    rest_api.register_blueprint(prediction_urls_blp)
    rest_api.register_blueprint(async_api.blp)
    rest_api.register_blueprint(batches_blp)
    rest_api.register_blueprint(keys_blp)
    rest_api.register_blueprint(usage_blp)
    limits_api.register(rest_api)
    app.register_blueprint(health)
    app.register_blueprint(docs_assets)
    app.register_blueprint(front_door)
    import ui

    ui.init_app(app)
    errors.init_app(app)  # after Api(): replaces flask-smorest's own error handler
    async_api.init_app(app, rest_api)  # after every route, and after require_api_key: it needs the account
    app.cli.add_command(keys_cli)
    app.cli.add_command(accounts_cli)
    app.cli.add_command(worker_command)
    app.cli.add_command(db_cli)
    app.extensions["api"] = rest_api

    if settings.bootstrap_key if bootstrap_key is None else bootstrap_key:
        with one_process_at_a_time(database.engine), database.sessions() as session:
            ensure_bootstrap_key(session, settings.bootstrap_account, settings.bootstrap_key_file)
    from .preload import preload_entries

    # In a thread: under gunicorn, post_worker_init waits for it before the worker
    # accepts a request (app/preload.py).
    registry.start_preload(preload_entries(settings.preload_models) if preload else [])
    loops = not work.queued
    if loops and (settings.builder if start_builder is None else start_builder):
        builder.start()
    if loops and (settings.trainer if start_builder is None else start_builder):
        parses.start()
        training_jobs.start()
    if loops and (settings.predictions if start_builder is None else start_builder):
        prediction_runner.start()
        batch_runner.start()
        evaluation_runner.start()
    if work.queued and (settings.builder if start_builder is None else start_builder):
        start_unloading_stale(app)
    return app


def prepare_database(test_config: dict | None = None) -> None:
    """Bring the schema up to date (or, with INFER_MIGRATE_ON_START off, refuse
    one that is not) and, on a database with no key, create the first key.

    gunicorn's master calls this once before forking workers, without building
    the app: no model library is imported and no thread started before fork.
    """
    settings = Settings.from_environ(overrides=test_config)
    make_data_dir_private(settings.data_dir)
    database = Database(settings.database_url, migrate=settings.migrate_on_start)
    try:
        if settings.bootstrap_key:
            with one_process_at_a_time(database.engine), database.sessions() as session:
                ensure_bootstrap_key(session, settings.bootstrap_account, settings.bootstrap_key_file)
    finally:
        database.engine.dispose()


def split_test_config(app: Flask, test_config: dict) -> tuple[dict, dict]:
    """test_config's Flask keys (TESTING: those Flask has a default for, that are not
    a setting of ours) apart from its settings; an unknown key is an error
    (Settings.from_environ says which), not a setting that silently does nothing."""
    flask_keys = {key: value for key, value in test_config.items()
                  if key in app.config and key.lower() not in FIELDS}
    return flask_keys, {key: value for key, value in test_config.items() if key not in flask_keys}


def make_data_dir_private(data_dir: str) -> None:
    """The data dir holds the database, the URL-signing secret and every
    account's models: owner-only, and so is everything the service creates
    (a restrictive umask), so no other user of the host, and no sandboxed
    model, can read any of it."""
    os.umask(0o077)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    # A data dir made by an older release (or by hand) may be readable by all.
    for name in ("", "infer.db", "infer.db-wal", "infer.db-shm", "secret_key"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path) and os.stat(path).st_uid == os.geteuid():
            os.chmod(path, 0o700 if name == "" else 0o600)


def _configure_torch(settings: Settings) -> None:
    import torch

    threads = settings.torch_threads
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
