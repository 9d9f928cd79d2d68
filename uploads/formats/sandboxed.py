"""What the formats that carry code share: their build installs requirements.txt
into the version's own venv and they are served by a worker process, both in the
version's bubblewrap sandbox (docs/security.md). Without a sandbox such a
model neither builds nor loads: a pickle runs code when it is unpickled, so
running it in the service's process is never a fallback.

The worker (uploads/user_worker.py) is told the format's name and loads the
model its way.
"""


from core.errors import ModelUnavailable
from model_registry.served_model import ServedModel
from sandbox import SandboxUnavailable

from ..serving import code_model
from ..venvs import build_model_venv
from .base import UploadFormat, Version


class SandboxedCode(UploadFormat):
    def build(self, version: Version, model_config: dict, say) -> ServedModel:
        model_sandbox = version.model_sandbox
        model_sandbox.sandbox.require()  # SandboxUnavailable fails the build before anything runs
        # The same step a replica that fetched the files runs (uploads/version_bundles.py).
        say(build_model_venv(model_sandbox, version.id, version.files_dir, version.venv_dir))
        return self._worker(version)

    def serve(self, version: Version) -> ServedModel:
        try:
            version.model_sandbox.sandbox.require()
        except SandboxUnavailable as exc:  # built on a host that had one: 503, not 500
            raise ModelUnavailable(str(exc)) from None
        return self._worker(version)

    def _worker(self, version: Version) -> ServedModel:
        return code_model(version.key, version.id, version.files_dir, version.venv_dir, self.name, version.tasks,
                          version.settings, version.model_sandbox)
