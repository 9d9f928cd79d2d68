"""Tabular classification and regression with scikit-learn: numeric columns imputed
and scaled, categorical ones imputed and one-hot encoded, then one estimator.

A fit sees the whole training set once: a run reports one "epoch" (step = the
training rows), and epochs, batch_size, learning_rate and early_stopping_patience
are not offered (sent, they answer 422 saying so). The pipeline is saved with
skops, never pickle, and loaded only if it holds no type outside TRUSTED_TYPES.
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
from trainers.base import BaseHyperparameters, TaskTrainer, TrainingFailed, TrainingResult, TrainingRun

ESTIMATORS = {
    "classification": ("random_forest", "logistic_regression", "gradient_boosting"),
    "regression": ("random_forest", "ridge", "gradient_boosting"),
}
TREE_ESTIMATORS = {"random_forest", "gradient_boosting"}
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


class TabularTrainer(TaskTrainer):
    task = "tabular"
    library = "scikit-learn"
    dataset_formats = ("tabular",)
    default_base_model = None
    base_loaders = ()
    hyperparameters = TabularHyperparameters
    limitations = ("One fit over the whole training set (no epochs, no early stopping); no hyperparameter search; "
                   "columns are numbers or categories (no dates or free text).")

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
        objective = decide_objective(params["objective"], params["estimator"], labels)
        kinds = column_kinds(run.train_rows)
        # Typed together, so that a label means the same class in both sets.
        y_all = targets(labels + [row["label"] for row in run.validation_rows], objective)
        y_train, y_validation = y_all[:len(labels)], y_all[len(labels):]
        if objective == "classification" and len(set(y_train)) < 2:
            raise TrainingFailed(f"Classification needs at least two classes; every training label is {y_train[0]!r}.")
        run.reporter.log(f"{objective} with {params['estimator']} on {len(y_train)} rows; columns: "
                         + ", ".join(f"{column} ({kind})" for column, kind in kinds.items()))
        x_train = feature_matrix([row["features"] for row in run.train_rows], kinds)
        try:
            x_validation = feature_matrix([row["features"] for row in run.validation_rows], kinds)
        except ValueError as exc:  # the training rows decided the column's kind
            raise TrainingFailed(f"Validation {exc}; in the training rows it holds only numbers.") from None

        # The checkpoint is the fitted pipeline: a run that crashed after fitting does not fit again.
        checkpoint = os.path.join(run.checkpoint_dir, MODEL_FILE)
        fit_s = None  # no fit, no speed to report: a resumed run
        if os.path.isfile(checkpoint):
            pipeline = load_pipeline(checkpoint)
            run.reporter.log("resumed: the fitted pipeline was checkpointed before the crash")
        else:
            pipeline = build_pipeline(kinds, objective, params)
            fit_started = time.monotonic()
            pipeline.fit(x_train, y_train)
            fit_s = time.monotonic() - fit_started
            os.makedirs(run.checkpoint_dir, exist_ok=True)
            skops.io.dump(pipeline, checkpoint + ".partial")
            os.replace(checkpoint + ".partial", checkpoint)

        train_loss, _ = evaluate(pipeline, x_train, y_train, objective)
        validation_loss, metrics = evaluate(pipeline, x_validation, y_validation, objective)
        stats = {"epoch": 1, "step": len(y_train), "train_loss": train_loss, "validation_loss": validation_loss,
                 "learning_rate": None, "elapsed_s": time.monotonic() - started, **metrics}
        run.reporter.epoch(stats)

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
            samples_per_second=len(y_train) / fit_s if fit_s else None,
        )
