"""A sample item per task, and a check that an answer has the task's shape.

A build runs each task a model declares once on its sample; a model whose
answer has the wrong shape fails the build instead of failing its first caller.
Samples are batch items as the task code hands them to a model (a user model's
worker receives them converted by serving.user_input).
"""

from model_registry.loaders.generation import DEFAULTS

SAMPLE_TEXT = "Backprop's successor checks that this model answers."


def _sample_image():
    from PIL import Image

    return Image.new("RGB", (32, 32), (120, 30, 200))


def sample_item(task: str, emotion_threshold: float):
    return {
        "text-vectorisation": lambda: SAMPLE_TEXT,
        "qa": lambda: {"question": "What is checked?", "context": SAMPLE_TEXT, "prev_q": [], "prev_a": []},
        "text-classification": lambda: {"text": SAMPLE_TEXT, "labels": ["check", "other"]},
        "image-classification": lambda: {"image": _sample_image(), "labels": ["purple", "green"]},
        "image-vectorisation": _sample_image,
        "image-text-vectorisation": lambda: {"image": _sample_image(), "text": SAMPLE_TEXT},
        "text-generation": lambda: {"text": SAMPLE_TEXT,
                                    "params": {**DEFAULTS, "min_length": 1, "max_length": 4, "temperature": 0}},
        "summarisation": lambda: {"text": SAMPLE_TEXT},
        "emotion": lambda: {"text": SAMPLE_TEXT, "threshold": emotion_threshold},
        "custom": lambda: {},
    }[task]()


def _is_vector(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, (int, float)) for v in value)


def _is_probabilities(value, labels) -> bool:
    return isinstance(value, dict) and set(value) == set(labels) and all(isinstance(v, (int, float)) for v in value.values())


def shape_problem(task: str, item, output) -> str | None:
    """None if the output fits the task, else what is wrong."""
    if task in ("text-vectorisation", "image-vectorisation", "image-text-vectorisation"):
        return None if _is_vector(output) else "should return a list of numbers (a vector)"
    if task in ("text-classification", "image-classification"):
        ok = _is_probabilities(output, item["labels"])
        return None if ok else "should return {label: probability} for exactly the given labels"
    if task == "text-generation":
        ok = isinstance(output, str) or (isinstance(output, list) and all(isinstance(o, str) for o in output))
        return None if ok else "should return a string (or a list of strings)"
    if task in ("qa", "summarisation", "emotion"):
        return None if isinstance(output, str) else "should return a string"
    return None  # custom: anything JSON can carry
