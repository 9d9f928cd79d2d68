"""POST /custom: any fields, passed whole to your own model (one with the custom task)."""

from marshmallow import INCLUDE, Schema, fields

from .spec import TaskSpec, register

TASK = "custom"


class CustomBody(Schema):
    """Unknown fields are the point here: they all go to the model."""

    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, metadata={"description": "The name of your uploaded model with the custom task."})


class CustomResponse(Schema):
    output = fields.Raw(metadata={"description": "Whatever your model returns."})


def one_input(body: dict) -> tuple[list[dict], bool]:
    """The model's one input: every field of the request but model."""
    return [{key: value for key, value in body.items() if key != "model"}], False


# Only uploaded models serve it: whatever they answer is theirs to choose.
SPEC = register(TaskSpec(
    TASK, "/custom", "Your own model's custom task.", "Call your model with the request's fields (all but model)",
    CustomBody, CustomResponse, response_keys=("output",), sample=dict, items=one_input,
))
