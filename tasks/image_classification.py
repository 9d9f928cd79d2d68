"""POST /image-classification: CLIP zero-shot probabilities of the caller's labels for a
base64 image (or each of a batch); the probabilities of an image sum to 1 over its labels.
A model you trained (a linear probe on CLIP's image features) knows its labels: it needs
none, and scores a subset of them when sent some."""

from marshmallow import fields, post_load

from model_registry.catalogue import CLIP
from trainers.clip_probe import ClipProbeTrainer

from .answers import encode_png, probabilities_answer, sample_image
from .common import (
    StrictSchema,
    as_batch,
    checked_labels,
    keep_top_k,
    labels_field,
    model_field,
    per_item,
    require_labels_for,
    top_k_field,
)
from .images import ImageOrImages, decode_images
from .spec import TaskSpec, register

TASK = "image-classification"


class ImageClassificationBody(StrictSchema):
    image = ImageOrImages(required=True, metadata={"description": (
        "A base64 image (plain, as Backprop's Python client sends it, or a data: URI), or a list for a batch.")})
    labels = labels_field("Labels to score; for a batch, a list of labels per image (or one list for all). "
                          "A model you trained needs none (it scores the labels it was trained on), or takes "
                          "a subset of them.")
    top_k = top_k_field()
    model = model_field("english or clip (default: CLIP), or your own model: uploaded, or trained by a training job.")

    @post_load
    def to_items(self, data, **kwargs):
        images, is_batch = as_batch(data["image"])
        labels = [checked_labels(item) for item in per_item(data["labels"], len(images), "labels", is_batch)]
        return {"image": data["image"], "labels": labels, "is_batch": is_batch, "top_k": data["top_k"],
                "model": data["model"]}


class ImageClassificationResponse(StrictSchema):
    probabilities = fields.Raw(metadata={
        "description": "{label: probability} per image, summing to 1 over its labels (a trained model's: the labels "
                       "it was trained on, or the subset sent); a list for a batch. "
                       "With top_k, the k likeliest, likeliest first.",
        "oneOf": [{"type": "object", "additionalProperties": {"type": "number"}},
                  {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}}]})


def labelled_images(body: dict) -> tuple[list[dict], bool]:
    # Decoded once the model is found: an unknown model, or one that needs the labels
    # it was not sent (check_model), fails before any image is decoded.
    images, _ = as_batch(decode_images(body["image"]))
    return [{"image": image, "labels": labels} for image, labels in zip(images, body["labels"])], body["is_batch"]


SPEC = register(TaskSpec(
    TASK, "/image-classification", "Zero-shot image classification, or your trained classifier.",
    "Score the caller's labels for an image (or a batch of images)",
    ImageClassificationBody, ImageClassificationResponse, response_keys=("probabilities",),
    sample=lambda: {"image": sample_image(), "labels": ["purple", "green"]}, items=labelled_images,
    check_model=lambda model, body: require_labels_for(model, body["model"], TASK, body["labels"]),
    finish=lambda results, body: [keep_top_k(result, body["top_k"]) for result in results],
    check_answer=probabilities_answer,
    to_user_input=lambda item: {"image": encode_png(item["image"]), "labels": item["labels"]}, hf_loader=CLIP,
    trainer=ClipProbeTrainer,
))
