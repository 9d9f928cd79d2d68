"""POST /image-vectorisation: CLIP vectors of base64 images, in the same space as
/text-vectorisation with model clip."""

from flask.views import MethodView

from app.blueprint import Blueprint
from model_registry.catalogue import CLIP

from .answers import encode_png, sample_image, vector_answer
from .common import StrictSchema, TextVectorisationResponse, as_batch, find_model, model_field
from .images import ImageOrImages, decode_images
from .spec import TaskSpec, register

TASK = "image-vectorisation"

blp = Blueprint(TASK, __name__, url_prefix="/image-vectorisation", description="Image to vectors.")


class ImageVectorisationBody(StrictSchema):
    image = ImageOrImages(required=True, metadata={"description": "A base64 image (or data: URI), or a list of them."})
    model = model_field("clip (default), or your own uploaded model.")


@blp.route("")
class ImageVectorisation(MethodView):
    @blp.arguments(ImageVectorisationBody)
    @blp.response(200, TextVectorisationResponse)
    def post(self, body):
        """Vectorise an image (or a list of images)"""
        model = find_model(TASK, body["model"])  # an unknown model is a 404 before any image is decoded
        images, is_batch = as_batch(decode_images(body["image"]))
        vectors = model.run(TASK, images)
        return SPEC.answer(vectors, is_batch)


SPEC = register(TaskSpec(
    TASK, blp, response_keys=("vector",), sample=sample_image, check_answer=vector_answer,
    to_user_input=lambda image: {"image": encode_png(image)}, hf_loader=CLIP,
))
