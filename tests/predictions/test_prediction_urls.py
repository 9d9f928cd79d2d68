"""Private prediction URLs over HTTP: GET with the input in the query string and
POST, no API key; only the URL's model; revoked URLs 404; uses counted and limited."""

import pytest

from trainers.tabular import TabularTrainer

from ..tasks.test_predict import IRIS_ROW, add_trained_version, iris_rows
from ..uploads.helpers import deploy, inference_zip


@pytest.fixture
def api(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, PREDICTION_URL_RATE_PER_MIN=5)
    add_trained_version(api.app, "alice", "iris", TabularTrainer(), iris_rows(), [], "tabular", {"n_estimators": 20})
    return api


def make_url(api, model: str, task: str, **body) -> dict:
    created = api.client.post(f"/models/{model}/prediction-url", json={"task": task, **body}, headers=api.headers)
    assert created.status_code == 201, created.json
    return created.json


def path_of(url: str) -> str:
    return url[url.index("/p/"):]


def test_a_tabular_url_answers_a_get_with_the_features_in_the_query_without_a_key(api):
    made = make_url(api, "iris", "tabular")
    query = "&".join(f"{column}={value}" for column, value in IRIS_ROW.items())
    answer = api.client.get(f"{path_of(made['url'])}?{query}")  # no x-api-key
    assert answer.status_code == 200, answer.json
    assert answer.json["prediction"] == "setosa"
    assert abs(sum(answer.json["probabilities"].values()) - 1) < 1e-6
    posted = api.client.post(path_of(made["url"]), json={"features": [IRIS_ROW, IRIS_ROW]})
    assert posted.json["prediction"] == ["setosa", "setosa"]
    # The model's own checks still apply, as with a key.
    missing = api.client.get(f"{path_of(made['url'])}?sepal_length=5.1")
    assert missing.status_code == 422 and "petal_width" in missing.json["message"]
    listed = api.client.get("/models/iris/prediction-urls", headers=api.headers).json
    assert [(u["id"], u["uses"], u["url"]) for u in listed] == [(made["id"], 3, None)]  # the secret is shown once


def test_a_text_url_answers_text_from_the_query(api):
    assert deploy(api.client, api.headers, "scaler", inference_zip("3"))["build_status"] == "success"
    made = make_url(api, "scaler", "text-vectorisation")
    answer = api.client.get(f"{path_of(made['url'])}?text=ab")
    assert answer.status_code == 200, answer.json
    assert answer.json["vector"] == [6.0, 1.0]  # the uploaded code: [len * 3, 1]


def test_the_url_reaches_only_its_own_model_and_task(api):
    made = make_url(api, "iris", "tabular")
    other = api.client.post(path_of(made["url"]), json={"model": "english", "text": "hello"})
    assert other.status_code == 400 and "its own model" in other.json["message"]
    assert api.client.get(f"{path_of(made['url'])}?model=english").status_code == 400
    refused = api.client.post("/models/iris/prediction-url", json={"task": "text-vectorisation"}, headers=api.headers)
    assert refused.status_code == 422 and "tabular" in refused.json["message"]
    mallory = api.headers_for("mallory")
    assert api.client.post("/models/iris/prediction-url", json={"task": "tabular"}, headers=mallory).status_code == 404
    assert api.client.get("/models/iris/prediction-urls", headers=mallory).status_code == 404
    assert api.client.delete(f"/prediction-urls/{made['id']}", headers=mallory).status_code == 404
    assert api.client.get("/p/pk_guessed?sepal_length=1").status_code == 404
    for raw in ("[" * 100_000, "not json"):
        bad = api.client.post(path_of(made["url"]), data=raw, headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "JSON" in bad.json["message"]


def test_a_revoked_url_answers_404(api):
    made = make_url(api, "iris", "tabular")
    assert api.client.delete(f"/prediction-urls/{made['id']}", headers=api.headers).status_code == 200
    answer = api.client.post(path_of(made["url"]), json={"features": IRIS_ROW})
    assert answer.status_code == 404 and "revoked" in answer.json["message"]
    assert api.client.get("/models/iris/prediction-urls", headers=api.headers).json[0]["revoked_at"]


def test_uses_are_counted_and_held_to_the_rate_setting(api):
    made = make_url(api, "iris", "tabular")
    answers = [api.client.post(path_of(made["url"]), json={"features": IRIS_ROW}).status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]  # INFER_PREDICTION_URL_RATE_PER_MIN=5
    limited = api.client.post(path_of(made["url"]), json={"features": IRIS_ROW})
    assert "INFER_PREDICTION_URL_RATE_PER_MIN" in limited.json["message"] and limited.headers["Retry-After"]
    assert api.client.get("/models/iris/prediction-urls", headers=api.headers).json[0]["uses"] == 5


def test_a_pinned_url_keeps_answering_its_version(api):
    made = make_url(api, "iris", "tabular", version=1)
    assert made["version"] == 1
    assert api.client.post(path_of(made["url"]), json={"features": IRIS_ROW}).status_code == 200
    gone = make_url(api, "iris", "tabular", version=7)
    answer = api.client.post(path_of(gone["url"]), json={"features": IRIS_ROW})
    assert answer.status_code == 404 and "version 7" in answer.json["message"]


def test_an_image_url_answers_a_multipart_post_with_the_image_file(client_for, tiny_model_dir, tmp_path):
    import io
    import os

    from PIL import Image

    from trainers.clip_probe import ClipProbeTrainer

    api = client_for(MODEL_DIR=tiny_model_dir)
    rows = []
    for label, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        os.makedirs(tmp_path / "images" / label)
        for index in range(3):
            Image.new("RGB", (32, 32), colour).save(tmp_path / "images" / label / f"{index}.png")
            rows.append({"image": f"images/{label}/{index}.png", "label": label})
    base = "clip-vit-base-patch32"
    add_trained_version(api.app, "alice", "colours", ClipProbeTrainer(), rows, [], "image-folders",
                        base_model=base, base_model_dir=os.path.join(tiny_model_dir, base), dataset_dir=str(tmp_path))
    made = make_url(api, "colours", "image-classification")
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (210, 40, 40)).save(png, format="PNG")
    answer = api.client.post(path_of(made["url"]), content_type="multipart/form-data",
                             data={"image": (io.BytesIO(png.getvalue()), "red.png"), "labels": "red,blue"})
    assert answer.status_code == 200, answer.json
    assert set(answer.json["probabilities"]) == {"red", "blue"}


def test_no_header_a_client_sends_can_act_as_an_account(api):
    # The internal account rides in the WSGI environ, where headers arrive only as HTTP_*.
    for name in ("infer.internal_account", "Infer-Internal-Account", "X-Infer-Internal-Account"):
        answer = api.client.post("/predict", json={"model": "iris", "features": IRIS_ROW}, headers={name: "1"})
        assert answer.status_code == 401, name
