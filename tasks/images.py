"""Base64 images (plain or data: URIs) -> RGB PIL images, or a 400 that says what is wrong."""

import base64
import binascii
import io
import warnings

from flask import current_app
from marshmallow import ValidationError, fields

from app.config import ENV_PREFIX
from app.errors import BadRequest

from .common import check_batch


class NotAnImage(Exception):
    """An image field's value that cannot be decoded: a 400, not a schema error."""


def decode_image(value: str, max_pixels: int | None = None):
    from PIL import Image

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
    limit = int(current_app.config["MAX_IMAGE_PIXELS"] if max_pixels is None else max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            if image.width * image.height > limit:
                raise NotAnImage(
                    f"The image has {image.width * image.height} pixels; the limit is {limit} ({ENV_PREFIX}MAX_IMAGE_PIXELS)."
                )
            image.load()
            return image.convert("RGB")
    except NotAnImage:
        raise
    except Exception:  # PIL raises many kinds for a file that is not an image
        raise NotAnImage("Not an image, or a corrupt one: send a PNG, JPEG, GIF, WebP or BMP file.") from None


class ImageOrImages(fields.Field):
    """One base64 image, or (when allowed) a list of them for a batch."""

    def __init__(self, allow_batch: bool = True, **kwargs):
        self.allow_batch = allow_batch
        metadata = kwargs.pop("metadata", {})
        single = {"type": "string", "format": "byte"}
        if allow_batch:
            metadata.setdefault("oneOf", [single, {"type": "array", "items": single, "minItems": 1}])
        else:
            metadata.update(single)
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list) and self.allow_batch:
            check_batch(value, "images")
            images, errors = [], {}
            for index, item in enumerate(value):
                try:
                    images.append(self._one(item))
                except NotAnImage as exc:
                    errors[index] = [str(exc)]
            if errors:
                detail = " ".join(f"image {index}: {problems[0]}" for index, problems in errors.items())
                raise BadRequest(f"Invalid request. {detail}", errors={self.name: errors})
            return images
        try:
            return self._one(value)
        except NotAnImage as exc:
            raise BadRequest(f"Invalid request. {self.name}: {exc}", errors={self.name: [str(exc)]}) from None

    @staticmethod
    def _one(value):
        if not isinstance(value, str):
            raise ValidationError("Send the image as a base64 string.")
        return decode_image(value)
