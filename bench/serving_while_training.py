"""What a training job costs the requests served beside it.

One production server (gunicorn.conf.py: its workers, INFER_TORCH_THREADS and
INFER_TRAINING_TORCH_THREADS as set), the real all-MiniLM-L6-v2 serving
/text-vectorisation. Windows of requests alternate: idle, while a SetFit job
trains in the server's training process, idle again (the job is cancelled
between). Reported per window: requests/s, p50 and p99 latency, and the
training window's ratio to the mean of the idle ones.

    .venv/bin/python bench/serving_while_training.py [--seconds 15] [--concurrency 1,4] [--out FILE]
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from text_vectorisation import Server, make_sentences, percentile  # noqa: E402
from training_jobs import csv_of, make_rows  # noqa: E402


def call(server, method: str, path: str, body=None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    headers = {"x-api-key": server.key, "content-type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read() or b"null")
    conn.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {answer}")
    return answer


def window(server, sentences, concurrency: int, seconds: float) -> dict:
    stop_at = time.perf_counter() + seconds
    latencies, lock = [], threading.Lock()

    def client(worker: int):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        headers = {"content-type": "application/json", "x-api-key": server.key}
        i = worker
        while time.perf_counter() < stop_at:
            body = json.dumps({"text": sentences[i % len(sentences)]})
            started = time.perf_counter()
            conn.request("POST", "/text-vectorisation", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
            with lock:
                latencies.append(time.perf_counter() - started)
            i += concurrency

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"requests_per_s": len(latencies) / seconds, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000}


def start_training(server, dataset_id: str) -> str:
    job = call(server, "POST", "/models/bench/train", {
        "task": "text-classification", "dataset_id": dataset_id, "validation_split": 0.1,
        "hyperparameters": {"epochs": 50, "num_iterations": 20}})
    while (state := call(server, "GET", f"/jobs/{job['id']}"))["status"] != "running" or not state["epochs"]:
        time.sleep(0.2)  # measured once it trains, not while its process starts
    return job["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    server = Server({"INFER_TRAINING_POLL_S": "0.2"})
    sentences = make_sentences(500)
    results = []
    try:
        dataset = call(server, "POST", "/datasets", {"data": csv_of(make_rows(400, 1))})
        while call(server, "GET", f"/datasets/{dataset['id']}")["status"] != "ready":
            time.sleep(0.2)
        window(server, sentences, 1, 3)  # warm up
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            before = window(server, sentences, concurrency, args.seconds)
            job_id = start_training(server, dataset["id"])
            during = window(server, sentences, concurrency, args.seconds)
            call(server, "POST", f"/jobs/{job_id}/cancel")
            while call(server, "GET", f"/jobs/{job_id}")["status"] != "cancelled":
                time.sleep(0.2)
            after = window(server, sentences, concurrency, args.seconds)
            results.append({"concurrency": concurrency, "idle_before": before, "training": during,
                            "idle_after": after})
            idle = {key: (before[key] + after[key]) / 2 for key in before}
            print(f"c={concurrency}: idle {idle['requests_per_s']:.1f} req/s p50 {idle['p50_ms']:.1f} ms "
                  f"p99 {idle['p99_ms']:.1f} ms; training {during['requests_per_s']:.1f} req/s "
                  f"p50 {during['p50_ms']:.1f} ms p99 {during['p99_ms']:.1f} ms; ratios req/s "
                  f"{during['requests_per_s'] / idle['requests_per_s']:.2f}, p50 "
                  f"{during['p50_ms'] / idle['p50_ms']:.2f}, p99 {during['p99_ms'] / idle['p99_ms']:.2f}",
                  flush=True)
    finally:
        server.process.terminate()
        server.process.wait(timeout=60)
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"args": vars(args), "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
