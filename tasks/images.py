"""Base64 images (plain or data: URIs) -> RGB PIL images, or a 400 that says what is wrong.

Two steps, so that no image is decoded for a request that fails anyway: the schema
field only checks the base64 and the batch (`ImageOrImages`, during validation);
the view looks the model up and then calls `decode_images`, which reads every
image's size from its header and checks the limits before decoding any of them.
A few KB of PNG can decode to hundreds of MB, so the pixels are bounded per image
(MAX_IMAGE_PIXELS) and per request (MAX_REQUEST_PIXELS).
"""

import base64
import binascii
import io
import warnings

from marshmallow import ValidationError, fields

from core.errors import BadRequest
from core.images import IMAGE_FORMATS
from core.settings import ENV_PREFIX

from .common import as_batch, check_batch, limit_setting


class NotAnImage(Exception):
    """An image field's value that cannot be decoded: a 400, not a schema error."""


def image_bytes(value: str) -> bytes:
    """The file bytes of a base64 string or data: URI; nothing is decoded as an image."""
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        if ";base64" not in header:
            raise NotAnImage("A data: URI must be base64 encoded (data:image/png;base64,...).")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise NotAnImage("Not valid base64: send the image file's bytes, base64 encoded.") from None
    if not raw:
        raise NotAnImage("The image is empty.")
    return raw


def _bad_request(field: str, errors: dict, is_batch: bool) -> BadRequest:
    if is_batch:
        detail = " ".join(f"image {index}: {problem}" for index, problem in errors.items())
        return BadRequest(f"Invalid request. {detail}", errors={field: {i: [p] for i, p in errors.items()}})
    problem = errors[0]
    return BadRequest(f"Invalid request. {field}: {problem}", errors={field: [problem]})


class ImageOrImages(fields.Field):
    """One base64 image, or (when allowed) a list of them for a batch: their file bytes."""

    input_kind = "image"  # a file of a form

    def __init__(self, allow_batch: bool = True, **kwargs):
        self.allow_batch = allow_batch
        metadata = kwargs.pop("metadata", {})
        single = {"type": "string", "format": "byte"}
        if allow_batch:
            # A copy for the items: one object twice would be a YAML anchor in openapi.yaml.
            metadata.setdefault("oneOf", [single, {"type": "array", "items": dict(single), "minItems": 1}])
        else:
            metadata.update(single)
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        is_batch = isinstance(value, list) and self.allow_batch
        if is_batch:
            check_batch(value, "images")
        raws = _each(_base64_image, value if is_batch else [value], self.name, is_batch)
        return raws if is_batch else raws[0]


def _base64_image(item) -> bytes:
    if not isinstance(item, str):
        raise ValidationError("Send the image as a base64 string.")
    return image_bytes(item)


def _each(step, items: list, field: str, is_batch: bool) -> list:
    """`step` applied to every item; a 400 naming every item it refused."""
    results, errors = [], {}
    for index, item in enumerate(items):
        try:
            results.append(step(item))
        except NotAnImage as exc:
            errors[index] = str(exc)
    if errors:
        raise _bad_request(field, errors, is_batch)
    return results


def decode_images(value: bytes | list[bytes], field: str = "image"):
    """What `ImageOrImages` loaded -> an RGB image, or a list of them for a list."""
    raws, is_batch = as_batch(value)
    per_image = limit_setting("MAX_IMAGE_PIXELS")
    per_request = limit_setting("MAX_REQUEST_PIXELS")
    opened = _each(lambda raw: _open(raw, per_image), raws, field, is_batch)
    total = sum(image.width * image.height for image in opened)
    if total > per_request:
        problem = (f"The images of this request have {total} pixels together; the limit is {per_request} "
                   f"({ENV_PREFIX}MAX_REQUEST_PIXELS): send fewer or smaller images per request.")
        raise BadRequest(f"Invalid request. {field}: {problem}", errors={field: [problem]})
    images = _each(_load, opened, field, is_batch)
    return images if is_batch else images[0]


_NOT_AN_IMAGE = "Not an image, or a corrupt one: send a PNG, JPEG, GIF, WebP, BMP or TIFF file."


def _open(raw: bytes, limit: int):
    """Read the header only (PIL decodes lazily) and check the size it declares."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NotAnImage(f"The image is too large to decode; the limit is {limit} pixels ({ENV_PREFIX}MAX_IMAGE_PIXELS).") from None
    except Exception:  # PIL raises many kinds for a file that is not an image
        raise NotAnImage(_NOT_AN_IMAGE) from None
    if image.width * image.height > limit:
        raise NotAnImage(
            f"The image has {image.width * image.height} pixels; the limit is {limit} ({ENV_PREFIX}MAX_IMAGE_PIXELS)."
        )
    return image


def _load(image):
    try:
        image.load()
        return image.convert("RGB")  # always a copy
    except Exception:  # a valid header over truncated or corrupt data
        raise NotAnImage(_NOT_AN_IMAGE) from None
    finally:
        image.close()  # frees the decoded original now, not when the whole batch is done
