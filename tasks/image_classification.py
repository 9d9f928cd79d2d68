"""POST /image-classification: CLIP zero-shot probabilities of the caller's labels for
one base64 image; the probabilities sum to 1 over the labels."""

from flask.views import MethodView
from marshmallow import ValidationError, fields, post_load

from app.blueprint import Blueprint

from .common import StrictSchema, StringList, model_field, require_labels, run_task
from .images import ImageOrImages

TASK = "image-classification"

blp = Blueprint(TASK, __name__, url_prefix="/image-classification", description="Zero-shot image classification.")


class ImageClassificationBody(StrictSchema):
    image = ImageOrImages(allow_batch=False, required=True, metadata={"description": "A base64 image or data: URI."})
    labels = StringList("labels", "MAX_LABELS", required=True, metadata={"description": "Labels to score."})
    model = model_field("english or clip (default: CLIP), or your own uploaded model.")

    @post_load
    def to_item(self, data, **kwargs):
        if data["labels"] and isinstance(data["labels"][0], list):
            raise ValidationError({"labels": ["Send one flat list of labels for the image."]})
        return {"item": {"image": data["image"], "labels": require_labels(data["labels"], "labels")}, "model": data["model"]}


class ImageClassificationResponse(StrictSchema):
    probabilities = fields.Dict(keys=fields.String(), values=fields.Float(),
                                metadata={"description": "{label: probability}, summing to 1."})


@blp.route("")
class ImageClassification(MethodView):
    @blp.arguments(ImageClassificationBody)
    @blp.response(200, ImageClassificationResponse)
    def post(self, body):
        """Score the caller's labels for an image"""
        return {"probabilities": run_task(TASK, body["model"], [body["item"]])[0]}
