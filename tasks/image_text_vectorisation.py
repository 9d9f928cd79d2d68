"""POST /image-text-vectorisation: one vector per (image, text) pair, as Backprop's
library computed it with CLIP: the image's vector and the text's vector joined end
to end (image first), the whole scaled to length 1. Not in the Backprop API
reference; Backprop's Python client 0.1.x calls it."""

from marshmallow import ValidationError, fields, post_load

from model_registry.catalogue import CLIP

from .answers import SAMPLE_TEXT, encode_png, sample_image, vector_answer
from .common import StrictSchema, TextOrTexts, as_batch, model_field
from .images import ImageOrImages, decode_images
from .spec import TaskSpec, register

TASK = "image-text-vectorisation"


class ImageTextVectorisationBody(StrictSchema):
    image = ImageOrImages(required=True, metadata={
        "description": "A base64 image (plain or a data: URI), or a list of them for a batch."})
    text = TextOrTexts(required=True, metadata={
        "description": "The text paired with the image; for a batch, a list of the same length, in the same order."})
    model = model_field("clip (default), or your own uploaded model.")

    @post_load
    def check_pairs(self, data, **kwargs):
        images, images_batch = as_batch(data["image"])
        texts, texts_batch = as_batch(data["text"])
        if images_batch != texts_batch or len(images) != len(texts):
            raise ValidationError({"text": ["Send one text per image: both single, or lists of one length."]})
        return {**data, "is_batch": images_batch}


class ImageTextVectorisationResponse(StrictSchema):
    vector = fields.Raw(metadata={
        "description": "One vector per pair (a list of them for a batch): CLIP's image vector then its text vector, "
                       "scaled together to length 1 (1024 numbers for clip).",
        "oneOf": [{"type": "array", "items": {"type": "number"}},
                  {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}]})


def pairs(body: dict) -> tuple[list[dict], bool]:
    # Decoded once the model is found: an unknown model is a 404 before any image is decoded.
    images, _ = as_batch(decode_images(body["image"]))
    texts, _ = as_batch(body["text"])
    return [{"image": image, "text": text} for image, text in zip(images, texts)], body["is_batch"]


SPEC = register(TaskSpec(
    TASK, "/image-text-vectorisation", "Image and text pairs to vectors.",
    "Vectorise an image and its text together (or a batch of pairs)",
    ImageTextVectorisationBody, ImageTextVectorisationResponse, response_keys=("vector",),
    sample=lambda: {"image": sample_image(), "text": SAMPLE_TEXT}, items=pairs,
    check_answer=vector_answer, to_user_input=lambda item: {"image": encode_png(item["image"]), "text": item["text"]},
    hf_loader=CLIP,
))
