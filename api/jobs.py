"""POST /models/{name}/train and /jobs: start training jobs, follow and cancel them.

The views read the request and shape the answer; services/jobs.py checks
everything a job could fail on before it starts (dataset, base model,
hyperparameters, the account's limits) and queues it.
"""

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.webhook_urls import check_webhook
from core.pages import newest_first_page
from core.tables import TrainingJob
from core.times import iso_time
from services import jobs
from services.jobs import ACTIVE, FINISHED
from services.trainers import described_trainers
from tasks.common import StrictSchema
from web.blueprint import Blueprint
from web.database import session
from web.service_context import api_context
from web.settings import current_settings

blp = Blueprint("jobs", __name__, description="Training jobs: train your models on your datasets.")


class SearchBody(StrictSchema):
    method = fields.String(load_default="random", validate=validate.OneOf(["random", "halving"]), metadata={
        "description": "random: every configuration trains on the whole training set; halving: successive halving, "
                       "all start on a share of the rows and the best third go on to three times as many."})
    trials = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "Configurations to try (at most INFER_TRAINING_SEARCH_MAX_TRIALS); left out: 8, or that "
                       "setting if it is lower."})
    time_budget_s = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "Seconds the search may take (at most INFER_TRAINING_SEARCH_MAX_TIME_S, its default); a "
                       "trial started within it ends, the rest are over_budget."})
    space = fields.Dict(load_default=None, allow_none=True, metadata={
        "description": "Per hyperparameter: a list of values, or {min, max, log}; left out: the trainer's default "
                       "space (docs/user-guide/training.md). Hyperparameters it leaves out keep the job's."})
    max_latency_ms = fields.Float(load_default=None, allow_none=True,
                                  validate=validate.Range(min=0, min_inclusive=False), metadata={
        "description": "Reject a configuration whose median time to answer one validation row, measured on this "
                       "server, is above this."})
    max_size_mb = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, min_inclusive=False),
                               metadata={"description": "Reject a configuration whose files take more MiB than this."})
    metric = fields.String(load_default=None, allow_none=True, metadata={
        "description": "What ranks the trials: accuracy, macro_f1, r2, mae, mse or validation_loss (the lower the "
                       "better for the last three); left out: accuracy, else r2."})


class TrainBody(StrictSchema):
    task = fields.String(required=True, metadata={"description": "The task the trained model serves."})
    dataset_id = fields.String(required=True)
    dataset_revision = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1), metadata={
        "description": "The dataset's revision to train on (GET /datasets/{id}/revisions); left out: the latest. "
                       "The job keeps to it, whatever edits come later."})
    base_model = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A global model (public name or catalogue key) the task's trainer can train from, or one "
                       "of your own versions to keep training: \"name\" (its serving version) or \"name@N\", "
                       "trained for the same task (its hyperparameters are the defaults); left out: the trainer's "
                       "default."})
    validation_split = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0.0, 0.5), metadata={
        "description": "The share of the dataset held out for validation (default 0.2; 0: none, then there is no "
                       "validation loss and the last epoch is kept)."})
    validation_dataset_id = fields.String(load_default=None, allow_none=True, metadata={
        "description": "Validate on this dataset (same format) instead of a split."})
    test_dataset_id = fields.String(load_default=None, allow_none=True, metadata={
        "description": "Score the kept epoch on this dataset (same format) once, at the end: the job's "
                       "test_metrics and the version's test_ metrics."})
    hyperparameters = fields.Dict(load_default=dict, metadata={
        "description": "epochs, batch_size, learning_rate, seed, early_stopping_patience and the trainer's own "
                       "(see docs/user-guide/training.md's table); left out: the trainer's defaults. The job reports what it used."})
    webhook = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A URL called once when the job ends (succeeded, failed or cancelled) with the job object, signed like prediction webhooks (X-Infer-Signature, GET /webhook-secret)."})
    search = fields.Nested(SearchBody, load_default=None, allow_none=True, metadata={
        "description": "Search hyperparameters (tabular and text-classification): try several configurations, "
                       "drawn from `space` over `hyperparameters` (seeded by its seed), and keep the best as the "
                       "version; the job's trials are the leaderboard."})

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
    dataset_revision = fields.Integer(allow_none=True, metadata={
        "description": "The dataset's revision it trains on (null: a job from before revisions, on revision 1)."})
    validation_dataset_id = fields.String(allow_none=True)
    validation_dataset_revision = fields.Integer(allow_none=True, metadata={
        "description": "The validation dataset's revision it validates on: its latest when the job started."})
    validation_split = fields.Float(allow_none=True)
    test_dataset_id = fields.String(allow_none=True)
    test_dataset_revision = fields.Integer(allow_none=True, metadata={
        "description": "The test dataset's revision it scores (its latest when the job started)."})
    parent = fields.Dict(allow_none=True, metadata={
        "description": "The version it keeps training from, {model, version}; null when it starts from base_model."})
    hyperparameters = fields.Dict(metadata={"description": "What the job uses: yours, with every default filled in."})
    status = fields.String(metadata={"description": "queued, running, succeeded, failed or cancelled"})
    message = fields.String()
    epochs = fields.List(fields.Dict(), metadata={"description": (
        "Per finished epoch, while it runs: epoch, step, train_loss, validation_loss, learning_rate, elapsed_s, "
        "the task's metrics on the validation rows (accuracy, macro_f1, per_class, confusion_matrix; perplexity; "
        "r2, mae) and, where the trainer reports them, the same on the training rows prefixed train_ "
        "(train_accuracy...; at most INFER_TRAINING_TRAIN_METRICS_ROWS rows, train_metrics_rows says how many).")})
    best_epoch = fields.Integer(allow_none=True)
    metrics = fields.Dict(allow_none=True, metadata={"description": "The kept epoch's statistics."})
    test_metrics = fields.Dict(allow_none=True, metadata={
        "description": "The kept epoch's metrics on test_dataset_id (null: none, or not finished)."})
    train_rows = fields.Integer(allow_none=True)
    validation_rows = fields.Integer(allow_none=True)
    samples_per_second = fields.Float(allow_none=True)
    version = fields.Integer(allow_none=True, metadata={"description": "The model version it made."})
    search = fields.Dict(allow_none=True, metadata={"description": "A search job's search, its space filled in."})
    trials = fields.List(fields.Dict(), allow_none=True, metadata={"description": (
        "A search's leaderboard, best first: per configuration its trial number, hyperparameters (searched: the "
        "drawn ones), status (queued, running, kept, eliminated, rejected, over_budget, failed) and reason, "
        "metric and score, metrics, latency_ms, size_mb, share (of the training rows), rounds, rank and best.")})
    attempts = fields.Integer(metadata={"description": "Starts: more than 1 when it resumed after a crash."})
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    webhook = fields.String(allow_none=True)


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
        "dataset_revision": job.dataset_revision, "validation_dataset_id": job.validation_dataset_id,
        "validation_dataset_revision": job.validation_dataset_revision, "validation_split": job.validation_split,
        "test_dataset_id": job.test_dataset_id, "test_dataset_revision": job.test_dataset_revision,
        "parent": job.parent, "test_metrics": job.test_metrics,
        "hyperparameters": job.hyperparameters, "status": job.status, "message": job.message,
        "epochs": list(job.epochs or []) if with_epochs else [], "best_epoch": job.best_epoch,
        "metrics": job.metrics, "train_rows": job.train_rows, "validation_rows": job.validation_rows,
        "samples_per_second": job.samples_per_second, "version": job.version_number, "attempts": job.attempts,
        "search": job.search, "trials": job.trials,
        "created_at": iso_time(job.created_at), "started_at": iso_time(job.started_at),
        "finished_at": iso_time(job.finished_at), "webhook": job.webhook,
    }


@blp.route("/trainers")
class Trainers(MethodView):
    @blp.response(200, TrainerInfo(many=True))
    def get(self):
        """What can be trained: per task, the library, dataset formats, base models and hyperparameters with their limits"""
        return described_trainers(current_settings().model_dir)


@blp.route("/models/<string:name>/train")
class Train(MethodView):
    @blp.arguments(TrainBody)
    @blp.response(202, JobObject)
    def post(self, body, name):
        """Start a training job: a new version of your model `name` (created if need be) when it succeeds"""
        check_webhook(body.get("webhook"))
        job = jobs.start(api_context(), name, body)
        return job_object(job), 202, {"Location": f"/jobs/{job.id}"}


@blp.route("/jobs")
class Jobs(MethodView):
    @blp.arguments(JobsQuery, location="query")
    @blp.response(200, JobList)
    def get(self, query):
        """Your training jobs, newest first, a page at a time (after: the last id of the previous page)"""
        statement, after = jobs.listing(api_context(), query["status"], query["model"], query["after"])
        return newest_first_page(session(), statement, TrainingJob, after, query["limit"],
                                 lambda job: job_object(job, with_epochs=False))


@blp.route("/jobs/<string:job_id>")
class Job(MethodView):
    @blp.response(200, JobObject)
    def get(self, job_id):
        """One of your jobs: its state, hyperparameters, timings and statistics per epoch"""
        return job_object(jobs.get(api_context(), job_id))


@blp.route("/jobs/<string:job_id>/cancel")
class CancelJob(MethodView):
    @blp.response(200, JobObject)
    def post(self, job_id):
        """Cancel a queued or running job (a running one stops within seconds); a finished one is left as it is"""
        return job_object(jobs.cancel(api_context(), job_id))


@blp.route("/jobs/<string:job_id>/log")
class JobLogResource(MethodView):
    @blp.response(200, JobLog)
    def get(self, job_id):
        """The job's log: what it did, and why it failed"""
        job = jobs.get(api_context(), job_id)
        return {"id": job.id, "status": job.status, "log": job.log}
