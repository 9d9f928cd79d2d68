"""What every task shares: the strict base schema, text fields with limits, the labels
and top_k of the classification tasks.

Nothing here is Flask's: the limits are read through the reader the web layer
installs (api/task_routes.py), and the model a request names is found there too
(web/task_models.py)."""

from collections.abc import Callable
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from core.errors import InvalidInput
from core.settings import ENV_PREFIX
from model_registry.catalogue import default_name
from model_registry.served_model import Capability


class StrictSchema(Schema):
    """Unknown fields are an error, so a typo in a parameter name is never ignored."""

    class Meta:
        unknown = RAISE


# key -> the running service's setting (INFER_<key>). The web layer installs it when it
# registers the task routes, so that the schemas here check the limits of the app
# that serves the request without importing Flask.
_read_setting: Callable[[str], Any] | None = None


def read_settings_with(reader: Callable[[str], Any]) -> None:
    global _read_setting
    _read_setting = reader


def limit_setting(key: str) -> int:
    """A numeric limit setting of the running app (INFER_<key>)."""
    if _read_setting is None:
        raise RuntimeError("tasks.common has no settings reader: the web layer installs one "
                           "(app.task_routes.register) before any request is read")
    return _read_setting(key)


def check_at_most(setting: str, field_name: str, value: int) -> None:
    """A validation error on `field_name` when `value` is over the limit setting."""
    most = limit_setting(setting)
    if value > most:
        raise ValidationError({field_name: [f"At most {most} ({ENV_PREFIX}{setting}); got {value}."]})


def check_text(value, empty_error: str | None = None) -> str:
    if not isinstance(value, str):
        raise ValidationError("Not a valid string.")
    if empty_error and not value:
        raise ValidationError(empty_error)
    limit = limit_setting("MAX_TEXT_LENGTH")
    if len(value) > limit:
        raise ValidationError(
            f"Text is {len(value)} characters long; the limit is {limit} (INFER_MAX_TEXT_LENGTH)."
        )
    return value


def check_batch(values: list, what: str = "items", limit: str = "MAX_BATCH_SIZE") -> list:
    if not values:
        raise ValidationError(f"Send at least one of the {what}; the list is empty.")
    most = limit_setting(limit)
    if len(values) > most:
        raise ValidationError(
            f"A batch holds at most {most} {what} ({ENV_PREFIX}{limit}); this one has {len(values)}."
        )
    return values


def check_total_characters(texts: list[str]) -> None:
    most = limit_setting("MAX_EMBEDDING_CHARS")
    total = sum(map(len, texts))
    if total > most:
        raise ValidationError(f"The texts have {total} characters in all; one request may have at most {most} "
                              f"({ENV_PREFIX}MAX_EMBEDDING_CHARS): send them in several requests.")


def presence_fields() -> tuple[fields.Boolean, fields.String]:
    """`available` and `download`: what a model list says of a global model's files
    (model_registry/availability.py), for GET /models?include_global=true and GET /v1/models.
    In a schema: `available, download = presence_fields()`."""
    available = fields.Boolean(metadata={"description": (
        "Global models only: whether the model's files are on this server (a local model dir, the Hugging "
        "Face cache at the pinned revision, or a package that ships them). When false, the server downloads "
        "them on first use if it can reach the hub, else the model answers 503 until someone runs `download`.")})
    download = fields.String(metadata={"description": (
        "Global models whose files are not here: the command that puts them in the server's Hugging Face "
        "cache (huggingface_hub's `hf` CLI), at the pinned revision.")})
    return available, download


class TextOrTexts(fields.Field):
    """A string, or a list of strings for a batch; each within the text length limit.

    With `empty_error`, an empty string is refused with that message (for tasks
    whose models cannot start from nothing).
    """

    # What a form or a query string makes of this field (the playground, prediction URLs).
    input_kind = "text"

    def __init__(self, empty_error: str | None = None, large_batches: bool = False, **kwargs):
        self.empty_error = empty_error
        # The vectorising routes take corpus-sized batches, bounded by their characters.
        self.large_batches = large_batches
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
            check_batch(value, "texts", "MAX_EMBEDDING_INPUTS" if self.large_batches else "MAX_BATCH_SIZE")
            errors = {}
            for index, item in enumerate(value):
                try:
                    check_text(item, self.empty_error)
                except ValidationError as exc:
                    errors[index] = exc.messages
            if errors:
                raise ValidationError(errors)
            if self.large_batches:
                check_total_characters(value)
            return value
        if isinstance(value, str):
            return check_text(value, self.empty_error)
        raise ValidationError("Send a string, or a list of strings for a batch.")


class ModelName(fields.String):
    """A model's public name; "" means the task's default, as a missing one does.

    Backprop's Python client 0.1.x sends `"model": ""` whenever its user names no
    model (0.0.x sent the default's name), expecting the service's default."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs) or None


def model_field(description: str) -> ModelName:
    return ModelName(load_default=None, metadata={
        "description": f"{description} Left out, null or \"\" (what Backprop's Python client 0.1.x sends "
                       "when its user names no model): the default."})


def string_or_list(**metadata) -> fields.Raw:
    """A response value: a string, or a list of strings for a batch (a fresh schema
    each time: a shared one would be written into openapi.yaml as a YAML anchor)."""
    return fields.Raw(metadata={"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                                **metadata})


class TextVectorisationResponse(StrictSchema):
    vector = fields.Raw(
        metadata={
            "description": "One vector for a single text, a list of vectors for a batch.",
            "oneOf": [
                {"type": "array", "items": {"type": "number"}},
                {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            ],
        }
    )


class OutputResponse(StrictSchema):
    output = string_or_list()


def as_batch(value) -> tuple[list, bool]:
    """A single item becomes a batch of one; remember which it was for the reply."""
    if isinstance(value, list):
        return value, True
    return [value], False


def text_items(body: dict) -> tuple[list[dict], bool]:
    """A TaskSpec's split for a body whose `text` is a text or a batch: one {"text": ...} per text."""
    texts, is_batch = as_batch(body["text"])
    return [{"text": text} for text in texts], is_batch


class StringList(fields.Field):
    """A list of strings, or (for batch requests) a list of such lists.

    Which shape is right depends on the other fields, so the view checks that
    with `per_item`; this field checks the items and the limits.
    """

    input_kind = "lines"  # one string per line of a form, or per repeated query parameter

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
        limit = limit_setting(self.limit_key)
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


def require_labels(labels: list[str], field_name: str) -> list[str]:
    """At least one label, no duplicates (a dict answer could not hold both)."""
    if not labels:
        raise ValidationError({field_name: ["Send at least one label."]})
    if len(set(labels)) != len(labels):
        raise ValidationError({field_name: ["Labels must be different from each other."]})
    return labels


def labels_field(description: str) -> StringList:
    return StringList("labels", "MAX_LABELS", load_default=None, allow_none=True, metadata={"description": (
        f"{description} null or left out (Backprop's Python client sends null when its user gives no labels): "
        "only for a model you trained, which then scores all its trained labels (sent labels: a subset of "
        "them), or your own uploaded code (model.bin or inference.py), which then gets labels None; "
        "the built-in zero-shot models answer 422, as they score the labels they are sent.")})


def top_k_field() -> fields.Integer:
    return fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0), metadata={
        "description": "Answer only the k likeliest labels (likeliest first), as Backprop's Python client 0.1.x "
                       "asks with top_k; 0 (the default) answers every label."})


def checked_labels(labels: list | None) -> list | None:
    return None if labels is None else require_labels(labels, "labels")


def require_labels_for(model, model_name: str | None, task: str, labels: list) -> None:
    """A 422 when an item has no labels and `model` cannot classify without them,
    or names labels a trained classifier does not know.

    Uploaded code (model.bin, inference.py) may classify without labels: it may
    be a classifier trained on its own. A trained version (a training job's)
    knows its labels: sent some, it scores that subset. The built-in classifiers,
    global or an uploaded Hugging Face folder, are zero-shot: they score the
    labels they are sent."""
    if Capability.TRAINED_LABELS in model.capabilities:
        trained = model.trained_labels
        unknown = sorted({label for item in labels if item for label in item} - set(trained))
        if unknown:
            problem = (f"{unknown} are not labels of model {model_name!r}; it was trained on "
                       f"{', '.join(map(str, trained))}. Send a subset of those, or no labels.")
            raise InvalidInput(f"Invalid request. labels: {problem}", errors={"labels": [problem]})
        return
    if Capability.UPLOADED_CODE in model.capabilities or all(item is not None for item in labels):
        return
    name = repr(model_name) if model_name else f"{default_name(task)!r} (the default)"
    problem = (f"Labels are required for model {name}: it is a zero-shot classifier that scores the labels you "
               "send. Only your own uploaded model code (model.bin or inference.py) or a model you trained "
               "can classify without labels.")
    raise InvalidInput(f"Invalid request. labels: {problem}", errors={"labels": [problem]})


def score_subset(probabilities: dict[str, float], labels: list | None) -> dict[str, float]:
    """A trained classifier's answer restricted to the labels it was sent, which
    share the probability between them (as a zero-shot model's labels do); all of
    them, unchanged, when it was sent none."""
    if not labels:
        return probabilities
    kept = {label: probabilities.get(label, 0.0) for label in labels}
    total = sum(kept.values())
    return {label: (p / total if total > 0 else 1.0 / len(kept)) for label, p in kept.items()}


def keep_top_k(probabilities: dict[str, float], k: int) -> dict[str, float]:
    """The k likeliest labels, likeliest first (Backprop's top_k); all, as answered, for 0."""
    # Uploaded code may answer anything JSON carries: only {label: number} is ranked.
    if not k or not isinstance(probabilities, dict) or not all(
            isinstance(p, (int, float)) for p in probabilities.values()):
        return probabilities
    return dict(sorted(probabilities.items(), key=lambda pair: pair[1], reverse=True)[:k])
