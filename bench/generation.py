"""Benchmark generation on the real SmolLM2-135M-Instruct against raw transformers generate().

One run, one machine. The raw baseline runs in this process on the same GGUF
file, loaded by the service's own loader (so the same weights, dtype and
tokenizer): greedy generate() on the prompts left-padded into one batch of 8,
and on one prompt alone. The service runs under the production configuration
(gunicorn.conf.py) with one worker, so one copy of the model, and the same torch
threads as the raw baseline (--threads, default: all cores). Clients are
closed-loop and keep-alive (http.client, one connection each): each sends its
next request when the last is answered, on POST /v1/completions with
temperature 0, max_tokens (--max-tokens, default 64) and stream true (to time
the first token), its usage counting the tokens.

This machine's speed drifts within a minute, so each scenario runs in rounds,
each a window of the raw baseline followed by a window of the service; ratios
are taken per round and the median reported. Scenarios: 1 client against raw
generate() on one prompt; 8 clients against raw generate() on the batch of 8;
then 8 clients on a second service with continuous batching off
(INFER_GEN_CONTINUOUS_BATCHING=false: one generate() call per batch, the path
before it), against the same raw batch. Tokens/s count tokens generated (an
end-of-text token included, padding not); the prompts are chosen so every row
runs to max_tokens, which the run checks and prints. The service's tokens/s
are those that reached the clients within the window, over the window: a
request still running at its end is finished, but its tail (run with fewer
clients) is not counted, as a raw window only ever runs full batches. It also checks that the
service's greedy text equals raw generate()'s for every prompt.

    .venv/bin/python bench/generation.py [--seconds 20] [--rounds 3] [--out bench/results/generation.json]
"""

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from text_vectorisation import ROOT, Process, percentile  # noqa: E402

sys.path.insert(0, ROOT)
MODEL = "smollm2-135m-instruct"
PROMPTS = [
    "The history of the printing press begins",
    "Here is a detailed recipe for a vegetable soup. First,",
    "In the year 2150, the city of",
    "A short guide to learning the piano:",
    "The following is a letter from a traveller who",
    "Photosynthesis is the process by which",
    "Ten facts about the ocean: 1.",
    "Once upon a time, in a village by the sea,",
]


def cpu_flags() -> str:
    wanted = ("avx", "avx2", "avx512f", "avx512_vnni", "amx_tile", "fma", "neon")
    try:
        with open("/proc/cpuinfo") as info:
            flags = next(line for line in info if line.startswith(("flags", "Features"))).split(":")[1].split()
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(flag for flag in wanted if flag in flags)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line for line in info if line.startswith("model name")).split(":")[1].strip()
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


class Raw:
    """generate() on the model file the service loads, with the service's loader."""

    def __init__(self, threads: int):
        import torch

        from core.settings import Settings
        from model_registry.registry import ModelRegistry

        torch.set_num_threads(threads)
        registry = ModelRegistry(Settings.from_environ({"INFER_DATA_DIR": os.environ.get("TMPDIR", "/tmp")}))
        self.served = registry.get("text-generation", MODEL)
        self.engine = self.served.completion
        self.torch = torch

    def generate(self, prompts: list[str], max_tokens: int) -> list[list[int]]:
        """Greedy, left-padded, as a user of transformers would batch it; each row's
        new tokens up to its end-of-text token."""
        torch, engine = self.torch, self.engine
        ids = [engine.encode(prompt) for prompt in prompts]
        width = max(len(row) for row in ids)
        input_ids = torch.tensor([[engine.pad_id] * (width - len(row)) + row for row in ids])
        attention = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in ids])
        with torch.inference_mode():
            out = engine.model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_tokens,
                                        do_sample=False, pad_token_id=engine.pad_id,
                                        eos_token_id=sorted(engine.eos_ids))
        rows = []
        for row in out[:, width:].tolist():
            end = next((i + 1 for i, token in enumerate(row) if token in engine.eos_ids), len(row))
            rows.append(row[:end])
        return rows

    def window(self, prompts: list[str], max_tokens: int, seconds: float) -> dict:
        tokens, calls, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds or not calls:
            tokens += sum(len(row) for row in self.generate(prompts, max_tokens))
            calls += 1
        elapsed = time.perf_counter() - started
        return {"tokens": tokens, "calls": calls, "elapsed_s": elapsed, "tokens_per_s": tokens / elapsed}


class GenerationServer(Process):
    """This service under gunicorn.conf.py, one worker, the model preloaded."""

    def __init__(self, extra_env: dict, label: str, threads: int):
        super().__init__(label)
        env = {**os.environ, "INFER_DATA_DIR": self.dir, "INFER_BIND": f"127.0.0.1:{self.port}",
               "INFER_PRELOAD_MODELS": f"text-generation:{MODEL}", "HF_HUB_OFFLINE": "1",
               "INFER_WORKERS": "1", "INFER_TORCH_THREADS": str(threads),
               "PROMETHEUS_MULTIPROC_DIR": os.path.join(self.dir, "metrics"), **extra_env}
        self.key = None
        self.start([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env)

    def ready(self) -> bool:
        key_path = os.path.join(self.dir, "first-api-key")  # the first start writes its key there
        self.key = self.key or (open(key_path).read().strip() if os.path.exists(key_path) else None)
        status, _body = self.get("/readyz")
        return status == 200 and self.key is not None

    def complete(self, conn: http.client.HTTPConnection, prompt: str, max_tokens: int) -> dict:
        """One streamed completion: its text, tokens, and time to first text."""
        body = json.dumps({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                           "stream": True, "stream_options": {"include_usage": True}})
        started = time.perf_counter()
        conn.request("POST", "/v1/completions", body, {"content-type": "application/json",
                                                      "authorization": f"Bearer {self.key}"})
        response = conn.getresponse()
        if response.status != 200:
            return {"error": response.status, "body": response.read()[:300]}
        first, text, arrivals, tokens = None, [], [], 0
        for line in response:  # chunked SSE, read line by line as it arrives
            line = line.strip()
            if not line.startswith(b"data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("choices") and event["choices"][0].get("text"):
                arrivals.append(time.perf_counter())
                first = first or arrivals[-1] - started
                text.append(event["choices"][0]["text"])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
        return {"text": "".join(text), "tokens": tokens, "ttft_s": first or 0.0, "arrivals": arrivals,
                "seconds": time.perf_counter() - started}


def drive(server: GenerationServer, clients: int, max_tokens: int, seconds: float) -> dict:
    results, errors, lock = [], [0], threading.Lock()
    started = time.perf_counter()
    stop_at = started + seconds

    def client(number: int):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        own, i = [], number
        while time.perf_counter() < stop_at:
            answer = server.complete(conn, PROMPTS[i % len(PROMPTS)], max_tokens)
            i += 1
            if "error" in answer:
                with lock:
                    errors[0] += 1
                continue
            own.append(answer)
        with lock:
            results.extend(own)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Tokens that arrived within the window, over the window: the requests still
    # running at its end are finished (their tail, with fewer clients, is not counted),
    # each contributing its tokens in proportion to its chunks that came in time.
    tokens = sum(answer["tokens"] * sum(t <= stop_at for t in answer["arrivals"]) / max(1, len(answer["arrivals"]))
                 for answer in results)
    ttfts = [answer["ttft_s"] for answer in results]
    return {"requests": len(results), "errors": errors[0], "tokens_in_window": tokens,
            "window_s": stop_at - started, "drained_s": time.perf_counter() - stop_at,
            "tokens_per_s": tokens / (stop_at - started), "ttft_p50_ms": percentile(ttfts, 50) * 1000,
            "ttft_p99_ms": percentile(ttfts, 99) * 1000}


def scenario(label: str, raw: Raw, server: GenerationServer, clients: int, max_tokens: int,
             seconds: float, rounds: int) -> dict:
    prompts = PROMPTS[:clients] if clients > 1 else PROMPTS[:1]
    windows = []
    for round_ in range(rounds):
        raw_window = raw.window(prompts, max_tokens, seconds)
        served_window = drive(server, clients, max_tokens, seconds)
        ratio = served_window["tokens_per_s"] / raw_window["tokens_per_s"]
        windows.append({"raw": raw_window, "service": served_window, "ratio": ratio})
        print(f"  {label} round {round_ + 1}: raw {raw_window['tokens_per_s']:.1f} tok/s, service "
              f"{served_window['tokens_per_s']:.1f} tok/s ({served_window['requests']} requests, "
              f"{served_window['errors']} errors, TTFT p50 {served_window['ttft_p50_ms']:.0f} ms) -> {ratio:.2f}x",
              flush=True)
    return {"label": label, "clients": clients, "windows": windows,
            "ratio_median": statistics.median(w["ratio"] for w in windows),
            "raw_tokens_per_s_median": statistics.median(w["raw"]["tokens_per_s"] for w in windows),
            "service_tokens_per_s_median": statistics.median(w["service"]["tokens_per_s"] for w in windows),
            "ttft_p50_ms_median": statistics.median(w["service"]["ttft_p50_ms"] for w in windows)}


def check_outputs(raw: Raw, server: GenerationServer, max_tokens: int) -> dict:
    """Every prompt's greedy text from the service (8 at once) against raw generate()'s."""
    expected = [raw.engine.decode([t for t in row if t not in raw.engine.eos_ids])
                for row in raw.generate(PROMPTS, max_tokens)]
    lengths = [len(row) for row in raw.generate(PROMPTS, max_tokens)]
    got = [None] * len(PROMPTS)

    def one(i):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        got[i] = server.complete(conn, PROMPTS[i], max_tokens)["text"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    same = [a == b for a, b in zip(got, expected)]
    print(f"  greedy text equal to raw generate(): {sum(same)}/{len(same)}; raw tokens per prompt: {lengths}")
    return {"equal": same, "raw_tokens": lengths}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--skip-static", action="store_true", help="no run with continuous batching off")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "generation.json"))
    args = parser.parse_args()

    machine = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_model(),
               "cores": os.cpu_count(), "cpu_flags": cpu_flags(), "threads": args.threads}
    print(f"{machine['date']}  {machine['cpu']}  {machine['cores']} cores  flags: {machine['cpu_flags']}")
    print(f"model {MODEL}, greedy, max_tokens {args.max_tokens}, torch threads {args.threads} (raw and the "
          f"service's one worker), closed-loop keep-alive streaming clients, {args.rounds} rounds of "
          f"{args.seconds:g} s windows (raw, then service)")
    raw = Raw(args.threads)
    report = {"machine": machine, "args": vars(args), "scenarios": []}
    server = GenerationServer({}, "service (continuous batching)", args.threads)
    try:
        report["outputs"] = check_outputs(raw, server, args.max_tokens)
        for clients in (1, 8):
            label = f"{clients} client{'s' if clients > 1 else ''}, continuous"
            report["scenarios"].append(scenario(label, raw, server, clients, args.max_tokens,
                                                args.seconds, args.rounds))
    finally:
        server.stop()
    if not args.skip_static:
        static = GenerationServer({"INFER_GEN_CONTINUOUS_BATCHING": "false"}, "service (static)", args.threads)
        try:
            report["scenarios"].append(scenario("8 clients, static generate()", raw, static, 8, args.max_tokens,
                                                args.seconds, args.rounds))
        finally:
            static.stop()

    print("\n| scenario | raw generate() tok/s | service tok/s | ratio (median of rounds) | TTFT p50 |")
    print("|---|---|---|---|---|")
    for row in report["scenarios"]:
        print(f"| {row['label']} | {row['raw_tokens_per_s_median']:.1f} | {row['service_tokens_per_s_median']:.1f} "
              f"| {row['ratio_median']:.2f}x | {row['ttft_p50_ms_median']:.0f} ms |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump(report, out, indent=1)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
