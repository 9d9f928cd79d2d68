"""Keep training (issue 26): a job's base_model may be one of the account's own
versions ("name" or "name@N"); the new version records its parent, and the
versions list shows the lineage. Every epoch reports train_ metrics on the
training rows, and a job with test_dataset_id scores the kept epoch on it once.

All over HTTP, through a real training child, on a seeded toy set where more
data helps: version 1 learns from 30 rows, version 2 keeps on from it with 600
more, and both are scored on the same 400 held-out rows."""

import random

import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from .flow import add_dataset, start_job, wait_job

COLUMNS = [f"x{i}" for i in range(8)]
LABELS = ["no", "yes"]


def toy_rows(count: int, rng: random.Random) -> list[tuple[list[float], str]]:
    """Eight numbers; the label follows three of them, with noise: a fit on few
    rows is worse than one on many."""
    rows = []
    for _ in range(count):
        x = [rng.gauss(0, 1) for _ in COLUMNS]
        score = x[0] + 0.8 * x[1] - 0.6 * x[2] + 0.3 * rng.gauss(0, 1)
        rows.append((x, "yes" if score > 0 else "no"))
    return rows


def as_csv(rows) -> str:
    return ",".join(COLUMNS + ["label"]) + "\n" + "".join(
        ",".join(f"{value:.4f}" for value in x) + f",{label}\n" for x, label in rows)


def predicted(client, headers, model: str, rows) -> list:
    """The version's answers over /predict, a batch at a time."""
    answers = []
    for start in range(0, len(rows), 50):
        batch = [dict(zip(COLUMNS, (round(value, 4) for value in x))) for x, _ in rows[start:start + 50]]
        answer = client.post("/predict", json={"model": model, "features": batch}, headers=headers)
        assert answer.status_code == 200, answer.json
        answers += answer.json["prediction"]
    return answers


@pytest.fixture
def api(client_for):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1)


@pytest.fixture
def toy(api):
    return toy_datasets(api)


def toy_datasets(api):
    """Three datasets of one seeded toy set: 30 rows, 600 more, 400 held out."""
    rng = random.Random(7)
    rows = {"small": toy_rows(30, rng), "more": toy_rows(600, rng), "held": toy_rows(400, rng)}
    ids = {}
    for name, part in rows.items():
        dataset = add_dataset(api.client, api.headers, as_csv(part), name=name)
        assert dataset["status"] == "ready" and dataset["format"] == "tabular", dataset
        ids[name] = dataset["id"]
    return rows, ids


def test_a_version_kept_on_from_itself_with_more_rows_beats_its_parent_on_held_out_rows(api, toy):
    client, headers = api.client, api.headers
    rows, ids = toy
    parent = wait_job(client, headers, start_job(client, headers, "toy", task="tabular", dataset_id=ids["small"],
                                                 validation_split=0, test_dataset_id=ids["held"])["id"])
    assert parent["status"] == "succeeded", parent["message"]
    assert parent["parent"] is None and parent["version"] == 1

    started = start_job(client, headers, "toy", task="tabular", dataset_id=ids["more"], base_model="toy@1",
                        validation_dataset_id=ids["held"], test_dataset_id=ids["held"])
    assert started["parent"] == {"model": "toy", "version": 1} and started["base_model"] is None
    assert started["hyperparameters"] == parent["hyperparameters"]  # inherited: nothing was sent
    child = wait_job(client, headers, started["id"])
    assert child["status"] == "succeeded", child["message"]
    assert child["version"] == 2 and child["parent"] == {"model": "toy", "version": 1}
    log = client.get(f"/jobs/{child['id']}/log", headers=headers).json["log"]
    assert "kept on from toy@1: warm start: the parent's 100 trees kept, 100 new ones grown" in log

    # The test dataset's metrics, stored on the job and the version, are the versions' answers over /predict.
    truth = [label for _, label in rows["held"]]
    scores = {}
    for job, model in ((parent, "toy@1"), (child, "toy@2")):
        answers = predicted(client, headers, model, rows["held"])
        scores[model] = accuracy_score(truth, answers)
        assert job["test_metrics"]["accuracy"] == pytest.approx(scores[model])
        assert job["test_metrics"]["macro_f1"] == pytest.approx(f1_score(truth, answers, average="macro"))
    print(f"held-out accuracy: toy@1 (30 rows) {scores['toy@1']:.4f}, toy@2 (kept on with 600) {scores['toy@2']:.4f}")
    assert scores["toy@2"] > scores["toy@1"]

    versions = client.get("/models/toy/versions", headers=headers).json
    assert [(v["version"], v["parent"], v["dataset_id"]) for v in versions] == [
        (1, None, ids["small"]), (2, {"model": "toy", "version": 1}, ids["more"])]
    assert versions[1]["metrics"]["test_accuracy"] == child["test_metrics"]["accuracy"]
    assert "Kept on from toy@1: warm start" in versions[1]["message"]
    one = client.get("/models/toy/versions/2", headers=headers)
    assert one.status_code == 200 and one.json == versions[1]
    assert client.get("/models/toy/versions/7", headers=headers).status_code == 404

    # A third generation from the serving version (plain "toy" is version 2): the lineage goes on.
    third = wait_job(client, headers, start_job(client, headers, "toy-next", task="tabular", dataset_id=ids["small"],
                                                base_model="toy", validation_split=0)["id"])
    assert third["status"] == "succeeded", third["message"]
    assert client.get("/models/toy-next/versions/1", headers=headers).json["parent"] == {"model": "toy", "version": 2}


def test_each_epoch_reports_train_metrics_equal_to_scikit_learns_on_the_versions_answers(api, toy):
    client, headers = api.client, api.headers
    rows, ids = toy
    done = wait_job(client, headers, start_job(client, headers, "toy", task="tabular", dataset_id=ids["more"],
                                               validation_dataset_id=ids["held"],
                                               hyperparameters={"estimator": "logistic_regression"})["id"])
    assert done["status"] == "succeeded", done["message"]
    assert done["test_metrics"] is None  # no test dataset
    (epoch,) = done["epochs"]
    assert epoch["train_metrics_rows"] == 600  # every training row: fewer than INFER_TRAINING_TRAIN_METRICS_ROWS
    truth = [label for _, label in rows["more"]]
    answers = predicted(client, headers, "toy@1", rows["more"])
    assert epoch["train_accuracy"] == pytest.approx(accuracy_score(truth, answers))
    assert epoch["train_macro_f1"] == pytest.approx(f1_score(truth, answers, average="macro"))
    assert epoch["train_confusion_matrix"] == {"labels": LABELS,
                                               "matrix": confusion_matrix(truth, answers, labels=LABELS).tolist()}
    assert epoch["accuracy"] != epoch["train_accuracy"]  # the validation rows are scored apart


def test_a_bounded_sample_of_the_training_rows_is_scored(client_for):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, TRAINING_TRAIN_METRICS_ROWS=100)
    client, headers = api.client, api.headers
    _rows, ids = toy_datasets(api)
    done = wait_job(client, headers, start_job(client, headers, "toy", task="tabular", dataset_id=ids["more"],
                                               validation_split=0)["id"])
    assert done["status"] == "succeeded", done["message"]
    epoch = done["epochs"][0]
    assert epoch["train_metrics_rows"] == 100
    assert sum(sum(row) for row in epoch["train_confusion_matrix"]["matrix"]) == 100


def test_keeping_on_from_what_cannot_be_continued_is_refused_with_what_to_fix(api, toy):
    client, headers = api.client, api.headers
    _rows, ids = toy
    done = wait_job(client, headers, start_job(client, headers, "toy", task="tabular", dataset_id=ids["small"],
                                               validation_split=0)["id"])
    assert done["status"] == "succeeded", done["message"]
    text = add_dataset(client, headers, "text,label\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(10)))

    def refused(body, headers=headers, name="next"):
        answer = client.post(f"/models/{name}/train", json=body, headers=headers)
        assert 400 <= answer.status_code < 500, answer.json
        return answer.status_code, answer.json["message"]

    tabular = {"task": "tabular", "dataset_id": ids["more"]}
    # Another account's model is a 404, answered exactly as a model that does not exist.
    mallory = api.headers_for("mallory")
    mallorys_data = add_dataset(client, mallory, as_csv(toy_rows(40, random.Random(1))))
    theirs = refused({**tabular, "dataset_id": mallorys_data["id"], "base_model": "toy@1"}, headers=mallory)
    missing = refused({**tabular, "dataset_id": mallorys_data["id"], "base_model": "ghost@1"}, headers=mallory)
    assert theirs[0] == missing[0] == 404
    assert theirs[1].replace("'toy'", "'ghost'") == missing[1]
    assert refused({**tabular, "dataset_id": mallorys_data["id"], "base_model": "toy"}, headers=mallory)[0] == 404
    # Nor is alice's dataset or test dataset mallory's.
    assert refused({**tabular, "dataset_id": mallorys_data["id"], "test_dataset_id": ids["held"]},
                   headers=mallory)[0] == 404

    code, message = refused({**tabular, "base_model": "toy@9"})
    assert code == 404 and "no version 9" in message
    code, message = refused({"task": "text-classification", "dataset_id": text["id"], "base_model": "toy@1"})
    assert code == 422 and "serves tabular, not text-classification" in message
    code, message = refused({**tabular, "base_model": "toy@1", "hyperparameters": {"estimator": "gradient_boosting"}})
    assert code == 422 and "random_forest" in message and "hyperparameters" in message
    code, message = refused({**tabular, "test_dataset_id": text["id"]})
    assert code == 422 and "test_dataset_id" in message
    # A global model's name keeps its meaning: it is never looked up among the account's models.
    code, message = refused({**tabular, "base_model": "english"})
    assert code == 422 and "from scratch" in message
    assert client.get("/models/next", headers=headers).status_code == 404  # nothing was made


POSITIVE = ["I love this", "what a great day", "wonderful film", "happy and joyful", "this is excellent",
            "brilliant work", "I enjoyed it a lot", "fantastic service", "superb meal", "lovely people"]
NEGATIVE = ["I hate this", "what an awful day", "terrible film", "sad and miserable", "this is horrible",
            "dreadful work", "I regret buying it", "awful service", "disgusting meal", "rude people"]


def reviews(positive, negative) -> str:
    return "text,label\n" + "".join(f'"{text}",positive\n' for text in positive) + "".join(
        f'"{text}",negative\n' for text in negative)


def test_setfit_on_the_packaged_minilm_keeps_on_from_its_body_and_scores_a_test_set(api):
    client, headers = api.client, api.headers
    first = add_dataset(client, headers, reviews(POSITIVE[:5], NEGATIVE[:5]))
    more = add_dataset(client, headers, reviews(POSITIVE, NEGATIVE))
    test = add_dataset(client, headers, reviews(["a joyful day", "excellent film"], ["a horrible day", "awful film"]))
    settings = {"epochs": 1, "num_iterations": 2}
    parent = wait_job(client, headers, start_job(client, headers, "sentiment", task="text-classification",
                                                 dataset_id=first["id"], validation_split=0,
                                                 hyperparameters=settings)["id"])
    assert parent["status"] == "succeeded", parent["message"]
    assert parent["base_model"] == "all-MiniLM-L6-v2"

    child = wait_job(client, headers, start_job(client, headers, "sentiment", task="text-classification",
                                                dataset_id=more["id"], base_model="sentiment",
                                                validation_split=0.2, test_dataset_id=test["id"])["id"])
    assert child["status"] == "succeeded", child["message"]
    assert child["parent"] == {"model": "sentiment", "version": 1}
    assert child["base_model"] == "all-MiniLM-L6-v2"  # where the lineage started
    assert child["hyperparameters"]["num_iterations"] == 2  # the parent's settings, inherited
    log = client.get(f"/jobs/{child['id']}/log", headers=headers).json["log"]
    assert "kept on from sentiment@1: continued from its sentence-transformer body's weights" in log
    (epoch,) = child["epochs"]
    assert epoch["train_metrics_rows"] == child["train_rows"] == 16
    assert {"train_accuracy", "train_macro_f1", "train_per_class", "train_confusion_matrix"} <= set(epoch)
    assert child["test_metrics"]["confusion_matrix"]["labels"] == ["negative", "positive"]
    assert sum(map(sum, child["test_metrics"]["confusion_matrix"]["matrix"])) == 4
    version = client.get("/models/sentiment/versions/2", headers=headers).json
    assert version["parent"] == {"model": "sentiment", "version": 1}
    assert version["metrics"]["test_accuracy"] == child["test_metrics"]["accuracy"]
    answer = client.post("/text-classification", json={"model": "sentiment", "text": "what a wonderful meal"},
                         headers=headers)
    assert answer.status_code == 200, answer.json



def test_an_uploaded_version_cannot_be_kept_on_from(client_for, tiny_model_dir):
    from ..uploads.helpers import pickle_zip, put_local, upload_url, wait_built

    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, TRAINER=True, TRAINING_POLL_S=0.1, MODEL_DIR=tiny_model_dir)
    client, headers = api.client, api.headers
    assert put_local(client, upload_url(client, headers, "keywords"), pickle_zip("hi")).status_code == 200
    assert wait_built(client, headers, "keywords")["tasks"] == ["custom", "text-classification"]
    text = add_dataset(client, headers, reviews(POSITIVE, NEGATIVE))
    answer = client.post("/models/next/train", json={"task": "text-classification", "dataset_id": text["id"],
                                                      "base_model": "keywords@1"}, headers=headers)
    assert answer.status_code == 422, answer.json
    assert "keywords@1 was uploaded as pickle" in answer.json["message"]
    assert client.get("/jobs", headers=headers).json["data"] == []
