"""What every task shares: the strict base schema, text fields with limits, model lookup."""

from flask import current_app
from marshmallow import RAISE, Schema, ValidationError, fields

from app.auth import current_account_id
from app.config import ENV_PREFIX
from app.db import session


class StrictSchema(Schema):
    """Unknown fields are an error, so a typo in a parameter name is never ignored."""

    class Meta:
        unknown = RAISE


def _limit(key: str) -> int:
    return int(current_app.config[key])


def check_text(value, empty_error: str | None = None) -> str:
    if not isinstance(value, str):
        raise ValidationError("Not a valid string.")
    if empty_error and not value:
        raise ValidationError(empty_error)
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
    """A string, or a list of strings for a batch; each within the text length limit.

    With `empty_error`, an empty string is refused with that message (for tasks
    whose models cannot start from nothing).
    """

    def __init__(self, empty_error: str | None = None, **kwargs):
        self.empty_error = empty_error
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
                    check_text(item, self.empty_error)
                except ValidationError as exc:
                    errors[index] = exc.messages
            if errors:
                raise ValidationError(errors)
            return value
        if isinstance(value, str):
            return check_text(value, self.empty_error)
        raise ValidationError("Send a string, or a list of strings for a batch.")


def model_field(description: str) -> fields.String:
    return fields.String(load_default=None, metadata={"description": description})


def as_batch(value) -> tuple[list, bool]:
    """A single item becomes a batch of one; remember which it was for the reply."""
    if isinstance(value, list):
        return value, True
    return [value], False


class StringList(fields.Field):
    """A list of strings, or (for batch requests) a list of such lists.

    Which shape is right depends on the other fields, so the view checks that
    with `per_item`; this field checks the items and the limits.
    """

    def __init__(self, what: str, limit_key: str, **kwargs):
        self.what = what
        self.limit_key = limit_key
        metadata = kwargs.pop("metadata", {})
        metadata.setdefault(
            "oneOf",
            [
                {"type": "array", "items": {"type": "string"}},
                {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
            ],
        )
        super().__init__(metadata=metadata, **kwargs)

    def _check_flat(self, values) -> list:
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValidationError(f"Send a list of strings ({self.what}).")
        limit = _limit(self.limit_key)
        if len(values) > limit:
            raise ValidationError(f"At most {limit} {self.what} ({ENV_PREFIX}{self.limit_key}); got {len(values)}.")
        for value in values:
            check_text(value)
        return values

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            check_batch(value, f"lists of {self.what}")
            errors = {}
            for index, inner in enumerate(value):
                try:
                    self._check_flat(inner)
                except ValidationError as exc:
                    errors[index] = exc.messages
            if errors:
                raise ValidationError(errors)
            return value
        return self._check_flat(value)


def per_item(values, count: int, field_name: str, is_batch: bool, default=None) -> list:
    """Spread a per-request value over `count` items: for a batch, a list of lists
    of the same length (or one flat list shared by all); for a single item, a flat list."""
    if values is None:
        return [default] * count
    nested = bool(values) and all(isinstance(v, list) for v in values)
    if not is_batch:
        if nested:
            raise ValidationError({field_name: ["For a single item, send a flat list of strings."]})
        return [values]
    if not nested:
        return [values] * count
    if len(values) != count:
        raise ValidationError({field_name: [f"Send one list per item: {count} lists, not {len(values)}."]})
    return values


def find_model(task: str, model_name: str | None):
    """A global model by its public name, else one of the caller's own (404 if
    neither), loaded if need be. Its `run(task, items)` goes through its batcher."""
    registry = current_app.extensions["models"]
    if model_name is None or model_name in registry.names(task):
        return registry.get(task, model_name)
    return current_app.extensions["user_models"].get(session(), current_account_id(), task, model_name)


def run_task(task: str, model_name: str | None, items: list) -> list:
    return find_model(task, model_name).run(task, items)


def require_labels(labels: list[str], field_name: str) -> list[str]:
    """At least one label, no duplicates (a dict answer could not hold both)."""
    if not labels:
        raise ValidationError({field_name: ["Send at least one label."]})
    if len(set(labels)) != len(labels):
        raise ValidationError({field_name: ["Labels must be different from each other."]})
    return labels
