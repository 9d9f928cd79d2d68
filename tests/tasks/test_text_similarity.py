"""POST /text-similarity: the cosine of two texts' vectors, single and batch, equal to
sentence-transformers' own encode; bad input is a 422 that says what to fix; an
uploaded sentence-transformer folder that declares the task serves it."""

import io
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from ..tiny_models import packaged_minilm_dir
from ..uploads.helpers import deploy

PAIRS = [("A man is playing a guitar.", "Someone plays an instrument."),
         ("The cat sleeps on the sofa.", "Stock markets fell sharply today."),
         ("iPhone 12 128GB", "iPhone 12 128GB")]


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def expected_similarities(model, pairs) -> list[float]:
    vectors_a = model.encode([a for a, _ in pairs])
    vectors_b = model.encode([b for _, b in pairs])
    return [cosine(a, b) for a, b in zip(vectors_a, vectors_b)]


def body(pairs, **extra) -> dict:
    return {"text_a": [a for a, _ in pairs], "text_b": [b for _, b in pairs], **extra}


@pytest.fixture(scope="module")
def tiny_service(tmp_path_factory, tiny_sentence_model_dir):
    """The tiny sentence-transformer serving the catalogue's `multilingual` name."""
    model_dir = tmp_path_factory.mktemp("similarity") / "models"
    shutil.copytree(tiny_sentence_model_dir, model_dir / "multilingual")
    return str(model_dir)


def test_a_batch_of_pairs_equals_the_cosines_of_sentence_transformers_vectors(client_for, tiny_service,
                                                                               tiny_sentence_model_dir):
    from sentence_transformers import SentenceTransformer

    api = client_for(MODEL_DIR=tiny_service)
    response = api.client.post("/text-similarity", json=body(PAIRS, model="multilingual"), headers=api.headers)

    assert response.status_code == 200, response.json
    expected = expected_similarities(SentenceTransformer(tiny_sentence_model_dir, device="cpu"), PAIRS)
    assert response.json["similarity"] == pytest.approx(expected, abs=1e-4)
    assert response.json["similarity"][2] == pytest.approx(1.0, abs=1e-5)  # a text and itself


def test_a_single_pair_answers_one_number(client_for, tiny_service, tiny_sentence_model_dir):
    from sentence_transformers import SentenceTransformer

    api = client_for(MODEL_DIR=tiny_service)
    a, b = PAIRS[0]
    response = api.client.post("/text-similarity", json={"text_a": a, "text_b": b, "model": "multilingual"},
                               headers=api.headers)

    assert response.status_code == 200, response.json
    expected = expected_similarities(SentenceTransformer(tiny_sentence_model_dir, device="cpu"), [PAIRS[0]])[0]
    assert isinstance(response.json["similarity"], float)
    assert response.json["similarity"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.packaged_model
def test_the_default_model_is_minilm_and_equals_its_own_encode(client, headers):
    from sentence_transformers import SentenceTransformer

    response = client.post("/text-similarity", json=body(PAIRS), headers=headers)

    assert response.status_code == 200, response.json
    expected = expected_similarities(SentenceTransformer(packaged_minilm_dir(), device="cpu"), PAIRS)
    assert response.json["similarity"] == pytest.approx(expected, abs=1e-4)
    # Related sentences are closer than unrelated ones, with the real model.
    assert response.json["similarity"][0] > response.json["similarity"][1]


@pytest.mark.parametrize("sent, field, message", [
    ({"text_a": ["a", "b"], "text_b": ["c"]}, "text_b", "Send one text_b per text_a"),
    ({"text_a": "a", "text_b": ["c"]}, "text_b", "both single, or lists of one length"),
    ({"text_a": "", "text_b": "c"}, "text_a", "The text is empty"),
    ({"text_a": "a", "text_b": ["c", ""]}, "text_b", "The text is empty"),
    ({"text_a": "a"}, "text_b", "Missing data"),
    ({"text_a": "a", "text_b": "b", "text_c": "c"}, "text_c", "Unknown field"),
])
def test_bad_pairs_are_422_naming_the_field(client_for, sent, field, message):
    api = client_for()
    response = api.client.post("/text-similarity", json=sent, headers=api.headers)

    assert response.status_code == 422
    assert field in response.json["errors"], response.json
    assert message in json.dumps(response.json["errors"][field])


def test_over_the_batch_and_text_limits_is_422_naming_the_setting(client_for):
    api = client_for(MAX_BATCH_SIZE=2, MAX_TEXT_LENGTH=10)

    too_many = api.client.post("/text-similarity", json=body(PAIRS), headers=api.headers)
    too_long = api.client.post("/text-similarity", json={"text_a": "short", "text_b": "far too long a text"},
                               headers=api.headers)

    assert too_many.status_code == 422
    assert "INFER_MAX_BATCH_SIZE" in json.dumps(too_many.json)
    assert too_long.status_code == 422
    assert "INFER_MAX_TEXT_LENGTH" in json.dumps(too_long.json)


def folder_zip(folder: str, tasks: list[str]) -> bytes:
    """A Hugging Face sentence-transformer folder declaring `tasks`: served with no user code."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                content = open(path, "rb").read()
                if os.path.relpath(path, folder) == "config.json":
                    content = json.dumps({**json.loads(content), "description": "mine", "tasks": tasks}).encode()
                archive.writestr(os.path.relpath(path, folder), content)
    return buffer.getvalue()


def test_an_uploaded_vectoriser_declaring_the_task_serves_it(client_for, tiny_sentence_model_dir):
    from sentence_transformers import SentenceTransformer

    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    both = deploy(api.client, api.headers, "my-vectors",
                  folder_zip(tiny_sentence_model_dir, ["text-vectorisation", "text-similarity"]))
    only_vectors = deploy(api.client, api.headers, "just-vectors",
                          folder_zip(tiny_sentence_model_dir, ["text-vectorisation"]))
    assert both["build_status"] == "success", both
    assert only_vectors["build_status"] == "success", only_vectors

    served = api.client.post("/text-similarity", json=body(PAIRS, model="my-vectors"), headers=api.headers)
    refused = api.client.post("/text-similarity", json=body(PAIRS, model="just-vectors"), headers=api.headers)

    assert served.status_code == 200, served.json
    expected = expected_similarities(SentenceTransformer(tiny_sentence_model_dir, device="cpu"), PAIRS)
    assert served.json["similarity"] == pytest.approx(expected, abs=1e-4)
    assert refused.status_code == 404
    assert "does not do text-similarity" in refused.json["message"]


LENGTH_VECTORS = '''
def load_model(model_dir):
    return None

def call_model(model, task_input, task):
    return [float(len(task_input["text"])), 1.0]
'''


def test_uploaded_code_serves_it_and_a_prediction_url_takes_the_texts_from_the_query(client_for):
    from ..uploads.helpers import make_zip

    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    archive = make_zip({"inference.py": LENGTH_VECTORS, "requirements.txt": "",
                        "config.json": json.dumps({"description": "length vectors", "tasks": ["text-similarity"]})})
    assert deploy(api.client, api.headers, "lengths", archive)["build_status"] == "success"
    made = api.client.post("/models/lengths/prediction-url", json={"task": "text-similarity"}, headers=api.headers)
    assert made.status_code == 201, made.json

    # text_b "1" is a text field of the task: it stays the text "1" (one character), not the number 1.
    answer = api.client.get(made.json["url"][made.json["url"].index("/p/"):] + "?text_a=ab&text_b=1")

    assert answer.status_code == 200, answer.json
    assert answer.json["similarity"] == pytest.approx(3 / np.sqrt(10))  # cos([2, 1], [1, 1])
