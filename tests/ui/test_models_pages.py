"""The Models pages and the Upload page: an account's models, its builds and versions,
delete and promote through the UI, and the upload-URL flow driven as the browser drives it."""

import re
import time
from urllib.parse import urlsplit

import pytest

from ..conftest import new_key
from ..uploads.helpers import inference_zip


def ask_upload_url(ui, name: str, csrf: bool = True):
    """What upload.js sends: JSON, with the session's CSRF token as a header."""
    headers = {"Accept": "application/json"}
    if csrf:
        headers["X-CSRF-Token"] = ui.csrf
    return ui.client.post("/ui/upload-url", json={"model_name": name}, headers=headers)


def put_zip(ui, url: str, data: bytes):
    """The browser's PUT to the upload URL: no session, no key, no Content-Type."""
    parts = urlsplit(url)
    return ui.client.put(f"{parts.path}?{parts.query}", data=data)


def upload(ui, name: str, data: bytes) -> None:
    answer = ask_upload_url(ui, name)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["model_page"] == f"/ui/models/{name}"
    put = put_zip(ui, answer.json["upload_url"], data)
    assert put.status_code == 200, put.get_data(as_text=True)


def wait_build_ended(ui, name: str, timeout_s: float = 180) -> str:
    """Poll the live fragment, as ui.js does, until it says the build has ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fragment = ui.get(f"/ui/models/{name}/build")
        assert fragment.status_code == 200
        html = fragment.get_data(as_text=True)
        if "data-final" in html:
            return html
        time.sleep(0.3)
    raise AssertionError(f"the build of {name} never ended")


def build_status(html: str) -> str:
    return re.search(r'<span id="build-status" class="status [^"]*"[^>]*>([^<]*)</span>', html)[1]


def serving_version(app, account: str, name: str) -> int | None:
    headers = {"x-api-key": new_key(app, account)}
    versions = app.test_client().get(f"/models/{name}/versions", headers=headers)
    assert versions.status_code == 200, versions.json
    return next((v["version"] for v in versions.json if v["serving"]), None)


@pytest.fixture
def builder_app(make_app):
    return make_app(BUILDER=True, BUILD_POLL_S=0.2)


def test_list_shows_own_models_and_the_global_ones_never_another_accounts(ui_app, ui_for):
    alice, bob = ui_for("alice"), ui_for("bob")
    assert ask_upload_url(alice, "alice-model").status_code == 200
    assert ask_upload_url(bob, "bob-model").status_code == 200

    page = alice.get("/ui/models")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    table = html.split('<table id="models-table">')[1].split("</table>")[0]
    assert 'href="/ui/models/alice-model"' in table
    assert "bob-model" not in html
    assert "all-MiniLM-L6-v2" in html.split('<table id="global-models-table">')[1]

    # No upload yet: waiting for it, and the live part keeps polling.
    model_page = alice.get("/ui/models/alice-model").get_data(as_text=True)
    assert build_status(model_page) == "awaiting upload"
    assert 'data-refresh-url="/ui/models/alice-model/build"' in model_page
    assert "data-final" not in model_page

    for path in ("/ui/models/bob-model", "/ui/models/bob-model/build"):
        assert alice.get(path).status_code == 404


def test_upload_build_versions_promote_and_delete_through_the_ui(builder_app, ui_for):
    alice, bob = ui_for("alice", builder_app), ui_for("bob", builder_app)

    upload(alice, "coder", inference_zip("2"))
    fragment = wait_build_ended(alice, "coder")
    assert build_status(fragment) == "success"

    page = alice.get("/ui/models/coder")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert build_status(html) == "success" and "data-final" in html
    assert '<table id="versions-table">' in html
    log = html.split('<pre id="build-log"')[1].split("</pre>")[0]
    assert "custom: sample answered" in log
    assert "<code>text-vectorisation</code>" in html and "<code>custom</code>" in html
    assert "Delete model" in html and "Promote" not in html  # its only version serves already
    assert 'href="/ui/models/coder"' in alice.get("/ui/models").get_data(as_text=True)

    upload(alice, "coder", inference_zip("3"))
    assert build_status(wait_build_ended(alice, "coder")) == "success"
    assert serving_version(builder_app, "alice", "coder") == 2
    html = alice.get("/ui/models/coder").get_data(as_text=True)
    assert html.count(">Promote</button>") == 1
    assert 'action="/ui/models/coder/versions/1/promote"' in html

    # Another account: every page and form of alice's model answers 404, and changes nothing.
    for path in ("/ui/models/coder", "/ui/models/coder/build"):
        assert bob.get(path).status_code == 404
    assert bob.post("/ui/models/coder/versions/1/promote").status_code == 404
    assert bob.post("/ui/models/coder/delete").status_code == 404
    assert serving_version(builder_app, "alice", "coder") == 2

    # Without the CSRF token: refused, nothing changes.
    assert alice.post("/ui/models/coder/versions/1/promote", csrf=False).status_code == 403
    assert serving_version(builder_app, "alice", "coder") == 2
    promoted = alice.post("/ui/models/coder/versions/1/promote")
    assert promoted.status_code == 302 and promoted.headers["Location"].endswith("/ui/models/coder")
    assert serving_version(builder_app, "alice", "coder") == 1
    assert "Version 1 of coder now serves." in alice.get("/ui/models/coder").get_data(as_text=True)

    assert alice.post("/ui/models/coder/delete", csrf=False).status_code == 403
    assert alice.get("/ui/models/coder").status_code == 200
    deleted = alice.post("/ui/models/coder/delete")
    assert deleted.status_code == 302 and deleted.headers["Location"].endswith("/ui/models")
    listing = alice.get("/ui/models").get_data(as_text=True)
    assert "Deleted model coder" in listing and 'href="/ui/models/coder"' not in listing
    assert alice.get("/ui/models/coder").status_code == 404


def test_a_failed_build_shows_its_message_and_log(builder_app, ui_for):
    alice = ui_for("alice", builder_app)
    upload(alice, "broken", b"this is not a zip")
    fragment = wait_build_ended(alice, "broken")
    assert build_status(fragment) == "failed"
    html = alice.get("/ui/models/broken").get_data(as_text=True)
    message = html.split('<p id="build-message"')[1].split("</p>")[0]
    assert "zip" in message.lower()
    assert "Promote" not in html


def test_upload_url_refusals_are_readable_and_need_the_csrf_token(ui_app, ui_for):
    alice = ui_for("alice")
    bad = ask_upload_url(alice, "Bad Name!")
    assert bad.status_code == 422 and "lowercase letters" in bad.json["message"]
    taken = ask_upload_url(alice, "english")
    assert taken.status_code == 409 and "global model" in taken.json["message"]
    assert ask_upload_url(alice, "no-token", csrf=False).status_code == 403
    assert "no-token" not in alice.get("/ui/models").get_data(as_text=True)

    granted = ask_upload_url(alice, "fine-name")
    assert granted.status_code == 200
    # The URL is on the host the browser reached (here the test client's), signed.
    assert granted.json["upload_url"].startswith("http://localhost/uploads/")
    assert "signature=" in granted.json["upload_url"]


def test_upload_url_keeps_the_public_url(make_app, ui_for):
    app = make_app(PUBLIC_URL="https://infer.example")
    answer = ask_upload_url(ui_for("alice", app), "public")
    assert answer.status_code == 200 and answer.json["upload_url"].startswith("https://infer.example/uploads/")


def test_upload_page_has_the_form_and_says_javascript_is_needed(ui_app, ui_for):
    html = ui_for("alice").get("/ui/upload?name=mine").get_data(as_text=True)
    assert '<label for="model-name">Model name</label>' in html
    assert '<label for="model-file">Model zip</label>' in html
    assert 'id="model-name"' in html and 'value="mine"' in html
    assert 'id="model-file" name="file" type="file"' in html
    assert ">Upload</button>" in html and "/ui/static/upload.js" in html
    assert "<noscript>" in html and "needs JavaScript" in html
