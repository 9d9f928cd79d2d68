"""The web UI at /ui: server-rendered pages over the domain services (see ui/blueprint.py)."""

from .blueprint import bp
from .sessions import init_sessions

# Each module adds its pages to the blueprint.
from . import keys, models, playground, sign_in, training, upload, usage  # noqa: E402,F401


def init_app(app) -> None:
    init_sessions(app)
    app.register_blueprint(bp)
