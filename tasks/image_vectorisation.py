"""POST /image-vectorisation: CLIP vectors of base64 images, in the same space as
/text-vectorisation with model clip."""

from flask.views import MethodView

from app.blueprint import Blueprint

from .common import StrictSchema, as_batch, find_model, model_field
from .images import ImageOrImages, decode_images
from .text_vectorisation import TextVectorisationResponse

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
        return {"vector": vectors if is_batch else vectors[0]}
