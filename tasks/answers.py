"""What the task specs share to check a model before it serves: sample inputs a
build runs a model on, the checks of its answers' shapes, and the image
encoding uploaded code receives.

A build runs each task a model declares once on the task's sample; a model whose
answer has the wrong shape fails its build instead of failing its first caller.
"""

import base64
import io

SAMPLE_TEXT = "Backprop's successor checks that this model answers."


def sample_image():
    from PIL import Image

    return Image.new("RGB", (32, 32), (120, 30, 200))


def encode_png(image) -> str:
    """A decoded image as uploaded code receives it: a PNG file, base64."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def vector_answer(item, output) -> str | None:
    ok = isinstance(output, list) and bool(output) and all(isinstance(v, (int, float)) for v in output)
    return None if ok else "should return a list of numbers (a vector)"


def probabilities_answer(item, output) -> str | None:
    ok = (isinstance(output, dict) and set(output) == set(item["labels"])
          and all(isinstance(v, (int, float)) for v in output.values()))
    return None if ok else "should return {label: probability} for exactly the given labels"


def string_answer(item, output) -> str | None:
    return None if isinstance(output, str) else "should return a string"


def strings_answer(item, output) -> str | None:
    ok = isinstance(output, str) or (isinstance(output, list) and all(isinstance(o, str) for o in output))
    return None if ok else "should return a string (or a list of strings)"
