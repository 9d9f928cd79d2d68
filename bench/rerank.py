"""Benchmark /rerank against the raw CrossEncoder, in the same run, on the same pairs.

The model: cross-encoder/ms-marco-MiniLM-L6-v2 when its files are in --model-dir,
else (as on a machine with no hub) a random-weight cross-encoder of the same
shape built here (BERT, 6 layers, 384 wide, 12 heads, one label, the packaged
MiniLM's tokenizer): the cost of a pass depends on the shape, not the weights.
The output says which.

One run, one machine. The raw ceiling is sentence-transformers' own
CrossEncoder.predict in this process, batched by 32, on the same (query,
document) pairs, on 1 torch thread and on all cores (os.cpu_count()); the better
of the two is the ceiling (on a busy machine, more threads than free cores is
slower, measured here: 60 pairs/s on 1 thread, 31 on 2 under a load of 7). The service runs under
gunicorn.conf.py (INFER_WORKERS, INFER_THREADS and INFER_TORCH_THREADS from the
environment or their defaults), with the cross-encoder preloaded, on
--backend. Each round is a window of the raw model followed by a window of the
service, so the machine's drift hits both alike.

The load: closed-loop clients (--concurrency), each sending /rerank requests of
one query and --documents documents of 8 to 16 words (a reranker's usual job:
the 20 to 100 candidates of a vector search) back to back on a keep-alive
connection.

Prints pairs/s of both, the ratio, p50/p99 request latency, and writes JSON (--out).

    .venv/bin/python bench/rerank.py [--seconds 8] [--rounds 3] [--documents 32] [--concurrency 4] \\
        [--backend torch|onnx] [--out bench/results/rerank.json]
"""

import argparse
import http.client
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from text_vectorisation import ROOT, Server, make_sentences, percentile  # noqa: E402

MODEL_KEY = "ms-marco-MiniLM-L6-v2"
QUERY = "which phone has the best battery and camera for travel"


def model_folder(model_dir: str | None) -> tuple[str, str]:
    """(a model dir holding MODEL_KEY, what the model is)."""
    if model_dir and os.path.isdir(os.path.join(model_dir, MODEL_KEY)):
        return model_dir, f"cross-encoder/{MODEL_KEY} from {model_dir}"
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    sys.path.insert(0, ROOT)
    from tests.tiny_models import packaged_minilm_dir

    root = tempfile.mkdtemp(prefix="infer-bench-rerank-")
    path = os.path.join(root, MODEL_KEY)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_dir())
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(path)
    CrossEncoder(path, device="cpu", local_files_only=True).save(path)
    return root, "a random-weight cross-encoder of ms-marco-MiniLM-L6-v2's shape (no hub here)"


def raw_window(model, pairs: list, per_request: int, seconds: float, threads: int) -> tuple[int, float]:
    """Pairs scored by CrossEncoder.predict on `threads` torch threads in `seconds`, a request's worth per call."""
    import torch

    torch.set_num_threads(threads)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        start = (done // per_request * 7) % (len(pairs) - per_request)
        model.predict(pairs[start:start + per_request], batch_size=32, show_progress_bar=False)
        done += per_request
    return done, time.perf_counter() - started


def service_window(server, documents: list[str], per_request: int, concurrency: int,
                   seconds: float) -> tuple[int, float, list[float]]:
    headers = {"content-type": "application/json", "x-api-key": server.key}
    stop_at = time.perf_counter() + seconds
    latencies, lock, failures = [], threading.Lock(), []

    def client(worker: int):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        i, own = worker * 9973, []
        while time.perf_counter() < stop_at:
            start = (i * 7) % (len(documents) - per_request)
            body = json.dumps({"query": QUERY, "texts": documents[start:start + per_request]})
            t0 = time.perf_counter()
            conn.request("POST", "/rerank", body, headers)
            response = conn.getresponse()
            response.read()
            own.append(time.perf_counter() - t0)
            if response.status != 200:
                failures.append(response.status)
            i += 1
        with lock:
            latencies.extend(own)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"/rerank: {len(failures)} failed requests, e.g. {failures[0]}")
    return len(latencies) * per_request, time.perf_counter() - started, latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8, help="time per side per scenario")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of raw and service")
    parser.add_argument("--documents", type=int, default=32, help="documents per /rerank request")
    parser.add_argument("--concurrency", type=int, default=4, help="clients sending requests at once")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--model-dir", default=None, help="a folder holding ms-marco-MiniLM-L6-v2, if you have it")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "rerank.json"))
    args = parser.parse_args()

    from sentence_transformers import CrossEncoder

    model_dir, which = model_folder(args.model_dir)
    documents = make_sentences(2048)
    pairs = [(QUERY, document) for document in documents]
    raw = CrossEncoder(os.path.join(model_dir, MODEL_KEY), device="cpu", local_files_only=True)
    server = Server({"INFER_MODEL_DIR": model_dir, "INFER_PRELOAD_MODELS": "rerank:english",
                     "INFER_BACKEND": args.backend}, f"service ({args.backend})")
    raw_threads = sorted({1, os.cpu_count()})
    totals = {**{f"raw-{threads}": [0, 0.0] for threads in raw_threads}, "service": [0, 0.0]}
    latencies = []
    try:
        service_window(server, documents, args.documents, 1, 1.0)  # warm up
        raw_window(raw, pairs, args.documents, 1.0, 1)
        window = args.seconds / args.rounds
        for _ in range(args.rounds):
            for threads in raw_threads:
                done, elapsed = raw_window(raw, pairs, args.documents, window, threads)
                totals[f"raw-{threads}"][0] += done
                totals[f"raw-{threads}"][1] += elapsed
            done, elapsed, own = service_window(server, documents, args.documents, args.concurrency, window)
            totals["service"][0] += done
            totals["service"][1] += elapsed
            latencies += own
    finally:
        server.stop()
        if not args.model_dir:
            shutil.rmtree(model_dir, ignore_errors=True)
    rates = {side: done / elapsed for side, (done, elapsed) in totals.items()}
    service_rate = rates.pop("service")
    raw_rate = max(rates.values())
    result = {
        "model": which, "backend": args.backend, "documents_per_request": args.documents,
        "concurrency": args.concurrency, "seconds": args.seconds, "rounds": args.rounds,
        "raw_pairs_per_s_by_threads": rates, "raw_pairs_per_s": raw_rate, "service_pairs_per_s": service_rate,
        "ratio": service_rate / raw_rate, "load_average": os.getloadavg()[0],
        "service_p50_ms": percentile(latencies, 0.5) * 1000, "service_p99_ms": percentile(latencies, 0.99) * 1000,
        "cpus": os.cpu_count(), "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(f"model: {which}")
    for side, rate in rates.items():
        print(f"raw CrossEncoder.predict (batch 32, {side[4:]} torch thread(s)): {rate:8.1f} pairs/s")
    print(f"/rerank ({args.backend}, {args.documents} documents per request, concurrency {args.concurrency}): "
          f"{service_rate:8.1f} pairs/s  x{result['ratio']:.2f}  p50 {result['service_p50_ms']:.0f} ms  "
          f"p99 {result['service_p99_ms']:.0f} ms")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
