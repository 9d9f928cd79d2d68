"""A noisy neighbour beside a well-behaved client, on the same model of one server.

The production server (gunicorn.conf.py, settings from the environment) serves
/text-vectorisation with the real all-MiniLM-L6-v2 to two accounts:

    quiet   one connection, one sentence per request, the next sent when the
            last is answered (a well-behaved client)
    noisy   --connections connections (300) in a process of its own, each
            sending --sentences-sentence requests (12) back to back, and at
            once again after any answer, 429 included (a hostile client
            ignores Retry-After)

The machine's speed drifts, so the run is in rounds; each round has a window of
the quiet client alone and a window of it beside the flood, and the ratios are
taken within a round: the quiet client's p50 and p99 under the flood over its
own idle ones. Also printed: the quiet client's errors, and what the noisy
account got (answers, 429s, its share of the sentences the model vectorised).

    .venv/bin/python bench/noisy_neighbour.py [--seconds 10] [--rounds 3] [--out FILE]
        [--server-root OTHER_CHECKOUT]   # the same bench against another tree (e.g. before a change)
"""

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from text_vectorisation import make_sentences, percentile  # noqa: E402
from tests.gunicorn import start_production_server  # noqa: E402

PATH = "/text-vectorisation"


def _connection(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=120)


def quiet_window(port: int, key: str, sentences: list[str], seconds: float) -> dict:
    """The well-behaved client: latencies of its answered requests, and its errors."""
    latencies, errors = [], {}
    conn = _connection(port)
    headers = {"content-type": "application/json", "x-api-key": key}
    stop_at = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < stop_at:
        body = json.dumps({"text": sentences[i % len(sentences)]})
        i += 1
        started = time.perf_counter()
        try:
            conn.request("POST", PATH, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = _connection(port)
            status = type(exc).__name__
        if status == 200:
            latencies.append(time.perf_counter() - started)
        else:
            errors[str(status)] = errors.get(str(status), 0) + 1
    conn.close()
    return {"requests": len(latencies), "p50_ms": percentile(latencies, 0.5) * 1000 if latencies else None,
            "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else None, "errors": errors}


def _noisy_process(port: int, key: str, connections: int, sentences_per_request: int, seconds: float,
                   started, results) -> None:
    """The flood, in its own process (its threads must not slow the quiet client's)."""
    sentences = make_sentences(2000)
    counts = {"ok_sentences": 0}
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(number: int) -> None:
        conn = _connection(port)
        headers = {"content-type": "application/json", "x-api-key": key}
        i = number
        while time.perf_counter() < stop_at:
            texts = [sentences[(i + k) % len(sentences)] for k in range(sentences_per_request)]
            i += connections
            try:
                conn.request("POST", PATH, body=json.dumps({"text": texts}), headers=headers)
                response = conn.getresponse()
                answer = response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = _connection(port)
                status, answer = type(exc).__name__, b""
            with lock:
                counts[status] = counts.get(status, 0) + 1
                if status != "200":  # what the flood was told, by the start of the message
                    said = f"said_{status}: " + answer.decode(errors="replace")[:120]
                    counts[said] = counts.get(said, 0) + 1
                if status == "200":
                    counts["ok_sentences"] += sentences_per_request
        conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(connections)]
    for thread in threads:
        thread.start()
    started.set()
    for thread in threads:
        thread.join(seconds + 130)
    results.put(counts)


def flood_window(port: int, quiet_key: str, noisy_key: str, sentences: list[str], args) -> dict:
    started, results = multiprocessing.Event(), multiprocessing.Queue()
    # The flood runs a second longer at each end than the quiet window it surrounds.
    flood = multiprocessing.Process(target=_noisy_process, args=(
        port, noisy_key, args.connections, args.sentences, args.seconds + 2, started, results))
    flood.start()
    started.wait()
    time.sleep(1)  # let it fill the server
    quiet = quiet_window(port, quiet_key, sentences, args.seconds)
    noisy = results.get()
    flood.join()
    quiet_sentences = quiet["requests"]
    noisy["share_of_sentences"] = noisy["ok_sentences"] / max(1, noisy["ok_sentences"] + quiet_sentences)
    return {"quiet": quiet, "noisy": noisy}


def create_key(server, account: str, root: str) -> str:
    env = {**os.environ, "INFER_DATA_DIR": os.path.join(server.folder, "data"), "INFER_BOOTSTRAP_KEY": "0"}
    output = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "keys", "create", "--account", account],
                            cwd=root, env=env, capture_output=True, text=True, check=True).stdout
    return output.strip().splitlines()[-1]


def ratio(numerator, denominator):
    return numerator / denominator if numerator is not None and denominator else None


def summarise(rounds: list[dict]) -> dict:
    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    summary = {
        "idle_p50_ms": median([r["idle"]["p50_ms"] for r in rounds]),
        "idle_p99_ms": median([r["idle"]["p99_ms"] for r in rounds]),
        "flood_p50_ms": median([r["flood"]["quiet"]["p50_ms"] for r in rounds]),
        "flood_p99_ms": median([r["flood"]["quiet"]["p99_ms"] for r in rounds]),
        "p50_ratio": median([ratio(r["flood"]["quiet"]["p50_ms"], r["idle"]["p50_ms"]) for r in rounds]),
        "p99_ratio": median([ratio(r["flood"]["quiet"]["p99_ms"], r["idle"]["p99_ms"]) for r in rounds]),
        "quiet_requests_idle": median([r["idle"]["requests"] for r in rounds]),
        "quiet_requests_flood": median([r["flood"]["quiet"]["requests"] for r in rounds]),
        "quiet_errors_idle": sum(sum(r["idle"]["errors"].values()) for r in rounds),
        "quiet_errors_flood": sum(sum(r["flood"]["quiet"]["errors"].values()) for r in rounds),
        "noisy_answers": {status: sum(r["flood"]["noisy"].get(status, 0) for r in rounds)
                          for status in sorted({s for r in rounds for s in r["flood"]["noisy"]})
                          if status not in ("ok", "ok_sentences", "share_of_sentences") and not status.startswith("said_")},
        "noisy_share_of_sentences": median([r["flood"]["noisy"]["share_of_sentences"] for r in rounds]),
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="length of each window")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of an idle and a flood window")
    parser.add_argument("--connections", type=int, default=300, help="the noisy client's connections")
    parser.add_argument("--sentences", type=int, default=12, help="sentences per noisy request")
    parser.add_argument("--server-root", default=ROOT, help="the checkout whose server to run (default: this one)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    root = os.path.abspath(args.server_root)
    folder = tempfile.mkdtemp(prefix="infer-bench-noisy-")
    load_before = os.getloadavg()
    server = start_production_server(folder, root=root, INFER_PRELOAD_MODELS="text-vectorisation:english")
    rounds = []
    try:
        server.wait_ready(300)
        quiet_key = server.printed_keys()[0]
        noisy_key = create_key(server, "noisy", root)
        sentences = make_sentences(500)
        quiet_window(server.port, quiet_key, sentences, 2)  # warm up
        for number in range(args.rounds):
            idle = quiet_window(server.port, quiet_key, sentences, args.seconds)
            flood = flood_window(server.port, quiet_key, noisy_key, sentences, args)
            rounds.append({"idle": idle, "flood": flood})
            print(f"round {number + 1}: idle p50 {idle['p50_ms']:.1f} ms p99 {idle['p99_ms']:.1f} ms; "
                  f"flood p50 {flood['quiet']['p50_ms'] or float('nan'):.1f} ms "
                  f"p99 {flood['quiet']['p99_ms'] or float('nan'):.1f} ms, {flood['quiet']['requests']} answered, "
                  f"errors {flood['quiet']['errors']}; noisy {flood['noisy']}", flush=True)
    finally:
        server.stop()
    summary = summarise(rounds)
    print(json.dumps(summary, indent=2))
    report = {"args": vars(args), "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                                              "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
              "rounds": rounds, "summary": summary}
    if args.out:
        with open(args.out, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
