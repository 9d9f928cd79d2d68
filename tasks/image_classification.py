"""POST /image-classification: CLIP zero-shot probabilities of the caller's labels for
one base64 image; the probabilities sum to 1 over the labels."""

from flask.views import MethodView
from marshmallow import ValidationError, fields, post_load

from app.blueprint import Blueprint

from .common import StrictSchema, StringList, find_model, model_field, require_labels
from .images import ImageOrImages, decode_images

TASK = "image-classification"

blp = Blueprint(TASK, __name__, url_prefix="/image-classification", description="Zero-shot image classification.")


class ImageClassificationBody(StrictSchema):
    image = ImageOrImages(allow_batch=False, required=True, metadata={"description": "A base64 image or data: URI."})
    labels = StringList("labels", "MAX_LABELS", required=True, metadata={"description": "Labels to score."})
    model = model_field("english or clip (default: CLIP), or your own uploaded model.")

    @post_load
    def check_labels(self, data, **kwargs):
        if data["labels"] and isinstance(data["labels"][0], list):
            raise ValidationError({"labels": ["Send one flat list of labels for the image."]})
        require_labels(data["labels"], "labels")
        return data


class ImageClassificationResponse(StrictSchema):
    probabilities = fields.Dict(keys=fields.String(), values=fields.Float(),
                                metadata={"description": "{label: probability}, summing to 1."})


@blp.route("")
class ImageClassification(MethodView):
    @blp.arguments(ImageClassificationBody)
    @blp.response(200, ImageClassificationResponse)
    def post(self, body):
        """Score the caller's labels for an image"""
        model = find_model(TASK, body["model"])  # an unknown model is a 404 before any image is decoded
        item = {"image": decode_images(body["image"]), "labels": body["labels"]}
        return {"probabilities": model.run(TASK, [item])[0]}
