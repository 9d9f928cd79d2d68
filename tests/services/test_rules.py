"""The services' own checks and errors: each error carries the status the API
answers with, and says what to fix; services/ imports no web framework."""

import ast
import pathlib
import subprocess
import sys

import pytest
from sqlalchemy import select

from core.errors import BadRequest, Conflict, InvalidInput, NotFound
from core.tables import UserModel
from services import datasets, jobs, models

SERVICES = pathlib.Path(__file__).resolve().parents[2] / "services"


def test_an_upload_starts_a_new_version_of_the_accounts_model(accounts):
    alice = accounts.as_("alice")

    url = models.start_upload(alice, "reviews")

    assert url.startswith("http://service.test/")
    model = models.get(alice, "reviews")
    assert [version.status for version in model.versions] == ["awaiting_upload"]
    assert models.build_status(accounts.db, model) == "awaiting_upload"


@pytest.mark.parametrize("name, error, status, says", [
    ("Bad Name!", InvalidInput, 422, "model_name: 3-100 characters: lowercase letters"),
    ("english", Conflict, 409, "'english' is the name of a global model; choose another name."),
])
def test_a_name_no_model_may_have_is_refused_with_its_status(accounts, name, error, status, says):
    alice = accounts.as_("alice")

    with pytest.raises(error) as refused:
        models.start_upload(alice, name)

    assert refused.value.status == status and says in refused.value.message
    assert accounts.db.scalars(select(UserModel)).all() == []


def test_training_checks_the_dataset_before_anything_is_made(accounts):
    dataset = accounts.dataset("alice")
    dataset.status = "processing"
    accounts.db.commit()
    alice = accounts.as_("alice")

    with pytest.raises(Conflict) as refused:
        jobs.start(alice, "reviews", {"task": "text-classification", "dataset_id": dataset.id})

    assert refused.value.message == f"Dataset {dataset.id} is processing; wait until it is ready."
    with pytest.raises(NotFound):
        models.get(alice, "reviews")


def test_a_dataset_needs_exactly_one_source(accounts):
    alice = accounts.as_("alice")

    with pytest.raises(BadRequest) as refused:
        datasets.create(alice, {"name": "x"}, data="text,label\na,b\n", upload=True)

    assert refused.value.status == 400 and "exactly one" in refused.value.message
    assert datasets.listed(alice) == []


def test_services_import_no_web_framework():
    modules = sorted(SERVICES.glob("*.py"))
    imported = set()
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])

    assert imported.isdisjoint({"flask", "flask_smorest", "werkzeug", "webargs"})
    assert len(modules) >= 8 and "sqlalchemy" in imported  # the scan read the modules


def test_each_service_imports_first_on_its_own():
    # A worker or script may import one service before anything else: no import cycle
    # through the app's package may leave it half-initialised.
    for path in sorted(SERVICES.glob("*.py")):
        module = f"services.{path.stem}" if path.stem != "__init__" else "services"
        result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=SERVICES.parent,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (module, result.stderr[-2000:])
