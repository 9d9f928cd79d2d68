"""The layers below the web API import no web framework: the model registry,
the sandbox and the user-model worker glue can be used (and tested, and later
run in a job worker) without Flask."""

import subprocess
import sys

import pytest

from tests.gunicorn import ROOT


@pytest.mark.parametrize("module", ["core.errors", "core.request_context", "core.settings", "model_registry", "sandbox",
                                    "uploads.worker_client", "uploads.storage", "training.child_records",
                                    "training.child"])
def test_importing_it_imports_no_web_framework(module):
    code = (f"import sys, {module}\n"
            "web = sorted(name for name in sys.modules if name.split('.')[0] in ('flask', 'werkzeug', 'app'))\n"
            "print(','.join(web))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
