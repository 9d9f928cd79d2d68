"""What an upload format is: how it finds itself in an extracted archive, what its
build does once, and how a built version of it is loaded to serve.

A format is one small class; the registry in __init__.py lists them in detection
order. The builder and UserModels only ever talk to this interface, so neither
holds a per-format branch, and a new format is one module plus one table line.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

from core.settings import Settings
from model_registry.loaders import LoadSettings
from model_registry.served_model import ServedModel

from ..build_errors import BuildFailed  # noqa: F401 - the formats raise it; hf_checks too
from ..serving import cache_key


@dataclass(frozen=True)
class Version:
    """A model version as its format sees it, at build and at load: where its files
    are, what it declares, and the service's means of running it."""

    id: int
    tasks: list[str]
    files_dir: str
    venv_dir: str
    settings: Settings  # the service's settings (timeouts, limits), not the model's config.json
    model_sandbox: object  # uploads.model_sandbox.ModelSandbox
    device: str
    half: bool
    load_settings: LoadSettings  # what a built-in loader's answers depend on (the emotion threshold)

    @property
    def key(self) -> str:
        return cache_key(self.id)


class UploadFormat(ABC):
    # Stored in model_versions.format and read back at every load: never rename
    # one that has been stored.
    name: ClassVar[str]
    # What an archive of this format holds, for the message when none matches.
    needs: ClassVar[str]

    @abstractmethod
    def detect(self, files_dir: str, model_config: dict) -> bool:
        """Whether the extracted files are of this format (the registry asks in order)."""

    @abstractmethod
    def build(self, version: Version, model_config: dict, say: Callable[[str], None]) -> ServedModel:
        """Do what the version needs once (an install, checks of its files), logging
        through say, and return it loaded for the build's sample run. BuildFailed
        (or the sandbox's and quotas' own errors) fails the build."""

    @abstractmethod
    def serve(self, version: Version) -> ServedModel:
        """Load a version this format built, to serve requests (ModelUnavailable
        when what it needs is missing on this host)."""


class TrainedFormat(UploadFormat):
    """A format only training jobs make (training/): never recognised in an
    uploaded zip, never built from one; its versions are published ready to serve.
    Its files come from the service's own trainers and hold no pickle, so they
    load in the service's process."""

    needs = ""  # never asked for in an upload

    def detect(self, files_dir: str, model_config: dict) -> bool:
        return False

    def build(self, version: Version, model_config: dict, say: Callable[[str], None]) -> ServedModel:
        raise BuildFailed(f"A {self.name} model is made by training jobs (POST /models/<name>/train); "
                          "it cannot be uploaded.")
