"""POST /predict over HTTP with a trained tabular version: one row, a batch, a
regression, 422s that name the wrong columns and list the model's, and 404s for
a model that is not the caller's; and with uploaded code declaring the task."""

import json
import random

import pytest
from sqlalchemy import select

from core.tables import Account, ModelVersion, UserModel, utcnow
from trainers.tabular import TabularTrainer
from uploads.archive import tree_bytes
from uploads.serving import version_dirs
from web.settings import settings_of

from ..training.helpers import make_run
from ..uploads.helpers import deploy, make_zip

IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
COLUMNS = list(IRIS_ROW)


def add_trained_version(app, account: str, name: str, trainer, train_rows, validation_rows, dataset_format: str,
                        hyperparameters=None, **run_fields) -> ModelVersion:
    """What a finished training job leaves: the trainer's files in the version's
    folder, its rows in the database, serving."""
    with app.extensions["db"].sessions() as session:
        account_id = session.scalar(select(Account.id).where(Account.name == account))
        model = UserModel(account_id=account_id, name=name, tasks=[trainer.task])
        session.add(model)
        session.flush()
        version = ModelVersion(model_id=model.id, number=1, status="success", tasks=[trainer.task],
                               upload_expires_at=utcnow(), source="training", job_id="job_test")
        session.add(version)
        session.flush()
        files_dir = version_dirs(settings_of(app).data_dir, version.id)[0]
        root, folder = files_dir.rsplit("/", 1)
        run = make_run(root, trainer, train_rows, validation_rows, dataset_format, hyperparameters,
                       output_name=folder, **run_fields)
        result = trainer.train(run)
        version.format, version.metrics, version.description = result.format, result.metrics, result.description
        version.stored_bytes = tree_bytes(files_dir)  # as the job runner records it
        version.finished_at = utcnow()
        model.current_version_id = version.id
        session.commit()
        return version


def iris_rows() -> list:
    from sklearn.datasets import load_iris

    iris = load_iris()
    rows = [{"features": dict(zip(COLUMNS, map(float, values))), "label": str(iris.target_names[target])}
            for values, target in zip(iris.data, iris.target)]
    random.Random(3).shuffle(rows)
    return rows


@pytest.fixture
def api(client_for):
    api = client_for()
    add_trained_version(api.app, "alice", "iris", TabularTrainer(), iris_rows(), [], "tabular", {"n_estimators": 20})
    return api


def predict(api, body, headers=None):
    return api.client.post("/predict", json=body, headers=headers or api.headers)


def test_one_row_answers_its_class_and_the_probability_of_each(api):
    answered = predict(api, {"model": "iris", "features": IRIS_ROW})

    assert answered.status_code == 200, answered.json
    assert answered.json["prediction"] == "setosa"
    assert set(answered.json["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert sum(answered.json["probabilities"].values()) == pytest.approx(1)


def test_a_batch_answers_a_list_of_each(api):
    virginica = {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3}

    answered = predict(api, {"model": "iris", "features": [IRIS_ROW, virginica]})

    assert answered.status_code == 200, answered.json
    assert answered.json["prediction"] == ["setosa", "virginica"]
    assert [max(p, key=p.get) for p in answered.json["probabilities"]] == ["setosa", "virginica"]


def test_a_regression_answers_numbers_and_null_probabilities(api):
    rows = [{"features": {"x": x / 4}, "label": 3 * x / 4 + 1} for x in range(40)]
    add_trained_version(api.app, "alice", "line", TabularTrainer(), rows, [], "tabular", {"estimator": "ridge"})

    single = predict(api, {"model": "line", "features": {"x": 2.0}})
    batch = predict(api, {"model": "line", "features": [{"x": 0.0}, {"x": 1.0}]})

    # Ridge shrinks the slope a little (its penalty): close to the line, not on it.
    assert single.json["prediction"] == pytest.approx(7.0, abs=0.3) and single.json["probabilities"] is None
    assert batch.json["prediction"] == pytest.approx([1.0, 4.0], abs=0.5) and batch.json["probabilities"] is None


@pytest.mark.parametrize("features,says", [
    ({k: v for k, v in IRIS_ROW.items() if k != "petal_width"}, "missing column(s) petal_width"),
    ({**IRIS_ROW, "colour": "blue"}, "unknown column(s) colour"),
    ({**IRIS_ROW, "sepal_width": "wide"}, "not a number in numeric column(s) sepal_width ('wide')"),
    ({**IRIS_ROW, "sepal_width": True}, "not a number in numeric column(s) sepal_width (True)"),
])
def test_wrong_columns_answer_422_naming_them_and_listing_the_models(api, features, says):
    answered = predict(api, {"model": "iris", "features": features})

    assert answered.status_code == 422
    assert says in answered.json["message"]
    assert ("takes: sepal_length (number), sepal_width (number), petal_length (number), petal_width (number)"
            in answered.json["message"])


def test_a_batch_with_a_wrong_row_answers_422_naming_the_row(api):
    answered = predict(api, {"model": "iris", "features": [IRIS_ROW, {**IRIS_ROW, "extra": 1}]})

    assert answered.status_code == 422
    assert "row 1: unknown column(s) extra" in answered.json["message"]
    assert "row 0" not in answered.json["message"]


def test_a_missing_value_is_filled_in_as_in_training(api):
    answered = predict(api, {"model": "iris", "features": {**IRIS_ROW, "sepal_width": None}})

    assert answered.status_code == 200, answered.json
    assert answered.json["prediction"] == "setosa"


def test_another_accounts_model_and_an_unknown_name_answer_404_naming_the_model(api):
    stranger = predict(api, {"model": "iris", "features": IRIS_ROW}, headers=api.headers_for("mallory"))
    unknown = predict(api, {"model": "irises", "features": IRIS_ROW})

    assert stranger.status_code == 404 and "'iris' not found" in stranger.json["message"]
    assert unknown.status_code == 404 and "'irises' not found" in unknown.json["message"]


def test_the_model_is_required(api):
    answered = predict(api, {"features": IRIS_ROW})

    assert answered.status_code == 422
    assert "model" in answered.json["errors"]


RULE = '''
def load_model(model_dir):
    return None

def call_model(model, task_input, task):
    total = sum(v for v in task_input["features"].values() if isinstance(v, (int, float)))
    return {"prediction": "big" if total > 10 else "small", "probabilities": None}
'''


def test_uploaded_code_for_tabular_builds_on_the_sample_row_and_gets_the_features_unchecked(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    archive = make_zip({"inference.py": RULE, "requirements.txt": "",
                        "config.json": json.dumps({"description": "a rule", "tasks": ["tabular"]})})
    assert deploy(api.client, api.headers, "rule", archive)["build_status"] == "success"

    single = predict(api, {"model": "rule", "features": {"anything": 20}})
    batch = predict(api, {"model": "rule", "features": [{"a": 1}, {"b": 12, "c": "x"}]})

    assert single.json == {"prediction": "big", "probabilities": None}
    assert batch.json == {"prediction": ["small", "big"], "probabilities": None}
