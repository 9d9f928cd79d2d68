"""What the OpenAI-compatible route costs: /v1/embeddings against /text-vectorisation.

One production server (gunicorn.conf.py, the real all-MiniLM-L6-v2), the same
sentences, windows of each route alternating within every round so that the
machine's drift hits both alike. /v1/embeddings does what /text-vectorisation
does plus an exact token count (a second tokenization, on the request thread)
and OpenAI's response shape; base64 answers are smaller than float lists.

Prints requests/s, p50/p99 and the ratio of each /v1 variant to
/text-vectorisation, and writes them as JSON (--out).

    .venv/bin/python bench/openai_embeddings.py [--seconds 8] [--rounds 4] [--out bench/results/openai_embeddings.json]
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from text_vectorisation import ROOT, Server, make_sentences, percentile  # noqa: E402

ROUTES = {
    "text-vectorisation": ("/text-vectorisation", lambda texts: {"text": texts}),
    "v1-float": ("/v1/embeddings", lambda texts: {"input": texts, "model": "english"}),
    "v1-base64": ("/v1/embeddings", lambda texts: {"input": texts, "model": "english", "encoding_format": "base64"}),
}


def drive(server, route: str, sentences, concurrency: int, per_request: int, seconds: float) -> list[float]:
    path, body_for = ROUTES[route]
    headers = {"content-type": "application/json", "x-api-key": server.key}
    stop_at = time.perf_counter() + seconds
    latencies, lock, failures = [], threading.Lock(), []

    def client(worker: int):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        i, own = worker * 9973, []
        while time.perf_counter() < stop_at:
            start = (i * per_request) % len(sentences)
            texts = sentences[start:start + per_request]
            t0 = time.perf_counter()
            conn.request("POST", path, json.dumps(body_for(texts if per_request > 1 else texts[0])), headers)
            response = conn.getresponse()
            response.read()
            own.append(time.perf_counter() - t0)
            if response.status != 200:
                failures.append(response.status)
            i += 1
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{route}: {len(failures)} failed requests, e.g. {failures[0]}")
    return latencies


def scenario(server, sentences, concurrency, per_request, seconds, rounds) -> dict:
    window = seconds / rounds
    latencies = {route: [] for route in ROUTES}
    elapsed = {route: 0.0 for route in ROUTES}
    for _ in range(rounds):
        for route in ROUTES:
            started = time.perf_counter()
            latencies[route] += drive(server, route, sentences, concurrency, per_request, window)
            elapsed[route] += time.perf_counter() - started
    result = {"concurrency": concurrency, "sentences_per_request": per_request}
    for route in ROUTES:
        result[route] = {
            "requests_per_s": len(latencies[route]) / elapsed[route],
            "p50_ms": percentile(latencies[route], 0.5) * 1000,
            "p99_ms": percentile(latencies[route], 0.99) * 1000,
        }
    baseline = result["text-vectorisation"]["requests_per_s"]
    for route in ("v1-float", "v1-base64"):
        result[route]["ratio_to_text_vectorisation"] = result[route]["requests_per_s"] / baseline
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8, help="time per route per scenario")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the routes per scenario")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "openai_embeddings.json"))
    args = parser.parse_args()

    sentences = make_sentences(2048)
    server = Server({})
    try:
        results = [scenario(server, sentences, concurrency, per_request, args.seconds, args.rounds)
                   for concurrency, per_request in ((1, 1), (16, 1), (16, 32))]
    finally:
        server.stop()
    for row in results:
        print(f"concurrency {row['concurrency']}, {row['sentences_per_request']} sentence(s) per request:")
        for route in ROUTES:
            figures = row[route]
            ratio = figures.get("ratio_to_text_vectorisation")
            print(f"  {route:20s} {figures['requests_per_s']:8.1f} req/s  p50 {figures['p50_ms']:7.1f} ms  "
                  f"p99 {figures['p99_ms']:7.1f} ms" + (f"  x{ratio:.2f}" if ratio else ""))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump({"results": results, "seconds": args.seconds, "rounds": args.rounds}, out, indent=2)


if __name__ == "__main__":
    main()
