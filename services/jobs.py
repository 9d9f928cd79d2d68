"""An account's training jobs: start one (a new version of its model when it
succeeds), list, read, cancel.

Everything a job could fail on before it starts is checked when it is started,
so a mistake is a 4xx naming what to fix, not a job that fails minutes later:
the dataset (the account's, ready, of a format the task trains on), the base
model (one the task's trainer can train from, with its files here when the hub
is offline), the hyperparameters (the trainer's schema and limits), the
account's limits.

Keep training: `base_model` may also name one of the account's own versions,
"name" (its serving version) or "name@3". A global model's name keeps its
meaning: no account's model may take one (RESERVED_NAMES), so a name is either
global or the account's, never both. The parent must be a successful version,
trained here by the same task's trainer, that keeps its files; the job inherits
its hyperparameters unless the request sends others.
"""

import time

from marshmallow import ValidationError
from sqlalchemy import func, select

from core.errors import Conflict, InvalidInput, ModelUnavailable, NotFound, TooManyRequests
from core.tables import Dataset, ModelVersion, TrainingJob, UserModel, owned
from model_registry.availability import presence
from model_registry.catalogue import MODELS, TASK_MODELS
from model_registry.resolve import hub_offline, unavailable_message
from tasks.spec import NoTrainer, trainable_tasks, trainer_for
from training.datasets import FORMAT_TASKS
from training.paths import new_id
from training.search import SEARCHABLE_TASKS, SearchProblem, check_search
from uploads.quotas import check_new_upload, check_room
from uploads.user_models import lookup_model
from uploads.versions import has_files, split_version_ref, version_numbered

from . import dataset_edits, datasets
from .account import ServiceContext
from .models import RESERVED_NAMES, check_model_name

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
DEFAULT_VALIDATION_SPLIT = 0.2
DEFAULT_SEARCH_TRIALS = 8


def find(db, account_id: int, job_id: str) -> TrainingJob:
    """The account's job; another account's answers exactly as a missing one."""
    job = owned(db, TrainingJob, job_id, account_id)
    if job is None:
        raise NotFound(f"Job {job_id!r} not found; GET /jobs lists yours.")
    return job


def get(ctx: ServiceContext, job_id: str) -> TrainingJob:
    return find(ctx.db, ctx.account_id, job_id)


def listing(ctx: ServiceContext, status: str | None = None, model: str | None = None,
            after: str | None = None):
    """(statement, after_row): the account's jobs (of that status, for that model)
    and the job a page starts after, for core/pages.py newest_first_page."""
    statement = select(TrainingJob).where(TrainingJob.account_id == ctx.account_id)
    if status:
        statement = statement.where(TrainingJob.status == status)
    if model:
        statement = statement.where(TrainingJob.model_name == model)
    return statement, (get(ctx, after) if after else None)


def cancel(ctx: ServiceContext, job_id: str) -> TrainingJob:
    """Cancel a queued or running job (a running one stops within seconds)."""
    job = get(ctx, job_id)
    if job.status in FINISHED:
        raise Conflict(f"Job {job_id} already {job.status}.")
    ctx.part("training").cancel(ctx.db, job)
    return job


def start(ctx: ServiceContext, name: str, request: dict) -> TrainingJob:
    """Queue a job that trains a new version of the account's model `name` (made
    if need be). `request`: task, dataset_id, dataset_revision, base_model (a global
    model or one of the account's versions), validation_split, validation_dataset_id,
    test_dataset_id, hyperparameters, webhook and search (several configurations, the
    best kept: training/search.py), as POST /models/{name}/train reads them."""
    check_model_name(name, "name")
    if name in RESERVED_NAMES:
        raise Conflict(f"{name!r} is the name of a global model; train into a name of your own.")
    task = request["task"]
    try:
        trainer = trainer_for(task)
    except NoTrainer:
        raise _invalid("task", f"{task!r} cannot be trained; tasks that can: "
                               f"{', '.join(trainable_tasks())}.") from None
    if request.get("search") is not None and task not in SEARCHABLE_TASKS:
        raise _invalid("search", f"{task} cannot be searched yet; tasks that can: {', '.join(SEARCHABLE_TASKS)}.")
    db, account_id = ctx.db, ctx.account_id
    dataset = _ready_dataset(ctx, request["dataset_id"], "dataset_id", task, trainer)
    validation_id, validation = request.get("validation_dataset_id"), None
    if validation_id:
        validation = _ready_dataset(ctx, validation_id, "validation_dataset_id", task, trainer)
        if validation.format != dataset.format:
            raise _invalid("validation_dataset_id", f"it is {validation.format} data; the dataset is "
                                                    f"{dataset.format}.")
    test_id, test = request.get("test_dataset_id"), None
    if test_id:
        if not trainer.scores_test_rows:
            raise _invalid("test_dataset_id", f"the {task} trainer ({trainer.library}) does not score a test "
                                              "dataset yet; leave test_dataset_id out.")
        test = _ready_dataset(ctx, test_id, "test_dataset_id", task, trainer)
        if test.format != dataset.format:
            raise _invalid("test_dataset_id", f"it is {test.format} data; the dataset is {dataset.format}.")
    parent = _parent_version(ctx, task, trainer, request.get("base_model"))
    if parent is None:
        base_model = _base_model_key(task, trainer, request.get("base_model"))
        _check_base_model_files(ctx, base_model)
        inherited = {}
    else:
        parent_job = db.get(TrainingJob, parent.job_id) if parent.job_id else None
        # The catalogue model the lineage started from (None for scikit-learn), for the description.
        base_model = parent_job.base_model if parent_job is not None else None
        if trainer.base_loaders and base_model not in MODELS:
            raise Conflict(f"base_model: {request['base_model']!r} was trained from {base_model!r}, which is no "
                           "longer a global model here; train from a global model instead.")
        _check_base_model_files(ctx, base_model)  # an adapter trains on its base: both are needed
        # The parent's settings, those the trainer still takes: the defaults of this job.
        known = trainer.hyperparameters().fields
        inherited = {key: value for key, value in (parent_job.hyperparameters or {}).items()
                     if key in known} if parent_job is not None else {}
    hyperparameters = _hyperparameters(trainer, {**inherited, **(request.get("hyperparameters") or {})})
    revision, stats = dataset_edits.chosen_revision(ctx, dataset, request.get("dataset_revision"))
    problem = trainer.check(hyperparameters, stats or {})
    if problem:
        raise _invalid("hyperparameters", problem)
    if parent is not None:
        problem = trainer.check_parent(hyperparameters, inherited)
        if problem:
            raise _invalid("hyperparameters", problem)
    split = request.get("validation_split")
    search = request.get("search")
    if search is not None:
        if parent is not None:  # each trial would start from the parent: not built yet
            raise _invalid("search", "a search starts from a global model or from nothing; send base_model as a "
                                     "global model, or keep training without search.")
        search = _search(ctx, task, trainer, hyperparameters, search, split == 0 and not validation_id)
    _check_active_jobs(ctx)
    check_room(db, ctx.config, account_id, "start a training job")  # its checkpoints and version count
    model = lookup_model(db, account_id, name)
    if model is None:
        check_new_upload(db, ctx.config, account_id, new_model=True)
        model = UserModel(account_id=account_id, name=name, tasks=[])
        db.add(model)
        db.flush()
    job = TrainingJob(
        id=new_id("job"), seq=time.time_ns(), account_id=account_id, model_id=model.id, model_name=name,
        task=task, base_model=base_model, dataset_id=dataset.id, dataset_revision=revision,
        validation_dataset_id=validation_id, validation_dataset_revision=validation.revision if validation_id else None,
        validation_split=None if validation_id else (DEFAULT_VALIDATION_SPLIT if split is None else split),
        hyperparameters=hyperparameters, epochs=[], log="", webhook=request.get("webhook"), search=search,
        trials=[] if search else None, test_dataset_id=test_id,
        test_dataset_revision=test.revision if test_id else None,
        parent=({"model": parent.model.name, "version": parent.number} if parent is not None else None),
        parent_version_id=parent.id if parent is not None else None,
    )
    db.add(job)
    db.commit()
    ctx.part("work").submit("train", job.id)
    return job


def continuable_versions(ctx: ServiceContext, task: str) -> list[str]:
    """The account's versions a `task` job can keep training from, as "name@N",
    newest first (what the training form offers)."""
    try:
        trainer = trainer_for(task)
    except NoTrainer:
        return []
    if not trainer.continues_from_formats:
        return []
    rows = ctx.db.execute(
        select(UserModel.name, ModelVersion.number, ModelVersion.tasks).join(ModelVersion.model)
        .where(UserModel.account_id == ctx.account_id, ModelVersion.source == "training",
               ModelVersion.status == "success", ModelVersion.stored_bytes > 0,
               ModelVersion.format.in_(trainer.continues_from_formats))
        .order_by(ModelVersion.id.desc())).all()
    return [f"{name}@{number}" for name, number, tasks in rows if task in (tasks or [])]


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"Invalid request. {field}: {problem}", errors={field: [problem]})


def _ready_dataset(ctx: ServiceContext, dataset_id: str, field: str, task: str, trainer) -> Dataset:
    dataset = datasets.ready(ctx, dataset_id)
    if dataset.format not in trainer.dataset_formats:
        raise _invalid(field, f"dataset {dataset_id} is {dataset.format} data, which trains "
                              f"{', '.join(FORMAT_TASKS.get(dataset.format, [])) or 'nothing'}; {task} trains on "
                              f"{', '.join(trainer.dataset_formats)}.")
    return dataset


def _parent_version(ctx: ServiceContext, task: str, trainer, name: str | None) -> ModelVersion | None:
    """The account's version that `base_model` names ("name" or "name@N"), or None
    when it names a global model (or nothing). Another account's model answers as a
    missing one: 404."""
    if not name:
        return None
    model_name, number = split_version_ref(name)
    if model_name in RESERVED_NAMES or name in RESERVED_NAMES:
        return None  # a global model: _base_model_key checks it
    model = lookup_model(ctx.db, ctx.account_id, model_name)
    if model is None:
        if not trainer.base_loaders:  # scikit-learn: no global model to have meant either
            raise NotFound(f"base_model: model {model_name!r} not found; GET /models lists yours.")
        raise NotFound(f"base_model: {model_name!r} is neither a global model {task} trains from nor one of "
                       "your models; GET /trainers lists the global ones, GET /models yours.")
    if number is None:
        version = ctx.db.get(ModelVersion, model.current_version_id) if model.current_version_id else None
        if version is None:
            raise Conflict(f"base_model: your model {model_name!r} has no serving version yet; name one as "
                           f"{model_name}@N.")
    else:
        version = version_numbered(ctx.db, model, number)
        if version is None:
            raise NotFound(f"base_model: your model {model_name!r} has no version {number}; "
                           f"GET /models/{model_name}/versions lists them.")
    label = f"{model_name}@{version.number}"
    if version.status != "success":
        raise Conflict(f"base_model: {label} is {version.status}; only a successful version can be trained on.")
    if not has_files(ctx.config.data_dir, version):
        raise Conflict(f"base_model: {label} no longer has its files (only the newest "
                       f"{ctx.config.user_model_versions_kept} keep theirs: INFER_USER_MODEL_VERSIONS_KEPT).")
    if not trainer.continues_from_formats:
        raise _invalid("base_model", f"the {task} trainer ({trainer.library}) cannot keep training from a version "
                                     "yet; train from a global model (GET /trainers lists them).")
    if task not in (version.tasks or []):
        raise _invalid("base_model", f"{label} serves {', '.join(version.tasks or []) or 'no task'}, not {task}; "
                                     f"keep training a {task} version.")
    if version.source != "training" or version.format not in trainer.continues_from_formats:
        raise _invalid("base_model", f"{label} was {'uploaded' if version.source != 'training' else 'trained'} as "
                                     f"{version.format or 'a model'}; the {task} trainer ({trainer.library}) keeps "
                                     "training only the versions it trained "
                                     f"({', '.join(trainer.continues_from_formats)}).")
    return version


def _base_model_key(task: str, trainer, name: str | None) -> str | None:
    """The catalogue key of the model to train from (a public name or a key)."""
    if not trainer.base_loaders:
        if name:
            raise _invalid("base_model", f"{task} trains from scratch ({trainer.library}); send no base_model, or "
                                         f"one of your {task} versions (name@N) to keep training it.")
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


def _check_base_model_files(ctx: ServiceContext, key: str | None) -> None:
    """With the hub offline, a base model whose files are not here would fail the job
    minutes later, in the training child: refuse it now, saying how to get them."""
    if key is None or not hub_offline():
        return
    model_dir = ctx.config.model_dir
    if not presence(MODELS[key], model_dir).available:
        raise ModelUnavailable(unavailable_message(MODELS[key], model_dir) + " Then start the job again.")


def _hyperparameters(trainer, sent: dict) -> dict:
    """The trainer's settings read from what was sent, every default filled in."""
    try:
        return trainer.hyperparameters().load(sent)
    except ValidationError as exc:
        errors = {f"hyperparameters.{key}": value for key, value in exc.messages.items()}
        problems = "; ".join(f"{key}: {' '.join(map(str, value))}" for key, value in errors.items())
        raise InvalidInput(f"Invalid request. {problems}", errors=errors) from None


def _search(ctx: ServiceContext, task: str, trainer, hyperparameters: dict, search: dict,
            no_validation: bool) -> dict:
    """The search as the job keeps it (training/search.py runs it): within the
    service's limits, its space read against the trainer's schema."""
    config = ctx.config
    if no_validation:
        raise _invalid("validation_split", "a search ranks its trials on validation rows; send a share above 0 "
                                           "or a validation_dataset_id.")
    search = {**search, "trials": search.get("trials") or min(DEFAULT_SEARCH_TRIALS, config.training_search_max_trials)}
    if search["trials"] > config.training_search_max_trials:
        raise _invalid("search.trials", f"at most {config.training_search_max_trials} "
                                        "(INFER_TRAINING_SEARCH_MAX_TRIALS).")
    budget = search.get("time_budget_s")
    if budget is not None and budget > config.training_search_max_time_s:
        raise _invalid("search.time_budget_s", f"at most {config.training_search_max_time_s} s "
                                               "(INFER_TRAINING_SEARCH_MAX_TIME_S).")
    try:
        checked = check_search(task, trainer.hyperparameters, hyperparameters, search)
    except SearchProblem as exc:
        raise _invalid(f"search.{exc.field}", exc.problem) from None
    return {**checked, "time_budget_s": budget or config.training_search_max_time_s}


def _check_active_jobs(ctx: ServiceContext) -> None:
    active = ctx.db.scalar(select(func.count()).select_from(TrainingJob).where(
        TrainingJob.account_id == ctx.account_id, TrainingJob.status.in_(ACTIVE)))
    most = ctx.config.account_max_active_jobs
    if active >= most:
        raise TooManyRequests(f"This account has {active} queued or running jobs; the limit is "
                              f"{ctx.config.account_max_active_jobs} (INFER_ACCOUNT_MAX_ACTIVE_JOBS). Wait for "
                              "one to finish or cancel one.", headers={"Retry-After": "60"})
