"""Evaluations over HTTP, as a user runs them: train tabular versions, evaluate
them on a held-out dataset, check the stored metrics against scikit-learn's on
the predictions /predict answers for the same rows, compare versions, cancel,
and what another account or a wrong dataset gets."""

import csv
import io
import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    precision_recall_fscore_support,
    r2_score,
)
from scipy.stats import pearsonr, spearmanr

from ..conftest import new_key
from ..openai_api.test_user_models import sentence_transformer_zip
from ..predictions.test_event_webhooks import LOOPBACK, verified
from ..webhook_receiver import Receiver
from ..ui.conftest import UiClient
from ..uploads.helpers import deploy
from .flow import add_dataset, iris_csv, start_job, until, wait_job


@pytest.fixture
def api(client_for):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1, PREDICTIONS=True, PREDICTION_POLL_S=0.1)


def noisy_iris_csv(seed: int = 7, noise: float = 0.6) -> str:
    """Iris with seeded noise on every measurement: a held-out set no version gets all right."""
    from sklearn.datasets import load_iris

    iris, rng = load_iris(), np.random.default_rng(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
    for features, target in zip(iris.data + rng.normal(0, noise, iris.data.shape), iris.target):
        writer.writerow([*(round(value, 3) for value in features), f"Iris-{iris.target_names[target]}"])
    return out.getvalue()


def rows_of(text: str, label: str) -> tuple[list[dict], list]:
    """The CSV's rows as /predict takes them, and their labels (numbers where they are)."""
    rows, labels = [], []
    for record in csv.DictReader(io.StringIO(text)):
        value = record.pop(label)
        labels.append(value)
        rows.append({key: (float(cell) if _numeric(cell) else cell) for key, cell in record.items()})
    return rows, labels


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def predictions_of(client, headers, model: str, rows: list[dict]) -> list:
    """What /predict answers for each row, asked 50 rows at a time (within the batch limit)."""
    answers = []
    for start in range(0, len(rows), 50):
        answer = client.post("/predict", json={"model": model, "features": rows[start:start + 50]}, headers=headers)
        assert answer.status_code == 200, answer.json
        answers.extend(answer.json["prediction"])
    return answers


def evaluate(client, headers, model: str, version: int, dataset_id: str) -> dict:
    started = client.post(f"/models/{model}/versions/{version}/evaluate", json={"dataset_id": dataset_id},
                          headers=headers)
    assert started.status_code == 202, started.json
    assert started.headers["Location"] == f"/evaluations/{started.json['id']}"
    assert started.json["status"] == "queued" and started.json["object"] == "evaluation"
    return started.json


def wait_evaluation(client, headers, evaluation_id: str, statuses=("succeeded", "failed", "cancelled"),
                    timeout_s: float = 120) -> dict:
    state = {}

    def reached():
        state.clear()
        state.update(client.get(f"/evaluations/{evaluation_id}", headers=headers).json)
        return state["status"] in statuses

    until(reached, timeout_s)
    return state


def trained(client, headers, model: str, dataset_id: str, **hyperparameters) -> dict:
    job = wait_job(client, headers, start_job(client, headers, model, task="tabular", dataset_id=dataset_id,
                                              hyperparameters=hyperparameters)["id"])
    assert job["status"] == "succeeded", job["message"]
    return job


def test_an_evaluation_stores_scikit_learns_metrics_of_the_versions_predictions_and_compare_shows_differences(api):
    client, headers = api.client, api.headers
    train = add_dataset(client, headers, iris_csv(), name="iris")
    held_out_text = noisy_iris_csv()
    held_out = add_dataset(client, headers, held_out_text, name="noisy iris")
    assert held_out["status"] == "ready" and held_out["stats"]["rows"] == 150
    first = trained(client, headers, "iris", train["id"], estimator="random_forest", seed=1)
    second = trained(client, headers, "iris", train["id"], estimator="logistic_regression")
    assert (first["version"], second["version"]) == (1, 2)

    evaluations = {}
    for version in (1, 2):
        queued = evaluate(client, headers, "iris", version, held_out["id"])
        done = wait_evaluation(client, headers, queued["id"])
        assert done["status"] == "succeeded", done["message"]
        assert (done["rows_total"], done["rows_done"], done["rows_failed"], done["failures"]) == (150, 150, 0, [])
        assert done["task"] == "tabular" and done["dataset_format"] == "tabular" and done["version"] == version
        evaluations[version] = done

        # The same rows through /predict, scored by scikit-learn here: the stored metrics are these.
        rows, gold = rows_of(held_out_text, "species")
        predicted = predictions_of(client, headers, f"iris@{version}", rows)
        labels = sorted(set(gold) | set(predicted))
        metrics = done["metrics"]
        assert metrics["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
        assert metrics["macro_f1"] == pytest.approx(f1_score(gold, predicted, labels=labels, average="macro"))
        precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=labels,
                                                                         zero_division=0)
        for at, label in enumerate(labels):
            assert metrics["per_class"][label] == pytest.approx(
                {"precision": precision[at], "recall": recall[at], "f1": f1[at], "support": support[at]})
        assert metrics["confusion_matrix"] == {"labels": labels,
                                               "matrix": confusion_matrix(gold, predicted, labels=labels).tolist()}
        assert (metrics["rows"], metrics["rows_answered"], metrics["rows_failed"]) == (150, 150, 0)
        assert metrics["accuracy"] < 1.0  # the noise costs every version something

    # Listed per version, and in the paged list of the account's evaluations.
    listed = client.get("/models/iris/versions/1/evaluations", headers=headers).json
    assert [evaluation["id"] for evaluation in listed] == [evaluations[1]["id"]]
    page = client.get("/evaluations?limit=1", headers=headers).json
    assert [e["id"] for e in page["data"]] == [evaluations[2]["id"]] and page["has_more"] is True
    following = client.get(f"/evaluations?limit=1&after={evaluations[2]['id']}", headers=headers).json
    assert [e["id"] for e in following["data"]] == [evaluations[1]["id"]] and following["has_more"] is False
    assert client.get("/evaluations?status=running", headers=headers).json["data"] == []

    compared = client.get(f"/models/iris/compare?versions=1,2&dataset_id={held_out['id']}", headers=headers)
    assert compared.status_code == 200, compared.json
    table = {row["metric"]: row for row in compared.json["table"]}
    assert compared.json["baseline"] == 1
    assert [entry["evaluation"]["id"] for entry in compared.json["versions"]] == [evaluations[1]["id"],
                                                                                  evaluations[2]["id"]]
    for metric in ("accuracy", "macro_f1", "per_class.Iris-virginica.f1"):
        one, two = (evaluations[version]["metrics"] for version in (1, 2))
        if metric.startswith("per_class."):
            one, two = one["per_class"]["Iris-virginica"], two["per_class"]["Iris-virginica"]
            key = "f1"
        else:
            key = metric
        assert table[metric]["values"] == pytest.approx([one[key], two[key]])
        assert table[metric]["differences"] == pytest.approx([0.0, two[key] - one[key]])
    assert table["accuracy"]["differences"][1] != 0  # the two estimators disagree on the noisy rows

    # The UI's comparison shows the same table.
    page = _ui_page(api, f"/ui/models/iris/compare?versions=1,2&dataset_id={held_out['id']}")
    assert "accuracy" in page and f"{table['accuracy']['differences'][1]:+.4f}" in page


def _ui_page(api, path: str) -> str:
    page = UiClient(api.app, api.key).get(path)
    assert page.status_code == 200, page.data[:500]
    return page.get_data(as_text=True)


def regression_csv(rows: int, seed: int, long_colour_rows: tuple = ()) -> str:
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["size", "rooms", "colour", "price"])
    for row in range(rows):
        size, rooms = rng.uniform(20, 200), int(rng.integers(1, 6))
        colour = "x" * 80 if row in long_colour_rows else ("red", "blue")[row % 2]
        writer.writerow([round(size, 2), rooms, colour, round(3 * size + 10 * rooms + rng.normal(0, 20), 2)])
    return out.getvalue()


def test_a_regression_is_scored_by_r2_and_mae_and_rows_the_version_refuses_are_counted_not_fatal(client_for):
    # Texts over 40 characters are refused (422): three rows of the held-out set carry one.
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, PREDICTIONS=True, PREDICTION_POLL_S=0.1,
                     MAX_TEXT_LENGTH=40, EVALUATION_CHUNK_ROWS=16)
    client, headers = api.client, api.headers
    train = add_dataset(client, headers, regression_csv(200, seed=1), label_column="price")
    held_out_text = regression_csv(60, seed=2, long_colour_rows=(3, 20, 41))
    held_out = add_dataset(client, headers, held_out_text, label_column="price")
    assert held_out["status"] == "ready" and held_out["stats"]["label_kind"] == "numeric", held_out
    trained(client, headers, "prices", train["id"], estimator="ridge")

    done = wait_evaluation(client, headers, evaluate(client, headers, "prices", 1, held_out["id"])["id"])
    assert done["status"] == "succeeded", done["message"]
    assert (done["rows_total"], done["rows_done"], done["rows_failed"]) == (60, 60, 3)
    assert [(failure["row"], failure["status"]) for failure in done["failures"]] == [(4, 422), (21, 422), (42, 422)]
    assert "INFER_MAX_TEXT_LENGTH" in done["failures"][0]["message"]

    rows, gold = rows_of(held_out_text, "price")
    kept = [at for at in range(60) if at not in (3, 20, 41)]
    predicted = predictions_of(client, headers, "prices@1", [rows[at] for at in kept])
    truth = [float(gold[at]) for at in kept]
    metrics = done["metrics"]
    assert metrics["r2"] == pytest.approx(r2_score(truth, predicted))
    assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, predicted))
    assert (metrics["rows"], metrics["rows_answered"], metrics["rows_failed"]) == (60, 57, 3)
    assert metrics["r2"] > 0.8  # a linear model of a linear price


def test_cancel_a_queued_evaluation_and_a_running_one(client_for, make_app):
    # No process runs evaluations here: one stays queued until cancelled.
    idle = client_for(TRAINER=True, TRAINING_POLL_S=0.1)
    client, headers = idle.client, idle.headers
    dataset = add_dataset(client, headers, iris_csv())
    trained(client, headers, "iris", dataset["id"])
    queued = evaluate(client, headers, "iris", 1, dataset["id"])
    cancelled = client.post(f"/evaluations/{queued['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    again = client.post(f"/evaluations/{queued['id']}/cancel", headers=headers)
    assert again.status_code == 409 and "cancelled" in again.json["message"]

    # A running one (a row a request, many rows) stops after the chunk it is sending.
    big = add_dataset(client, headers, "\n".join([iris_csv().strip()] + iris_csv().strip().splitlines()[1:] * 19))
    assert big["stats"]["rows"] == 3000
    make_app(DATA_DIR=idle.app.extensions["settings"].data_dir, PREDICTIONS=True,
                          PREDICTION_POLL_S=0.1, EVALUATION_CHUNK_ROWS=1)
    started = evaluate(client, headers, "iris", 1, big["id"])
    running = wait_evaluation(client, headers, started["id"], ("running", "succeeded", "failed", "cancelled"))
    until(lambda: client.get(f"/evaluations/{started['id']}", headers=headers).json["rows_done"] > 0, 60)
    assert client.post(f"/evaluations/{started['id']}/cancel", headers=headers).status_code == 200
    ended = wait_evaluation(client, headers, started["id"])
    assert running["status"] == "running"
    assert ended["status"] == "cancelled" and ended["metrics"] is None
    assert 0 < ended["rows_done"] < ended["rows_total"] == 3000


def test_an_evaluation_cancelled_while_its_request_waits_for_rate_limit_room_stops_waiting(client_for, make_app):
    idle = client_for(TRAINER=True, TRAINING_POLL_S=0.1)
    client, headers = idle.client, idle.headers
    dataset = add_dataset(client, headers, iris_csv())
    trained(client, headers, "iris", dataset["id"])
    # One request a minute, a row a request: the second row waits up to a minute for room.
    make_app(DATA_DIR=idle.app.extensions["settings"].data_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.1,
             EVALUATION_CHUNK_ROWS=1, ACCOUNT_REQUESTS_PER_MIN=1)
    started = evaluate(client, headers, "iris", 1, dataset["id"])
    until(lambda: client.get(f"/evaluations/{started['id']}", headers=headers).json["rows_done"] == 1, 60)
    assert client.post(f"/evaluations/{started['id']}/cancel", headers=headers).status_code == 200
    ended = wait_evaluation(client, headers, started["id"])
    # Without giving up it would send the second row once the minute is over, then stop.
    assert ended["status"] == "cancelled" and ended["rows_done"] == 1


def test_another_accounts_versions_datasets_and_evaluations_are_not_found(api):
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, iris_csv())
    trained(client, headers, "iris", dataset["id"])
    mine = wait_evaluation(client, headers, evaluate(client, headers, "iris", 1, dataset["id"])["id"])
    mallory = api.headers_for("mallory")
    her_dataset = add_dataset(client, mallory, iris_csv())
    trained(client, mallory, "hers", her_dataset["id"])

    for path in (f"/evaluations/{mine['id']}", "/models/iris/versions/1/evaluations",
                 f"/models/iris/compare?versions=1&dataset_id={dataset['id']}"):
        answer = client.get(path, headers=mallory)
        assert answer.status_code == 404, (path, answer.json)
    assert client.post(f"/evaluations/{mine['id']}/cancel", headers=mallory).status_code == 404
    assert client.get("/evaluations", headers=mallory).json["data"] == []
    # Alice's version with mallory's dataset, mallory's version with alice's dataset: neither exists for them.
    assert client.post("/models/iris/versions/1/evaluate", json={"dataset_id": her_dataset["id"]},
                       headers=mallory).status_code == 404
    stolen = client.post("/models/hers/versions/1/evaluate", json={"dataset_id": dataset["id"]}, headers=mallory)
    assert stolen.status_code == 404 and dataset["id"] in stolen.json["message"]
    assert client.get(f"/models/hers/compare?versions=1&dataset_id={dataset['id']}",
                      headers=mallory).status_code == 404
    # Her own works; alice's list is untouched.
    assert wait_evaluation(client, mallory, evaluate(client, mallory, "hers", 1, her_dataset["id"])["id"])[
        "status"] == "succeeded"
    assert [e["id"] for e in client.get("/evaluations", headers=headers).json["data"]] == [mine["id"]]


def test_evaluations_that_cannot_work_are_refused_with_what_to_fix(client_for):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, ACCOUNT_MAX_ACTIVE_EVALUATIONS=1)
    client, headers = api.client, api.headers
    tabular = add_dataset(client, headers, iris_csv())
    text = add_dataset(client, headers, "text,label\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(10)))
    prompts = add_dataset(client, headers, "".join(
        f'{{"prompt": "say {i}", "completion": "{i}"}}\n' for i in range(10)))
    assert (text["format"], prompts["format"]) == ("text-label", "prompt-completion")
    trained(client, headers, "iris", tabular["id"])

    def refused(path, body):
        answer = client.post(path, json=body, headers=headers)
        assert 400 <= answer.status_code < 500, answer.json
        return answer.status_code, answer.json["message"]

    code, message = refused("/models/iris/versions/1/evaluate", {"dataset_id": text["id"]})
    assert code == 422 and "text-label" in message and "text-classification" in message and "tabular" in message
    code, message = refused("/models/iris/versions/1/evaluate", {"dataset_id": prompts["id"]})
    assert code == 422 and "prompt-completion" in message and "text-generation" in message and "tabular" in message
    assert refused("/models/iris/versions/7/evaluate", {"dataset_id": tabular["id"]})[0] == 404
    assert refused("/models/nothing/versions/1/evaluate", {"dataset_id": tabular["id"]})[0] == 404
    assert refused("/models/iris/versions/1/evaluate", {"dataset_id": "ds_missing"})[0] == 404
    assert refused("/models/iris/versions/1/evaluate", {})[0] == 422
    assert refused("/models/iris/versions/1/evaluate", {"dataset_id": tabular["id"], "extra": 1})[0] == 422
    code, message = client.get(f"/models/iris/compare?versions=one&dataset_id={tabular['id']}",
                               headers=headers).status_code, None
    assert code == 422
    too_many = ",".join(["1"] * 11)
    assert client.get(f"/models/iris/compare?versions={too_many}&dataset_id={tabular['id']}",
                      headers=headers).status_code == 422

    # Nothing runs evaluations in this app: the first (the UI's form) stays queued, the second is over the limit.
    ui = UiClient(api.app, api.key)
    assert ui.post("/ui/models/iris/evaluate", {"version": "1", "dataset_id": tabular["id"]}).status_code == 302
    (queued,) = client.get("/evaluations", headers=headers).json["data"]
    assert (queued["status"], queued["version"], queued["dataset_id"]) == ("queued", 1, tabular["id"])
    answer = client.post("/models/iris/versions/1/evaluate", json={"dataset_id": tabular["id"]}, headers=headers)
    assert answer.status_code == 429 and "INFER_ACCOUNT_MAX_ACTIVE_EVALUATIONS" in answer.json["message"]
    refused_page = ui.post("/ui/models/iris/evaluate", {"version": "1", "dataset_id": tabular["id"]},
                           follow_redirects=True).get_data(as_text=True)
    assert "INFER_ACCOUNT_MAX_ACTIVE_EVALUATIONS" in refused_page and queued["id"] in refused_page
    assert ui.post(f"/ui/evaluations/{queued['id']}/cancel").status_code == 302
    assert client.get(f"/evaluations/{queued['id']}", headers=headers).json["status"] == "cancelled"
    # Another account's model page and cancel button: not found.
    mallory = UiClient(api.app, new_key(api.app, "mallory"))
    assert mallory.get("/ui/models/iris/compare").status_code == 404
    assert mallory.post(f"/ui/evaluations/{queued['id']}/cancel").status_code == 404
    # A version never evaluated on the dataset compares as null, and the differences with it too.
    compared = client.get(f"/models/iris/compare?versions=1&dataset_id={text['id']}", headers=headers).json
    assert compared["versions"] == [{"version": 1, "evaluation": None}] and compared["table"] == []


ANIMALS = ["a cat sleeps on the mat", "the dog runs in the park", "a bird sings at dawn", "fish swim in the lake",
           "a horse eats hay", "the cow gives milk", "a fox hides in the wood", "bees make honey",
           "an owl hunts at night", "the frog jumps in the pond", "a lamb follows its mother", "ants carry leaves"]
REPHRASED = ["the cat naps on a rug", "a dog sprints through the park", "birds sing in the morning",
             "lake fish are swimming", "hay is what the horse eats", "milk comes from the cow",
             "the fox hides among trees", "honey is made by bees", "owls hunt after dark",
             "a frog leaps into the pond", "the lamb walks after the ewe", "leaves carried by ants"]
UNRELATED = ["stock prices fell today", "the train leaves at noon", "paint the fence blue", "taxes are due soon",
             "the printer is out of ink", "bake the bread for an hour", "the meeting moved to friday",
             "charge the phone overnight", "the road is closed", "water the plants", "the match ended in a draw",
             "update the software"]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def vectors_of(client, headers, model: str, texts: list[str]) -> np.ndarray:
    answer = client.post("/text-vectorisation", json={"model": model, "text": texts}, headers=headers)
    assert answer.status_code == 200, answer.json
    vectors = np.array(answer.json["vector"], dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_vectors_are_scored_by_the_similarity_and_retrieval_scipy_and_numpy_compute_on_the_same_vectors(
        client_for, tiny_sentence_model_dir):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, TRAINER=True, TRAINING_POLL_S=0.1, PREDICTIONS=True,
                     PREDICTION_POLL_S=0.1, EVALUATION_CHUNK_ROWS=5)
    client, headers = api.client, api.headers
    assert deploy(client, headers, "vectors", sentence_transformer_zip(tiny_sentence_model_dir))[
        "build_status"] == "success"
    scores = [round(0.9 - 0.05 * at, 2) for at in range(12)]
    scored = add_dataset(client, headers, jsonl([
        {"sentence1": left, "sentence2": right if at % 2 else other, "score": score}
        for at, (left, right, other, score) in enumerate(zip(ANIMALS, REPHRASED, UNRELATED, scores))]))
    triplets = add_dataset(client, headers, jsonl([
        {"anchor": anchor, "positive": positive, "negative": negative}
        for anchor, positive, negative in zip(ANIMALS, REPHRASED, UNRELATED)]))
    assert (scored["format"], triplets["format"]) == ("scored-pairs", "text-triplets"), (scored, triplets)

    similarity = wait_evaluation(client, headers, evaluate(client, headers, "vectors", 1, scored["id"])["id"])
    assert similarity["status"] == "succeeded", similarity["message"]
    assert similarity["task"] == "text-vectorisation" and similarity["rows_done"] == 12
    lefts = vectors_of(client, headers, "vectors@1", ANIMALS)
    rights = vectors_of(client, headers, "vectors@1", [REPHRASED[at] if at % 2 else UNRELATED[at] for at in range(12)])
    cosine = np.sum(lefts * rights, axis=1)
    assert similarity["metrics"]["spearman"] == pytest.approx(spearmanr(cosine, scores).statistic, abs=1e-6)
    assert similarity["metrics"]["pearson"] == pytest.approx(pearsonr(cosine, scores).statistic, abs=1e-6)

    retrieval = wait_evaluation(client, headers, evaluate(client, headers, "vectors", 1, triplets["id"])["id"])
    assert retrieval["status"] == "succeeded", retrieval["message"]
    anchors, positives, negatives = (vectors_of(client, headers, "vectors@1", texts)
                                     for texts in (ANIMALS, REPHRASED, UNRELATED))
    candidates = np.concatenate([positives, negatives])
    ranks = []
    for at, anchor in enumerate(anchors):
        similarities = candidates @ anchor
        ranks.append(int(np.sum(similarities >= similarities[at] - 1e-9)))  # its positive, ties counted against it
    ranks = np.array(ranks)
    metrics = retrieval["metrics"]
    assert metrics["candidates"] == 24
    assert metrics["accuracy_at_1"] == pytest.approx(np.mean(ranks == 1))
    assert metrics["recall_at_5"] == pytest.approx(np.mean(ranks <= 5))
    assert metrics["mrr"] == pytest.approx(np.mean(1 / ranks))
    closer = np.sum(anchors * positives, axis=1) > np.sum(anchors * negatives, axis=1)
    assert metrics["triplet_accuracy"] == pytest.approx(np.mean(closer))


HELD_OUT_REVIEWS = [("a marvellous concert", "positive"), ("I adore this place", "positive"),
                    ("such a pleasant surprise", "positive"), ("kind and helpful staff", "positive"),
                    ("an excellent book", "positive"), ("not good at all", "negative"),
                    ("a horrible mess", "negative"), ("the food was awful", "negative"),
                    ("boring and far too long", "negative"), ("I am very disappointed", "negative"),
                    ("great", "negative"), ("terrible", "positive")]  # two mislabelled: no version is perfect


def test_a_setfit_classifier_on_the_packaged_minilm_is_scored_as_scikit_learn_scores_its_answers(api):
    from .test_text_classifier_flow import reviews_csv

    client, headers = api.client, api.headers
    train = add_dataset(client, headers, reviews_csv().decode(), text_column="review", label_column="sentiment")
    held_out = add_dataset(client, headers, "text,label\n" + "".join(
        f'"{text}",{label}\n' for text, label in HELD_OUT_REVIEWS))
    assert (train["status"], held_out["format"]) == ("ready", "text-label"), (train, held_out)
    job = wait_job(client, headers, start_job(client, headers, "sentiment", task="text-classification",
                                              dataset_id=train["id"], validation_split=0.25,
                                              hyperparameters={"epochs": 1, "num_iterations": 5})["id"],
                   timeout_s=900)  # the machine's cores may be shared with other test runs
    assert job["status"] == "succeeded", job["message"]

    done = wait_evaluation(client, headers, evaluate(client, headers, "sentiment", 1, held_out["id"])["id"],
                           timeout_s=600)
    assert done["status"] == "succeeded", done["message"]
    assert done["task"] == "text-classification" and (done["rows_done"], done["rows_failed"]) == (12, 0)
    texts, gold = [text for text, _ in HELD_OUT_REVIEWS], [label for _, label in HELD_OUT_REVIEWS]
    answer = client.post("/text-classification", json={"model": "sentiment@1", "text": texts}, headers=headers)
    assert answer.status_code == 200, answer.json
    predicted = [max(scores, key=scores.get) for scores in answer.json["probabilities"]]
    labels = ["negative", "positive"]
    metrics = done["metrics"]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(gold, predicted, labels=labels, average="macro"))
    assert metrics["confusion_matrix"] == {"labels": labels,
                                           "matrix": confusion_matrix(gold, predicted, labels=labels).tolist()}
    assert metrics["accuracy"] < 1.0


@pytest.fixture
def hook():
    receiver = Receiver((200,))
    yield receiver
    receiver.close()


def test_an_evaluation_reads_a_revision_of_its_dataset_calls_its_webhook_and_keeps_its_dataset(client_for, hook):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, PREDICTIONS=True, PREDICTION_POLL_S=0.1,
                     WEBHOOK_ALLOWED_NETWORKS=LOOPBACK)
    client, headers = api.client, api.headers
    trained(client, headers, "iris", add_dataset(client, headers, iris_csv(), name="iris")["id"], seed=1)
    held_out = add_dataset(client, headers, noisy_iris_csv(), name="noisy iris")
    assert client.delete(f"/datasets/{held_out['id']}/classes/Iris-setosa", headers=headers).status_code == 200

    started = client.post("/models/iris/versions/1/evaluate", headers=headers,
                          json={"dataset_id": held_out["id"], "webhook": hook.url})
    assert started.status_code == 202 and started.json["dataset_revision"] == 2, started.json
    latest = wait_evaluation(client, headers, started.json["id"])
    pinned = wait_evaluation(client, headers, client.post("/models/iris/versions/1/evaluate", headers=headers, json={
        "dataset_id": held_out["id"], "dataset_revision": 1}).json["id"])
    assert (latest["status"], latest["rows_total"], latest["dataset_revision"]) == ("succeeded", 100, 2)
    assert (pinned["status"], pinned["rows_total"], pinned["dataset_revision"]) == ("succeeded", 150, 1)
    # Revision 2 has no setosa left to score (the version may still answer it: a class with no support).
    assert latest["metrics"]["per_class"].get("Iris-setosa", {"support": 0})["support"] == 0
    assert pinned["metrics"]["per_class"]["Iris-setosa"]["support"] == 50

    # The webhook: once, signed with the account's secret, the evaluation as GET answers it.
    ((call_headers, body),) = hook.wait_calls(1)
    assert call_headers["X-Infer-Event"] == "evaluation.finished"
    assert verified(api, call_headers, body) == client.get(f"/evaluations/{latest['id']}", headers=headers).json

    compared = client.get(f"/models/iris/compare?versions=1&dataset_id={held_out['id']}&dataset_revision=1",
                          headers=headers)
    assert compared.json["versions"][0]["evaluation"]["id"] == pinned["id"]
    no_such = client.post("/models/iris/versions/1/evaluate", headers=headers,
                          json={"dataset_id": held_out["id"], "dataset_revision": 3})
    assert no_such.status_code == 422 and "revisions 1 to 2" in no_such.json["message"]


def test_a_dataset_an_evaluation_waits_to_read_is_not_deleted(client_for):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1)  # no prediction runner: the evaluation stays queued
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, iris_csv(), name="iris")
    trained(client, headers, "iris", dataset["id"], seed=1)
    queued = evaluate(client, headers, "iris", 1, dataset["id"])
    refused = client.delete(f"/datasets/{dataset['id']}", headers=headers)
    assert refused.status_code == 409 and queued["id"] in refused.json["message"]
    assert client.post(f"/evaluations/{queued['id']}/cancel", headers=headers).status_code == 200
    assert client.delete(f"/datasets/{dataset['id']}", headers=headers).status_code == 200
