"""The table of tasks the service serves: one module each, one blueprint each."""

from . import text_vectorisation

TASKS = {
    text_vectorisation.TASK: text_vectorisation,
}


def register(api) -> None:
    for module in TASKS.values():
        api.register_blueprint(module.blp)
