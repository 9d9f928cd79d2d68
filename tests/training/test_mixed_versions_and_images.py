"""Uploaded and trained versions in one list; an image dataset zip to a served
CLIP probe, over HTTP."""

import io
import json
import random
import zipfile

from ..tasks.test_predict import RULE
from ..uploads.helpers import deploy, make_zip
from .flow import add_dataset, iris_csv, start_job, wait_dataset, wait_job

ROW = {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1}


def test_uploaded_and_trained_versions_share_one_list_and_promotions(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, TRAINER=True, TRAINING_POLL_S=0.1)
    client, headers = api.client, api.headers
    archive = make_zip({"inference.py": RULE, "requirements.txt": "",
                        "config.json": json.dumps({"description": "a rule", "tasks": ["tabular"]})})
    assert deploy(client, headers, "flowers", archive)["build_status"] == "success"
    assert client.post("/predict", json={"model": "flowers", "features": ROW}, headers=headers).json[
        "prediction"] == "big"  # the uploaded rule: 17.5 > 10

    dataset = add_dataset(client, headers, iris_csv())
    trained = wait_job(client, headers, start_job(client, headers, "flowers", task="tabular",
                                                  dataset_id=dataset["id"])["id"])
    assert trained["status"] == "succeeded" and trained["version"] == 2
    assert client.post("/predict", json={"model": "flowers", "features": ROW}, headers=headers).json[
        "prediction"] == "Iris-virginica"
    assert client.post("/predict", json={"model": "flowers@1", "features": ROW}, headers=headers).json[
        "prediction"] == "big"

    versions = client.get("/models/flowers/versions", headers=headers).json
    assert [(v["version"], v["source"], v["format"], v["serving"]) for v in versions] == [
        (1, "upload", "inference", False), (2, "training", "sklearn", True)]
    assert client.post("/models/flowers/versions/1/promote", headers=headers).status_code == 200
    assert client.post("/predict", json={"model": "flowers", "features": ROW}, headers=headers).json[
        "prediction"] == "big"
    history = client.get("/models/flowers/serving-history", headers=headers).json
    assert [(m["from_version"], m["to_version"], m["reason"]) for m in history] == [
        (None, 1, "build"), (1, 2, "training"), (2, 1, "promote")]
    assert client.post("/models/flowers/versions/3/promote", headers=headers).status_code == 404


def colour_zip(per_label: int = 6) -> bytes:
    from PIL import Image

    rng = random.Random(3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for label, base in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
            for index in range(per_label):
                colour = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in base)
                png = io.BytesIO()
                Image.new("RGB", (40, 40), colour).save(png, format="PNG")
                archive.writestr(f"colours/{label}/{index}.png", png.getvalue())
    return buffer.getvalue()


def test_an_image_zip_trains_a_probe_that_answers_image_classification_without_labels(client_for, tiny_model_dir):
    import base64

    from PIL import Image

    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, MODEL_DIR=tiny_model_dir)
    client, headers = api.client, api.headers
    created = client.post("/datasets", headers=headers, content_type="multipart/form-data",
                          data={"file": (io.BytesIO(colour_zip()), "colours.zip")})
    assert created.status_code == 201, created.json
    dataset = wait_dataset(client, headers, created.json["id"])
    assert dataset["status"] == "ready", dataset["parse_logs"]
    assert dataset["format"] == "image-folders" and dataset["stats"]["labels"] == {"red": 6, "blue": 6}

    done = wait_job(client, headers, start_job(client, headers, "colours", task="image-classification",
                                               dataset_id=dataset["id"], validation_split=0.34)["id"])
    assert done["status"] == "succeeded", done["message"]
    assert done["base_model"] == "clip-vit-base-patch32" and len(done["epochs"]) == 1
    assert set(done["metrics"]["per_class"]) == {"red", "blue"}

    png = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 40, 40)).save(png, format="PNG")
    answer = client.post("/image-classification", headers=headers, json={
        "image": base64.b64encode(png.getvalue()).decode(), "model": "colours"})
    assert answer.status_code == 200, answer.json
    probabilities = answer.json["probabilities"]
    assert set(probabilities) == {"red", "blue"} and abs(sum(probabilities.values()) - 1) < 1e-6
