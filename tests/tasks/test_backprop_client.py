"""Backprop's own Python client (backprop-ai/backprop, releases 0.0.1-0.1.3) against this service.

Every body shape the client sends, sent the way it sends it (requests' `json=`, an
`x-api-key` header and requests' defaults: `Accept: */*`, no `Accept: application/json`),
and the key the client then reads, with the type it expects. The client calls
`.json()` on every reply and raises on a truthy `message` whatever the status, so a
success body must be a JSON object without `message`, and an error body must carry one.

Citations: `pypi:V path:line` is that file in the backprop-V sdist on PyPI; commits are
backprop-ai/backprop's. The bodies are the ones recorded from the client's own code
(the survey behind this service's "Backprop client library compatibility" notes).
"""

import base64
import io
import json
import os
import time

import pytest
import requests
from PIL import Image

from app import create_app

from ..conftest import LiveServer, new_key
from ..uploads.helpers import make_zip


def encoded(fmt: str, color, size=(24, 16)) -> str:
    """An image file as the client sends it: the file's bytes, base64, no data: prefix."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return base64.b64encode(buffer.getvalue()).decode()


PNG = encoded("PNG", (200, 30, 30))
JPEG = encoded("JPEG", (30, 30, 200))
CLIP_DIMS = 16  # the tiny CLIP's projection_dim


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tiny_sentence_model_dir, tmp_path_factory):
    """The tiny stand-ins, plus a tiny sentence model as english and multilingual text vectors."""
    root = tmp_path_factory.mktemp("backprop-client-models")
    for name in os.listdir(tiny_model_dir):
        os.symlink(os.path.join(tiny_model_dir, name), root / name)
    for key in ("all-MiniLM-L6-v2", "paraphrase-multilingual-MiniLM-L12-v2"):
        os.symlink(tiny_sentence_model_dir, root / key)
    return str(root)


@pytest.fixture(scope="module")
def service(model_dir, tmp_path_factory):
    """The service on a real HTTP port, as the client reaches it; its builder runs."""
    app = create_app({"DATA_DIR": str(tmp_path_factory.mktemp("data")), "BOOTSTRAP_KEY": False, "TESTING": True,
                      "BUILDER": True, "BUILD_POLL_S": 0.2, "MODEL_DIR": model_dir})
    try:
        with LiveServer(app) as live:
            yield live.url, new_key(app, "alice")
    finally:
        app.extensions["builder"].stop()


def post(service, path: str, body: dict) -> requests.Response:
    base, key = service
    # The client's call, e.g. pypi:0.1.3 backprop/tasks/text_vectorisation.py:78.
    return requests.post(f"{base}{path}", json=body, headers={"x-api-key": key})


def client_reads(response: requests.Response, key: str):
    """What the client does with a reply: .json(), raise on a truthy message, then res[key]."""
    res = response.json()
    assert response.status_code == 200, res
    assert isinstance(res, dict), res
    assert "message" not in res, res
    return res[key]


def client_error(response: requests.Response) -> str:
    """The message the client raises with (`Failed to make API request: ...`)."""
    res = response.json()
    assert response.status_code != 200 and isinstance(res, dict) and res.get("message"), res
    return res["message"]


def vector(value, dims=None) -> bool:
    return (isinstance(value, list) and bool(value) and all(isinstance(v, float) for v in value)
            and (dims is None or len(value) == dims))


def vectors(count, dims=None):
    return lambda value: isinstance(value, list) and len(value) == count and all(vector(v, dims) for v in value)


def string(value) -> bool:
    return isinstance(value, str) and bool(value)


def strings(count):
    return lambda value: isinstance(value, list) and len(value) == count and all(string(v) for v in value)


def probabilities(labels):
    return lambda value: (isinstance(value, dict) and set(value) == set(labels)
                          and all(isinstance(p, float) and 0 <= p <= 1 for p in value.values()))


def probabilities_each(*labels):
    return lambda value: (isinstance(value, list) and len(value) == len(labels)
                          and all(probabilities(item)(got) for item, got in zip(labels, value)))


CASES = [
    # /text-vectorisation, 0.0.2-0.0.9: DEFAULT_API_MODEL "english"
    # (pypi:0.0.9 backprop/tasks/text_vectorisation.py:58-63; commit 89329d3f47de9f2daae984200091c036c9464b71).
    pytest.param("/text-vectorisation", {"text": "hello", "model": "english"}, "vector", vector, id="tv-0.0.9"),
    # 0.0.x, a batch with multilingual (pypi:0.0.9 backprop/tasks/text_vectorisation.py:58-63; API_MODELS).
    pytest.param("/text-vectorisation", {"text": ["a", "b"], "model": "multilingual"}, "vector", vectors(2),
                 id="tv-0.0.9-batch"),
    # 0.1.x: model "" when the user names none
    # (pypi:0.1.3 backprop/tasks/text_vectorisation.py:73-78; commit 22b723e9a9b706cd11bf848d9514021fb2a3e203).
    pytest.param("/text-vectorisation", {"text": "hello", "model": ""}, "vector", vector, id="tv-0.1.3"),
    pytest.param("/text-vectorisation", {"text": ["a", "b"], "model": ""}, "vector", vectors(2), id="tv-0.1.3-batch"),
    # "clip" (API_MODELS from 0.0.8; a local name in 0.1.x, sent verbatim): pypi:0.0.9 text_vectorisation.py.
    pytest.param("/text-vectorisation", {"text": "a red square", "model": "clip"}, "vector",
                 lambda v: vector(v, CLIP_DIMS), id="tv-clip"),

    # /qa, 0.0.2-0.0.9, no history: prev_q and prev_a are always sent, [] here
    # (pypi:0.0.9 backprop/tasks/qa.py:55-76; commit 554dbfd3c772c7f4727f712eee0eb0f6cc86d8bf).
    pytest.param("/qa", {"question": "q?", "context": "ctx", "prev_q": [], "prev_a": [], "model": "english"},
                 "answer", string, id="qa-0.0.9"),
    # 0.0.x, one question with history (pypi:0.0.9 backprop/tasks/qa.py:62-64).
    pytest.param("/qa", {"question": "q?", "context": "ctx", "prev_q": ["q0", "q1"], "prev_a": ["a0", "a1"],
                         "model": "english"}, "answer", string, id="qa-0.0.9-history"),
    # 0.0.x, a batch's histories flattened into one list (pypi:0.0.9 backprop/tasks/qa.py:58-61).
    pytest.param("/qa", {"question": ["q1", "q2"], "context": ["c1", "c2"], "prev_q": ["pq"], "prev_a": ["pa"],
                         "model": "english"}, "answer", strings(2), id="qa-0.0.9-batch-flattened"),
    # 0.0.1 and commit 0e6468855c7eeb25095e6fd7b4db6c65a35d7726: "prev_a": prev_q (pypi:0.0.1 backprop/tasks/qa.py:66-77).
    pytest.param("/qa", {"question": "q?", "context": "ctx", "prev_q": ["q0", "q1"], "prev_a": ["q0", "q1"],
                         "model": "english"}, "answer", string, id="qa-0.0.1-prev_a-bug"),
    # 0.1.x, a batch with nested per-item history, [] for an item without
    # (pypi:0.1.3 backprop/tasks/qa.py:65-95; commit 22b723e9a9b706cd11bf848d9514021fb2a3e203).
    pytest.param("/qa", {"question": ["q1", "q2"], "context": ["c1", "c2"], "prev_q": [["pq"], []],
                         "prev_a": [["pa"], []], "model": ""}, "answer", strings(2), id="qa-0.1.3-batch-nested"),
    # Every release, a batch without history: flat [] (pypi:0.1.3 backprop/tasks/qa.py:65-72).
    pytest.param("/qa", {"question": ["q1", "q2"], "context": ["c1", "c2"], "prev_q": [], "prev_a": [], "model": ""},
                 "answer", strings(2), id="qa-0.1.3-batch-no-history"),
    # 0.1.x, one question with history, and Backprop's T5 by name (pypi:0.1.3 backprop/tasks/qa.py:65-95).
    pytest.param("/qa", {"question": "q?", "context": "ctx", "prev_q": ["q0"], "prev_a": ["a0"],
                         "model": "t5-base-qa-summary-emotion"}, "answer", lambda v: isinstance(v, str), id="qa-0.1.3-t5"),

    # /text-classification, 0.0.2-0.0.9 (pypi:0.0.9 backprop/tasks/text_classification.py:64-70;
    # commit 0e6468855c7eeb25095e6fd7b4db6c65a35d7726).
    pytest.param("/text-classification", {"text": "t", "labels": ["a", "b"], "model": "english"}, "probabilities",
                 probabilities(["a", "b"]), id="tc-0.0.9"),
    # 0.0.x multilingual (API_MODELS = ["english", "multilingual"], pypi:0.0.1 backprop/tasks/text_classification.py:16).
    pytest.param("/text-classification", {"text": "t", "labels": ["a", "b"], "model": "multilingual"}, "probabilities",
                 probabilities(["a", "b"]), id="tc-0.0.1-multilingual"),
    # 0.1.x, top_k sent when non-zero (pypi:0.1.3 backprop/tasks/text_classification.py:69-83;
    # commit 22b723e9a9b706cd11bf848d9514021fb2a3e203).
    pytest.param("/text-classification", {"text": "t", "labels": ["a", "b"], "top_k": 1, "model": ""},
                 "probabilities", lambda v: isinstance(v, dict) and len(v) == 1 and set(v) <= {"a", "b"},
                 id="tc-0.1.3-top_k"),
    # 0.1.x batch, a label list per text (pypi:0.1.3 backprop/tasks/text_classification.py:69-83).
    pytest.param("/text-classification", {"text": ["t1", "t2"], "labels": [["a", "b"], ["c"]], "model": ""},
                 "probabilities", probabilities_each(["a", "b"], ["c"]), id="tc-0.1.3-batch"),

    # /image-classification, 0.0.1-0.0.7: a file's bytes, base64 (pypi:0.0.2 backprop/tasks/image_classification.py:62-83;
    # commit 554dbfd3c772c7f4727f712eee0eb0f6cc86d8bf).
    pytest.param("/image-classification", {"image": PNG, "labels": ["cat", "dog"], "model": "english"},
                 "probabilities", probabilities(["cat", "dog"]), id="ic-0.0.2"),
    # 0.0.8-0.0.9, a batch of a PNG and a JPEG with a label list each
    # (pypi:0.0.9 backprop/tasks/image_classification.py:66-93; commit 6147d51727ef06ad8f0be81ea50f7df7ca275c37).
    pytest.param("/image-classification", {"image": [PNG, JPEG], "labels": [["cat"], ["dog"]], "model": "english"},
                 "probabilities", probabilities_each(["cat"], ["dog"]), id="ic-0.0.9-batch"),
    # 0.1.x (pypi:0.1.3 backprop/tasks/image_classification.py:75-90; backprop/utils/helpers.py:59-80;
    # commits 22b723e9a9b706cd11bf848d9514021fb2a3e203, 32d60bb3ccad7b0ed7bf55cc0a5fd85b9d1a224c).
    pytest.param("/image-classification", {"image": PNG, "labels": ["cat", "dog"], "model": ""},
                 "probabilities", probabilities(["cat", "dog"]), id="ic-0.1.3"),
    # 0.1.x with top_k (pypi:0.1.3 backprop/tasks/image_classification.py:75-82).
    pytest.param("/image-classification", {"image": JPEG, "labels": ["cat", "dog", "car"], "top_k": 2, "model": ""},
                 "probabilities", lambda v: isinstance(v, dict) and len(v) == 2 and set(v) <= {"cat", "dog", "car"},
                 id="ic-0.1.3-top_k"),
    # 0.1.x batch with one shared label list (pypi:0.1.3 backprop/tasks/image_classification.py:75-90).
    pytest.param("/image-classification", {"image": [PNG, JPEG], "labels": ["cat", "dog"], "model": ""},
                 "probabilities", probabilities_each(["cat", "dog"], ["cat", "dog"]), id="ic-0.1.3-batch-shared"),
    # The reference's own examples are data: URIs (backprop-ai/slate Backprop_API-1.0.0 OpenAPI file).
    pytest.param("/image-classification", {"image": f"data:image/png;base64,{PNG}", "labels": ["cat", "dog"],
                                           "model": "clip"}, "probabilities", probabilities(["cat", "dog"]),
                 id="ic-reference-data-uri"),

    # /image-vectorisation, 0.0.8-0.0.9: DEFAULT_API_MODEL "clip"
    # (pypi:0.0.9 backprop/tasks/image_vectorisation.py:62-87; commit 6147d51727ef06ad8f0be81ea50f7df7ca275c37).
    pytest.param("/image-vectorisation", {"image": PNG, "model": "clip"}, "vector",
                 lambda v: vector(v, CLIP_DIMS), id="iv-0.0.9"),
    # 0.1.x (pypi:0.1.3 backprop/tasks/image_vectorisation.py:76-87; commit 22b723e9a9b706cd11bf848d9514021fb2a3e203).
    pytest.param("/image-vectorisation", {"image": JPEG, "model": ""}, "vector", lambda v: vector(v, CLIP_DIMS),
                 id="iv-0.1.3"),
    pytest.param("/image-vectorisation", {"image": [PNG, JPEG], "model": ""}, "vector", vectors(2, CLIP_DIMS),
                 id="iv-0.1.3-batch"),

    # /image-text-vectorisation, 0.1.0-0.1.3 only, not in the reference
    # (pypi:0.1.3 backprop/tasks/image_text_vectorisation.py:84-98; commit 22b723e9a9b706cd11bf848d9514021fb2a3e203).
    pytest.param("/image-text-vectorisation", {"image": PNG, "text": "caption", "model": ""}, "vector",
                 lambda v: vector(v, 2 * CLIP_DIMS), id="itv-0.1.3"),
    pytest.param("/image-text-vectorisation", {"image": [PNG, JPEG], "text": ["red", "blue"], "model": ""}, "vector",
                 vectors(2, 2 * CLIP_DIMS), id="itv-0.1.3-batch"),

    # /text-generation: only the parameters the user set are sent; with none, text and model alone.
    # 0.0.x (pypi:0.0.9 backprop/tasks/text_generation.py:65-78; commit 125f0f4399bc6bb8959ff6fafa77a194a969447f).
    pytest.param("/text-generation", {"text": "Hello", "model": "gpt2-large"}, "output", string, id="tg-0.0.9"),
    # 0.1.x (pypi:0.1.3 backprop/tasks/text_generation.py:84-97; commit 22b723e9a9b706cd11bf848d9514021fb2a3e203).
    pytest.param("/text-generation", {"text": "Hello", "model": ""}, "output", string, id="tg-0.1.3"),
    # Every parameter, falsy ones kept (the filter is `!= None`): min_length 0, top_k 0, do_sample false
    # (pypi:0.1.3 backprop/tasks/text_generation.py:84-95).
    pytest.param("/text-generation", {"text": ["a", "b"], "min_length": 0, "max_length": 20, "temperature": 1.0,
                                      "top_k": 0, "top_p": 0.9, "repetition_penalty": 1.0, "length_penalty": 1.0,
                                      "num_beams": 1, "num_generations": 2, "do_sample": False,
                                      "model": "t5-base-qa-summary-emotion"}, "output",
                 lambda v: isinstance(v, list) and len(v) == 2
                 and all(isinstance(o, list) and len(o) == 2 and all(isinstance(s, str) for s in o) for o in v),
                 id="tg-0.1.3-every-parameter"),
    pytest.param("/text-generation", {"text": "Hello", "max_length": 5, "do_sample": True, "model": ""}, "output",
                 string, id="tg-0.1.3-do_sample-true"),

    # /summarisation reads "summary", not the reference's "output", in every release
    # (pypi:0.0.9 backprop/tasks/summarisation.py:51-65; commit 405c9c06d88bdcdcdb20d182ac19a405733c2b30).
    pytest.param("/summarisation", {"text": "long text", "model": "english"}, "summary", lambda v: isinstance(v, str),
                 id="sum-0.0.9"),
    # 0.1.x (pypi:0.1.3 backprop/tasks/summarisation.py:60-74; commit 22b723e9a9b706cd11bf848d9514021fb2a3e203).
    pytest.param("/summarisation", {"text": "long text", "model": ""}, "summary", lambda v: isinstance(v, str),
                 id="sum-0.1.3"),
    pytest.param("/summarisation", {"text": ["long text", "more text"], "model": ""}, "summary",
                 lambda v: isinstance(v, list) and len(v) == 2 and all(isinstance(s, str) for s in v),
                 id="sum-0.1.3-batch"),

    # /emotion reads "emotion", not the reference's "output", in every release
    # (pypi:0.0.9 backprop/tasks/emotion.py:52-66; commit 554dbfd3c772c7f4727f712eee0eb0f6cc86d8bf).
    pytest.param("/emotion", {"text": "I hope", "model": "english"}, "emotion", string, id="emo-0.0.9"),
    # 0.1.x (pypi:0.1.3 backprop/tasks/emotion.py:61-75; commit 22b723e9a9b706cd11bf848d9514021fb2a3e203).
    pytest.param("/emotion", {"text": "I hope", "model": ""}, "emotion", string, id="emo-0.1.3"),
    pytest.param("/emotion", {"text": ["I hope", "I fear"], "model": ""}, "emotion", strings(2), id="emo-0.1.3-batch"),
]


@pytest.mark.parametrize("path,body,key,expected", CASES)
def test_every_body_the_client_sends_answers_the_key_it_reads(service, path, body, key, expected):
    value = client_reads(post(service, path, body), key)
    assert expected(value), value


@pytest.mark.parametrize("path,key", [("/summarisation", "summary"), ("/emotion", "emotion")])
def test_summary_and_emotion_also_answer_the_references_output(service, path, key):
    res = post(service, path, {"text": ["long text", "more"], "model": ""}).json()
    assert res["output"] == res[key] and len(res[key]) == 2


def test_model_empty_is_the_default_model_as_is_a_missing_one(service):
    # 0.1.x's "" (pypi:0.1.3 backprop/tasks/base.py:35-62) and 0.0.x's explicit default name.
    sent = [client_reads(post(service, "/text-vectorisation", body), "vector")
            for body in ({"text": "hello", "model": ""}, {"text": "hello"}, {"text": "hello", "model": "english"})]
    assert sent[0] == sent[1] == sent[2]
    clip = client_reads(post(service, "/text-vectorisation", {"text": "hello", "model": "clip"}), "vector")
    assert len(clip) == CLIP_DIMS != len(sent[0])  # a name still picks its model


@pytest.mark.parametrize("path,body", [
    # 0.0.5-0.0.9 send labels null when the user gives none (pypi:0.0.9 backprop/tasks/text_classification.py:64-70).
    ("/text-classification", {"text": "t", "labels": None, "model": "english"}),
    # 0.1.x (pypi:0.1.3 backprop/tasks/text_classification.py:69-83).
    ("/text-classification", {"text": ["t1", "t2"], "labels": None, "model": ""}),
    # 0.0.3+ (pypi:0.0.9 backprop/tasks/image_classification.py:87-93), 0.1.x (pypi:0.1.3 ...image_classification.py:75-90).
    ("/image-classification", {"image": JPEG, "labels": None, "model": "english"}),
    ("/image-classification", {"image": PNG, "labels": None, "model": ""}),
])
def test_no_labels_for_a_zero_shot_model_is_an_error_the_client_shows(service, path, body):
    response = post(service, path, body)
    assert response.status_code == 422
    message = client_error(response)
    assert "Labels are required" in message and "zero-shot" in message


OWN_MODEL = '''
import base64, io

OWN_LABELS = {"positive": 0.7, "negative": 0.2, "neutral": 0.1}


def load_model(model_dir):
    return None


def call_model(model, task_input, task):
    from PIL import Image
    if task in ("text-classification", "image-classification"):
        if task_input["labels"] is None:  # trained on its own labels
            return dict(OWN_LABELS)
        return {label: 1.0 / len(task_input["labels"]) for label in task_input["labels"]}
    if task == "image-text-vectorisation":
        image = Image.open(io.BytesIO(base64.b64decode(task_input["image"])))
        return [float(image.width), float(len(task_input["text"]))]
    raise ValueError(task)
'''


def test_the_clients_upload_flow_then_its_own_model_without_labels(service, tmp_path):
    base, key = service
    archive = tmp_path / "my-model.zip"
    archive.write_bytes(make_zip({"inference.py": OWN_MODEL, "config.json": json.dumps({
        "description": "own labels", "tasks": ["text-classification", "image-classification",
                                               "image-text-vectorisation"]})}))

    # pypi:0.1.3 backprop/utils/upload.py:84-101 (pypi:0.0.9 backprop/utils/upload.py:58-75; commit
    # 6ed1f5659aa8c4126613873488c66ed31586d3b5): exactly 200 and a JSON string, then a PUT of the
    # file with no headers of its own, exactly 200.
    res = requests.post(f"{base}/upload-url", json={"model_name": "my-model"}, headers={"x-api-key": key})
    assert res.status_code == 200
    upload_url = res.json()
    assert isinstance(upload_url, str) and upload_url.startswith(base)
    with open(archive, "rb") as f:
        res = requests.put(upload_url, f)
    assert "Content-Type" not in res.request.headers and "x-api-key" not in res.request.headers
    assert res.status_code == 200

    deadline = time.monotonic() + 180
    while (status := requests.get(f"{base}/models/my-model", headers={"x-api-key": key}).json())[
            "build_status"] in ("building", "awaiting_upload") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert status["build_status"] == "success", status

    # labels null for a user-trained model (pypi:0.1.3 backprop/tasks/text_classification.py:69-83, its docstring).
    own = client_reads(post(service, "/text-classification", {"text": "t", "labels": None, "model": "my-model"}),
                       "probabilities")
    assert own == {"positive": 0.7, "negative": 0.2, "neutral": 0.1}
    top = client_reads(post(service, "/text-classification", {"text": "t", "labels": None, "top_k": 2,
                                                              "model": "my-model"}), "probabilities")
    assert list(top.items()) == [("positive", 0.7), ("negative", 0.2)]
    batch = client_reads(post(service, "/image-classification", {"image": [PNG, JPEG], "labels": None,
                                                                 "model": "my-model"}), "probabilities")
    assert batch == [own, own]
    # pypi:0.1.3 backprop/tasks/image_text_vectorisation.py:84-98, on a user model.
    pairs = client_reads(post(service, "/image-text-vectorisation", {"image": [PNG, JPEG], "text": ["a", "abc"],
                                                                     "model": "my-model"}), "vector")
    assert pairs == [[24.0, 1.0], [24.0, 3.0]]
