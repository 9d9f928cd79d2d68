"""POST /custom: any fields, passed whole to your own model (one with the custom task)."""

from flask.views import MethodView
from marshmallow import INCLUDE, Schema, fields

from app.blueprint import Blueprint

from .common import run_task
from .spec import TaskSpec, register

TASK = "custom"

blp = Blueprint(TASK, __name__, url_prefix="/custom", description="Your own model's custom task.")


class CustomBody(Schema):
    """Unknown fields are the point here: they all go to the model."""

    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, metadata={"description": "The name of your uploaded model with the custom task."})


class CustomResponse(Schema):
    output = fields.Raw(metadata={"description": "Whatever your model returns."})


@blp.route("")
class Custom(MethodView):
    @blp.arguments(CustomBody)
    @blp.response(200, CustomResponse)
    def post(self, body):
        """Call your model with the request's fields (all but model)"""
        task_input = {key: value for key, value in body.items() if key != "model"}
        return SPEC.answer(run_task(TASK, body["model"], [task_input]), False)


# Only uploaded models serve it: whatever they answer is theirs to choose.
SPEC = register(TaskSpec(TASK, blp, response_keys=("output",), sample=dict))
