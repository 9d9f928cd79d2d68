"""The scikit-learn tabular trainer, run directly: iris is learnt, one epoch is
reported, the skops file serves the same answers as the fitted pipeline, a
regression answers numbers, and a skops file holding a foreign type is refused."""

import os
import random

import pytest

from core.errors import ModelUnavailable
from core.settings import Settings
from trainers.base import EPOCH_KEYS
from trainers.tabular import (
    ESTIMATORS,
    MODEL_FILE,
    TRUSTED_TYPES,
    TabularTrainer,
    build_pipeline,
    column_kinds,
    feature_matrix,
    load_pipeline,
)
from uploads.formats import Version, named

from .helpers import Crashed, ListReporter, make_run

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSIFICATION_KEYS = {"accuracy", "macro_f1", "per_class", "confusion_matrix", "log_loss"}


def iris_rows(with_site: bool = False) -> tuple[list, list]:
    """Iris with species names as labels, shuffled and split 80/20; with_site adds a
    categorical column, missing in some rows, as are some petal widths."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    rows = []
    for index, (values, target) in enumerate(zip(iris.data, iris.target)):
        features = dict(zip(COLUMNS, map(float, values)))
        if with_site:
            features["site"] = None if index % 7 == 0 else ["north", "south", "east"][index % 3]
            if index % 11 == 0:
                features["petal_width"] = None
        rows.append({"features": features, "label": str(iris.target_names[target])})
    random.Random(7).shuffle(rows)
    return rows[:120], rows[120:]


def line_rows(count: int, seed: int) -> list:
    """y = 3x + 1 + noise."""
    generator = random.Random(seed)
    rows = []
    for _ in range(count):
        x = generator.uniform(-5, 5)
        rows.append({"features": {"x": x}, "label": 3 * x + 1 + generator.gauss(0, 0.1)})
    return rows


def serve(output_dir: str):
    version = Version(1, ["tabular"], output_dir, "", Settings(), None, "cpu", False, None)
    return named("sklearn").serve(version)


def train(tmp_path, train_rows, validation_rows, hyperparameters=None, reporter=None, output_name="output"):
    trainer = TabularTrainer()
    run = make_run(tmp_path, trainer, train_rows, validation_rows, "tabular", hyperparameters,
                   reporter=reporter or ListReporter(), output_name=output_name)
    return run, trainer.train(run)


def test_iris_reaches_90_percent_validation_accuracy_reporting_one_epoch(tmp_path):
    train_rows, validation_rows = iris_rows()
    reporter = ListReporter()

    _, result = train(tmp_path, train_rows, validation_rows, reporter=reporter)

    [epoch] = reporter.epochs
    assert set(EPOCH_KEYS) | CLASSIFICATION_KEYS <= set(epoch)
    assert (epoch["epoch"], epoch["step"], epoch["learning_rate"]) == (1, 120, None)
    assert epoch["accuracy"] >= 0.9
    assert epoch["validation_loss"] == epoch["log_loss"] > 0
    assert epoch["train_loss"] > 0
    assert epoch["confusion_matrix"]["labels"] == ["setosa", "versicolor", "virginica"]
    assert (result.format, result.tasks, result.best_epoch, result.metrics) == ("sklearn", ["tabular"], 1, epoch)


def test_the_served_model_answers_as_the_fitted_pipeline_with_categories_and_missing_values(tmp_path):
    train_rows, validation_rows = iris_rows(with_site=True)
    run, _ = train(tmp_path, train_rows, validation_rows)
    kinds = column_kinds(train_rows)
    assert kinds["site"] == "categorical" and kinds["petal_width"] == "numeric"
    fitted = build_pipeline(kinds, "classification", run.hyperparameters).fit(
        feature_matrix([row["features"] for row in train_rows], kinds), [row["label"] for row in train_rows])
    features = [row["features"] for row in validation_rows] + [{**validation_rows[0]["features"], "site": "moon"}]

    served = serve(run.output_dir)
    answers = served.runners["tabular"](features)

    expected = feature_matrix(features, kinds)
    assert [a["prediction"] for a in answers] == fitted.predict(expected).tolist()
    for answer, row in zip(answers, fitted.predict_proba(expected).tolist()):
        assert answer["probabilities"] == pytest.approx(dict(zip(fitted.classes_.tolist(), row)))
    assert served.input_columns == {**dict.fromkeys(COLUMNS, "numeric"), "site": "categorical"}


def test_a_regression_reports_r2_and_mae_and_predicts_numbers_without_probabilities(tmp_path):
    reporter = ListReporter()

    run, result = train(tmp_path, line_rows(80, seed=1), line_rows(20, seed=2),
                        {"estimator": "ridge"}, reporter=reporter)

    [epoch] = reporter.epochs
    assert epoch["r2"] > 0.99 and epoch["mae"] < 0.5
    assert epoch["validation_loss"] == epoch["mse"]
    [answer] = serve(run.output_dir).runners["tabular"]([{"x": 2.0}])
    assert answer["probabilities"] is None
    assert answer["prediction"] == pytest.approx(7.0, abs=0.2)


def test_auto_makes_few_integer_labels_classes_answered_as_integers(tmp_path):
    rows = [{"features": {"x": float(x)}, "label": x % 3} for x in range(60)]

    run, _ = train(tmp_path, rows[:48], rows[48:], {"n_estimators": 5})

    [answer] = serve(run.output_dir).runners["tabular"]([{"x": 3.0}])
    assert isinstance(answer["prediction"], int)
    assert set(answer["probabilities"]) == {"0", "1", "2"}


def test_without_validation_rows_the_validation_values_are_none(tmp_path):
    reporter = ListReporter()

    train(tmp_path, line_rows(30, seed=3), [], reporter=reporter)

    [epoch] = reporter.epochs
    assert epoch["validation_loss"] is None and epoch["r2"] is None
    assert epoch["train_loss"] >= 0


def test_a_run_that_crashed_after_fitting_resumes_from_the_checkpointed_pipeline(tmp_path):
    train_rows, validation_rows = iris_rows()
    with pytest.raises(Crashed):
        train(tmp_path, train_rows, validation_rows, reporter=ListReporter(crash_at_epoch=1))

    reporter = ListReporter()
    run, _ = train(tmp_path, train_rows, validation_rows, reporter=reporter, output_name="again")

    assert any("resumed" in line for line in reporter.lines)
    assert [epoch["epoch"] for epoch in reporter.epochs] == [1]
    assert serve(run.output_dir).runners["tabular"]([train_rows[0]["features"]])[0]["prediction"] in {
        "setosa", "versicolor", "virginica"}


def test_text_in_a_numeric_column_of_the_validation_rows_fails_the_run_naming_it(tmp_path):
    from trainers.base import TrainingFailed

    validation = [{"features": {"x": "n/a"}, "label": 1.0}]

    with pytest.raises(TrainingFailed, match="'n/a' in numeric column 'x'"):
        train(tmp_path, line_rows(20, seed=5), validation)


@pytest.mark.parametrize("objective,estimator", [(o, e) for o, names in ESTIMATORS.items() for e in names])
def test_every_estimators_pipeline_holds_only_the_trusted_types(tmp_path, objective, estimator):
    import skops.io

    rows = [{"features": {"x": float(i), "colour": "red" if i % 2 else None}, "label": i % 2} for i in range(20)]
    kinds = column_kinds(rows)
    trees = {"n_estimators": 3} if estimator in {"random_forest", "gradient_boosting"} else {}
    params = {"estimator": estimator, "seed": 0, **trees}
    pipeline = build_pipeline(kinds, objective, params).fit(
        feature_matrix([row["features"] for row in rows], kinds), [row["label"] for row in rows])
    path = str(tmp_path / "model.skops")

    skops.io.dump(pipeline, path)

    assert set(skops.io.get_untrusted_types(file=path)) <= set(TRUSTED_TYPES)


def test_a_skops_file_holding_an_untrusted_type_is_refused_at_serve(tmp_path):
    import skops.io
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    run, _ = train(tmp_path, line_rows(20, seed=4), [], {"estimator": "ridge"})
    skops.io.dump(Pipeline([("run", FunctionTransformer(func=os.system))]), os.path.join(run.output_dir, "model.skops"))

    with pytest.raises(ModelUnavailable, match="posix.system"):
        serve(run.output_dir)


@pytest.mark.parametrize("hyperparameters,field,says", [
    ({"epochs": 3}, "epochs", "one pass"),
    ({"batch_size": 8}, "batch_size", "one pass"),
    ({"objective": "regression", "estimator": "logistic_regression"}, "estimator", "does not do regression"),
    ({"estimator": "ridge", "n_estimators": 10}, "n_estimators", "Only random_forest and gradient_boosting"),
])
def test_hyperparameters_that_do_not_apply_are_refused_saying_why(hyperparameters, field, says):
    from marshmallow import ValidationError

    with pytest.raises(ValidationError) as refused:
        TabularTrainer.hyperparameters().load(hyperparameters)

    assert says in str(refused.value.messages[field])


@pytest.mark.parametrize("estimator, says", [
    ("random_forest", "warm start: the parent's 5 trees kept, 5 new ones grown on the new rows"),
    ("gradient_boosting", "warm start: 5 boosting stages added to the parent's 5, fitted to its errors on the new rows"),
    ("logistic_regression", "warm start: the solver starts from the parent's coefficients"),
])
def test_keeping_on_warm_starts_each_classifier_from_its_parent_and_serves(tmp_path, estimator, says):
    from dataclasses import replace

    train_rows, validation_rows = iris_rows(with_site=True)
    trees = {"n_estimators": 5} if estimator != "logistic_regression" else {}
    parent, _ = train(tmp_path / "parent", train_rows[:60], validation_rows, {"estimator": estimator, **trees})
    trainer = TabularTrainer()
    run = replace(make_run(tmp_path / "child", trainer, train_rows[60:], validation_rows, "tabular",
                           {"estimator": estimator, **trees}),
                  parent_dir=parent.output_dir, parent={"model": "iris", "version": 1}, test_rows=validation_rows)

    result = trainer.train(run)

    assert result.continued == says
    pipeline = load_pipeline(os.path.join(run.output_dir, MODEL_FILE))
    if estimator != "logistic_regression":
        assert pipeline.named_steps["estimator"].n_estimators == 10
    assert result.test_metrics["accuracy"] > 0.8
    served = serve(run.output_dir)
    assert served.runners["tabular"]([validation_rows[0]["features"]])[0]["prediction"] in {
        "setosa", "versicolor", "virginica"}


def test_keeping_on_a_regression_refits_ridge_and_a_changed_set_of_labels_refits_from_scratch(tmp_path):
    from dataclasses import replace

    trainer = TabularTrainer()
    parent, _ = train(tmp_path / "ridge", line_rows(40, 1), [], {"estimator": "ridge"})
    run = replace(make_run(tmp_path / "ridge-child", trainer, line_rows(80, 2), [], "tabular", {"estimator": "ridge"}),
                  parent_dir=parent.output_dir)
    assert trainer.train(run).continued.startswith("refit: ridge has no warm start")

    train_rows, validation_rows = iris_rows()
    parent, _ = train(tmp_path / "iris", train_rows, validation_rows)
    two = [row for row in train_rows if row["label"] != "setosa"]
    run = replace(make_run(tmp_path / "iris-child", trainer, two, [], "tabular"), parent_dir=parent.output_dir)
    assert trainer.train(run).continued.startswith("refit: the labels differ from the parent's")


def test_keeping_on_with_another_estimator_is_refused_before_the_job_starts():
    trainer = TabularTrainer()
    parent = trainer.hyperparameters().load({"estimator": "random_forest"})
    assert trainer.check_parent(trainer.hyperparameters().load({}), parent) is None
    problem = trainer.check_parent(trainer.hyperparameters().load({"estimator": "gradient_boosting"}), parent)
    assert "random_forest" in problem and "from scratch" in problem
