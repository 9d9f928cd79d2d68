"""Batch predictions over HTTP: a JSONL file of requests (or a dataset's rows)
runs in the background and answers one output line per input line, in order,
as the synchronous route answers; bad lines are errors of their own line; cancel,
paging, another account's batch, the limits, and a batch whose process died
resuming from the lines it had recorded."""

import io
import json
import os
import threading
import time

import pytest
from sqlalchemy import update

from core.tables import Batch

EMOTION_TEXTS = ["I hope this works", "I'll be most upset if things go wrong", "what a lovely surprise"]


def request_line(custom_id, url, body) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def jsonl(lines) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def post_batch(api, data: bytes, headers=None, **form):
    return api.client.post("/batches", data={"file": (io.BytesIO(data), "requests.jsonl"), **form},
                           headers=headers or api.headers, content_type="multipart/form-data")


def wait_until_ended(api, batch_id, timeout_s=600, headers=None):
    deadline = time.monotonic() + timeout_s
    while True:
        answer = api.client.get(f"/batches/{batch_id}", headers=headers or api.headers)
        assert answer.status_code == 200, answer.json
        if answer.json["status"] in ("completed", "failed", "cancelled"):
            return answer.json
        assert time.monotonic() < deadline, answer.json
        time.sleep(0.05)


def output_lines(api, batch_id, headers=None) -> list[dict]:
    answer = api.client.get(f"/batches/{batch_id}/output", headers=headers or api.headers)
    assert answer.status_code == 200 and answer.mimetype == "application/jsonl"
    return [json.loads(line) for line in answer.data.decode().splitlines()]


@pytest.fixture
def api(client_for, tiny_model_dir):
    return client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.05)


@pytest.fixture
def idle_api(client_for, tiny_model_dir):
    """No runner: batches stay queued until the test runs one (app.extensions["batches"].run_claimed)."""
    return client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=False)


# --- the figure of issue 26: 1,000 lines, 3 bad, on the real packaged MiniLM --------------------

@pytest.mark.packaged_model
def test_a_thousand_line_file_with_three_bad_lines_ends_with_997_answers_and_3_line_errors(client_for, capsys):
    api = client_for(PREDICTIONS=True, PREDICTION_POLL_S=0.05)
    bad = {100: "{this is not json", 500: request_line("line-500", "/no-such-task", {"text": "x"}),
           900: request_line("line-900", "/text-vectorisation", {"text": {"not": "a string"}, "model": "english"})}
    lines = [bad.get(number) or request_line(f"line-{number}", "/text-vectorisation",
                                             {"text": f"sentence number {number} about the weather", "model": "english"})
             for number in range(1, 1001)]
    started = time.perf_counter()
    created = post_batch(api, jsonl(lines))
    assert created.status_code == 202, created.json
    assert created.json["request_counts"] == {"total": 1000, "completed": 0, "failed": 0}
    assert created.headers["Location"] == f"/batches/{created.json['id']}"
    done = wait_until_ended(api, created.json["id"])
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n1,000-line batch (997 + 3 bad) on the packaged MiniLM: {seconds:.1f} s")

    assert done["status"] == "completed" and done["request_counts"] == {"total": 1000, "completed": 997, "failed": 3}
    output = output_lines(api, created.json["id"])
    assert len(output) == 1000
    assert [line["custom_id"] for line in output] == [
        None if number == 100 else f"line-{number}" for number in range(1, 1001)]
    errors = {number: line["error"]["code"] for number, line in enumerate(output, start=1) if line["error"]}
    assert errors == {100: "invalid_line", 500: "not_found", 900: "invalid_body"}
    assert output[99]["response"] is None and output[499]["response"]["status_code"] == 404
    assert "text" in output[899]["error"]["message"] or output[899]["response"]["status_code"] == 422
    # Each answer is the synchronous route's for the same body. (The lines ran in batches of other
    # lengths than one request alone: the floats agree to rounding, not to the last bit.)
    for number in (1, 2, 499, 1000):
        body = json.loads(lines[number - 1])["body"]
        synchronous = api.client.post("/text-vectorisation", json=body, headers=api.headers)
        assert output[number - 1]["response"]["status_code"] == 200
        answered = output[number - 1]["response"]["body"]
        assert answered.keys() == synchronous.json.keys()
        assert answered["vector"] == pytest.approx(synchronous.json["vector"], abs=1e-5)


# --- cheap: the tiny emotion classifier ----------------------------------------------------------

def test_answers_equal_the_synchronous_routes_in_the_inputs_order(api):
    lines = [request_line(f"c{number}", "/emotion", {"text": text}) for number, text in enumerate(EMOTION_TEXTS)]
    lines.insert(1, "")  # blank lines are skipped, as JSONL readers do
    created = post_batch(api, jsonl(lines))
    assert created.status_code == 202, created.json
    assert created.json["endpoint"] == "/emotion"
    done = wait_until_ended(api, created.json["id"])
    assert done["status"] == "completed" and done["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    output = output_lines(api, created.json["id"])
    assert [line["custom_id"] for line in output] == ["c0", "c1", "c2"]
    assert [line["id"] for line in output] == [f"{created.json['id']}-{n}" for n in (1, 2, 3)]
    for line, text in zip(output, EMOTION_TEXTS):
        synchronous = api.client.post("/emotion", json={"text": text}, headers=api.headers)
        assert line["response"] == {"status_code": 200, "body": synchronous.json} and line["error"] is None


def test_a_batch_over_a_dataset_runs_the_endpoint_on_every_row(api):
    rows = "".join(json.dumps({"text": text, "label": label}) + "\n"
                   for text, label in zip(EMOTION_TEXTS * 2, ["a", "b"] * 3))
    dataset = api.client.post("/datasets", json={"data": rows, "format": "text-label"}, headers=api.headers)
    assert dataset.status_code == 201, dataset.json
    # Parsing runs in a sandboxed child when the trainer loop runs; here the parse is run directly.
    api.app.extensions["dataset_parses"].run_claimed(dataset.json["id"])
    ready = api.client.get(f"/datasets/{dataset.json['id']}", headers=api.headers).json
    if ready["status"] != "ready":
        pytest.fail(f"the dataset did not parse: {ready['message']}")
    created = api.client.post("/batches", json={"dataset_id": dataset.json["id"], "endpoint": "/emotion"},
                              headers=api.headers)
    assert created.status_code == 202, created.json
    done = wait_until_ended(api, created.json["id"])
    assert done["request_counts"] == {"total": 6, "completed": 6, "failed": 0}
    output = output_lines(api, created.json["id"])
    assert [line["custom_id"] for line in output] == [f"row-{n}" for n in range(1, 7)]
    synchronous = api.client.post("/emotion", json={"text": EMOTION_TEXTS[0]}, headers=api.headers)
    assert output[3]["response"]["body"] == synchronous.json


def test_cancel_a_queued_batch_and_list_them_newest_first(idle_api):
    api = idle_api
    first = post_batch(api, jsonl([request_line("a", "/emotion", {"text": "hi"})])).json
    second = post_batch(api, jsonl([request_line("b", "/emotion", {"text": "hi"})])).json
    cancelled = api.client.post(f"/batches/{first['id']}/cancel", headers=api.headers)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert api.client.post(f"/batches/{first['id']}/cancel", headers=api.headers).status_code == 409
    assert api.app.extensions["batches"].run_claimed(first["id"]) is False  # a cancelled batch never runs
    page = api.client.get("/batches?limit=1", headers=api.headers).json
    assert [row["id"] for row in page["data"]] == [second["id"]] and page["has_more"]
    rest = api.client.get(f"/batches?limit=1&after={second['id']}", headers=api.headers).json
    assert [row["id"] for row in rest["data"]] == [first["id"]] and not rest["has_more"]
    assert api.client.get(f"/batches/{first['id']}/output", headers=api.headers).data == b""


def test_a_running_batch_cancelled_stops_after_the_lines_in_flight(idle_api):
    api = idle_api
    lines = [request_line(f"n{number}", "/emotion", {"text": "hi"}) for number in range(50)]
    batch_id = post_batch(api, jsonl(lines)).json["id"]
    runner = api.app.extensions["batches"]
    real = runner.run_request
    calls = []

    def cancel_after_the_first_chunk(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            assert api.client.post(f"/batches/{batch_id}/cancel", headers=api.headers).json["status"] == "running"
        return real(*args, **kwargs)

    runner.run_request = cancel_after_the_first_chunk
    assert runner.run_claimed(batch_id)
    done = api.client.get(f"/batches/{batch_id}", headers=api.headers).json
    in_flight = api.app.extensions["settings"].batch_lines_in_flight
    assert done["status"] == "cancelled" and done["request_counts"]["completed"] == in_flight
    assert len(output_lines(api, batch_id)) == in_flight


def test_a_batch_whose_process_died_resumes_after_the_lines_it_recorded(idle_api):
    api = idle_api
    lines = [request_line(f"n{number}", "/emotion", {"text": EMOTION_TEXTS[number % 3]}) for number in range(20)]
    batch_id = post_batch(api, jsonl(lines)).json["id"]
    runner = api.app.extensions["batches"]
    assert runner.run_claimed(batch_id)
    whole = api.client.get(f"/batches/{batch_id}/output", headers=api.headers).data
    first_eight = b"".join(whole.splitlines(keepends=True)[:8])
    # As a process that recorded 8 lines, wrote 3 more and died: its lease ran out.
    with api.app.extensions["db"].sessions() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(
            status="queued", done_lines=8, failed_lines=0, output_bytes=len(first_eight), completed_at=None))
        session.commit()
    path = f"{api.app.extensions['settings'].data_dir}/batches/{batch_id}/output.jsonl"
    with open(path, "wb") as output:
        output.write(first_eight + b"".join(whole.splitlines(keepends=True)[8:11]) + b'{"half a li')
    assert runner.run_claimed(batch_id)
    resumed = api.client.get(f"/batches/{batch_id}", headers=api.headers).json
    assert resumed["status"] == "completed" and resumed["request_counts"]["completed"] == 20
    assert api.client.get(f"/batches/{batch_id}/output", headers=api.headers).data == whole


def test_another_accounts_batch_answers_as_a_missing_one(idle_api):
    api = idle_api
    batch_id = post_batch(api, jsonl([request_line("a", "/emotion", {"text": "hi"})])).json["id"]
    bob = api.headers_for("bob")
    missing = api.client.get("/batches/batch_0000000000000000", headers=bob)
    for answer in (api.client.get(f"/batches/{batch_id}", headers=bob),
                   api.client.get(f"/batches/{batch_id}/output", headers=bob),
                   api.client.post(f"/batches/{batch_id}/cancel", headers=bob)):
        assert answer.status_code == 404
        assert answer.json["message"] == missing.json["message"].replace("batch_0000000000000000", batch_id)
    assert api.client.get("/batches", headers=bob).json["data"] == []


def test_the_limits_lines_bytes_active_batches(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, BATCH_MAX_LINES=3, BATCH_MAX_INPUT_BYTES=400,
                     ACCOUNT_MAX_ACTIVE_BATCHES=1)
    line = request_line("a", "/emotion", {"text": "hi"})
    too_many = post_batch(api, jsonl([line] * 4))
    assert too_many.status_code == 413 and "INFER_BATCH_MAX_LINES" in too_many.json["message"]
    too_big = post_batch(api, b" " * 401 + jsonl([line]))
    assert too_big.status_code == 413 and "INFER_BATCH_MAX_INPUT_BYTES" in too_big.json["message"]
    empty = post_batch(api, b"\n\n")
    assert empty.status_code == 422 and "file" in empty.json["errors"]
    assert post_batch(api, jsonl([line])).status_code == 202
    busy = post_batch(api, jsonl([line]))
    assert busy.status_code == 429 and "INFER_ACCOUNT_MAX_ACTIVE_BATCHES" in busy.json["message"]
    nothing = api.client.post("/batches", json={}, headers=api.headers)
    assert nothing.status_code == 422
    inner = api.client.post("/batches", json={"dataset_id": "ds_x"}, headers=api.headers)
    assert inner.status_code == 422 and "endpoint" in inner.json["errors"]
    internal = post_batch(api, jsonl([line]), headers=api.headers_for("carol"), webhook="http://127.0.0.1:9/hook")
    assert internal.status_code == 422 and "webhook" in internal.json["errors"]


def test_retention_deletes_a_finished_batch_and_its_files(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, BATCH_RETENTION_S=0)
    batch_id = post_batch(api, jsonl([request_line("a", "/emotion", {"text": "hi"})])).json["id"]
    runner = api.app.extensions["batches"]
    assert runner.run_claimed(batch_id)
    folder = f"{api.app.extensions['settings'].data_dir}/batches/{batch_id}"
    assert os.path.exists(folder)
    time.sleep(0.01)
    runner.housekeeping()
    assert api.client.get(f"/batches/{batch_id}", headers=api.headers).status_code == 404
    assert not os.path.exists(folder)


def test_batches_are_claimed_fairly_between_accounts_one_running_per_account(idle_api):
    api = idle_api
    line = jsonl([request_line("a", "/emotion", {"text": "hi"})])
    alice_first = post_batch(api, line).json["id"]
    alice_second = post_batch(api, line).json["id"]
    bob = post_batch(api, line, headers=api.headers_for("bob")).json["id"]
    runner = api.app.extensions["batches"]
    # Oldest first, then the account with none running, then nothing: alice has one running already
    # (INFER_ACCOUNT_MAX_RUNNING_BATCHES = 1).
    assert [runner.claim(), runner.claim(), runner.claim()] == [alice_first, bob, None]
    runner.run(alice_first)
    assert runner.claim() == alice_second


def test_a_batch_has_at_most_its_lines_in_flight_at_once(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, BATCH_LINES_IN_FLIGHT=3)
    batch_id = post_batch(api, jsonl([request_line(f"n{n}", "/emotion", {"text": "hi"}) for n in range(30)])).json["id"]
    runner = api.app.extensions["batches"]
    real, lock, state = runner.run_request, threading.Lock(), {"now": 0, "most": 0}

    def counted(*args, **kwargs):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    runner.run_request = counted
    assert runner.run_claimed(batch_id)
    assert 1 <= state["most"] <= 3
    assert api.client.get(f"/batches/{batch_id}", headers=api.headers).json["request_counts"]["completed"] == 30


def test_a_batchs_files_count_in_the_accounts_stored_bytes(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, ACCOUNT_MAX_STORED_MB=1)
    padding = "x" * 2000
    lines = [request_line(f"n{n}", "/emotion", {"text": "hi", "padding": padding}) for n in range(600)]
    assert post_batch(api, jsonl(lines)).status_code == 202  # 1.2 MB: the quota is checked before storing
    full = post_batch(api, jsonl([request_line("a", "/emotion", {"text": "hi"})]))
    assert full.status_code == 403 and "in batches' files" in full.json["message"]


def test_a_line_reaches_inference_routes_only_never_another_url(idle_api):
    api = idle_api
    lines = [request_line("metadata", "http://169.254.169.254/latest/meta-data", {"text": "x"}),
             request_line("train", "/models/mine/train", {"task": "tabular", "dataset_id": "ds_x"}),
             request_line("nested", "/batches", {"dataset_id": "ds_x", "endpoint": "/emotion"}),
             request_line("dots", "/emotion/../keys", {"text": "x"}),
             json.dumps({"custom_id": "get", "method": "GET", "url": "/emotion", "body": {"text": "x"}}),
             request_line("fine", "/emotion", {"text": "x"})]
    batch_id = post_batch(api, jsonl(lines)).json["id"]
    assert api.app.extensions["batches"].run_claimed(batch_id)
    output = {line["custom_id"]: line for line in output_lines(api, batch_id)}
    assert output["metadata"]["error"]["code"] == output["get"]["error"]["code"] == "invalid_line"
    for refused in ("train", "nested", "dots"):
        assert output[refused]["response"]["status_code"] == 404 and output[refused]["error"]["code"] == "not_found"
    assert output["fine"]["error"] is None
    assert api.client.get("/models", headers=api.headers).json == []  # no model was made
    assert [row["id"] for row in api.client.get("/batches", headers=api.headers).json["data"]] == [batch_id]


def test_hostile_lines_are_errors_of_their_own_never_the_batchs(idle_api):
    api = idle_api
    lines = [b"[" * 100_000,  # nested past the parser's recursion
             b'{"custom_id": "\\ud800", "method": "POST", "url": "/emotion", "body": {"text": "\\ud800"}}',  # lone surrogate
             b"\xff\xfe not utf-8",
             request_line("x" * 5000, "/emotion", {"text": "hi"}).encode(),
             request_line("fine", "/emotion", {"text": "hi"}).encode()]
    data = b"\n".join(lines) + b"\n"
    batch_id = post_batch(api, data).json["id"]
    assert api.app.extensions["batches"].run_claimed(batch_id)
    done = api.client.get(f"/batches/{batch_id}", headers=api.headers).json
    assert done["status"] == "completed" and done["request_counts"]["total"] == 5
    output = output_lines(api, batch_id)
    assert len(output) == 5 and output[0]["error"]["code"] == output[2]["error"]["code"] == "invalid_line"
    assert output[1]["custom_id"] == "\ud800" and output[3]["custom_id"] == "x" * 5000
    assert output[4]["error"] is None and output[4]["custom_id"] == "fine"


# --- a batch is the account's share of the rate limits, as the same requests sent one by one ---------

def test_a_batchs_lines_are_charged_to_the_accounts_requests_per_minute(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.05, ACCOUNT_REQUESTS_PER_MIN=10)
    lines = [request_line(f"r{number}", "/text-vectorisation", {"text": f"line {number}"}) for number in range(3)]
    # 800 texts count as 13 requests (one per INFER_MAX_BATCH_SIZE, 64): more than the whole budget, never runs.
    lines.append(request_line("too-large", "/text-vectorisation", {"text": ["a"] * 800}))
    done = wait_until_ended(api, post_batch(api, jsonl(lines)).json["id"])
    assert done["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
    refused = output_lines(api, done["id"])[3]
    assert refused["response"]["status_code"] == 429 and refused["error"]["code"] == "rate_limited"
    assert "can never pass" in refused["error"]["message"]
    after = api.client.post("/text-vectorisation", json={"text": "mine"}, headers=api.headers)
    assert after.headers["x-ratelimit-remaining-requests"] == "6"  # 10 - the batch's 3 - this one


def test_a_line_over_the_limit_waits_for_room_instead_of_failing(make_app, tiny_model_dir):
    from api.prediction_dispatch import run_metered

    from ..conftest import new_key

    app = make_app(MODEL_DIR=tiny_model_dir, ACCOUNT_REQUESTS_PER_MIN=2)
    new_key(app, "alice")
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        raise TimeoutError  # the test's way out: the line would go on waiting

    for _ in range(2):
        status, answer = run_metered(app, 1, "/text-vectorisation", {"text": "hello"}, None, sleep=sleep)
        assert status == 200 and len(answer["vector"]) > 0
    with pytest.raises(TimeoutError):
        run_metered(app, 1, "/text-vectorisation", {"text": "hello"}, None, sleep=sleep)
    assert waits and 0 < waits[0] <= 5  # the limit's Retry-After, looked at again within METERED_WAIT_S


def test_a_line_waiting_for_room_gives_up_when_its_run_ends_and_is_not_run(make_app, tiny_model_dir):
    from api.prediction_dispatch import run_metered
    from predictions.runner import WaitAbandoned

    from ..conftest import new_key

    app = make_app(MODEL_DIR=tiny_model_dir, ACCOUNT_REQUESTS_PER_MIN=1)
    new_key(app, "alice")
    assert run_metered(app, 1, "/text-vectorisation", {"text": "the budget"}, None)[0] == 200
    asked, waits = [], []

    def abandon():
        asked.append(True)
        return len(asked) == 2  # cancelled while it waited

    with pytest.raises(WaitAbandoned):
        run_metered(app, 1, "/text-vectorisation", {"text": "waits"}, None, sleep=waits.append, abandon=abandon)
    assert len(asked) == 2 and len(waits) == 1  # asked before each wait, never past the first True


def test_a_batch_cancelled_while_its_lines_wait_for_room_ends_at_once(client_for, tiny_model_dir):
    # One request a minute: the batch's second line waits up to a minute for room.
    api = client_for(MODEL_DIR=tiny_model_dir, ACCOUNT_REQUESTS_PER_MIN=1, BATCH_LINES_IN_FLIGHT=1)
    lines = [request_line(f"n{number}", "/emotion", {"text": "hi"}) for number in range(3)]
    batch_id = post_batch(api, jsonl(lines)).json["id"]
    runner = api.app.extensions["batches"]
    ran = threading.Thread(target=runner.run_claimed, args=(batch_id,))
    ran.start()

    def waiting() -> bool:
        return api.client.get(f"/batches/{batch_id}", headers=api.headers).json["request_counts"]["completed"] == 1

    deadline = time.monotonic() + 60
    while not waiting():
        assert time.monotonic() < deadline, "the first line was never answered"
        time.sleep(0.05)
    assert api.client.post(f"/batches/{batch_id}/cancel", headers=api.headers).json["status"] == "running"
    ran.join(120)  # without giving up, it would answer the line once the minute is over, then stop
    assert not ran.is_alive()
    done = api.client.get(f"/batches/{batch_id}", headers=api.headers).json
    assert done["status"] == "cancelled" and done["request_counts"]["completed"] == 1
    assert [line["custom_id"] for line in output_lines(api, batch_id)] == ["n0"]  # the waiting line was not run
