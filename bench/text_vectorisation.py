"""Benchmark /text-vectorisation on the real all-MiniLM-L6-v2 against the raw model.

One run, one machine. The raw model is sentence-transformers' own encode in
this process, on the same sentences: batched (32) on all cores for the
throughput ceiling, and one sentence at a time for latency. This machine's
speed drifts by tens of percent within a minute, so each scenario is run in
rounds, each round a window of the raw model followed by a window of the
service, and every scenario is compared with the raw windows interleaved with
it (side by side, not minutes apart).

Scenarios, against the service under the production configuration
(gunicorn.conf.py, settings from the environment): single-sentence requests at
concurrency 1, 16 and 64, and 32-sentence requests at concurrency 16; then, for
comparison, the same service with batching off (INFER_BATCH_MAX_SIZE=1) at
concurrency 16. Concurrency 1 is compared with a raw single-sentence encode,
both on the torch threads one server worker uses and on all cores.

Prints requests/s, sentences/s, p50/p99 latency and the ratio to the ceiling,
and writes everything as JSON (--out).

    .venv/bin/python bench/text_vectorisation.py [--seconds 10] [--rounds 4] [--out bench/results/latest.json]
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


class RawModel:
    """sentence-transformers' own encode, in this process."""

    def __init__(self, sentences: list[str], batch_size: int):
        from sentence_transformers import SentenceTransformer

        sys.path.insert(0, ROOT)
        from model_registry.catalogue import MODELS
        from model_registry.resolve import resolve_model_dir

        path, _source = resolve_model_dir(MODELS["all-MiniLM-L6-v2"], os.path.join(ROOT, "data", "models"))
        self.model = SentenceTransformer(path, device="cpu")
        self.sentences = sentences
        self.batch_size = batch_size
        self._set_threads(os.cpu_count())
        self.model.encode(sentences[:batch_size], batch_size=batch_size, show_progress_bar=False)  # warm up

    @staticmethod
    def _set_threads(threads: int) -> None:
        import torch

        torch.set_num_threads(threads)

    def throughput(self, seconds: float) -> tuple[int, float]:
        """Batched encode on all cores: (sentences, elapsed seconds)."""
        self._set_threads(os.cpu_count())
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            chunk = self.sentences[done % len(self.sentences):][: self.batch_size] or self.sentences[: self.batch_size]
            self.model.encode(chunk, batch_size=self.batch_size, show_progress_bar=False)
            done += len(chunk)
        return done, time.perf_counter() - started

    def single_latencies(self, seconds: float, threads: int) -> list[float]:
        """One sentence per encode call, on `threads` torch threads."""
        self._set_threads(threads)
        latencies, started, i = [], time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            self.model.encode([self.sentences[i % len(self.sentences)]], show_progress_bar=False)
            latencies.append(time.perf_counter() - t0)
            i += 1
        return latencies


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
        "requests": len(latencies),
        "errors": errors[0],
        "elapsed_s": elapsed,
        "sentences_per_s": len(latencies) * per_request / elapsed,
        "latencies": latencies,
    }


def run_scenario(server, raw: RawModel, sentences, concurrency, per_request, seconds, rounds, server_threads):
    """`rounds` x (raw window, service window), each seconds/rounds long."""
    window = seconds / rounds
    raw_done = raw_elapsed = 0.0
    raw_single = {"server_threads": [], "all_cores": []}
    service = []
    for _ in range(rounds):
        if concurrency == 1:  # latency: compare with single-sentence encodes
            raw_single["server_threads"] += raw.single_latencies(window / 2, server_threads)
            raw_single["all_cores"] += raw.single_latencies(window / 2, os.cpu_count())
        else:
            done, elapsed = raw.throughput(window)
            raw_done, raw_elapsed = raw_done + done, raw_elapsed + elapsed
        service.append(drive(server, sentences, concurrency, per_request, window))

    requests = sum(row["requests"] for row in service)
    elapsed = sum(row["elapsed_s"] for row in service)
    latencies = [value for row in service for value in row.pop("latencies")]
    result = {
        "concurrency": concurrency,
        "sentences_per_request": per_request,
        "requests": requests,
        "errors": sum(row["errors"] for row in service),
        "requests_per_s": requests / elapsed,
        "sentences_per_s": requests * per_request / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "windows_sentences_per_s": [row["sentences_per_s"] for row in service],
    }
    if concurrency == 1:
        for name, values in raw_single.items():
            result[f"raw_single_p50_ms_{name}"] = percentile(values, 0.5) * 1000
            result[f"overhead_p50_ms_vs_{name}"] = result["p50_ms"] - result[f"raw_single_p50_ms_{name}"]
    else:
        result["ceiling_sentences_per_s"] = raw_done / raw_elapsed
        result["ratio_to_ceiling"] = result["sentences_per_s"] / result["ceiling_sentences_per_s"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="service time per scenario (as much again for the raw model)")
    parser.add_argument("--rounds", type=int, default=4, help="raw/service window pairs per scenario")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "text_vectorisation.json"))
    parser.add_argument("--no-baseline", action="store_true", help="skip the unbatched comparison server")
    args = parser.parse_args()
    sentences = make_sentences(2048)
    # The torch threads one server worker uses (INFER_TORCH_THREADS; 0 leaves torch's default: all cores).
    server_threads = int(os.environ.get("INFER_TORCH_THREADS", "1")) or os.cpu_count()
    raw = RawModel(sentences, batch_size=32)

    def scenarios(server, plan):
        drive(server, sentences, 4, 1, 2)  # warm up every worker
        return [
            run_scenario(server, raw, sentences, c, n, args.seconds, args.rounds, server_threads) for c, n in plan
        ]

    production = Server({})
    try:
        rss_at_start = production.worker_rss_mib()
        results = scenarios(production, [(1, 1), (16, 1), (64, 1), (16, 32)])
        rss = production.worker_rss_mib()
    finally:
        production.stop()
    baseline = []
    if not args.no_baseline:
        unbatched = Server({"INFER_BATCH_MAX_SIZE": "1"})
        try:
            baseline = scenarios(unbatched, [(16, 1)])
        finally:
            unbatched.stop()

    print(f"\n{'scenario':<26}{'req/s':>9}{'sent/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ceiling':>9}{'x ceiling':>11}{'errors':>8}")
    for label, rows in (("production", results), ("unbatched", baseline)):
        for row in rows:
            name = f"{label} c={row['concurrency']} n={row['sentences_per_request']}"
            ceiling = f"{row['ceiling_sentences_per_s']:>9.1f}{row['ratio_to_ceiling']:>11.2f}" if "ratio_to_ceiling" in row else f"{'-':>9}{'-':>11}"
            print(f"{name:<26}{row['requests_per_s']:>9.1f}{row['sentences_per_s']:>9.1f}{row['p50_ms']:>9.2f}"
                  f"{row['p99_ms']:>9.2f}{ceiling}{row['errors']:>8}")
    c1 = results[0]
    print(f"\nconcurrency 1: p50 {c1['p50_ms']:.2f} ms; raw single-sentence encode p50 "
          f"{c1['raw_single_p50_ms_server_threads']:.2f} ms on {server_threads} torch thread(s) as in a server worker "
          f"(+{c1['overhead_p50_ms_vs_server_threads']:.2f} ms), {c1['raw_single_p50_ms_all_cores']:.2f} ms on all "
          f"{os.cpu_count()} cores (+{c1['overhead_p50_ms_vs_all_cores']:.2f} ms)")
    print(f"worker resident memory with the model loaded: {', '.join(f'{m:.0f} MiB' for m in rss)}")

    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {k: v for k, v in os.environ.items() if k.startswith("INFER_")},
        "seconds_per_scenario": args.seconds,
        "rounds": args.rounds,
        "ceiling_batch_size": raw.batch_size,
        "server_torch_threads": server_threads,
        "production": results,
        "unbatched_baseline": baseline,
        "worker_rss_mib_at_start": rss_at_start,
        "worker_rss_mib_after": rss,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump(report, out, indent=2)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
