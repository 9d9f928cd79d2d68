"""Benchmark /text-vectorisation on the real all-MiniLM-L6-v2 against the raw model and a peer.

One run, one machine. The raw ceilings are in this process, on the same
sentences: sentence-transformers' own encode (torch) and the service's ONNX
export run directly with ONNX Runtime, each batched (32) on all cores for the
throughput ceiling, and one sentence at a time on a server worker's threads for
latency. This machine's speed drifts by tens of percent within a minute, so each
scenario is run in rounds, each round a window of each raw model followed by a
window of the service, and every scenario is compared with the raw windows
interleaved with it (side by side, not minutes apart).

What it runs, stated again in its output and its JSON:

- The client: this process, one thread per concurrent client, each with one
  keep-alive HTTP/1.1 connection (http.client) that it sends its requests on
  back to back (closed loop: the next request when the last answer is read).
  Its time (building the request, reading the answer) is in the latencies.
- The sentences: 2,048 deterministic English sentences of 8 to 16 words
  (about 10 to 20 tokens), one per request ("single-sentence") or 32 per
  request; the mixed workload's are 2 to 200 tokens.
- The threads: the service under gunicorn.conf.py with INFER_WORKERS worker
  processes (2 by default) of INFER_THREADS threads (64), each worker's model on
  INFER_TORCH_THREADS intra-op threads (1: ONNX Runtime's intra_op_num_threads,
  torch's set_num_threads); the raw ceilings on all cores (os.cpu_count()
  intra-op threads, in one process), the raw single-sentence latencies on
  INFER_TORCH_THREADS threads (and torch's on all cores too).
- The raw baselines: torch (sentence-transformers' encode) and ONNX Runtime on
  the service's own export (tokenise, pad, run: the service's own runner), each
  batched by 32 (throughput) and one sentence per call (latency).

Scenarios, against the service under the production configuration
(gunicorn.conf.py, settings from the environment), once per backend
(INFER_BACKEND=torch and =onnx): single-sentence requests at concurrency 1, 16
and 64, and 32-sentence requests at concurrency 16. Then a mixed-length workload
(sentences of about 3 to 200 tokens; single-sentence requests at concurrency 16
and 32-sentence requests at concurrency 4) on each backend with token-aware
batching on (INFER_BATCH_MAX_TOKENS as configured) and off (0). Then, for
comparison, the torch service with batching off (INFER_BATCH_MAX_SIZE=1) at
concurrency 16, and infinity-emb (in its own venv, --infinity-venv; skipped with
a message when it is not installed) on the same model folder and loads.

--quick runs only the single-sentence scenarios at concurrency 1 and 16 on the
onnx backend, against both raw baselines (about 2 to 3 minutes with the ONNX
export cached in INFER_ONNX_CACHE_DIR; the first export adds a minute or two).

Prints requests/s, sentences/s, p50/p99 latency and the ratios to the ceilings
(the raw torch, raw ONNX and service figures of a scenario in one row), the
machine's CPU flags and the date, and writes everything as JSON (--out).

    .venv/bin/python bench/text_vectorisation.py [--quick] [--seconds 10] [--rounds 4] [--out bench/results/latest.json]

infinity-emb's venv (it needs transformers<5 and sentence-transformers<6):

    python3 -m venv /tmp/infinity-venv && /tmp/infinity-venv/bin/pip install torch==2.13.0 \\
        "infinity-emb[server]==0.0.78" "transformers<5" "sentence-transformers<6"
"""

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
WORDS = (
    "the a model service request vector fast slow red blue green house river mountain city phone laptop "
    "price review quality battery screen camera music film book travel food coffee morning evening "
    "market report team project cloud server network storage memory engine search answer question"
).split()
STANDARD_PLAN = [(1, 1), (16, 1), (64, 1), (16, 32)]
QUICK_PLAN = [(1, 1), (16, 1)]
CLIENT = ("this process, one thread per concurrent client, each with one keep-alive HTTP/1.1 connection "
          "(http.client), closed loop")
SENTENCES = "2,048 deterministic English sentences of 8 to 16 words (about 10 to 20 tokens)"
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
MIXED_PLAN = [(16, 1), (4, 32)]
MODEL_KEY = "all-MiniLM-L6-v2"


def cpu_description() -> dict:
    """The CPU's model name and the vector-instruction flags that matter to ONNX Runtime and torch."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": [flag for flag in CPU_FLAGS if flag in flags]}


def run_description(server_threads: int) -> dict:
    """The client, the sentences, the threads and the baselines, as the run uses them."""
    from core.settings import Settings

    settings = Settings.from_environ()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_description(),
        "client": CLIENT,
        "sentences": SENTENCES,
        "threads": {"gunicorn_workers": settings.workers, "gunicorn_threads_per_worker": settings.threads,
                    "intra_op_threads_per_worker": server_threads,
                    "raw_batched_intra_op_threads": os.cpu_count(),
                    "raw_single_intra_op_threads": server_threads},
        "raw_baselines": ["torch: sentence-transformers encode, batches of 32, all cores",
                          "onnx: the service's ONNX export with ONNX Runtime (tokenise, pad, run), batches of 32, "
                          "all cores",
                          f"single-sentence p50 of each on {server_threads} thread(s) (torch on all cores too)"],
    }


def print_description(description: dict) -> None:
    cpu, threads = description["cpu"], description["threads"]
    print(f"date: {description['date']}")
    print(f"cpu: {cpu['model']}, {cpu['cores']} cores, flags: {' '.join(cpu['flags']) or 'none of note'}")
    print(f"client: {description['client']}")
    print(f"sentences: {description['sentences']}")
    print(f"threads: gunicorn {threads['gunicorn_workers']} workers x {threads['gunicorn_threads_per_worker']} "
          f"threads, {threads['intra_op_threads_per_worker']} intra-op thread(s) per worker (ONNX Runtime "
          f"intra_op_num_threads / torch); raw batched on {threads['raw_batched_intra_op_threads']}, raw single on "
          f"{threads['raw_single_intra_op_threads']}")
    print("raw baselines: " + "; ".join(description["raw_baselines"]))


def make_sentences(count: int, lengths=lambda i: 8 + (i * 7) % 9) -> list[str]:
    # Deterministic, varied sentences of lengths(i) words (no random module state shared).
    return [" ".join(WORDS[(i * 31 + j * 17) % len(WORDS)] for j in range(lengths(i))) + "." for i in range(count)]


def make_mixed_sentences(count: int) -> list[str]:
    # 0 to 197 words: with [CLS], [SEP] and the full stop, 2 to 200 tokens, spread evenly.
    return make_sentences(count, lengths=lambda i: (i * 37) % 198)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def model_path() -> str:
    from model_registry.catalogue import MODELS
    from model_registry.resolve import resolve_model_dir

    return resolve_model_dir(MODELS[MODEL_KEY], os.path.join(ROOT, "data", "models"))[0]


class RawTorch:
    """sentence-transformers' own encode, in this process."""

    name = "torch"

    def __init__(self, batch_size: int):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model_path(), device="cpu")
        self.batch_size = batch_size
        self._threads(os.cpu_count())
        self.model.encode(make_sentences(batch_size), batch_size=batch_size, show_progress_bar=False)  # warm up

    @staticmethod
    def _threads(threads: int) -> None:
        import torch

        torch.set_num_threads(threads)

    def encode_batch(self, texts: list[str]) -> None:
        self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=False)

    def encode_one(self, text: str) -> None:
        self.model.encode([text], show_progress_bar=False)

    def on_all_cores(self) -> None:
        self._threads(os.cpu_count())

    def on_threads(self, threads: int) -> None:
        self._threads(threads)


class RawOnnx(RawTorch):
    """The service's ONNX export of the model, run directly: tokenise, pad, ONNX Runtime."""

    name = "onnx"

    def __init__(self, batch_size: int, cache_dir: str, server_threads: int):
        from model_registry.catalogue import MODELS
        from model_registry.loaders.common import LoadSettings
        from model_registry.loaders.sentence_transformer import load_sentence_transformer

        def runner(threads):
            settings = LoadSettings(backend="onnx", onnx_cache_dir=cache_dir, threads=threads)
            served = load_sentence_transformer(MODELS[MODEL_KEY], model_path(), "cpu", False, settings)
            assert served.backend == "onnx", "the model could not be exported to ONNX; see the log"
            return served.runners["text-vectorisation"]

        self.batch_size = batch_size
        self.runners = {"all": runner(os.cpu_count()), "server": runner(server_threads)}
        self.runner = self.runners["all"]
        self.encode_batch(make_sentences(batch_size))  # warm up

    def encode_batch(self, texts: list[str]) -> None:
        self.runner(texts)

    def encode_one(self, text: str) -> None:
        self.runner([text])

    def on_all_cores(self) -> None:
        self.runner = self.runners["all"]

    def on_threads(self, threads: int) -> None:
        self.runner = self.runners["server"]


def raw_throughput(raw, sentences: list[str], seconds: float) -> tuple[int, float]:
    """Batched encodes on all cores: (sentences, elapsed seconds)."""
    raw.on_all_cores()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        start = done % len(sentences)
        chunk = sentences[start:start + raw.batch_size] or sentences[: raw.batch_size]
        raw.encode_batch(chunk)
        done += len(chunk)
    return done, time.perf_counter() - started


def raw_single_latencies(raw, sentences: list[str], seconds: float, threads: int) -> list[float]:
    """One sentence per call, on `threads` threads (all cores for None)."""
    raw.on_threads(threads) if threads else raw.on_all_cores()
    latencies, started, i = [], time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        raw.encode_one(sentences[i % len(sentences)])
        latencies.append(time.perf_counter() - t0)
        i += 1
    return latencies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A server process with its log, on a free port with a folder of its own."""

    source = ROOT  # the tree it runs from (bench/source_ab.py runs another checkout too)

    def __init__(self, label: str):
        self.dir = tempfile.mkdtemp(prefix="infer-bench-")
        self.port = free_port()
        self.label = label
        self.log = open(os.path.join(self.dir, "server.log"), "w+")

    def start(self, command: list[str], env: dict) -> None:
        self.process = subprocess.Popen(command, cwd=self.source, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n" + self.log_text()[-3000:])
            try:
                if self.ready():
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.label} not ready:\n" + self.log_text()[-3000:])

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def worker_rss_mib(self) -> list[float]:
        pids = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        sizes = []
        for pid in pids or [str(self.process.pid)]:
            with open(f"/proc/{pid}/status") as status:
                sizes += [int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:")]
        return sizes

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Server(Process):
    """This service under gunicorn.conf.py."""

    path = "/text-vectorisation"

    def __init__(self, extra_env: dict, label: str):
        super().__init__(label)
        env = {**os.environ, "INFER_DATA_DIR": self.dir, "INFER_BIND": f"127.0.0.1:{self.port}",
               "INFER_PRELOAD_MODELS": "text-vectorisation:english", "HF_HUB_OFFLINE": "1",
               "PROMETHEUS_MULTIPROC_DIR": os.path.join(self.dir, "metrics"), **extra_env}
        self.key = None
        self.start([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env)
        self.headers = {"content-type": "application/json", "x-api-key": self.key}

    def ready(self) -> bool:
        key_path = os.path.join(self.dir, "first-api-key")  # the first start writes its key there
        self.key = self.key or (open(key_path).read().strip() if os.path.exists(key_path) else None)
        status, body = self.get("/readyz")
        checks = json.loads(body).get("checks", {})
        if isinstance(checks.get("models"), dict):  # a preload failed: it will not get ready
            raise RuntimeError(f"preload failed: {checks['models']}")
        return status == 200 and self.key is not None

    @staticmethod
    def body(texts: list[str]) -> str:
        return json.dumps({"text": texts if len(texts) > 1 else texts[0]})


class InfinityServer(Process):
    """infinity-emb (its `v2` server, torch engine) on the same model folder."""

    path = "/embeddings"
    headers = {"content-type": "application/json"}

    def __init__(self, venv: str):
        super().__init__("infinity")
        self.start([os.path.join(venv, "bin", "infinity_emb"), "v2", "--model-id", model_path(),
                    "--served-model-name", MODEL_KEY, "--port", str(self.port), "--engine", "torch",
                    "--batch-size", "32"], {**os.environ, "HF_HUB_OFFLINE": "1"})

    def ready(self) -> bool:
        return self.get("/health")[0] == 200

    @staticmethod
    def body(texts: list[str]) -> str:
        return json.dumps({"model": MODEL_KEY, "input": texts})


def drive(server, sentences: list[str], concurrency: int, per_request: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(worker: int):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        i = worker * 9973
        own = []
        while time.perf_counter() < stop_at:
            start = (i * per_request) % len(sentences)
            body = server.body(sentences[start:start + per_request])
            t0 = time.perf_counter()
            conn.request("POST", server.path, body, server.headers)
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
    return {"requests": len(latencies), "errors": errors[0], "elapsed_s": elapsed, "latencies": latencies}


def run_scenario(server, raws, sentences, concurrency, per_request, seconds, rounds, server_threads) -> dict:
    """`rounds` x (a window of each raw model, a service window), each seconds/rounds long."""
    window = seconds / rounds
    raw_done = {raw.name: [0, 0.0] for raw in raws}
    raw_single = {f"{raw.name}_server_threads": [] for raw in raws} | {"torch_all_cores": []}
    service = []
    for _ in range(rounds):
        for raw in raws:
            if concurrency == 1:  # latency: compare with single-sentence calls
                raw_single[f"{raw.name}_server_threads"] += raw_single_latencies(raw, sentences, window / 2,
                                                                                 server_threads)
                if raw.name == "torch":
                    raw_single["torch_all_cores"] += raw_single_latencies(raw, sentences, window / 2, 0)
            else:
                done, elapsed = raw_throughput(raw, sentences, window)
                raw_done[raw.name][0] += done
                raw_done[raw.name][1] += elapsed
        service.append(drive(server, sentences, concurrency, per_request, window))

    requests = sum(row["requests"] for row in service)
    elapsed = sum(row["elapsed_s"] for row in service)
    latencies = [value for row in service for value in row["latencies"]]
    result = {
        "concurrency": concurrency,
        "sentences_per_request": per_request,
        "requests": requests,
        "errors": sum(row["errors"] for row in service),
        "requests_per_s": requests / elapsed,
        "sentences_per_s": requests * per_request / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "windows_sentences_per_s": [row["requests"] * per_request / row["elapsed_s"] for row in service],
    }
    if concurrency == 1:
        for name, values in raw_single.items():
            result[f"raw_single_p50_ms_{name}"] = percentile(values, 0.5) * 1000
    else:
        for name, (done, raw_elapsed) in raw_done.items():
            result[f"ceiling_{name}_sentences_per_s"] = done / raw_elapsed
            result[f"ratio_to_{name}_ceiling"] = result["sentences_per_s"] / result[f"ceiling_{name}_sentences_per_s"]
    return result


def print_table(groups: dict) -> None:
    print(f"\n{'scenario':<34}{'req/s':>8}{'sent/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'torch ceil':>11}{'x torch':>8}{'onnx ceil':>10}{'x onnx':>8}{'errors':>7}")
    for label, rows in groups.items():
        for row in rows:
            name = f"{label} c={row['concurrency']} n={row['sentences_per_request']}"
            ceilings = ""
            for raw in ("torch", "onnx"):
                if f"ratio_to_{raw}_ceiling" in row:
                    ceilings += f"{row[f'ceiling_{raw}_sentences_per_s']:>{11 if raw == 'torch' else 10}.1f}" \
                                f"{row[f'ratio_to_{raw}_ceiling']:>8.2f}"
                else:
                    ceilings += f"{'-':>{11 if raw == 'torch' else 10}}{'-':>8}"
            print(f"{name:<34}{row['requests_per_s']:>8.1f}{row['sentences_per_s']:>9.1f}{row['p50_ms']:>9.2f}"
                  f"{row['p99_ms']:>9.2f}{ceilings}{row['errors']:>7}")


def print_targets(groups: dict, server_threads: int) -> None:
    def row(label, concurrency, per_request):
        return next((r for r in groups.get(label, []) if (r["concurrency"], r["sentences_per_request"])
                     == (concurrency, per_request)), None)

    for backend in ("torch", "onnx"):
        c1 = row(backend, 1, 1)
        if c1:
            print(f"{backend} c=1: p50 {c1['p50_ms']:.2f} ms; raw single-sentence p50 on {server_threads} thread(s): "
                  f"torch {c1['raw_single_p50_ms_torch_server_threads']:.2f} ms "
                  f"({c1['p50_ms'] / c1['raw_single_p50_ms_torch_server_threads']:.2f}x), onnx "
                  f"{c1['raw_single_p50_ms_onnx_server_threads']:.2f} ms; torch on all cores "
                  f"{c1['raw_single_p50_ms_torch_all_cores']:.2f} ms")
    c1 = row("onnx", 1, 1)
    if c1:
        over = c1["p50_ms"] - c1["raw_single_p50_ms_onnx_server_threads"]
        print(f"target: onnx service c=1 p50 = raw ONNX single + {over:.2f} ms (<= + 1.5 ms)")
    c16 = row("onnx", 16, 1)
    if c16:
        print(f"c=16 single-sentence, sentences/s side by side: raw torch (batched 32, all cores) "
              f"{c16['ceiling_torch_sentences_per_s']:.1f}, raw ONNX (the service's export, batched 32, all cores) "
              f"{c16['ceiling_onnx_sentences_per_s']:.1f}, service (onnx) {c16['sentences_per_s']:.1f}")
        print(f"target: onnx service c=16 = {c16['ratio_to_onnx_ceiling']:.2f}x the raw ONNX ceiling (>= 0.95)")
        print(f"target: onnx service c=16 = {c16['ratio_to_torch_ceiling']:.2f}x the raw torch ceiling (>= 1.2)")
    for concurrency, per_request in MIXED_PLAN:
        on, today = row("onnx mixed", concurrency, per_request), row("torch mixed, no budget", concurrency, per_request)
        if on and today:
            print(f"target: mixed c={concurrency} n={per_request}: onnx with token budget "
                  f"{on['sentences_per_s']:.1f} sent/s = {on['sentences_per_s'] / today['sentences_per_s']:.2f}x "
                  f"torch without one, as before this change (>= 1.2)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10,
                        help="service time per scenario (as much again per raw model)")
    parser.add_argument("--rounds", type=int, default=4, help="raw/service window pairs per scenario")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "text_vectorisation.json"))
    parser.add_argument("--no-baseline", action="store_true", help="skip the unbatched comparison server")
    parser.add_argument("--no-mixed", action="store_true", help="skip the mixed-length workload")
    parser.add_argument("--infinity-venv", default="/tmp/infinity-venv", help="a venv with infinity-emb[server]")
    parser.add_argument("--quick", action="store_true",
                        help="only single-sentence requests at concurrency 1 and 16 on the onnx backend, against "
                             "both raw baselines (no mixed lengths, no unbatched server, no infinity-emb)")
    args = parser.parse_args()
    if args.quick:
        args.no_mixed = args.no_baseline = True
    sentences, mixed = make_sentences(2048), make_mixed_sentences(2048)
    # The threads one server worker uses (INFER_TORCH_THREADS; 0 leaves the default: all cores).
    server_threads = int(os.environ.get("INFER_TORCH_THREADS", "1")) or os.cpu_count()
    onnx_cache = os.environ.get("INFER_ONNX_CACHE_DIR") or tempfile.mkdtemp(prefix="infer-bench-onnx-")
    description = run_description(server_threads)
    print_description(description)
    raws = [RawTorch(batch_size=32), RawOnnx(32, onnx_cache, server_threads)]  # exports once, for every server
    lengths = [len(ids) for ids in raws[0].model.tokenizer(mixed, truncation=True)["input_ids"]]
    print(f"mixed-length sentences: {min(lengths)} to {max(lengths)} tokens, mean {sum(lengths) / len(lengths):.0f}")

    def scenarios(server, plan, texts):
        drive(server, texts, 4, 1, 2)  # warm up every worker
        return [run_scenario(server, raws, texts, c, n, args.seconds, args.rounds, server_threads) for c, n in plan]

    groups, rss, skipped = {}, {}, {}
    for backend in ("onnx",) if args.quick else ("torch", "onnx"):
        env = {"INFER_BACKEND": backend, "INFER_ONNX_CACHE_DIR": onnx_cache}
        server = Server(env, backend)
        try:
            groups[backend] = scenarios(server, QUICK_PLAN if args.quick else STANDARD_PLAN, sentences)
            rss[backend] = server.worker_rss_mib()
            if not args.no_mixed:
                groups[f"{backend} mixed"] = scenarios(server, MIXED_PLAN, mixed)
        finally:
            server.stop()
        if not args.no_mixed:
            server = Server({**env, "INFER_BATCH_MAX_TOKENS": "0"}, f"{backend}, no token budget")
            try:
                groups[f"{backend} mixed, no budget"] = scenarios(server, MIXED_PLAN, mixed)
            finally:
                server.stop()
    if not args.no_baseline:
        server = Server({"INFER_BATCH_MAX_SIZE": "1"}, "unbatched")
        try:
            groups["torch unbatched"] = scenarios(server, [(16, 1)], sentences)
        finally:
            server.stop()
    if args.quick:
        skipped["infinity"] = "--quick"
    elif os.path.isfile(os.path.join(args.infinity_venv, "bin", "infinity_emb")):
        server = InfinityServer(args.infinity_venv)
        try:
            groups["infinity"] = scenarios(server, STANDARD_PLAN, sentences)
            rss["infinity"] = server.worker_rss_mib()
            if not args.no_mixed:
                groups["infinity mixed"] = scenarios(server, MIXED_PLAN, mixed)
        finally:
            server.stop()
    else:
        skipped["infinity"] = (f"infinity-emb is not installed in {args.infinity_venv} (see this script's docstring "
                               "for how to make that venv)")
        print(f"skipped infinity: {skipped['infinity']}")

    print()
    print_description(description)
    print_table(groups)
    print()
    print_targets(groups, server_threads)
    for label, sizes in rss.items():
        print(f"{label}: resident memory with the model loaded: {', '.join(f'{m:.0f} MiB' for m in sizes)}")

    report = {
        **description,
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {k: v for k, v in os.environ.items() if k.startswith("INFER_")},
        "seconds_per_scenario": args.seconds,
        "rounds": args.rounds,
        "ceiling_batch_size": 32,
        "server_threads": server_threads,
        "mixed_tokens": {"min": min(lengths), "max": max(lengths), "mean": sum(lengths) / len(lengths)},
        "results": {label: [{k: v for k, v in row.items()} for row in rows] for label, rows in groups.items()},
        "resident_mib": rss,
        "skipped": skipped,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump(report, out, indent=2)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
