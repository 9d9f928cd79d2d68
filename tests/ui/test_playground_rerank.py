"""The playground's rerank form, generated from the task's spec: a query, the documents
one per line, the switches folded away; a run answers what /rerank answers."""

from ..conftest import new_key
from ..tasks.test_rerank import DOCUMENTS, QUERY
from .conftest import UiClient
from .test_playground_and_keys import run


def test_the_rerank_form_takes_a_query_and_documents_one_per_line_and_runs(make_app, tiny_model_dir):
    app = make_app(MODEL_DIR=tiny_model_dir, BACKEND="torch")
    ui = UiClient(app, new_key(app, "alice"))

    page = ui.get("/ui/playground?task=rerank").get_data(as_text=True)
    assert 'id="field-query" data-name="query" data-kind="text" required' in page
    assert 'id="field-texts" data-name="texts" data-kind="lines"' in page
    assert 'id="field-raw_scores" data-name="raw_scores" data-kind="boolean"' in page

    body = {"query": QUERY, "texts": DOCUMENTS, "model": "english"}
    result = run(ui, {"task": "rerank", "body": body, "files": {}}).json

    direct = app.test_client().post("/rerank", json=body, headers={"x-api-key": new_key(app, "carol")})
    assert result["status"] == 200 and result["ok"], result
    assert result["answer"] == direct.json and len(result["answer"]) == len(DOCUMENTS)
