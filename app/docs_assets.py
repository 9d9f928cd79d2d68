"""Swagger UI's own files, served by the service from the swagger-ui-bundle package,
so /docs works on a machine (or a browser) with no internet."""

from flask import Blueprint, abort, send_from_directory

ASSETS = ("swagger-ui.css", "swagger-ui-standalone-preset.js", "swagger-ui-bundle.js")
URL_PREFIX = "/docs/assets/"

docs_assets = Blueprint("docs_assets", __name__, url_prefix=URL_PREFIX.rstrip("/"))


@docs_assets.get("/<path:filename>")
def asset(filename):
    from swagger_ui_bundle import swagger_ui_path

    if filename not in ASSETS:
        abort(404)
    return send_from_directory(swagger_ui_path, filename, max_age=86400)
