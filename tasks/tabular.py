"""POST /predict: a tabular model you trained (or uploaded) answers a row of
feature values, or a batch of rows, with its prediction and, for a classifier,
the probability of each class (OneClick's prediction API, in JSON)."""

import math

from marshmallow import ValidationError, fields, validate

from core.errors import InvalidInput
from model_registry.served_model import Capability
from trainers.tabular import TabularTrainer

from .common import StrictSchema, as_batch, check_batch, check_text
from .spec import TaskSpec, register

TASK = "tabular"

# What a build runs an uploaded tabular model on (trained ones are never built):
# a row of the iris measurements, OneClick's example.
SAMPLE_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _check_row(row) -> dict:
    if not isinstance(row, dict):
        raise ValidationError("Send a row as an object of {column: value}.")
    for column, value in row.items():
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValidationError(f"Column {column!r}: send a number, a string, true/false or null.")
        if isinstance(value, str):
            check_text(value)
    return row


def _row_schema() -> dict:
    # A fresh one each time: one object twice would be a YAML anchor in openapi.yaml.
    return {"type": "object", "additionalProperties": {
        "oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}], "nullable": True}}


class RowOrRows(fields.Field):
    """One row {column: value}, or a list of rows for a batch."""

    input_kind = "row"  # a query string's or a form's fields are the row's columns

    def __init__(self, **kwargs):
        super().__init__(metadata={"oneOf": [_row_schema(), {"type": "array", "items": _row_schema(), "minItems": 1}],
                                   **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            check_batch(value, "rows")
            errors = {}
            for index, row in enumerate(value):
                try:
                    _check_row(row)
                except ValidationError as exc:
                    errors[index] = exc.messages
            if errors:
                raise ValidationError(errors)
            return value
        return _check_row(value)


class PredictBody(StrictSchema):
    model = fields.String(required=True, validate=validate.Length(min=1), metadata={
        "description": "The name of your tabular model (name@N for its version N); there are no global ones."})
    features = RowOrRows(required=True, metadata={
        "description": "One row {column: value}, every column the model was trained on and no other, or a list "
                       "of rows for a batch. null is a missing value, filled in as in training."})


class PredictResponse(StrictSchema):
    prediction = fields.Raw(metadata={
        "description": "The predicted class (a classifier) or number (a regression); a list for a batch."})
    probabilities = fields.Raw(allow_none=True, metadata={
        "description": "{class: probability} for a classifier, summing to 1; a list for a batch; "
                       "null for a regression.", "nullable": True})


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _row_problems(row: dict, columns: dict[str, str]) -> list[str]:
    problems = []
    missing = [column for column in columns if column not in row]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    unknown = [column for column in row if column not in columns]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)}")
    not_numbers = [f"{column} ({row[column]!r})" for column, kind in columns.items()
                   if kind == "numeric" and row.get(column) is not None and not _number(row[column])]
    if not_numbers:
        problems.append(f"not a number in numeric column(s) {', '.join(not_numbers)}")
    return problems


def check_rows(rows: list[dict], columns: dict[str, str], model_name: str, is_batch: bool) -> None:
    """A 422 naming each row's wrong columns and listing the model's, before any row is queued."""
    errors = {index: problems for index, row in enumerate(rows) if (problems := _row_problems(row, columns))}
    if not errors:
        return
    takes = ", ".join(f"{column} ({'number' if kind == 'numeric' else 'category'})"
                      for column, kind in columns.items())
    said = {index: "; ".join(problems) + f". Model {model_name!r} takes: {takes}."
            for index, problems in errors.items()}
    if is_batch:
        detail = " ".join(f"row {index}: {problem}" for index, problem in said.items())
        raise InvalidInput(f"Invalid request. features: {detail}",
                           errors={"features": {index: [problem] for index, problem in said.items()}})
    raise InvalidInput(f"Invalid request. features: {said[0]}", errors={"features": [said[0]]})


def _parts(output) -> tuple:
    """(prediction, probabilities) of one output; uploaded code may answer a bare value."""
    if isinstance(output, dict) and "prediction" in output:
        return output["prediction"], output.get("probabilities")
    return output, None


def answer(outputs: list, is_batch: bool) -> dict:
    predictions, probabilities = zip(*map(_parts, outputs))
    if not is_batch:
        return {"prediction": predictions[0], "probabilities": probabilities[0]}
    no_probabilities = all(p is None for p in probabilities)
    return {"prediction": list(predictions), "probabilities": None if no_probabilities else list(probabilities)}


def prediction_answer(item, output) -> str | None:
    ok = (isinstance(output, dict) and isinstance(output.get("prediction"), (str, int, float, bool))
          and (output.get("probabilities") is None or (
              isinstance(output["probabilities"], dict)
              and all(isinstance(p, (int, float)) for p in output["probabilities"].values()))))
    return None if ok else 'should return {"prediction": a class or number, "probabilities": {class: p} or null}'


def rows(body: dict) -> tuple[list[dict], bool]:
    return as_batch(body["features"])


def check_columns(model, body: dict) -> None:
    """A trained model knows its columns: the rows must have them; uploaded code checks its own."""
    if Capability.INPUT_COLUMNS in model.capabilities:
        features, is_batch = rows(body)
        check_rows(features, model.input_columns, body["model"], is_batch)


SPEC = register(TaskSpec(
    TASK, "/predict", "Predictions of your own tabular models.",
    "Predict a row's label with your tabular model (or each row's, for a batch)",
    PredictBody, PredictResponse, response_keys=("prediction", "probabilities"), sample=lambda: dict(SAMPLE_ROW),
    items=rows, check_model=check_columns, answer_body=answer,
    check_answer=prediction_answer, to_user_input=lambda item: {"features": item}, trainer=TabularTrainer,
))
