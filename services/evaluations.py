"""An account's evaluations: run one of its model versions on one of its
datasets (predictions/evaluations.py runs it), follow and cancel it, list them,
and compare versions by their latest evaluation on the same dataset.

What an evaluation could fail on before it starts is checked when it is asked
for, so a mistake is a 4xx naming what to fix: the version (the account's,
built, with its files), the dataset (the account's, ready, of a format whose
task the version serves), the account's limit of active evaluations.
"""

import time

from sqlalchemy import func, select

from core.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from core.tables import Evaluation, owned
from predictions.evaluation_plans import NOT_EVALUATED, PLANS
from training.paths import new_id
from uploads.versions import has_files

from . import dataset_edits, datasets, versions
from .account import ServiceContext
from .models import get as get_model

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


def find(db, account_id: int, evaluation_id: str) -> Evaluation:
    """The account's evaluation; another account's answers exactly as a missing one."""
    evaluation = owned(db, Evaluation, evaluation_id, account_id)
    if evaluation is None:
        raise NotFound(f"Evaluation {evaluation_id!r} not found; GET /evaluations lists yours.")
    return evaluation


def get(ctx: ServiceContext, evaluation_id: str) -> Evaluation:
    return find(ctx.db, ctx.account_id, evaluation_id)


def listing(ctx: ServiceContext, status: str | None = None, model: str | None = None,
            after: str | None = None):
    """(statement, after_row): the account's evaluations (of that status, of that
    model) and the one a page starts after, for core/pages.py newest_first_page."""
    statement = select(Evaluation).where(Evaluation.account_id == ctx.account_id)
    if status:
        statement = statement.where(Evaluation.status == status)
    if model:
        statement = statement.where(Evaluation.model_name == model)
    return statement, (get(ctx, after) if after else None)


def of_version(ctx: ServiceContext, name: str, number: int) -> list[Evaluation]:
    """The evaluations of one version of the account's model, newest first."""
    model, version = versions.numbered(ctx, name, number)
    return list(ctx.db.scalars(select(Evaluation).where(
        Evaluation.account_id == ctx.account_id, Evaluation.model_id == model.id,
        Evaluation.version_number == version.number).order_by(Evaluation.seq.desc())).all())


def start(ctx: ServiceContext, name: str, number: int, dataset_id: str, dataset_revision: int | None = None,
          webhook: str | None = None) -> Evaluation:
    """Queue an evaluation of version `number` of the account's model `name` on its
    dataset (its latest revision, or the one named), calling `webhook` when it ends."""
    model, version = versions.numbered(ctx, name, number)
    if version.status != "success":
        raise Conflict(f"Version {number} of {name!r} is {version.status}: only a built version can be evaluated.")
    if not has_files(ctx.config.data_dir, version):
        raise Conflict(f"Version {number} of {name!r} no longer has its files (only the newest "
                       f"{ctx.config.user_model_versions_kept} keep theirs: INFER_USER_MODEL_VERSIONS_KEPT); it "
                       "cannot be evaluated.")
    dataset = datasets.ready(ctx, dataset_id)
    if dataset.format in NOT_EVALUATED:
        raise _invalid("dataset_id", f"dataset {dataset_id} is {dataset.format} data, which cannot be evaluated: "
                                     f"{NOT_EVALUATED[dataset.format]}.")
    plan = PLANS.get(dataset.format)
    evaluable = sorted(PLANS)
    if plan is None:
        raise _invalid("dataset_id", f"dataset {dataset_id} is {dataset.format} data; evaluations take "
                                     f"{', '.join(evaluable)}.")
    serves = list(version.tasks or [])
    if plan.task not in serves:
        fitting = sorted(fmt for fmt, other in PLANS.items() if other.task in serves)
        raise _invalid("dataset_id", f"dataset {dataset_id} is {dataset.format} data, which evaluates "
                                     f"{plan.task}; version {number} of {name!r} serves {', '.join(serves) or 'nothing'}"
                                     f" (its datasets: {', '.join(fitting) or 'none'}).")
    revision, _stats = dataset_edits.chosen_revision(ctx, dataset, dataset_revision)
    _check_active(ctx)
    evaluation = Evaluation(
        id=new_id("eval"), seq=time.time_ns(), account_id=ctx.account_id, model_id=model.id, model_name=name,
        version_number=number, task=plan.task, dataset_id=dataset.id, dataset_format=dataset.format,
        dataset_revision=revision, failures=[], webhook=webhook,
    )
    ctx.db.add(evaluation)
    ctx.db.commit()
    ctx.part("work").submit("evaluate", evaluation.id)
    return evaluation


def cancel(ctx: ServiceContext, evaluation_id: str) -> Evaluation:
    """Cancel a queued or running evaluation (a running one stops after the chunk it sends)."""
    evaluation = get(ctx, evaluation_id)
    if evaluation.status in FINISHED:
        raise Conflict(f"Evaluation {evaluation_id} already {evaluation.status}.")
    ctx.part("evaluations").cancel(ctx.db, evaluation)
    return evaluation


def compare(ctx: ServiceContext, name: str, numbers: list[int], dataset_id: str,
            dataset_revision: int | None = None) -> dict:
    """The latest succeeded evaluation of each version on the dataset (on that
    revision of it, if one is named), side by side:
    {versions: [{version, evaluation}], table: [{metric, values, differences}]},
    each difference against the first version named (null where either lacks the metric)."""
    most = ctx.config.compare_max_versions
    if not numbers or len(numbers) > most:
        raise _invalid("versions", f"name 1 to {most} versions (INFER_COMPARE_MAX_VERSIONS), such as 1,2.")
    datasets.get(ctx, dataset_id)  # the account's, or 404
    model = get_model(ctx, name)
    compared = []
    for number in numbers:
        _, version = versions.numbered(ctx, name, number)
        statement = select(Evaluation).where(
            Evaluation.account_id == ctx.account_id, Evaluation.model_id == model.id,
            Evaluation.version_number == version.number, Evaluation.dataset_id == dataset_id,
            Evaluation.status == "succeeded")
        if dataset_revision is not None:
            statement = statement.where(Evaluation.dataset_revision == dataset_revision)
        latest = ctx.db.scalars(statement.order_by(Evaluation.seq.desc()).limit(1)).first()
        compared.append((number, latest))
    flat = [flatten(evaluation.metrics or {}) if evaluation else {} for _, evaluation in compared]
    names = sorted({key for metrics in flat for key in metrics}, key=_metric_order)
    table = []
    for metric in names:
        values = [metrics.get(metric) for metrics in flat]
        base = values[0]
        table.append({"metric": metric, "values": values,
                      "differences": [None if base is None or value is None else value - base for value in values]})
    return {"model": name, "dataset_id": dataset_id, "dataset_revision": dataset_revision, "baseline": numbers[0],
            "versions": [{"version": number, "evaluation": evaluation} for number, evaluation in compared],
            "table": table}


def flatten(metrics: dict) -> dict:
    """The comparable numbers of a metrics object: its top-level numbers, and each
    class's precision, recall and F1 as per_class.<label>.<name>."""
    flat = {key: value for key, value in metrics.items() if _number(value)}
    for label, scores in (metrics.get("per_class") or {}).items():
        for key in ("precision", "recall", "f1"):
            if _number(scores.get(key)):
                flat[f"per_class.{label}.{key}"] = scores[key]
    return flat


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metric_order(metric: str) -> tuple:
    """The task's metrics first, per class after them, the row counts last."""
    return (metric.startswith("rows"), metric.startswith("per_class."), metric)


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"Invalid request. {field}: {problem}", errors={field: [problem]})


def _check_active(ctx: ServiceContext) -> None:
    active = ctx.db.scalar(select(func.count()).select_from(Evaluation).where(
        Evaluation.account_id == ctx.account_id, Evaluation.status.in_(ACTIVE)))
    most = ctx.config.account_max_active_evaluations
    if active >= most:
        raise TooManyRequests(f"This account has {active} queued or running evaluations; the limit is {most} "
                              "(INFER_ACCOUNT_MAX_ACTIVE_EVALUATIONS). Wait for one to finish or cancel one.",
                              headers={"Retry-After": "30"})
