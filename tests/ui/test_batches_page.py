"""The Batches page, with a real app and the real batch runner on the tiny emotion
classifier: a JSONL file uploaded through the form runs, its page shows the counts and
downloads the output (one answer, or that line's error, per line); cancel; the limits
answer on the form; another account's batch is a 404 on every route."""

import io
import json
import re

import pytest

from ..conftest import new_key
from ..training.flow import until

EMOTION_TEXTS = ["I hope this works", "what a lovely surprise", "I'll be most upset if things go wrong"]
FINAL = ("completed", "failed", "cancelled")


def request_line(custom_id: str, text: str) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/emotion", "body": {"text": text}})


def requests_file(lines) -> tuple:
    return io.BytesIO(("\n".join(lines) + "\n").encode()), "requests.jsonl"


def html(response) -> str:
    return response.get_data(as_text=True)


def upload(ui, lines):
    return ui.post("/ui/batches", {"file": requests_file(lines)}, content_type="multipart/form-data")


def batch_id_of(response) -> str:
    assert response.status_code == 302, html(response)
    match = re.fullmatch(r"/ui/batches/(batch_\w+)", response.headers["Location"])
    assert match, response.headers["Location"]
    return match[1]


def status_of(page: str) -> str:
    return re.search(r'<span id="batch-status" class="status \w+">([^<]+)</span>', page)[1]


def counts_of(page: str) -> dict:
    return {name: int(re.search(rf'<dd id="count-{name}">(\d+)</dd>', page)[1])
            for name in ("total", "completed", "failed")}


@pytest.fixture
def app(make_app, tiny_model_dir):
    return make_app(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.05)


@pytest.fixture
def idle_app(make_app, tiny_model_dir):
    """No runner: a batch stays queued until it is cancelled."""
    return make_app(MODEL_DIR=tiny_model_dir, PREDICTIONS=False, BATCH_MAX_INPUT_BYTES=2000)


def test_a_file_uploaded_through_the_form_runs_and_its_output_downloads(app, ui_for):
    alice, mallory = ui_for("alice", app=app), ui_for("mallory", app=app)
    form = html(alice.get("/ui/batches"))
    assert '<a href="/ui/batches" aria-current="page">Batches</a>' in form
    assert '<input id="batch-file" name="file" type="file"' in form and "No batches." in form

    lines = [request_line(f"c{number}", text) for number, text in enumerate(EMOTION_TEXTS)]
    lines.insert(2, "{this is not json")
    batch_id = batch_id_of(upload(alice, lines))
    live = f"/ui/batches/{batch_id}/live"
    until(lambda: "data-final" in html(alice.get(live)), 120)

    page = html(alice.get(f"/ui/batches/{batch_id}"))
    assert status_of(page) == "completed" and counts_of(page) == {"total": 4, "completed": 3, "failed": 1}
    assert f'data-refresh-url="{live}"' in page and "data-final" in page
    assert f'/ui/batches/{batch_id}/cancel"' not in page  # no cancel once it has ended
    assert f'<a id="batch-output" href="/ui/batches/{batch_id}/output" download>' in page

    output = alice.get(f"/ui/batches/{batch_id}/output")
    assert output.status_code == 200 and output.mimetype == "application/jsonl"
    assert output.headers["Content-Disposition"] == f'attachment; filename="{batch_id}-output.jsonl"'
    answers = [json.loads(line) for line in output.get_data(as_text=True).splitlines()]
    assert [answer["custom_id"] for answer in answers] == ["c0", "c1", None, "c2"]
    assert [answer["error"] is None for answer in answers] == [True, True, False, True]
    # The same bytes as the API's GET /batches/{id}/output, and the same answers as the synchronous route.
    client, headers = app.test_client(), {"x-api-key": new_key(app, "alice")}
    assert client.get(f"/batches/{batch_id}/output", headers=headers).data == output.data
    synchronous = client.post("/emotion", json={"text": EMOTION_TEXTS[0]}, headers=headers).json
    assert answers[0]["response"] == {"status_code": 200, "body": synchronous}

    listed = html(alice.get("/ui/batches"))
    row = re.search(rf'<tr>\s*<td><a href="/ui/batches/{batch_id}">.*?</tr>', listed, re.S)[0]
    assert "<td>mixed</td>" in row and "<td>4 of 4</td>" in row and "<td>1</td>" in row and ">completed<" in row

    # Another account: every route answers as for a missing batch, and its list is empty.
    for path in (f"/ui/batches/{batch_id}", live, f"/ui/batches/{batch_id}/output"):
        assert mallory.get(path).status_code == 404, path
    assert mallory.post(f"/ui/batches/{batch_id}/cancel").status_code == 404
    assert batch_id not in html(mallory.get("/ui/batches"))


def test_cancel_from_the_page_and_the_limits_on_the_form(idle_app, ui_for):
    alice, mallory = ui_for("alice", app=idle_app), ui_for("mallory", app=idle_app)
    first = batch_id_of(upload(alice, [request_line("a", "hi")]))
    second = batch_id_of(upload(alice, [request_line("b", "hi")]))
    page = html(alice.get(f"/ui/batches/{first}"))
    assert status_of(page) == "queued" and "data-final" not in page
    assert re.search(rf'<form method="post" action="/ui/batches/{first}/cancel"\s+data-confirm="[^"]+">', page)

    assert mallory.post(f"/ui/batches/{first}/cancel").status_code == 404
    assert status_of(html(alice.get(f"/ui/batches/{first}"))) == "queued"
    cancelled = alice.post(f"/ui/batches/{first}/cancel")
    assert cancelled.status_code == 302 and cancelled.headers["Location"] == f"/ui/batches/{first}"
    page = html(alice.get(f"/ui/batches/{first}"))
    assert status_of(page) == "cancelled" and "Cancelled the batch" in page and "data-final" in page
    again = html(alice.post(f"/ui/batches/{first}/cancel", follow_redirects=True))
    assert f"Could not cancel the batch: Batch {first} already cancelled." in again
    assert alice.get(f"/ui/batches/{first}/output").data == b""
    listed = re.findall(r'href="/ui/batches/(batch_\w+)"', html(alice.get("/ui/batches")))
    assert listed == [second, first]

    # The service's checks, said on the form: an empty file, one over INFER_BATCH_MAX_INPUT_BYTES, no file.
    empty = html(alice.post("/ui/batches", {"file": (io.BytesIO(b"\n\n"), "empty.jsonl")},
                            content_type="multipart/form-data", follow_redirects=True))
    assert "Could not start the batch: " in empty and "holds no request line" in empty
    big = html(alice.post("/ui/batches", {"file": (io.BytesIO(b" " * 2001), "big.jsonl")},
                          content_type="multipart/form-data", follow_redirects=True))
    assert "Could not start the batch: The file is over 2000 bytes (INFER_BATCH_MAX_INPUT_BYTES)" in big
    # A body far over the limit is refused before it is read, naming the setting, as a page.
    huge = alice.post("/ui/batches", {"file": (io.BytesIO(b" " * 200_000), "huge.jsonl")},
                      content_type="multipart/form-data")
    assert huge.status_code == 413 and "INFER_BATCH_MAX_INPUT_BYTES" in html(huge) and "<html" in html(huge)
    missing = html(alice.post("/ui/batches", {}, follow_redirects=True))
    assert "Choose a JSONL file of requests to upload." in missing
    # Without the CSRF token nothing is queued.
    assert alice.post("/ui/batches", {"file": requests_file([request_line("c", "hi")])}, csrf=False,
                      content_type="multipart/form-data").status_code == 403
    assert re.findall(r'href="/ui/batches/(batch_\w+)"', html(alice.get("/ui/batches"))) == [second, first]
