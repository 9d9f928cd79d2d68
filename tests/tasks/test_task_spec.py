"""A task is its TaskSpec: a throwaway task declared here, in the test and nowhere in
the product, as data only (no view, no blueprint), is served over HTTP by an
uploaded model (built with the spec's sample and answer check, called through
the spec's adapter) with no edit anywhere else. And the task table, the catalogue and the loaders are checked
against each other at import, with messages."""

import json

import pytest
from marshmallow import fields

from model_registry.catalogue import MODELS, TASK_MODELS, ModelSpec
from model_registry.loaders import LOADERS, CatalogueError, check_catalogue
from tasks.common import StrictSchema, TextOrTexts, as_batch, model_field
from tasks.spec import TASK_SPECS, TaskSpec, TaskSpecError, check_specs, register, unregister

from ..uploads.helpers import deploy, make_zip

TASK = "word-count"


class WordCountBody(StrictSchema):
    text = TextOrTexts(required=True)
    model = model_field("Your model that counts words.")


class WordCountResponse(StrictSchema):
    count = fields.Raw()


def words(body: dict) -> tuple[list, bool]:
    texts, is_batch = as_batch(body["text"])
    return [{"words": text.split()} for text in texts], is_batch


SPEC = TaskSpec(
    TASK, "/word-count", "Counts words (a test's task).", "Count the words of a text",
    WordCountBody, WordCountResponse, response_keys=("count",), items=words,
    sample=lambda: {"words": ["three", "little", "words"]},
    check_answer=lambda item, output: None if output == len(item["words"]) else "should count the words",
    # Uploaded code receives the words joined again: the adapter is the spec's too.
    to_user_input=lambda item: {"sentence": " ".join(item["words"])},
)

COUNTER = '''
def load_model(model_dir):
    return None

def call_model(model, task_input, task):
    return len(task_input["sentence"].split()) + OFFSET
'''


def counter_zip(offset: int) -> bytes:
    config = {"description": "counts words", "tasks": [TASK]}
    return make_zip({"inference.py": f"OFFSET = {offset}\n{COUNTER}", "config.json": json.dumps(config),
                     "requirements.txt": ""})


@pytest.fixture
def word_count_task():
    register(SPEC)
    yield SPEC
    unregister(TASK)


@pytest.fixture
def service(word_count_task, client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    return api.client, api.headers


def test_a_task_declared_only_by_its_spec_is_built_and_served_over_http(service):
    client, headers = service

    details = deploy(client, headers, "counter", counter_zip(offset=0))
    assert details["build_status"] == "success", details

    single = client.post("/word-count", json={"text": "one two three four", "model": "counter"}, headers=headers)
    assert single.status_code == 200, single.json
    assert single.json == {"count": 4}
    batch = client.post("/word-count", json={"text": ["a b", "c"], "model": "counter"}, headers=headers)
    assert batch.json == {"count": [2, 1]}


def test_the_specs_answer_check_fails_a_build_that_answers_wrongly(service):
    client, headers = service

    details = deploy(client, headers, "miscounter", counter_zip(offset=1))

    assert details["build_status"] == "fail"
    assert "should count the words" in details["build_message"]


def test_the_task_is_gone_once_its_spec_is(client_for):
    assert TASK not in TASK_SPECS
    api = client_for()
    assert api.client.post("/word-count", json={"text": "x"}, headers=api.headers).status_code == 404


# ---- the checks at import ----------------------------------------------------


def loader_tasks():
    return {name: loader.tasks for name, loader in LOADERS.items()}


def test_a_catalogue_task_without_a_spec_is_refused_naming_it():
    specs = {name: spec for name, spec in TASK_SPECS.items() if name != "emotion"}

    with pytest.raises(TaskSpecError, match="names tasks without a spec: emotion"):
        check_specs(specs, TASK_MODELS, loader_tasks())


def test_a_spec_whose_folder_loader_cannot_serve_it_is_refused():
    bad = TaskSpec(TASK, "/word-count", "", "", WordCountBody, WordCountResponse, ("count",), sample=dict,
                   hf_loader="sentence-transformer")

    with pytest.raises(TaskSpecError, match="loader sentence-transformer does not serve it"):
        check_specs({**TASK_SPECS, TASK: bad}, TASK_MODELS, loader_tasks())


def test_a_catalogue_row_naming_a_task_its_loader_cannot_serve_is_refused_naming_both():
    task_models = {**TASK_MODELS, "emotion": {"english": "all-MiniLM-L6-v2"}}

    with pytest.raises(CatalogueError) as refused:
        check_catalogue(MODELS, task_models, LOADERS)

    assert "TASK_MODELS['emotion']['english'] is all-MiniLM-L6-v2" in str(refused.value)
    assert "sentence-transformer cannot serve emotion" in str(refused.value)


def test_a_catalogue_model_naming_no_loader_is_refused():
    models = {**MODELS, "mystery": ModelSpec("mystery", "org/mystery", "abc1234", "no-such-loader", "?")}

    with pytest.raises(CatalogueError, match="mystery names loader 'no-such-loader'"):
        check_catalogue(models, TASK_MODELS, LOADERS)


def test_the_product_tables_pass_their_checks():
    check_catalogue(MODELS, TASK_MODELS, LOADERS)
    check_specs(TASK_SPECS, TASK_MODELS, loader_tasks())


def test_every_loader_serves_exactly_the_tasks_it_declares(tiny_dir):
    """The declaration the import check trusts is what the loaded models really run."""
    from model_registry.loaders import DEFAULT_SETTINGS
    from model_registry.loaders.completion import ROUTE_RUNNERS  # the /v1 routes' runners, not tasks

    folders = {"zero-shot-nli": "nli", "emotion-classifier": "emotion_classifier", "extractive-qa": "extractive_qa",
               "seq2seq": "seq2seq", "causal-lm": "causal_lm", "clip": "clip"}
    for loader_name, folder in folders.items():
        loader = LOADERS[loader_name]
        spec = ModelSpec("tiny", "tiny", "uploaded", loader_name, "test")
        served = loader.load(spec, tiny_dir[folder], "cpu", False, DEFAULT_SETTINGS)
        assert set(served.runners) - set(ROUTE_RUNNERS) == loader.tasks, loader_name


def test_no_task_module_imports_another():
    """Task modules share only the shared modules (schemas, answers, images, spec)."""
    import ast
    import importlib
    import inspect

    import tasks

    task_modules = {spec.request_schema.__module__.rsplit(".", 1)[-1] for spec in TASK_SPECS.values()
                    if spec.request_schema.__module__.startswith("tasks.")}
    assert len(task_modules) >= 10
    for name in task_modules:
        tree = ast.parse(inspect.getsource(importlib.import_module(f"tasks.{name}")))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 1:
                    imported.add(module.split(".")[0])
                elif module.startswith("tasks."):
                    imported.add(module.split(".")[1])
        assert not (imported & task_modules) - {name}, f"tasks/{name}.py imports {imported & task_modules}"
    assert tasks.SHARED.isdisjoint(task_modules)


def test_a_spec_whose_trainer_trains_another_task_is_refused():
    from trainers.tabular import TabularTrainer

    bad = TaskSpec(TASK, "/word-count", "", "", WordCountBody, WordCountResponse, ("count",), sample=dict,
                   trainer=TabularTrainer)

    with pytest.raises(TaskSpecError, match="its trainer TabularTrainer trains tabular"):
        check_specs({**TASK_SPECS, TASK: bad}, TASK_MODELS, loader_tasks())


def test_the_trainers_are_found_through_the_specs():
    from tasks.spec import NoTrainer, trainable_tasks, trainer_for

    assert trainable_tasks() == ["image-classification", "rerank", "tabular", "text-classification",
                                 "text-generation", "text-vectorisation"]
    assert type(trainer_for("tabular")).__name__ == "TabularTrainer"
    with pytest.raises(NoTrainer, match="'qa' cannot be trained; tasks that can: image-classification"):
        trainer_for("qa")


def test_no_module_of_tasks_imports_flask_or_the_web_layer():
    """A task is data: its routes are the web layer's (api/task_routes.py)."""
    import ast
    from pathlib import Path

    import tasks

    for path in Path(tasks.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in {"flask", "flask_smorest", "webargs"}, f"tasks/{path.name} imports {name}"
                assert top not in {"app", "api", "web", "ui"}, f"tasks/{path.name} imports {name}"
