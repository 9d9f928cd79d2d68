"""Benchmark /text-vectorisation on the real all-MiniLM-L6-v2 against the raw model.

One run, one machine:
1. the ceiling: sentence-transformers' own encode in this process (all cores),
   batched, on the same sentences; and its single-sentence latency;
2. the service under the production configuration (gunicorn.conf.py, settings
   from the environment), driven with single-sentence requests at concurrency
   1, 16 and 64, and 32-sentence requests at concurrency 16;
3. for comparison, the same service with batching off (INFER_BATCH_MAX_SIZE=1)
   at concurrency 16, single sentences;
4. the ceiling again: this machine's speed drifts, so ratios use the mean of
   the two ceiling measurements, and latency overheads the faster raw encode.

Prints requests/s, sentences/s, p50/p99 latency and the ratio to the ceiling,
and writes everything as JSON (--out).

    .venv/bin/python bench/text_vectorisation.py [--seconds 10] [--out bench/results/latest.json]
"""

import argparse
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = (
    "the a model service request vector fast slow red blue green house river mountain city phone laptop "
    "price review quality battery screen camera music film book travel food coffee morning evening "
    "market report team project cloud server network storage memory engine search answer question"
).split()


def make_sentences(count: int) -> list[str]:
    # Deterministic, varied sentences of 8-16 words (no random module state shared).
    sentences = []
    for i in range(count):
        length = 8 + (i * 7) % 9
        sentences.append(" ".join(WORDS[(i * 31 + j * 17) % len(WORDS)] for j in range(length)) + ".")
    return sentences


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_ceiling(sentences: list[str], seconds: float, batch_size: int, server_threads: int) -> dict:
    """The raw model in this process: batched throughput on all cores (best of
    three windows: this machine's speed wanders), and single-sentence latency
    both on all cores and on the torch threads one server worker uses."""
    import torch
    from sentence_transformers import SentenceTransformer

    sys.path.insert(0, ROOT)
    from model_registry.catalogue import MODELS
    from model_registry.resolve import resolve_model_dir

    path, _source = resolve_model_dir(MODELS["all-MiniLM-L6-v2"], os.path.join(ROOT, "data", "models"))
    model = SentenceTransformer(path, device="cpu")
    torch.set_num_threads(os.cpu_count())
    model.encode(sentences[:batch_size], batch_size=batch_size)  # warm up

    windows = []
    for _ in range(3):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            chunk = sentences[done % len(sentences):][:batch_size] or sentences[:batch_size]
            model.encode(chunk, batch_size=batch_size)
            done += len(chunk)
        windows.append(done / (time.perf_counter() - started))

    def single_p50(threads: int) -> float:
        torch.set_num_threads(threads)
        latencies, started, i = [], time.perf_counter(), 0
        while time.perf_counter() - started < seconds / 2:
            t0 = time.perf_counter()
            model.encode([sentences[i % len(sentences)]])
            latencies.append(time.perf_counter() - t0)
            i += 1
        return percentile(latencies, 0.5) * 1000

    result = {
        "threads": os.cpu_count(),
        "batch_size": batch_size,
        "sentences_per_s": max(windows),
        "sentences_per_s_windows": windows,
        "single_p50_ms": single_p50(os.cpu_count()),
        "single_p50_ms_at_server_threads": single_p50(server_threads),
        "server_torch_threads": server_threads,
    }
    return result


class Server:
    def __init__(self, extra_env: dict):
        self.dir = tempfile.mkdtemp(prefix="infer-bench-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {
            **os.environ,
            "INFER_DATA_DIR": self.dir,
            "INFER_BIND": f"127.0.0.1:{self.port}",
            "INFER_PRELOAD_MODELS": "text-vectorisation:english",
            "HF_HUB_OFFLINE": "1",
            "PROMETHEUS_MULTIPROC_DIR": os.path.join(self.dir, "metrics"),
            **extra_env,
        }
        self.log = open(os.path.join(self.dir, "server.log"), "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.key = self._wait_ready()

    def _wait_ready(self) -> str:
        deadline = time.time() + 180
        key = None
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("server exited:\n" + self._log_text())
            key = key or next(iter(re.findall(r"ik_[A-Za-z0-9_-]+", self._log_text())), None)
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/readyz")
                response = conn.getresponse()
                checks = json.loads(response.read()).get("checks", {})
                if response.status == 200 and key:
                    return key
                if isinstance(checks.get("models"), dict):  # a preload failed: it will not get ready
                    raise RuntimeError(f"preload failed: {checks['models']}")
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server not ready:\n" + self._log_text())

    def _log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def worker_rss_mib(self) -> list[float]:
        try:
            children = subprocess.run(
                ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
            ).stdout.split()
        except FileNotFoundError:
            return []
        sizes = []
        for pid in children:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def drive(server: Server, sentences: list[str], concurrency: int, per_request: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    headers = {"content-type": "application/json", "x-api-key": server.key}

    def client(worker: int):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        i = worker * 9973
        own = []
        while time.perf_counter() < stop_at:
            start = (i * per_request) % len(sentences)
            texts = sentences[start:start + per_request]
            body = json.dumps({"text": texts if per_request > 1 else texts[0]})
            t0 = time.perf_counter()
            conn.request("POST", "/text-vectorisation", body, headers)
            response = conn.getresponse()
            response.read()
            own.append(time.perf_counter() - t0)
            if response.status != 200:
                with lock:
                    errors[0] += 1
            i += 1
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "sentences_per_request": per_request,
        "requests": len(latencies),
        "errors": errors[0],
        "requests_per_s": len(latencies) / elapsed,
        "sentences_per_s": len(latencies) * per_request / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def run_scenarios(server, sentences, scenarios, seconds) -> list[dict]:
    drive(server, sentences, 4, 1, 2)  # warm up every worker
    return [drive(server, sentences, c, n, seconds) for c, n in scenarios]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="duration of each scenario")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "text_vectorisation.json"))
    parser.add_argument("--no-baseline", action="store_true", help="skip the unbatched comparison server")
    args = parser.parse_args()
    sentences = make_sentences(2048)

    server_threads = int(os.environ.get("INFER_TORCH_THREADS", "1"))
    ceiling = measure_ceiling(sentences, args.seconds, batch_size=32, server_threads=server_threads)
    print(f"ceiling: sentence-transformers encode, batch 32, {ceiling['threads']} threads: "
          f"{ceiling['sentences_per_s']:.0f} sentences/s (windows: "
          f"{', '.join(f'{w:.0f}' for w in ceiling['sentences_per_s_windows'])}); single-sentence encode p50 "
          f"{ceiling['single_p50_ms']:.2f} ms on {ceiling['threads']} threads, "
          f"{ceiling['single_p50_ms_at_server_threads']:.2f} ms on {server_threads} (as in a server worker)")

    production = Server({})
    try:
        rss = production.worker_rss_mib()
        results = run_scenarios(production, sentences, [(1, 1), (16, 1), (64, 1), (16, 32)], args.seconds)
        rss_after = production.worker_rss_mib()
    finally:
        production.stop()
    baseline = []
    if not args.no_baseline:
        unbatched = Server({"INFER_BATCH_MAX_SIZE": "1"})
        try:
            baseline = run_scenarios(unbatched, sentences, [(16, 1)], args.seconds)
        finally:
            unbatched.stop()

    # This machine's speed drifts; measure the ceiling again after the servers ran
    # and compare against the mean of the two measurements.
    ceiling_after = measure_ceiling(sentences, args.seconds, batch_size=32, server_threads=server_threads)
    print(f"ceiling again after the servers: {ceiling_after['sentences_per_s']:.0f} sentences/s")
    reference = (ceiling["sentences_per_s"] + ceiling_after["sentences_per_s"]) / 2

    print(f"\n{'scenario':<26}{'req/s':>9}{'sent/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x ceiling':>11}{'errors':>8}")
    for label, rows in (("production", results), ("unbatched", baseline)):
        for row in rows:
            row["ratio_to_ceiling"] = row["sentences_per_s"] / reference
            name = f"{label} c={row['concurrency']} n={row['sentences_per_request']}"
            print(f"{name:<26}{row['requests_per_s']:>9.1f}{row['sentences_per_s']:>9.1f}{row['p50_ms']:>9.2f}"
                  f"{row['p99_ms']:>9.2f}{row['ratio_to_ceiling']:>11.2f}{row['errors']:>8}")
    c1 = results[0]
    ceiling["single_p50_ms_at_server_threads"] = min(
        ceiling["single_p50_ms_at_server_threads"], ceiling_after["single_p50_ms_at_server_threads"])
    ceiling["single_p50_ms"] = min(ceiling["single_p50_ms"], ceiling_after["single_p50_ms"])
    overhead = c1["p50_ms"] - ceiling["single_p50_ms_at_server_threads"]
    print(f"\nconcurrency 1: p50 {c1['p50_ms']:.2f} ms vs raw encode on the same torch threads "
          f"{ceiling['single_p50_ms_at_server_threads']:.2f} ms (+{overhead:.2f} ms); "
          f"vs raw encode on all cores {ceiling['single_p50_ms']:.2f} ms (+{c1['p50_ms'] - ceiling['single_p50_ms']:.2f} ms)")
    print(f"worker resident memory with the model loaded: {', '.join(f'{m:.0f} MiB' for m in rss_after)}")

    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {k: v for k, v in os.environ.items() if k.startswith("INFER_")},
        "seconds_per_scenario": args.seconds,
        "ceiling": ceiling,
        "ceiling_after": ceiling_after,
        "ceiling_reference_sentences_per_s": reference,
        "production": results,
        "unbatched_baseline": baseline,
        "c1_p50_overhead_ms": overhead,
        "worker_rss_mib_at_start": rss,
        "worker_rss_mib_after": rss_after,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump(report, out, indent=2)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
