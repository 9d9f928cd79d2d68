"""What every task shares: the strict base schema, text fields with limits, model lookup."""

from flask import current_app
from marshmallow import RAISE, Schema, ValidationError, fields


class StrictSchema(Schema):
    """Unknown fields are an error, so a typo in a parameter name is never ignored."""

    class Meta:
        unknown = RAISE


def _limit(key: str) -> int:
    return int(current_app.config[key])


def check_text(value, field_name: str = "text") -> str:
    if not isinstance(value, str):
        raise ValidationError("Not a valid string.")
    limit = _limit("MAX_TEXT_LENGTH")
    if len(value) > limit:
        raise ValidationError(
            f"Text is {len(value)} characters long; the limit is {limit} (INFER_MAX_TEXT_LENGTH)."
        )
    return value


def check_batch(values: list, what: str = "items") -> list:
    if not values:
        raise ValidationError(f"Send at least one of the {what}; the list is empty.")
    limit = _limit("MAX_BATCH_SIZE")
    if len(values) > limit:
        raise ValidationError(
            f"A batch holds at most {limit} {what} (INFER_MAX_BATCH_SIZE); this one has {len(values)}."
        )
    return values


class TextOrTexts(fields.Field):
    """A string, or a list of strings for a batch; each within the text length limit."""

    def __init__(self, **kwargs):
        metadata = kwargs.pop("metadata", {})
        metadata.setdefault(
            "oneOf",
            [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ],
        )
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            check_batch(value, "texts")
            errors = {}
            for index, item in enumerate(value):
                try:
                    check_text(item)
                except ValidationError as exc:
                    errors[index] = exc.messages
            if errors:
                raise ValidationError(errors)
            return value
        if isinstance(value, str):
            return check_text(value)
        raise ValidationError("Send a string, or a list of strings for a batch.")


def model_field(description: str) -> fields.String:
    return fields.String(load_default=None, metadata={"description": description})


def as_batch(value) -> tuple[list, bool]:
    """A single item becomes a batch of one; remember which it was for the reply."""
    if isinstance(value, list):
        return value, True
    return [value], False
