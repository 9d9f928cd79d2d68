"""The table of tasks the service serves: one module each, one blueprint each."""

from . import (
    custom,
    emotion,
    image_classification,
    image_text_vectorisation,
    image_vectorisation,
    qa,
    summarisation,
    text_classification,
    text_generation,
    text_vectorisation,
)

TASKS = {
    module.TASK: module
    for module in (
        text_vectorisation,
        qa,
        text_classification,
        image_classification,
        image_vectorisation,
        image_text_vectorisation,
        text_generation,
        summarisation,
        emotion,
        custom,
    )
}


def register(api) -> None:
    for module in TASKS.values():
        api.register_blueprint(module.blp)
