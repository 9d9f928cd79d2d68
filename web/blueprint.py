"""The Blueprint every endpoint uses: flask-smorest's, with a friendlier JSON parser."""

import flask_smorest
from webargs import core
from webargs.flaskparser import FlaskParser, abort

from web.json_provider import NESTED_TOO_DEEPLY


class JsonBodyParser(FlaskParser):
    """Reads the body as JSON whatever the Content-Type says.

    `curl -d '{...}'` sends form encoding by default; rejecting that body as
    "missing" would confuse more than it protects.
    """

    def _raw_load_json(self, req):
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        try:
            return core.parse_json(data)
        except RecursionError:  # the stdlib parser recurses once per level: '[' * 100000
            self._handle_invalid_json_error(NESTED_TOO_DEEPLY, req)

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, message=f"The request body is not valid JSON ({error}). Send a JSON object.")


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonBodyParser()
