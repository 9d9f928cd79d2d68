"""With INFER_QUEUE_URL a batch goes to the `batches` queue and a worker runs it:
the same runner as embedded (core/work.py), to the same output."""

from ..predictions.test_batches import jsonl, output_lines, post_batch, request_line


def test_a_batch_is_queued_and_a_worker_runs_it(client_for, redis_url, tiny_model_dir):
    api = client_for(QUEUE_URL=redis_url, MODEL_DIR=tiny_model_dir)
    work = api.app.extensions["work"]
    created = post_batch(api, jsonl([request_line(f"n{n}", "/emotion", {"text": "hi"}) for n in range(5)]))
    assert created.status_code == 202, created.json
    assert work.queues["batches"].count == 1

    work.run_worker(["batches"], burst=True)

    done = api.client.get(f"/batches/{created.json['id']}", headers=api.headers).json
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 5
    assert [line["custom_id"] for line in output_lines(api, created.json["id"])] == [f"n{n}" for n in range(5)]
