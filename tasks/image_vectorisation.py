"""POST /image-vectorisation: CLIP vectors of base64 images, in the same space as
/text-vectorisation with model clip."""

from model_registry.catalogue import CLIP

from .answers import encode_png, sample_image, vector_answer
from .common import StrictSchema, TextVectorisationResponse, as_batch, model_field
from .images import ImageOrImages, decode_images
from .spec import TaskSpec, register

TASK = "image-vectorisation"


class ImageVectorisationBody(StrictSchema):
    image = ImageOrImages(required=True, metadata={"description": "A base64 image (or data: URI), or a list of them."})
    model = model_field("clip (default), or your own uploaded model.")


SPEC = register(TaskSpec(
    TASK, "/image-vectorisation", "Image to vectors.", "Vectorise an image (or a list of images)",
    ImageVectorisationBody, TextVectorisationResponse, response_keys=("vector",), sample=sample_image,
    # Decoded once the model is found: an unknown model is a 404 before any image is decoded.
    items=lambda body: as_batch(decode_images(body["image"])), check_answer=vector_answer,
    to_user_input=lambda image: {"image": encode_png(image)}, hf_loader=CLIP,
))
