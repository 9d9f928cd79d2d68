"""The Blueprint every endpoint uses: flask-smorest's, with a friendlier JSON parser."""

import threading

import flask_smorest
import marshmallow as ma
from flask import g
from webargs import core
from webargs.flaskparser import FlaskParser, abort

from web.json_provider import NESTED_TOO_DEEPLY


class JsonBodyParser(FlaskParser):
    """Reads the body as JSON whatever the Content-Type says.

    `curl -d '{...}'` sends form encoding by default; rejecting that body as
    "missing" would confuse more than it protects.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._schemas: dict[type, ma.Schema] = {}
        self._schemas_lock = threading.Lock()

    def _get_schema(self, argmap, req):
        """One instance per schema class, made on its first request: webargs would make
        one per request (field copies and all, a tenth of a small request's own work).
        Loading reads no state of the instance; the limits are read at load."""
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                with self._schemas_lock:
                    schema = self._schemas.setdefault(argmap, argmap())
            return schema
        return super()._get_schema(argmap, req)

    def _raw_load_json(self, req):
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        try:
            body = core.parse_json(data)
            g.parsed_json_body = body  # usage's after_request hook reads the model's name from it
            return body
        except RecursionError:  # the stdlib parser recurses once per level: '[' * 100000
            self._handle_invalid_json_error(NESTED_TOO_DEEPLY, req)

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, message=f"The request body is not valid JSON ({error}). Send a JSON object.")


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonBodyParser()
