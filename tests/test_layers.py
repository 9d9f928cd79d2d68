"""The layers point down (.importlinter, docs/architecture.md): lint-imports
keeps the contracts on every test run, and what runs outside the web server
(workers, the builder, the trainers, the training and parsing children)
imports no web framework when it is actually imported, not only on paper."""

import os
import subprocess
import sys

import pytest

from tests.gunicorn import ROOT


def test_the_import_contracts_hold():
    lint_imports = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    result = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module", [
    "core.settings", "core.database", "core.keys", "core.usage", "core.runner", "core.work", "core.work_queue",
    "services.jobs", "services.models", "model_registry", "sandbox", "tasks", "trainers",
    "uploads.builder", "uploads.resolver", "uploads.worker_client", "uploads.storage",
    "training.jobs", "training.dataset_parses", "training.child", "training.datasets.child", "predictions.runner",
])
def test_importing_it_imports_no_web_framework(module):
    code = (f"import sys, {module}\n"
            "web = sorted(name for name in sys.modules\n"
            "             if name.split('.')[0] in ('flask', 'werkzeug', 'flask_smorest', 'app', 'api', 'web', 'ui'))\n"
            "print(','.join(web))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
