"""The upload formats: one module each, one ordered table here.

The builder asks the table which format an extracted archive is (detect), lets
that format build it, and stores its name in model_versions.format; UserModels
looks the stored name up (named) to load the version. Neither knows any format,
so a new one (trained versions, say) is a module defining an UploadFormat and one
line in FORMATS. A format whose code runs in the worker also needs its loading
in user_worker.py, which imports nothing of the service.
"""

from .base import BuildFailed, TrainedFormat, UploadFormat, Version
from .clip_probe import ClipProbe
from .hf_folder import HfFolder
from .inference_code import InferenceCode
from .lora_adapter import LoraAdapter
from .pickle_model import PickleModel
from .setfit_model import SetFitModelFormat
from .sklearn_model import SklearnModel

__all__ = ["FORMATS", "BuildFailed", "TrainedFormat", "UploadFormat", "Version", "detect", "named"]

# Detection order: the first format whose files are there wins. inference.py
# comes before model.bin, which its code may load itself; both before a Hugging
# Face folder, whose config.json keys a code model may carry for its own loading.
# The formats training jobs make (TrainedFormat) are never detected in an upload.
FORMATS: tuple[UploadFormat, ...] = (
    InferenceCode(),
    PickleModel(),
    HfFolder(),
    SetFitModelFormat(),
    LoraAdapter(),
    SklearnModel(),
    ClipProbe(),
)

_BY_NAME = {upload_format.name: upload_format for upload_format in FORMATS}
if len(_BY_NAME) != len(FORMATS):  # a stored name must map back to exactly one format
    raise ImportError(f"two upload formats share a name: {[f.name for f in FORMATS]}")


def detect(files_dir: str, model_config: dict) -> UploadFormat:
    """The first format in FORMATS that recognises the extracted files."""
    for upload_format in FORMATS:
        if upload_format.detect(files_dir, model_config):
            return upload_format
    *others, last = [upload_format.needs for upload_format in FORMATS if upload_format.needs]
    raise BuildFailed(f"No model found: the archive needs {', '.join(others)}, or {last}.")


def named(name: str) -> UploadFormat:
    """The format a version was built as (its model_versions.format)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise LookupError(f"unknown upload format {name!r}; known: {', '.join(_BY_NAME)}") from None
