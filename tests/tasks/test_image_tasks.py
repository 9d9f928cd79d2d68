"""CLIP tasks: image vectors, clip text vectors in the same space, zero-shot image labels;
non-images and corrupt images are a 400 that says so; no image is decoded before the model
is found, nor past the pixel limits per image and per request."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image


def png(color, size=(40, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def noise_jpeg(seed=0) -> str:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def clip(tiny_dir):
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

    path = tiny_dir["clip"]
    return CLIPModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), CLIPImageProcessorPil.from_pretrained(path)


def image_vectors(clip, encoded_images):
    model, _tokenizer, processor = clip
    images = [Image.open(io.BytesIO(base64.b64decode(i))).convert("RGB") for i in encoded_images]
    with torch.no_grad():
        return model.get_image_features(pixel_values=processor(images=images, return_tensors="pt")["pixel_values"]).pooler_output


def text_vectors(clip, texts):
    model, tokenizer, _processor = clip
    with torch.no_grad():
        return model.get_text_features(**tokenizer(texts, padding=True, return_tensors="pt")).pooler_output


def test_image_vectors_equal_clips_own(task_client, clip):
    images = [png((200, 10, 10)), noise_jpeg()]
    single = task_client("/image-vectorisation", {"image": images[0]})
    batch = task_client("/image-vectorisation", {"image": images, "model": "clip"})

    want = image_vectors(clip, images)
    assert single.status_code == 200 and batch.status_code == 200
    assert np.allclose(single.json["vector"], want[0], atol=1e-5)
    assert np.allclose(batch.json["vector"], want, atol=1e-5)


def test_data_uris_are_accepted(task_client, clip):
    image = png((0, 0, 255))
    response = task_client("/image-vectorisation", {"image": f"data:image/png;base64,{image}"})
    assert np.allclose(response.json["vector"], image_vectors(clip, [image])[0], atol=1e-5)


def test_clip_text_vectors_share_the_image_space(task_client, clip):
    response = task_client("/text-vectorisation", {"text": ["a red square", "noise"], "model": "clip"})
    image = task_client("/image-vectorisation", {"image": png((200, 10, 10))}).json["vector"]

    assert np.allclose(response.json["vector"], text_vectors(clip, ["a red square", "noise"]), atol=1e-5)
    assert len(response.json["vector"][0]) == len(image) == 16  # the projection_dim of both towers


def test_image_classification_matches_clip_softmax_over_the_labels(task_client, clip):
    model = clip[0]
    labels = ["healthy brain", "brain with tumor", "a cat"]
    image = noise_jpeg(1)
    response = task_client("/image-classification", {"image": image, "labels": labels, "model": "english"})

    picture = image_vectors(clip, [image])[0]
    texts = text_vectors(clip, labels)
    logits = model.logit_scale.exp() * torch.nn.functional.normalize(texts, dim=-1) @ torch.nn.functional.normalize(picture, dim=-1)
    want = dict(zip(labels, torch.softmax(logits, dim=-1).tolist()))
    got = response.json["probabilities"]
    assert response.status_code == 200
    assert set(got) == set(labels)
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    for label in labels:
        assert got[label] == pytest.approx(want[label], abs=1e-5)


@pytest.mark.parametrize(
    "image,words",
    [
        (base64.b64encode(b"this is plain text, not a picture").decode(), "Not an image"),
        (png((1, 2, 3))[:41], "base64"),
        ("!!!not base64!!!", "base64"),
        (base64.b64encode(base64.b64decode(png((9, 9, 9)))[:60]).decode(), "corrupt"),
        ("data:image/png,abc", "base64"),
        ("", "empty"),
        # PIL decodes dozens of formats (EPS through Ghostscript); requests reach only the common ones
        # (core/images.py), not this PPM, which PIL would read.
        (base64.b64encode(b"P6 2 2 255\n" + bytes(range(12))).decode(), "Not an image"),
    ],
)
def test_non_images_are_400_saying_so(task_client, image, words):
    for path, body in (("/image-vectorisation", {"image": image}), ("/image-classification", {"image": image, "labels": ["a"]})):
        response = task_client(path, body)
        assert response.status_code == 400, response.json
        assert words in response.json["message"]
        assert "image" in response.json["errors"]


def test_a_bad_image_in_a_batch_is_named_by_index(task_client):
    response = task_client("/image-vectorisation", {"image": [png((1, 1, 1)), "aGVsbG8="]})
    assert response.status_code == 400
    assert "image 1" in response.json["message"]


def test_images_over_the_pixel_limit_are_refused(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, MAX_IMAGE_PIXELS=100)
    response = api.client.post("/image-vectorisation", json={"image": png((1, 1, 1))}, headers=api.headers)
    assert response.status_code == 400
    assert "INFER_MAX_IMAGE_PIXELS" in response.json["message"]


def test_image_classification_needs_labels(task_client):
    assert task_client("/image-classification", {"image": png((1, 1, 1)), "labels": []}).status_code == 422
    assert task_client("/image-classification", {"image": png((1, 1, 1))}).status_code == 422


@pytest.fixture
def decoded(monkeypatch):
    """Records every image whose pixel data PIL decodes (opening reads only the header)."""
    from PIL import ImageFile

    calls = []
    load = ImageFile.ImageFile.load

    def recording_load(image):
        if image.tile:  # pixel data still to decode (later calls find it done)
            calls.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    return calls


def budget_client(client_for, tiny_model_dir, **limits):
    api = client_for(MODEL_DIR=tiny_model_dir, **limits)
    return lambda path, body: api.client.post(path, json=body, headers=api.headers)


def test_images_each_within_the_limit_but_together_over_the_request_budget_are_refused_undecoded(
        client_for, tiny_model_dir, decoded):
    post = budget_client(client_for, tiny_model_dir, MAX_IMAGE_PIXELS=1000, MAX_REQUEST_PIXELS=2500)
    images = [png((i, i, i), size=(40, 20)) for i in range(4)]  # 800 pixels each

    refused = post("/image-vectorisation", {"image": images})
    assert refused.status_code == 400, refused.json
    assert "INFER_MAX_REQUEST_PIXELS" in refused.json["message"] and "3200" in refused.json["message"]
    assert "image" in refused.json["errors"]
    assert decoded == []

    within = post("/image-vectorisation", {"image": images[:3]})  # 2400 pixels: the budget is a sum
    assert within.status_code == 200
    assert len(within.json["vector"]) == 3 and decoded == [(40, 20)] * 3


def test_image_classification_holds_its_image_to_the_request_budget(client_for, tiny_model_dir, decoded):
    post = budget_client(client_for, tiny_model_dir, MAX_IMAGE_PIXELS=1000, MAX_REQUEST_PIXELS=500)
    response = post("/image-classification", {"image": png((1, 1, 1), size=(40, 20)), "labels": ["a", "b"]})
    assert response.status_code == 400
    assert "INFER_MAX_REQUEST_PIXELS" in response.json["message"]
    assert decoded == []


def one_bit_png(side: int) -> str:
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_reported_batch_of_small_one_bit_pngs_is_refused_with_the_default_limits(task_client, decoded):
    # The incident: 6300x6300 1-bit PNGs, a few KB each, ~119 MB each as RGB.
    bomb = one_bit_png(6300)
    response = task_client("/image-vectorisation", {"image": [bomb] * 16})
    assert response.status_code == 400
    assert "INFER_MAX_REQUEST_PIXELS" in response.json["message"]
    assert decoded == []


def test_an_unknown_model_is_404_before_any_image_is_decoded(task_client, decoded):
    corrupt = base64.b64encode(base64.b64decode(png((9, 9, 9)))[:60]).decode()  # a 400 once decoded
    for path, body in (("/image-vectorisation", {"image": [corrupt, one_bit_png(6300)]}),
                       ("/image-classification", {"image": corrupt, "labels": ["a"]}),
                       ("/image-text-vectorisation", {"image": corrupt, "text": "a"})):
        response = task_client(path, {**body, "model": "no-such-model"})
        assert response.status_code == 404, response.json
        assert "no-such-model" in response.json["message"]
    assert decoded == []


def test_image_text_vectors_join_clips_image_and_text_vectors_as_backprop_did(task_client, clip):
    # Backprop's CLIP (0.1.x): cat([image vector, text vector]) scaled to length 1.
    images, texts = [png((200, 10, 10)), noise_jpeg(2)], ["a red square", "noise"]
    single = task_client("/image-text-vectorisation", {"image": images[0], "text": texts[0], "model": ""})
    batch = task_client("/image-text-vectorisation", {"image": images, "text": texts, "model": "clip"})

    joined = torch.cat([image_vectors(clip, images), text_vectors(clip, texts)], dim=1)
    want = torch.nn.functional.normalize(joined, dim=-1)
    assert single.status_code == 200 and batch.status_code == 200
    assert np.allclose(single.json["vector"], want[0], atol=1e-5)
    assert np.allclose(batch.json["vector"], want, atol=1e-5)


@pytest.mark.parametrize("body", [
    {"image": [png((1, 1, 1)), png((2, 2, 2))], "text": ["one"]},
    {"image": [png((1, 1, 1))], "text": "one"},
    {"image": png((1, 1, 1)), "text": ["one"]},
])
def test_image_text_pairs_must_match_one_to_one(task_client, body):
    response = task_client("/image-text-vectorisation", body)
    assert response.status_code == 422
    assert "text" in response.json["errors"]


def test_image_text_vectorisation_holds_its_images_to_the_request_budget(client_for, tiny_model_dir, decoded):
    post = budget_client(client_for, tiny_model_dir, MAX_IMAGE_PIXELS=1000, MAX_REQUEST_PIXELS=1000)
    image = png((1, 1, 1), size=(40, 20))
    response = post("/image-text-vectorisation", {"image": [image, image], "text": ["a", "b"]})
    assert response.status_code == 400
    assert "INFER_MAX_REQUEST_PIXELS" in response.json["message"]
    assert decoded == []


def test_an_image_classification_batch_answers_each_image_as_alone(task_client):
    images, labels = [png((200, 10, 10)), noise_jpeg(3)], [["red", "blue"], ["noise", "cat", "dog"]]
    batch = task_client("/image-classification", {"image": images, "labels": labels})
    alone = [task_client("/image-classification", {"image": i, "labels": l}).json["probabilities"]
             for i, l in zip(images, labels)]
    shared = task_client("/image-classification", {"image": images, "labels": labels[1]})

    assert batch.status_code == 200
    for got, want in zip(batch.json["probabilities"], alone):
        assert got == pytest.approx(want, abs=1e-5)
    assert shared.json["probabilities"][1] == pytest.approx(alone[1], abs=1e-5)
    assert set(shared.json["probabilities"][0]) == set(labels[1])


def test_image_top_k_answers_the_k_likeliest_likeliest_first(task_client):
    labels = ["a", "b", "c", "d"]
    image = noise_jpeg(4)
    every = task_client("/image-classification", {"image": image, "labels": labels, "top_k": 0}).json["probabilities"]
    top = task_client("/image-classification", {"image": image, "labels": labels, "top_k": 2}).json["probabilities"]

    assert list(every) == labels
    ranked = sorted(every.items(), key=lambda pair: pair[1], reverse=True)
    assert list(top) == [label for label, _ in ranked[:2]]
    assert top == pytest.approx(dict(ranked[:2]), abs=1e-6)


@pytest.mark.parametrize("body,field", [
    ({"image": [png((1, 1, 1))] * 2, "labels": [["a"], ["b"], ["c"]]}, "labels"),
    ({"image": png((1, 1, 1)), "labels": [["a"]]}, "labels"),
    ({"image": png((1, 1, 1)), "labels": ["a", "a"]}, "labels"),
    ({"image": png((1, 1, 1)), "labels": ["a"], "top_k": -1}, "top_k"),
])
def test_bad_image_labels_are_422_naming_the_field(task_client, body, field):
    response = task_client("/image-classification", body)
    assert response.status_code == 422
    assert field in response.json["errors"], response.json


def test_no_labels_for_clip_is_422_before_any_image_is_decoded(task_client, decoded):
    response = task_client("/image-classification", {"image": [png((1, 1, 1))], "labels": None, "model": ""})
    assert response.status_code == 422
    assert "Labels are required for model 'english' (the default)" in response.json["message"]
    assert "labels" in response.json["errors"]
    assert decoded == []
