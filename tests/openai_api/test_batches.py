"""OpenAI's Batch API through OpenAI's own SDK: a file uploaded with purpose
batch, a batch over it, its status, its output file (the same answers as
/v1/embeddings, one line per request line, in order), cancel, another account's
file and batch as missing ones."""

import io
import json
import time

import openai
import pytest

from .conftest import assert_openai_error

SENTENCES = ["iPhone 12 128GB", "RTX 3090", "The meaning of life is 42."]


def requests_file(lines) -> io.BytesIO:
    return io.BytesIO(("\n".join(json.dumps(line) for line in lines) + "\n").encode())


@pytest.mark.packaged_model
def test_a_batch_of_embeddings_through_openais_sdk(serve):
    service = serve(PREDICTIONS=True, PREDICTION_POLL_S=0.05)
    key = service.key()
    sdk = service.sdk(key)
    lines = [{"custom_id": f"s{n}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "english", "input": text}} for n, text in enumerate(SENTENCES)]
    lines.append({"custom_id": "bad", "method": "POST", "url": "/v1/embeddings", "body": {"model": "english"}})
    uploaded = sdk.files.create(file=("requests.jsonl", requests_file(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes > 0 and uploaded.id.startswith("file-")
    assert sdk.files.retrieve(uploaded.id).filename == "requests.jsonl"

    batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h",
                               metadata={"run": "nightly"})
    assert batch.status == "validating" and batch.input_file_id == uploaded.id and batch.metadata == {"run": "nightly"}
    deadline = time.monotonic() + 300
    while (batch := sdk.batches.retrieve(batch.id)).status not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
    assert batch.status == "completed" and batch.completed_at and batch.in_progress_at
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (4, 3, 1)

    output = [json.loads(line) for line in sdk.files.content(batch.output_file_id).text.splitlines()]
    assert [line["custom_id"] for line in output] == ["s0", "s1", "s2", "bad"]
    for line, text in zip(output, SENTENCES):
        alone = sdk.embeddings.create(model="english", input=text, encoding_format="float")
        assert line["response"]["status_code"] == 200 and line["error"] is None
        assert line["response"]["body"]["data"][0]["embedding"] == pytest.approx(alone.data[0].embedding, abs=1e-5)
    assert output[3]["response"]["status_code"] == 400 and output[3]["error"]["code"] == "invalid_request"
    assert [b.id for b in sdk.batches.list().data] == [batch.id]

    # Another account's file and batch are missing ones.
    other = service.sdk(service.key("bob"))
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(batch.output_file_id)
    with pytest.raises(openai.NotFoundError):
        other.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    assert sdk.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(uploaded.id)


def test_cancel_and_the_openai_error_shape(serve):
    service = serve()  # no runner: the batch stays queued
    key = service.key()
    sdk = service.sdk(key)
    uploaded = sdk.files.create(file=("r.jsonl", requests_file([{"custom_id": "a", "method": "POST",
                                                                  "url": "/emotion", "body": {"text": "hi"}}])),
                                purpose="batch")
    batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/emotion", completion_window="24h")
    cancelled = sdk.batches.cancel(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at
    wrong = service.post("/v1/batches", {"input_file_id": uploaded.id}, key)
    assert_openai_error(wrong, 400, "invalid_request_error", param="endpoint")
    with pytest.raises(openai.BadRequestError):
        sdk.files.create(file=("r.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune")
