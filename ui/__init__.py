"""The web UI at /ui: server-rendered pages over the domain services (see ui/blueprint.py)."""

# Each module adds its pages to the blueprint.
from . import batches, evaluations, keys, models, playground, sign_in, training, upload, usage  # noqa: E402,F401
from .blueprint import bp
from .sessions import init_sessions


def init_app(app) -> None:
    init_sessions(app)
    app.register_blueprint(bp)
