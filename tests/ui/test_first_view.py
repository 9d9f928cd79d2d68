"""What a new user meets on the pages, without a browser: the sign-in hint's command as it
runs on a fresh clone, the new key's copy button, a job page's "queued" note that goes when
the job moves on, and a model page whose live part brings the description its build read.
(tests/ui/browser/ checks the same in Chromium.)"""

import re

from ..conftest import new_key
from ..training.flow import add_dataset, iris_csv, wait_job
from ..uploads.helpers import inference_zip, put_local, upload_url, wait_built
from .conftest import UiClient


def html(response) -> str:
    return response.get_data(as_text=True)


def test_the_sign_in_hint_gives_the_command_that_runs_on_a_fresh_clone_and_in_docker(ui_app):
    page = html(UiClient(ui_app).get("/ui/sign-in"))
    assert ".venv/bin/flask --app wsgi keys create --account NAME" in page
    assert "docker compose exec replica1 flask --app wsgi keys create --account NAME" in page
    assert "<code>flask --app wsgi keys create</code>" not in page


def test_a_new_key_has_a_copy_button_for_the_script_to_show(ui_for):
    alice = ui_for("alice")
    page = html(alice.post("/ui/keys", {"label": "laptop"}))
    key = re.search(r'<code id="new-key"[^>]*>(ik_[^<]+)</code>', page)[1]
    button = re.search(r'<button type="button" id="copy-key"[^>]*>', page)[0]
    # A real button (keyboard reachable), naming the key's element and where to say what happened;
    # hidden until ui.js, which does the copying, shows it.
    assert 'data-copy="new-key"' in button and 'data-copy-status="copy-status"' in button and "hidden" in button
    assert 'id="copy-status"' in page and 'role="status"' in page
    assert key not in page.replace(f">{key}</code>", "")  # the key itself only in its element, once
    assert 'id="copy-key"' not in html(alice.get("/ui/keys"))  # no key shown, no button


def test_the_queued_note_is_part_of_the_live_job_state_and_goes_when_the_job_moves_on(make_app):
    app = make_app(TRAINER=True, TRAINING_POLL_S=0.1)
    client, headers = app.test_client(), {"x-api-key": new_key(app, "alice")}
    dataset = add_dataset(client, headers, iris_csv())
    assert dataset["status"] == "ready", dataset
    app.extensions["training"].stop()  # nothing takes the job: it stays queued until cancelled
    alice = UiClient(app, new_key(app, "alice"))

    started = alice.post(f"/ui/datasets/{dataset['id']}/train", {"task": "tabular", "model_name": "iris"})
    assert started.status_code == 302, html(started)
    job_path = started.headers["Location"]
    page = html(alice.get(job_path))
    assert '<span id="job-status" class="status queued">queued</span>' in page
    queued_note = 'id="job-queued"'
    # The note is in the live part (ui.js refreshes it), not a flash above it that would stay.
    live = html(alice.get(job_path + "/live"))
    assert queued_note in live and "the job is queued" in live
    assert page.count("the job is queued") == 1

    assert alice.post(job_path + "/cancel").status_code == 302
    assert wait_job(client, headers, job_path.rsplit("/", 1)[1])["status"] == "cancelled"
    for path in (job_path, job_path + "/live"):
        assert queued_note not in html(alice.get(path)), path


def test_the_model_pages_live_part_carries_the_description_its_build_read(make_app):
    app = make_app(BUILDER=True, BUILD_POLL_S=0.2)
    client, headers = app.test_client(), {"x-api-key": new_key(app, "alice")}
    alice = UiClient(app, new_key(app, "alice"))
    url = upload_url(client, headers, "doubler")

    # Before the build: no description yet, and the About section's place for it hidden.
    page = html(alice.get("/ui/models/doubler"))
    assert re.search(r'<p id="model-description" hidden></p>', page), page
    assert put_local(client, url, inference_zip("2")).status_code == 200
    assert wait_built(client, headers, "doubler")["build_status"] == "success"

    # What ui.js copies into #model-description as the live part refreshes: no reload needed.
    live = html(alice.get("/ui/models/doubler/build"))
    assert '<span hidden data-fills="model-description">code model</span>' in live
    assert '<p id="model-description">code model</p>' in html(alice.get("/ui/models/doubler"))
