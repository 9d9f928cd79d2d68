"""POST /models/{name}/train and /jobs: start training jobs, follow and cancel them.

Everything a job could fail on before it starts is checked here, so a mistake
is a 4xx naming what to fix, not a job that fails minutes later: the dataset
(yours, ready, of a format the task trains on), the base model (one the task's
trainer can train from), the hyperparameters (the trainer's schema and limits).
"""

import time

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import func, select

from app.auth import current_account_id
from app.blueprint import Blueprint
from app.db import Dataset, TrainingJob, UserModel, owned, session
from app.pages import newest_first_page
from app.settings import current_settings
from core.errors import InvalidInput, ModelUnavailable, NotFound, TooManyRequests
from model_registry.availability import presence
from model_registry.catalogue import MODELS, TASK_MODELS
from model_registry.resolve import hub_offline, unavailable_message
from tasks.common import StrictSchema
from tasks.spec import NoTrainer, trainable_tasks, trainer_for
from uploads.api import RESERVED_NAMES, Conflict, UploadUrlBody, iso_time
from uploads.quotas import check_new_upload, check_room
from uploads.user_models import lookup_model

from .datasets import FORMAT_TASKS
from .datasets_api import find_dataset
from .paths import new_id

blp = Blueprint("jobs", __name__, description="Training jobs: train your models on your datasets.")

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


class TrainBody(StrictSchema):
    task = fields.String(required=True, metadata={"description": "The task the trained model serves."})
    dataset_id = fields.String(required=True)
    base_model = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A global model (public name or catalogue key) the task's trainer can train from; "
                       "left out: the trainer's default."})
    validation_split = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0.0, 0.5), metadata={
        "description": "The share of the dataset held out for validation (default 0.2; 0: none, then there is no "
                       "validation loss and the last epoch is kept)."})
    validation_dataset_id = fields.String(load_default=None, allow_none=True, metadata={
        "description": "Validate on this dataset (same format) instead of a split."})
    hyperparameters = fields.Dict(load_default=dict, metadata={
        "description": "epochs, batch_size, learning_rate, seed, early_stopping_patience and the trainer's own "
                       "(see docs/user-guide/training.md's table); left out: the trainer's defaults. The job reports what it used."})

    @validates_schema
    def one_validation(self, data, **kwargs):
        if data.get("validation_split") is not None and data.get("validation_dataset_id"):
            raise ValidationError("Send validation_split or validation_dataset_id, not both.", "validation_dataset_id")


class JobsQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(ACTIVE + FINISHED))
    model = fields.String(load_default=None)
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    after = fields.String(load_default=None, metadata={"description": "The id of the last job of the previous page."})


class JobObject(Schema):
    id = fields.String()
    object = fields.String(metadata={"description": "training.job"})
    model = fields.String()
    task = fields.String()
    base_model = fields.String(allow_none=True)
    dataset_id = fields.String()
    validation_dataset_id = fields.String(allow_none=True)
    validation_split = fields.Float(allow_none=True)
    hyperparameters = fields.Dict(metadata={"description": "What the job uses: yours, with every default filled in."})
    status = fields.String(metadata={"description": "queued, running, succeeded, failed or cancelled"})
    message = fields.String()
    epochs = fields.List(fields.Dict(), metadata={"description": (
        "Per finished epoch, while it runs: epoch, step, train_loss, validation_loss, learning_rate, elapsed_s, "
        "and the task's metrics (accuracy, macro_f1, per_class, confusion_matrix; perplexity; r2, mae).")})
    best_epoch = fields.Integer(allow_none=True)
    metrics = fields.Dict(allow_none=True, metadata={"description": "The kept epoch's statistics."})
    train_rows = fields.Integer(allow_none=True)
    validation_rows = fields.Integer(allow_none=True)
    samples_per_second = fields.Float(allow_none=True)
    version = fields.Integer(allow_none=True, metadata={"description": "The model version it made."})
    attempts = fields.Integer(metadata={"description": "Starts: more than 1 when it resumed after a crash."})
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)


class JobList(Schema):
    object = fields.String()
    data = fields.List(fields.Nested(JobObject))
    has_more = fields.Boolean()


class TrainerInfo(Schema):
    task = fields.String()
    library = fields.String()
    dataset_formats = fields.List(fields.String())
    default_base_model = fields.String(allow_none=True)
    base_models = fields.List(fields.String(), metadata={"description": "Global models it can train from."})
    base_model_files = fields.Dict(metadata={"description": (
        "Per base model: `available` (its files are on this server) and, when not, `download`, the command "
        "that gets them. With the hub offline, a job from an absent base model is refused (503).")})
    hyperparameters = fields.Dict(metadata={"description": "name -> {type, default, min, max, choices, description}"})
    limitations = fields.String()


class JobLog(Schema):
    id = fields.String()
    status = fields.String()
    log = fields.String()


def job_object(job: TrainingJob, with_epochs: bool = True) -> dict:
    return {
        "id": job.id, "object": "training.job", "model": job.model_name, "task": job.task,
        "base_model": job.base_model, "dataset_id": job.dataset_id,
        "validation_dataset_id": job.validation_dataset_id, "validation_split": job.validation_split,
        "hyperparameters": job.hyperparameters, "status": job.status, "message": job.message,
        "epochs": list(job.epochs or []) if with_epochs else [], "best_epoch": job.best_epoch,
        "metrics": job.metrics, "train_rows": job.train_rows, "validation_rows": job.validation_rows,
        "samples_per_second": job.samples_per_second, "version": job.version_number, "attempts": job.attempts,
        "created_at": iso_time(job.created_at), "started_at": iso_time(job.started_at),
        "finished_at": iso_time(job.finished_at),
    }


def find_job(db_session, account_id: int, job_id: str) -> TrainingJob:
    job = owned(db_session, TrainingJob, job_id, account_id)
    if job is None:
        raise NotFound(f"Job {job_id!r} not found; GET /jobs lists yours.")
    return job


def _invalid(field: str, problem: str):
    return InvalidInput(f"Invalid request. {field}: {problem}", errors={field: [problem]})


def _base_model_key(task: str, trainer, name: str | None) -> str | None:
    """The catalogue key of the model to train from (a public name or a key)."""
    if not trainer.base_loaders:
        if name:
            raise _invalid("base_model", f"{task} trains from scratch ({trainer.library}); send no base_model.")
        return None
    if name is None:
        return trainer.default_base_model
    key = TASK_MODELS.get(task, {}).get(name, name)
    trainable = sorted(spec.key for spec in MODELS.values() if spec.loader in trainer.base_loaders)
    if key not in MODELS:
        raise _invalid("base_model", f"{name!r} is not a global model. {task} trains from: {', '.join(trainable)}.")
    if MODELS[key].loader not in trainer.base_loaders:
        raise _invalid("base_model", f"{name!r} cannot be trained for {task} ({trainer.library} trains a "
                                     f"{' or '.join(trainer.base_loaders)} model); choose one of {', '.join(trainable)}.")
    return key


def _check_base_model_files(key: str | None) -> None:
    """With the hub offline, a base model whose files are not here would fail the job
    minutes later, in the training child: refuse it now, saying how to get them."""
    if key is None or not hub_offline():
        return
    model_dir = current_settings().model_dir
    if not presence(MODELS[key], model_dir).available:
        raise ModelUnavailable(unavailable_message(MODELS[key], model_dir) + " Then start the job again.")


def _ready_dataset(db_session, account_id: int, dataset_id: str, field: str, task: str, trainer) -> Dataset:
    dataset = find_dataset(db_session, account_id, dataset_id)
    if dataset.status != "ready":
        problem = (f"dataset {dataset_id} failed to parse: {dataset.message}" if dataset.status == "failed"
                   else f"dataset {dataset_id} is {dataset.status}; wait until it is ready")
        raise Conflict(problem[0].upper() + problem[1:] + ".")
    if dataset.format not in trainer.dataset_formats:
        raise _invalid(field, f"dataset {dataset_id} is {dataset.format} data, which trains "
                              f"{', '.join(FORMAT_TASKS.get(dataset.format, [])) or 'nothing'}; {task} trains on "
                              f"{', '.join(trainer.dataset_formats)}.")
    return dataset


def describe_field(field) -> dict:
    """One hyperparameter as GET /trainers shows it: its type, default and limits."""
    described = {"type": type(field).__name__.lower(), "default": field.load_default,
                 "description": field.metadata.get("description", "")}
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            described.update(min=validator.min, max=validator.max)
        elif isinstance(validator, validate.OneOf):
            described["choices"] = list(validator.choices)
    return described


@blp.route("/trainers")
class Trainers(MethodView):
    @blp.response(200, TrainerInfo(many=True))
    def get(self):
        """What can be trained: per task, the library, dataset formats, base models and hyperparameters with their limits"""
        described = []
        for task in trainable_tasks():
            trainer = trainer_for(task)
            base_models = sorted(key for key, spec in MODELS.items() if spec.loader in trainer.base_loaders)
            described.append({
                "task": task, "library": trainer.library, "dataset_formats": list(trainer.dataset_formats),
                "default_base_model": trainer.default_base_model,
                "base_models": base_models,
                "base_model_files": {key: presence(MODELS[key], current_settings().model_dir).fields()
                                     for key in base_models},
                "hyperparameters": {name: describe_field(field)
                                    for name, field in trainer.hyperparameters().fields.items()},
                "limitations": trainer.limitations,
            })
        return described


@blp.route("/models/<string:name>/train")
class Train(MethodView):
    @blp.arguments(TrainBody)
    @blp.response(202, JobObject)
    def post(self, body, name):
        """Start a training job: a new version of your model `name` (created if need be) when it succeeds"""
        config = current_settings()
        name_problem = UploadUrlBody().validate({"model_name": name})
        if name_problem:
            raise _invalid("name", name_problem["model_name"][0])
        if name in RESERVED_NAMES:
            raise Conflict(f"{name!r} is the name of a global model; train into a name of your own.")
        try:
            trainer = trainer_for(body["task"])
        except NoTrainer:
            raise _invalid("task", f"{body['task']!r} cannot be trained; tasks that can: "
                                   f"{', '.join(trainable_tasks())}.") from None
        db_session = session()
        account_id = current_account_id()
        dataset = _ready_dataset(db_session, account_id, body["dataset_id"], "dataset_id", body["task"], trainer)
        if body["validation_dataset_id"]:
            validation = _ready_dataset(db_session, account_id, body["validation_dataset_id"],
                                        "validation_dataset_id", body["task"], trainer)
            if validation.format != dataset.format:
                raise _invalid("validation_dataset_id", f"it is {validation.format} data; the dataset is "
                                                        f"{dataset.format}.")
        base_model = _base_model_key(body["task"], trainer, body["base_model"])
        _check_base_model_files(base_model)
        try:
            hyperparameters = trainer.hyperparameters().load(body["hyperparameters"])
        except ValidationError as exc:
            errors = {f"hyperparameters.{key}": value for key, value in exc.messages.items()}
            problems = "; ".join(f"{key}: {' '.join(map(str, value))}" for key, value in errors.items())
            raise InvalidInput(f"Invalid request. {problems}", errors=errors) from None
        problem = trainer.check(hyperparameters, dataset.stats or {})
        if problem:
            raise _invalid("hyperparameters", problem)
        active = db_session.scalar(select(func.count()).select_from(TrainingJob).where(
            TrainingJob.account_id == account_id, TrainingJob.status.in_(ACTIVE)))
        if active >= config.account_max_active_jobs:
            raise TooManyRequests(f"This account has {active} queued or running jobs; the limit is "
                                  f"{config.account_max_active_jobs} (INFER_ACCOUNT_MAX_ACTIVE_JOBS). Wait for one "
                                  "to finish or cancel one.", headers={"Retry-After": "60"})
        check_room(db_session, config, account_id, "start a training job")  # its checkpoints and version count
        model = lookup_model(db_session, account_id, name)
        if model is None:
            check_new_upload(db_session, config, account_id, new_model=True)
            model = UserModel(account_id=account_id, name=name, tasks=[])
            db_session.add(model)
            db_session.flush()
        split = body["validation_split"]
        job = TrainingJob(
            id=new_id("job"), seq=time.time_ns(), account_id=account_id, model_id=model.id, model_name=name,
            task=body["task"], base_model=base_model, dataset_id=dataset.id,
            validation_dataset_id=body["validation_dataset_id"],
            validation_split=None if body["validation_dataset_id"] else (0.2 if split is None else split),
            hyperparameters=hyperparameters, epochs=[], log="",
        )
        db_session.add(job)
        db_session.commit()
        current_app.extensions["work"].submit("train", job.id)
        return job_object(job), 202, {"Location": f"/jobs/{job.id}"}


@blp.route("/jobs")
class Jobs(MethodView):
    @blp.arguments(JobsQuery, location="query")
    @blp.response(200, JobList)
    def get(self, query):
        """Your training jobs, newest first, a page at a time (after: the last id of the previous page)"""
        db_session = session()
        account_id = current_account_id()
        statement = select(TrainingJob).where(TrainingJob.account_id == account_id)
        if query["status"]:
            statement = statement.where(TrainingJob.status == query["status"])
        if query["model"]:
            statement = statement.where(TrainingJob.model_name == query["model"])
        after = find_job(db_session, account_id, query["after"]) if query["after"] else None
        return newest_first_page(db_session, statement, TrainingJob, after, query["limit"],
                                 lambda job: job_object(job, with_epochs=False))


@blp.route("/jobs/<string:job_id>")
class Job(MethodView):
    @blp.response(200, JobObject)
    def get(self, job_id):
        """One of your jobs: its state, hyperparameters, timings and statistics per epoch"""
        return job_object(find_job(session(), current_account_id(), job_id))


@blp.route("/jobs/<string:job_id>/cancel")
class CancelJob(MethodView):
    @blp.response(200, JobObject)
    def post(self, job_id):
        """Cancel a queued or running job (a running one stops within seconds); a finished one is left as it is"""
        db_session = session()
        job = find_job(db_session, current_account_id(), job_id)
        if job.status in FINISHED:
            raise Conflict(f"Job {job_id} already {job.status}.")
        current_app.extensions["training"].cancel(db_session, job)
        return job_object(job)


@blp.route("/jobs/<string:job_id>/log")
class JobLogResource(MethodView):
    @blp.response(200, JobLog)
    def get(self, job_id):
        """The job's log: what it did, and why it failed"""
        job = find_job(session(), current_account_id(), job_id)
        return {"id": job.id, "status": job.status, "log": job.log}
