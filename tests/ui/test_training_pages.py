"""The Datasets and Training pages, with a real app, real parsing and real training
jobs: upload a dataset and read its parse log and label counts, start a job from the
form, follow its epochs through the page's JSON route, cancel it; another account
sees none of it, and a form sent without the CSRF token changes nothing."""

import io
import json
import re

import pytest

from ..conftest import new_key
from ..training.flow import add_dataset, iris_csv, until

REVIEWS = "text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(10)) + ",pos\n"
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def app(make_app, tiny_model_dir):
    # A runner that parses and trains; the tiny causal LM stands in for gpt2-large.
    return make_app(TRAINER=True, TRAINING_POLL_S=0.1, MODEL_DIR=tiny_model_dir, TRAINING_LEASE_S=3.0)


@pytest.fixture
def alice(app, ui_for):
    return ui_for("alice", app=app)


@pytest.fixture
def mallory(app, ui_for):
    return ui_for("mallory", app=app)


@pytest.fixture
def api(app):
    """alice's account through the JSON API, to set up and to check what the pages did."""
    client, headers = app.test_client(), {"x-api-key": new_key(app, "alice")}
    return client, headers


def html(response) -> str:
    return response.get_data(as_text=True)


def parsed_page(ui, dataset_id: str) -> str:
    """The dataset page once its live part says the parsing has ended."""
    until(lambda: "data-final" in html(ui.get(f"/ui/datasets/{dataset_id}/parse-log")), 60)
    page = ui.get(f"/ui/datasets/{dataset_id}")
    assert page.status_code == 200
    return html(page)


def label_counts(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="label-counts">(.*?)</script>', page, re.S)
    return json.loads(block[1])


def job_json(ui, job_id: str):
    return ui.get(f"/ui/jobs/{job_id}/json", headers={"Accept": "application/json"})


def wait_job(ui, job_id: str, done=lambda job: job["status"] in FINAL, timeout_s: float = 240) -> dict:
    state = {}

    def reached():
        state.clear()
        state.update(job_json(ui, job_id).get_json())
        return done(state)

    until(reached, timeout_s)
    return state


def mallory_headers(mallory) -> dict:
    return {"x-api-key": new_key(mallory.app, "mallory")}


def start_from_form(ui, dataset_id: str, **fields):
    return ui.post(f"/ui/datasets/{dataset_id}/train", fields)


def job_id_of(response) -> str:
    assert response.status_code == 302, html(response)
    match = re.fullmatch(r"/ui/jobs/(job_\w+)", response.headers["Location"])
    assert match, response.headers["Location"]
    return match[1]


def test_an_uploaded_dataset_shows_its_parse_log_label_counts_and_training_form(alice, mallory, api):
    form = html(alice.get("/ui/datasets"))
    assert 'id="dataset-file"' in form and '<label for="dataset-file">Dataset file</label>' in form
    assert "Upload dataset" in form

    uploaded = alice.post("/ui/datasets", {"file": (io.BytesIO(REVIEWS.encode()), "reviews.csv")})
    assert uploaded.status_code == 302, html(uploaded)
    dataset_id = re.fullmatch(r"/ui/datasets/(ds_\w+)", uploaded.headers["Location"])[1]
    page = parsed_page(alice, dataset_id)
    assert '<span id="dataset-status" class="status ready">ready</span>' in page
    parse_log = re.search(r'<pre id="parse-log"[^>]*>(.*?)</pre>', page, re.S)[1]
    assert "Detected format text-label" in parse_log and "line 22: empty text; skipped" in parse_log
    assert 'id="label-chart"' in page and label_counts(page) == {"neg": 10, "pos": 10}
    # The training form offers the one trainer of text-label data, with its settings and their defaults.
    trainer = re.search(r'<select id="trainer" name="task">(.*?)</select>', page, re.S)[1]
    assert re.findall(r'<option value="([^"]+)"', trainer) == ["text-classification"]
    assert '<label for="job-model-name">Model name</label>' in page and "Start training" in page
    assert re.search(r'name="hp:text-classification:num_iterations"[^>]*value="20"', page, re.S)
    assert 'value="all-MiniLM-L6-v2" selected' in page

    listed = html(alice.get("/ui/datasets"))
    assert f'href="/ui/datasets/{dataset_id}">reviews</a>' in listed

    # Another account: nothing of it, in any form.
    for path in (f"/ui/datasets/{dataset_id}", f"/ui/datasets/{dataset_id}/parse-log"):
        assert mallory.get(path).status_code == 404, path
    assert dataset_id not in html(mallory.get("/ui/datasets"))
    stolen = start_from_form(mallory, dataset_id, task="text-classification", model_name="stolen")
    assert stolen.status_code == 404
    assert mallory.post(f"/ui/datasets/{dataset_id}/delete").status_code == 404
    client, headers = api
    assert client.get(f"/datasets/{dataset_id}", headers=headers).json["status"] == "ready"
    assert client.get("/jobs", headers=mallory_headers(mallory)).json["data"] == []


def test_the_browser_upload_puts_the_file_to_the_upload_url_it_is_given(alice, api):
    client, headers = api
    asked = alice.client.post("/ui/datasets/upload-url", json={"filename": "iris.csv", "label_column": "species"},
                              headers={"X-CSRF-Token": alice.csrf})
    assert asked.status_code == 201, asked.get_json()
    upload = asked.get_json()
    dataset_id = upload["id"]
    # This service's upload URL, on the host the browser reached (the test client's).
    assert upload["upload_url"].startswith(f"http://localhost/dataset-uploads/{dataset_id}?expires=")
    assert upload["page_url"] == f"/ui/datasets/{dataset_id}"
    waiting = html(alice.get(upload["page_url"]))
    assert 'class="status pending">awaiting upload<' in waiting and "data-reload-when-final" in waiting

    assert alice.client.put(upload["upload_url"], data=iris_csv().encode()).status_code == 200
    page = parsed_page(alice, dataset_id)
    assert 'class="status ready"' in page and 'id="columns-table"' in page
    assert label_counts(page) == {"Iris-setosa": 50, "Iris-versicolor": 50, "Iris-virginica": 50}
    assert re.search(r'<option value="tabular">', page)
    assert client.get(f"/datasets/{dataset_id}", headers=headers).json["name"] == "iris"


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(alice, api):
    client, headers = api
    dataset = add_dataset(client, headers, iris_csv())
    refused = [
        alice.post("/ui/datasets", {"file": (io.BytesIO(REVIEWS.encode()), "reviews.csv")}, csrf=False),
        alice.client.post("/ui/datasets/upload-url", json={"filename": "x.csv"}),
        start_from_form(alice, dataset["id"], task="tabular", model_name="iris", csrf_token="forged"),
        alice.post(f"/ui/datasets/{dataset['id']}/delete", csrf=False),
    ]
    assert [answer.status_code for answer in refused] == [403] * 4
    assert [d["id"] for d in client.get("/datasets", headers=headers).json] == [dataset["id"]]
    assert client.get("/jobs", headers=headers).json["data"] == []


def test_training_from_the_form_leads_to_a_job_page_with_curves_and_a_confusion_matrix(alice, mallory, api):
    client, headers = api
    dataset = add_dataset(client, headers, iris_csv())
    assert dataset["status"] == "ready"

    # A setting the API refuses: back to the dataset page, saying what to fix; no job.
    wrong = start_from_form(alice, dataset["id"], task="tabular", model_name="iris",
                            **{"hp:tabular:n_estimators": "99999"})
    assert wrong.status_code == 302 and wrong.headers["Location"] == f"/ui/datasets/{dataset['id']}"
    assert "hyperparameters.n_estimators" in html(alice.get(wrong.headers["Location"]))
    assert client.get("/jobs", headers=headers).json["data"] == []

    job_id = job_id_of(start_from_form(alice, dataset["id"], task="tabular", model_name="iris", validation_split="0.2",
                                       **{"hp:tabular:estimator": "logistic_regression", "hp:tabular:seed": "7",
                                          "hp:tabular:n_estimators": ""}))
    done = wait_job(alice, job_id)
    assert done["status"] == "succeeded", done["message"]
    assert done["hyperparameters"]["estimator"] == "logistic_regression" and done["hyperparameters"]["seed"] == 7
    assert [epoch["epoch"] for epoch in done["epochs"]] == [1] and done["validation_rows"] == 30

    page = html(alice.get(f"/ui/jobs/{job_id}"))
    assert '<span id="job-status" class="status succeeded">succeeded</span>' in page
    assert 'id="loss-chart"' in page and 'data-points="0"' in page and 'id="metric-chart"' in page
    assert f'data-json-url="/ui/jobs/{job_id}/json"' in page
    matrix = re.search(r'<table id="confusion-matrix" class="heatmap"[^>]*>(.*?)</table>', page, re.S)[1]
    cells = re.findall(r'<td class="heat-(\d)" data-level="\d">(\d+)</td>', matrix)
    assert len(cells) == 9 and sum(int(count) for _, count in cells) == 30
    assert ">Cancel</button>" not in page and "data-final" in page
    assert 'id="epochs-table"' in page and "accuracy" in page
    assert f'href="/ui/jobs/{job_id}"' in html(alice.get("/ui/jobs"))

    for path in (f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/live"):
        assert mallory.get(path).status_code == 404, path
    assert job_json(mallory, job_id).status_code == 404
    assert mallory.post(f"/ui/jobs/{job_id}/cancel").status_code == 404
    assert job_id not in html(mallory.get("/ui/jobs"))


def test_a_running_job_reports_its_epochs_as_they_come_and_cancel_stops_it(alice, mallory, api):
    client, headers = api
    rows = "".join(json.dumps({"prompt": f"Item {i} is", "completion": f" number {i}."}) + "\n" for i in range(24))
    dataset = add_dataset(client, headers, rows)
    assert dataset["status"] == "ready" and dataset["format"] == "prompt-completion"
    job_id = job_id_of(start_from_form(alice, dataset["id"], task="text-generation", model_name="writer",
                                       **{"base_model:text-generation": "gpt2-large", "hp:text-generation:epochs": "60",
                                          "hp:text-generation:batch_size": "4",
                                          "hp:text-generation:learning_rate": "1e-3",
                                          "hp:text-generation:max_length": "32"}))

    def running_with(at_least: int):
        def check(job):
            assert job["status"] in ("queued", "running"), job
            return job["status"] == "running" and len(job["epochs"]) >= at_least
        return check

    first = wait_job(alice, job_id, running_with(1), timeout_s=180)
    later = wait_job(alice, job_id, running_with(len(first["epochs"]) + 1), timeout_s=180)
    assert later["epochs"][:len(first["epochs"])] == first["epochs"]  # each epoch added once, as it ends
    assert {"epoch", "train_loss", "validation_loss", "perplexity"} <= set(later["epochs"][0])

    page = html(alice.get(f"/ui/jobs/{job_id}"))
    assert '<span id="job-status" class="status running">running</span>' in page
    assert re.search(r'<form method="post" action="/ui/jobs/' + job_id + r'/cancel"\s+data-confirm="[^"]+">', page)
    assert ">Cancel</button>" in page and "data-final" not in html(alice.get(f"/ui/jobs/{job_id}/live"))

    # Neither another account nor a form without the token can cancel it.
    assert mallory.post(f"/ui/jobs/{job_id}/cancel").status_code == 404
    assert alice.post(f"/ui/jobs/{job_id}/cancel", csrf=False).status_code == 403
    assert job_json(alice, job_id).get_json()["status"] == "running"

    cancelled = alice.post(f"/ui/jobs/{job_id}/cancel")
    assert cancelled.status_code == 302 and cancelled.headers["Location"] == f"/ui/jobs/{job_id}"
    assert "Cancelled the job." in html(alice.get(cancelled.headers["Location"]))
    assert wait_job(alice, job_id)["status"] == "cancelled"
    live = html(alice.get(f"/ui/jobs/{job_id}/live"))
    assert 'class="status cancelled">cancelled<' in live and "data-final" in live and ">Cancel</button>" not in live


def test_the_dataset_page_lists_revisions_adds_a_text_sample_and_removes_one(alice, mallory, api):
    client, headers = api
    dataset_id = add_dataset(client, headers, REVIEWS, name="reviews")["id"]
    page = parsed_page(alice, dataset_id)
    assert 'id="revisions-table"' in page and 'id="samples-table"' in page and "Add sample" in page
    assert "<code>s1</code>" in page

    added = alice.post(f"/ui/datasets/{dataset_id}/samples", {"text": "so-so film", "label": "meh"})
    assert added.status_code == 302
    page = html(alice.get(f"/ui/datasets/{dataset_id}"))
    assert "revision 2" in page and label_counts(page) == {"meh": 1, "neg": 10, "pos": 10}
    removed = alice.post(f"/ui/datasets/{dataset_id}/samples/s1/delete")
    assert removed.status_code == 302
    again = alice.post(f"/ui/datasets/{dataset_id}/samples/s1/delete")  # a second click: said on the page
    assert again.status_code == 302 and "Not in this dataset" in html(alice.get(f"/ui/datasets/{dataset_id}"))
    assert [r["change"]["kind"] for r in client.get(f"/datasets/{dataset_id}/revisions", headers=headers).json] == [
        "upload", "add", "remove"]
    first = html(alice.get(f"/ui/datasets/{dataset_id}?revision=1"))
    assert "Statistics of revision 1" in first and label_counts(first) == {"neg": 10, "pos": 10}
    assert "Remove sample" not in first  # an old revision is read only

    # Another account: 404s, and nothing changed.
    assert mallory.get(f"/ui/datasets/{dataset_id}?revision=1").status_code == 404
    assert mallory.post(f"/ui/datasets/{dataset_id}/samples", {"text": "x", "label": "y"}).status_code == 404
    assert mallory.post(f"/ui/datasets/{dataset_id}/samples/s2/delete").status_code == 404
    assert client.get(f"/datasets/{dataset_id}", headers=headers).json["latest_revision"] == 3


def test_a_search_job_page_shows_its_leaderboard(alice, mallory, api):
    client, headers = api
    dataset = add_dataset(client, headers, iris_csv())
    # Three configurations: logistic regression (about 0.14 MB) fits the size limit, both forests (0.28 and
    # 0.62 MB) do not.
    started = client.post("/models/iris/train", headers=headers, json={
        "task": "tabular", "dataset_id": dataset["id"],
        "search": {"trials": 3, "space": {"estimator": ["random_forest", "logistic_regression"],
                                          "n_estimators": [5, 20]}, "max_size_mb": 0.2}})
    assert started.status_code == 202, started.json
    done = wait_job(alice, started.json["id"])
    assert done["status"] == "succeeded", done["message"]
    assert [(t["status"], t["searched"]["estimator"]) for t in done["trials"]] == [
        ("kept", "logistic_regression"), ("rejected", "random_forest"), ("rejected", "random_forest")]

    page = html(alice.get(f"/ui/jobs/{done['id']}"))
    table = re.search(r'<table id="trials-table"[^>]*>(.*?)</table>', page, re.S)[1]
    rows = re.findall(r'<tr(?: class="best")? data-status="(\w+)">(.*?)</tr>', table, re.S)
    assert [status for status, _ in rows] == ["kept", "rejected", "rejected"] and "at most 0.2 MB" in page
    assert '<tr class="best" data-status="kept">' in table and "<td>1 (best)</td>" in table
    for (_, cells), trial in zip(rows, done["trials"]):
        assert f"<td>{trial['trial']}</td>" in cells and f"estimator={trial['searched']['estimator']}" in cells
    assert all("is over max_size_mb 0.2" in cells for _, cells in rows[1:])
    assert mallory.get(f"/ui/jobs/{done['id']}/live").status_code == 404


def test_the_form_keeps_training_from_a_version_with_a_test_dataset_and_the_job_page_shows_them(alice, mallory, api):
    client, headers = api
    dataset = add_dataset(client, headers, iris_csv())
    held = add_dataset(client, headers, iris_csv(), name="held")
    first = wait_job(alice, job_id_of(start_from_form(alice, dataset["id"], task="tabular", model_name="iris")))
    assert first["status"] == "succeeded", first["message"]

    page = parsed_page(alice, dataset["id"])
    assert '<option value="iris@1">iris@1</option>' in page
    assert f'<option value="{held["id"]}">held ({held["id"]})</option>' in page
    job_id = job_id_of(start_from_form(alice, dataset["id"], task="tabular", model_name="iris",
                                       test_dataset_id=held["id"], **{"keep_from:tabular": "iris@1"}))
    done = wait_job(alice, job_id)
    assert done["status"] == "succeeded", done["message"]
    assert done["parent"] == {"model": "iris", "version": 1} and done["test_metrics"]["accuracy"] > 0.9
    page = html(alice.get(f"/ui/jobs/{job_id}"))
    assert "<dt>Kept on from</dt>" in page and "iris@1" in page
    assert "<dt>Test metrics</dt>" in page and "train_accuracy" in page  # an epochs table column
    assert "kept on from iris@1" in html(alice.get("/ui/models/iris"))

    # Mallory's own dataset page offers none of alice's versions, and naming one is refused as a missing model.
    theirs = add_dataset(client, mallory_headers(mallory), iris_csv())
    assert "iris@1" not in parsed_page(mallory, theirs["id"])
    refused, missing = (start_from_form(mallory, theirs["id"], task="tabular", model_name="mine",
                                        **{"keep_from:tabular": ref}) for ref in ("iris@1", "ghost@1"))
    assert refused.status_code == missing.status_code == 404
    assert client.get("/jobs", headers=mallory_headers(mallory)).json["data"] == []


def test_the_forms_search_section_starts_a_search_whose_page_shows_the_leaderboard(alice, mallory, api):
    client, headers = api
    dataset = add_dataset(client, headers, iris_csv())
    page = parsed_page(alice, dataset["id"])
    section = re.search(r'<details class="search-settings">(.*?)</details>', page, re.S)[1]
    assert 'name="search:tabular"' in section and 'max="20"' in section  # INFER_TRAINING_SEARCH_MAX_TRIALS
    for field in ("trials", "method", "time_budget_s", "max_latency_ms", "max_size_mb"):
        assert f'name="search:tabular:{field}"' in section, field

    # What the service refuses is the form's error, and starts nothing.
    refusals = {
        "at most 20 (INFER_TRAINING_SEARCH_MAX_TRIALS)": {"search:tabular:trials": "50"},
        "a search ranks its trials on validation rows": {"search:tabular": "on", "validation_split": "0"},
        "Must be one of: random, halving": {"search:tabular:trials": "2", "search:tabular:method": "grid"},
    }
    for said, fields in refusals.items():
        refused = alice.post(f"/ui/datasets/{dataset['id']}/train", {"task": "tabular", "model_name": "iris",
                                                                    **fields}, follow_redirects=True)
        assert refused.status_code == 200 and "Could not start training: " in html(refused), fields
        assert said in html(refused), (fields, html(refused))
    assert client.get("/jobs", headers=headers).json["data"] == []
    # Another account's dataset: the page's 404, with a search as without.
    stolen = start_from_form(mallory, dataset["id"], task="tabular", model_name="stolen",
                             **{"search:tabular:trials": "2"})
    assert stolen.status_code == 404

    job_id = job_id_of(start_from_form(alice, dataset["id"], task="tabular", model_name="iris", **{
        "search:tabular:trials": "2", "search:tabular:method": "random", "search:tabular:time_budget_s": "300",
        "search:tabular:max_size_mb": "50"}))
    done = wait_job(alice, job_id)
    assert done["status"] == "succeeded", done["message"]
    assert {key: done["search"][key] for key in ("method", "trials", "time_budget_s", "max_size_mb")} == {
        "method": "random", "trials": 2, "time_budget_s": 300, "max_size_mb": 50.0}
    assert len(done["trials"]) == 2 and done["version"] == 1
    page = html(alice.get(f"/ui/jobs/{job_id}"))
    table = re.search(r'<table id="trials-table"[^>]*>(.*?)</table>', page, re.S)[1]
    rows = re.findall(r'<tr(?: class="best")? data-status="(\w+)">(.*?)</tr>', table, re.S)
    assert [status for status, _ in rows] == [trial["status"] for trial in done["trials"]]
    assert "<td>1 (best)</td>" in table and "at most 50.0 MB" in page
    for (_, cells), trial in zip(rows, done["trials"]):
        assert f"<td>{trial['trial']}</td>" in cells and f"estimator={trial['searched']['estimator']}" in cells
    assert mallory.get(f"/ui/jobs/{job_id}").status_code == 404
