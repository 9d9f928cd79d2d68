"""GET /: what someone who opens the service's bare address finds.

A browser (it asks for HTML first) is sent to the dashboard; anything else gets
a short JSON index of where to go. Without this, the first thing a new user sees
at http://127.0.0.1:8000 is the API's "missing API key" 401. Nothing here is
secret: the same paths are in the README and the OpenAPI document.
"""

from flask import Blueprint, redirect, request

front_door = Blueprint("front_door", __name__)

LINKS = {
    "dashboard": "/ui/",
    "api_docs": "/docs",
    "openapi": "/openapi.json",
    "health": "/healthz",
    "readiness": "/readyz",
}


@front_door.get("/")
def index():
    # Named outright, not matched by curl's or a client library's */*.
    if any(kind == "text/html" for kind, _quality in request.accept_mimetypes):
        return redirect(LINKS["dashboard"])
    return {
        "message": "Task inference API. Send an API key in the x-api-key header (or as "
                   "Authorization: Bearer) to the task endpoints; the links say where the rest is.",
        "links": LINKS,
    }
