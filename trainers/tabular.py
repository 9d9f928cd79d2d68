"""Tabular classification and regression with scikit-learn: numeric columns imputed
and scaled, categorical ones imputed and one-hot encoded, then one estimator.

A fit sees the whole training set once: a run reports one "epoch" (step = the
training rows), and epochs, batch_size, learning_rate and early_stopping_patience
are not offered (sent, they answer 422 saying so). The pipeline is saved with
skops, never pickle, and loaded only if it holds no type outside TRUSTED_TYPES.

Keeping on from a version: the parent's rows are not at hand (only its fitted
pipeline), so refitting on the union is not possible. The parent's column
handling (imputers, scaler, one-hot categories) is kept and its estimator warm
started on the new rows where scikit-learn can: random_forest keeps the parent's
trees and adds n_estimators new ones grown on the new rows; gradient_boosting
adds n_estimators boosting stages fitted to the parent's errors on them;
logistic_regression starts its solver from the parent's coefficients (a convex
fit: it ends where a fit on the new rows alone would, sooner). ridge has no warm
start: its closed-form fit is redone on the new rows. A new set of labels (a
class added or gone) cannot be warm started either: the pipeline is refit from
scratch. The job's log and the version say which happened.
"""

import json
import os
import time

from marshmallow import ValidationError, fields, pre_load, validate, validates_schema

from model_registry.trained.tabular_pipeline import (  # noqa: F401
    MODEL_FILE,
    TRAINED_FILE,
    TRUSTED_TYPES,
    UntrustedModelFile,
    feature_matrix,
    is_number,
    load_pipeline,
    plain,
)
from trainers.base import (
    BaseHyperparameters,
    TaskTrainer,
    TrainingFailed,
    TrainingResult,
    TrainingRun,
    prefixed,
    train_metrics_sample,
)

ESTIMATORS = {
    "classification": ("random_forest", "logistic_regression", "gradient_boosting"),
    "regression": ("random_forest", "ridge", "gradient_boosting"),
}
TREE_ESTIMATORS = {"random_forest", "gradient_boosting"}
# What continuing from a parent meant, kept with the checkpoint for a resumed run.
CONTINUED_FILE = "continued.txt"
# "auto": integer labels with at most this many distinct values are classes.
MAX_AUTO_CLASSES = 10
MISSING_CATEGORY = "(missing)"
METRIC_KEYS = {"classification": ("accuracy", "macro_f1", "per_class", "confusion_matrix", "log_loss"),
               "regression": ("r2", "mae", "mse")}


class OnePassHyperparameters(BaseHyperparameters):
    """A trainer that fits in one pass over the data (scikit-learn): no epochs,
    learning rate or early stopping to set; sending one is an error that says why."""

    class Meta(BaseHyperparameters.Meta):
        exclude = ("epochs", "learning_rate", "early_stopping_patience")

    @pre_load
    def refuse_what_does_not_apply(self, data, **kwargs):
        sent = sorted(set(data) & self.exclude) if isinstance(data, dict) else []
        if sent:
            raise ValidationError({name: ["Does not apply: scikit-learn fits the whole training set in one pass "
                                          "(one epoch is reported)."] for name in sent})
        return data


class TabularHyperparameters(OnePassHyperparameters):
    class Meta(OnePassHyperparameters.Meta):
        exclude = (*OnePassHyperparameters.Meta.exclude, "batch_size")

    objective = fields.String(load_default="auto", validate=validate.OneOf(["auto", "classification", "regression"]),
                              metadata={"description": "auto: text labels, or integer labels with at most "
                                        f"{MAX_AUTO_CLASSES} distinct values, are classes; other numbers are "
                                        "regression (logistic_regression implies classification, ridge regression)."})
    estimator = fields.String(load_default="random_forest", validate=validate.OneOf(
        sorted(set(ESTIMATORS["classification"]) | set(ESTIMATORS["regression"]))), metadata={
        "description": "classification: random_forest, logistic_regression or gradient_boosting; "
                       "regression: random_forest, ridge or gradient_boosting."})
    n_estimators = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, 2000), metadata={
        "description": "Trees (random_forest, gradient_boosting); null: scikit-learn's default (100)."})
    max_depth = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, 100), metadata={
        "description": "Tree depth (random_forest, gradient_boosting); null: scikit-learn's default "
                       "(unbounded for random_forest, 3 for gradient_boosting)."})

    @validates_schema
    def estimator_fits_objective(self, data, **kwargs):
        objective, estimator = data.get("objective"), data.get("estimator")
        if objective in ESTIMATORS and estimator not in ESTIMATORS[objective]:
            raise ValidationError(f"{estimator} does not do {objective}; choose one of "
                                  f"{', '.join(ESTIMATORS[objective])}.", "estimator")
        if estimator not in TREE_ESTIMATORS:
            for name in ("n_estimators", "max_depth"):
                if data.get(name) is not None:
                    raise ValidationError(f"Only random_forest and gradient_boosting have {name}.", name)


def column_kinds(rows: list) -> dict[str, str]:
    """{column: "numeric" | "categorical"}, in first-seen order: numeric when every
    value present is a number (a bool is a category)."""
    kinds: dict[str, str] = {}
    for row in rows:
        for column, value in row["features"].items():
            numeric = value is None or is_number(value)
            if kinds.get(column) != "categorical":
                kinds[column] = "numeric" if numeric else "categorical"
    return kinds


def decide_objective(requested: str, estimator: str, labels: list) -> str:
    if requested != "auto":
        return requested
    doing = [objective for objective, names in ESTIMATORS.items() if estimator in names]
    if len(doing) == 1:  # logistic_regression only classifies, ridge only regresses
        return doing[0]
    if not all(is_number(label) for label in labels):
        return "classification"
    integers = all(float(label).is_integer() for label in labels)
    return "classification" if integers and len(set(labels)) <= MAX_AUTO_CLASSES else "regression"


def targets(labels: list, objective: str) -> list:
    """Labels as the estimator fits them: numbers for regression; classes as
    strings if any is not a number, else integer-valued ones as ints (answered
    as 1, not 1.0), else as floats."""
    numbers = all(is_number(label) for label in labels)
    if objective == "regression" and not numbers:
        bad = next(label for label in labels if not is_number(label))
        raise TrainingFailed(f"Regression needs numeric labels; got {bad!r}. Use objective classification.")
    if objective == "regression":
        return [float(label) for label in labels]
    if not numbers:
        return [str(label) for label in labels]
    if all(float(label).is_integer() for label in labels):
        return [int(label) for label in labels]
    return [float(label) for label in labels]


def build_pipeline(kinds: dict[str, str], objective: str, params: dict):
    from sklearn import ensemble, linear_model
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [j for j, kind in enumerate(kinds.values()) if kind == "numeric"]
    categorical = [j for j, kind in enumerate(kinds.values()) if kind == "categorical"]
    preprocess = ColumnTransformer([
        # keep_empty_features: a column missing everywhere in training still takes a place.
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                              ("scale", StandardScaler())]), numeric),
        ("categorical", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                                  ("one_hot", OneHotEncoder(handle_unknown="ignore"))]), categorical),
    ])
    seed, name = params["seed"], params["estimator"]
    trees = {key: params[key] for key in ("n_estimators", "max_depth") if params.get(key) is not None}
    classify = objective == "classification"
    estimator = {
        "random_forest": lambda: (ensemble.RandomForestClassifier if classify else ensemble.RandomForestRegressor)(
            random_state=seed, **trees),
        "gradient_boosting": lambda: (ensemble.GradientBoostingClassifier if classify
                                      else ensemble.GradientBoostingRegressor)(random_state=seed, **trees),
        "logistic_regression": lambda: linear_model.LogisticRegression(max_iter=1000, random_state=seed),
        "ridge": lambda: linear_model.Ridge(),
    }[name]()
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def evaluate(pipeline, features, y: list, objective: str) -> tuple[float | None, dict]:
    """(the loss, the task's metrics) of the pipeline on these rows; None and
    no metrics for no rows."""
    import numpy as np

    from trainers.metrics import classification_metrics, regression_metrics

    if not y:
        return None, dict.fromkeys(METRIC_KEYS[objective])
    predicted = pipeline.predict(features).tolist()
    if objective == "regression":
        metrics = regression_metrics(y, predicted)
        return metrics["mse"], metrics
    classes = pipeline.classes_.tolist()
    # A validation label never seen in training: a class with probability 0.
    unseen = sorted({label for label in y if label not in classes}, key=str)
    probabilities = np.hstack([pipeline.predict_proba(features), np.zeros((len(y), len(unseen)))])
    metrics = classification_metrics(y, predicted, classes + unseen, probabilities)
    return metrics["log_loss"], metrics


# The trees (random_forest, gradient_boosting) a warm start adds when n_estimators is null: scikit-learn's default.
DEFAULT_TREES = 100


def warm_start(pipeline, name: str, params: dict) -> str:
    """Set the parent's estimator to carry on from itself in its next fit; what that means (for the log)."""
    estimator = pipeline.named_steps["estimator"]
    if name in TREE_ESTIMATORS:
        more = params.get("n_estimators") or DEFAULT_TREES
        estimator.set_params(warm_start=True, n_estimators=estimator.n_estimators + more)
        if name == "random_forest":
            return (f"warm start: the parent's {estimator.n_estimators - more} trees kept, {more} new ones grown on "
                    "the new rows")
        return (f"warm start: {more} boosting stages added to the parent's {estimator.n_estimators - more}, fitted "
                "to its errors on the new rows")
    if name == "logistic_regression":
        estimator.set_params(warm_start=True)
        return "warm start: the solver starts from the parent's coefficients"
    return "refit: ridge has no warm start, so its fit is redone on the new rows (the parent's column handling kept)"


class TabularTrainer(TaskTrainer):
    task = "tabular"
    library = "scikit-learn"
    dataset_formats = ("tabular",)
    default_base_model = None
    base_loaders = ()
    hyperparameters = TabularHyperparameters
    limitations = ("One fit over the whole training set (no epochs, no early stopping; a `search` tries several "
                   "configurations); "
                   "columns are numbers or categories (no dates or free text). Keeping on from a version warm "
                   "starts its estimator on the new rows (ridge, or a changed set of labels: a refit).")
    continues_from_formats = ("sklearn",)
    scores_test_rows = True

    def check_parent(self, hyperparameters: dict, parent_hyperparameters: dict) -> str | None:
        parent = parent_hyperparameters.get("estimator")
        if parent and hyperparameters["estimator"] != parent:
            return (f"estimator: the version trained on from is a {parent}; keep training it as one, or train a "
                    f"{hyperparameters['estimator']} from scratch (no base_model).")
        return None

    def sample_input(self, train_rows: list, sample: object) -> dict:
        return dict(train_rows[0]["features"])  # the model's own columns, not the task's iris sample

    def train(self, run: TrainingRun) -> TrainingResult:
        from threadpoolctl import threadpool_limits

        # scikit-learn's BLAS and OpenMP pools would take every core of the host.
        with threadpool_limits(limits=run.torch_threads):
            return self._train(run)

    def _train(self, run: TrainingRun) -> TrainingResult:
        import sklearn
        import skops.io

        started = time.monotonic()
        params = run.hyperparameters
        if not run.train_rows:
            raise TrainingFailed("The training set has no rows.")
        labels = [row["label"] for row in run.train_rows]
        parent = _parent_model(run.parent_dir) if run.parent_dir else None
        if parent is not None:  # the parent's columns and objective: its fitted steps read them
            kinds = {column["name"]: column["kind"] for column in parent["trained"]["columns"]}
            objective = parent["trained"]["objective"]
            if params["objective"] not in ("auto", objective):
                raise TrainingFailed(f"The version trained on from does {objective}; keep training it with "
                                     f"objective {objective} (or auto).")
        else:
            objective = decide_objective(params["objective"], params["estimator"], labels)
            kinds = column_kinds(run.train_rows)
        # Typed together, so that a label means the same class in every set.
        y_all = targets(labels + [row["label"] for row in run.validation_rows]
                        + [row["label"] for row in run.test_rows], objective)
        y_train = y_all[:len(labels)]
        y_validation = y_all[len(labels):len(labels) + len(run.validation_rows)]
        y_test = y_all[len(labels) + len(run.validation_rows):]
        if objective == "classification" and len(set(y_train)) < 2:
            raise TrainingFailed(f"Classification needs at least two classes; every training label is {y_train[0]!r}.")
        run.reporter.log(f"{objective} with {params['estimator']} on {len(y_train)} rows; columns: "
                         + ", ".join(f"{column} ({kind})" for column, kind in kinds.items()))
        try:
            x_train = feature_matrix([row["features"] for row in run.train_rows], kinds)
            x_validation = feature_matrix([row["features"] for row in run.validation_rows], kinds)
            x_test = feature_matrix([row["features"] for row in run.test_rows], kinds)
        except ValueError as exc:  # the training rows (or the parent's) decided the column's kind
            raise TrainingFailed(f"A {exc}; that column holds only numbers in the rows the model learnt "
                                 "its columns from.") from None

        # The checkpoint is the fitted pipeline: a run that crashed after fitting does not fit again.
        checkpoint = os.path.join(run.checkpoint_dir, MODEL_FILE)
        fit_s = None  # no fit, no speed to report: a resumed run
        if os.path.isfile(checkpoint):
            pipeline = load_pipeline(checkpoint)
            run.reporter.log("resumed: the fitted pipeline was checkpointed before the crash")
        else:
            fit_started = time.monotonic()
            pipeline, continued = self._fit(run, parent, kinds, objective, x_train, y_train)
            fit_s = time.monotonic() - fit_started
            os.makedirs(run.checkpoint_dir, exist_ok=True)
            skops.io.dump(pipeline, checkpoint + ".partial")
            os.replace(checkpoint + ".partial", checkpoint)
            with open(os.path.join(run.checkpoint_dir, CONTINUED_FILE), "w") as continued_file:
                continued_file.write(continued)
        continued = _read_text(os.path.join(run.checkpoint_dir, CONTINUED_FILE))

        train_loss, _ = evaluate(pipeline, x_train, y_train, objective)
        validation_loss, metrics = evaluate(pipeline, x_validation, y_validation, objective)
        sample = train_metrics_sample(list(range(len(y_train))), run.train_metrics_rows, params["seed"])
        _, train_metrics = evaluate(pipeline, x_train[sample], [y_train[i] for i in sample], objective)
        stats = {"epoch": 1, "step": len(y_train), "train_loss": train_loss, "validation_loss": validation_loss,
                 "learning_rate": None, "elapsed_s": time.monotonic() - started, **metrics,
                 **prefixed(train_metrics, "train_"), "train_metrics_rows": len(sample)}
        run.reporter.epoch(stats)
        test_metrics = evaluate(pipeline, x_test, y_test, objective)[1] if y_test else None

        classes = [plain(c) for c in pipeline.classes_] if objective == "classification" else None
        skops.io.dump(pipeline, os.path.join(run.output_dir, MODEL_FILE))
        description = (f"{params['estimator'].replace('_', ' ')} {objective} over {len(kinds)} columns, "
                       f"trained on {len(y_train)} rows")
        trained = {
            "tasks": [self.task], "description": description, "format": "sklearn", "base_model": None,
            "library": f"scikit-learn {sklearn.__version__}", "objective": objective,
            "estimator": params["estimator"], "columns": [{"name": c, "kind": k} for c, k in kinds.items()],
            # The run carries rows of {"features", "label"}: the dataset's label column name is not in it.
            "label_column": None, "classes": classes, **({"labels": classes} if classes else {}),
        }
        with open(os.path.join(run.output_dir, TRAINED_FILE), "w") as file:
            json.dump(trained, file, indent=2)
        return TrainingResult(
            format="sklearn", tasks=[self.task], best_epoch=1, metrics=stats, description=description,
            samples_per_second=len(y_train) / fit_s if fit_s else None, test_metrics=test_metrics,
            continued=continued,
        )

    def _fit(self, run: TrainingRun, parent: dict | None, kinds: dict, objective: str, x_train, y_train):
        """(the fitted pipeline, what continuing from the parent meant: "" without one)."""
        params = run.hyperparameters
        if parent is None:
            pipeline = build_pipeline(kinds, objective, params)
            pipeline.fit(x_train, y_train)
            return pipeline, ""
        pipeline = parent["pipeline"]
        if objective == "classification" and set(map(plain, pipeline.classes_)) != set(map(plain, y_train)):
            pipeline = build_pipeline(kinds, objective, params)
            pipeline.fit(x_train, y_train)
            return pipeline, ("refit: the labels differ from the parent's, which a warm start cannot add or drop; "
                              "fitted from scratch on the new rows")
        continued = warm_start(pipeline, params["estimator"], params)
        # The parent's column handling as it was fitted: its estimator's inputs keep their meaning.
        pipeline.named_steps["estimator"].fit(pipeline.named_steps["preprocess"].transform(x_train), y_train)
        return pipeline, continued


def _parent_model(parent_dir: str) -> dict:
    """The parent version's fitted pipeline and its trained.json."""
    try:
        with open(os.path.join(parent_dir, TRAINED_FILE)) as trained_file:
            trained = json.load(trained_file)
        return {"pipeline": load_pipeline(os.path.join(parent_dir, MODEL_FILE)), "trained": trained}
    except (OSError, ValueError, KeyError, UntrustedModelFile) as exc:
        raise TrainingFailed(f"The version trained on from cannot be read as a trained tabular model: {exc}") from None


def _read_text(path: str) -> str:
    try:
        with open(path) as text_file:
            return text_file.read()
    except FileNotFoundError:
        return ""
