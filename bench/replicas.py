"""Requests/s through HAProxy (deploy/haproxy.cfg) with 1 and 2 replicas, and the
per-request cost of the load balancer.

Two production servers (gunicorn.conf.py, the real all-MiniLM-L6-v2 serving
/text-vectorisation) share a throwaway PostgreSQL; HAProxy runs the shipped
config in front of both. Three scenarios, same servers, same run:

    direct   the client talks to replica1 itself (no load balancer)
    lb-1     through HAProxy, replica2 in maintenance (one replica serves)
    lb-2     through HAProxy, both replicas in the rotation

Machine speed drifts, so each concurrency runs in rounds, and each round has
one window of every scenario back to back (the order rotates from round to
round); ratios are taken within a round: lb-2 / lb-1 (what the second replica
adds) and lb-1 / direct (what the load balancer costs), for requests/s, and
the difference of the p50 latencies at concurrency 1 (the load balancer's
per-request overhead).

Sizing: each replica is one gunicorn worker with one torch thread
(--workers, --torch-threads), the unit of capacity of a 1-core machine; so one
replica can use one of this machine's cores, and two replicas both. The client
and HAProxy run on the same cores: on a 2-core machine the second replica
cannot double the throughput, and this says how much it adds.

    .venv/bin/python bench/replicas.py [--seconds 6] [--rounds 3] [--concurrency 16,1] [--out FILE]
"""

import argparse
import http.client
import json
import os
import platform
import statistics
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
from tests.haproxy import HAProxy  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

SCENARIOS = ("direct", "lb-1", "lb-2")


def window(port: int, key: str, sentences: list[str], concurrency: int, seconds: float) -> dict:
    """`concurrency` clients on kept-alive connections, each sending its next request when
    the last one is answered, for `seconds`."""
    stop_at = time.perf_counter() + seconds
    latencies, errors, lock = [], [], threading.Lock()

    def client(number: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"content-type": "application/json", "x-api-key": key}
        i = number
        while time.perf_counter() < stop_at:
            body = json.dumps({"text": sentences[i % len(sentences)]})
            i += concurrency
            started = time.perf_counter()
            try:
                conn.request("POST", "/text-vectorisation", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                failed = response.status != 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                failed = True
            with lock:
                (errors if failed else latencies).append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"requests_per_s": len(latencies) / seconds, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "errors": len(errors)}


class Bench:
    def __init__(self, workers: int, torch_threads: int):
        self.dir = tempfile.mkdtemp(prefix="infer-bench-replicas-")
        self.postgres = PostgresServer()
        self.postgres.start()
        environ = {"DATABASE_URL": self.postgres.new_database(), "INFER_WORKERS": str(workers),
                   "INFER_TORCH_THREADS": str(torch_threads),
                   "INFER_PRELOAD_MODELS": "text-vectorisation:english"}
        self.servers = {}
        for name in ("replica1", "replica2"):
            folder = os.path.join(self.dir, name)
            os.makedirs(folder)
            self.servers[name] = start_production_server(folder, **environ)
            self.servers[name].wait_ready(180)  # one at a time: the first makes the schema and the key
        self.key = self.servers["replica1"].printed_keys()[0]
        self.proxy = HAProxy(os.path.join(self.dir, "haproxy"),
                             {name: f"127.0.0.1:{server.port}" for name, server in self.servers.items()}).start()
        for name in self.servers:
            self.proxy.wait_status(name, "UP")

    def port_for(self, scenario: str) -> int:
        """Set the rotation up for the scenario; the port its client talks to."""
        if scenario == "direct":
            return self.servers["replica1"].port
        if scenario == "lb-1":
            self.proxy.set_state("replica2", "maint")
            self.proxy.wait_status("replica2", "MAINT")
        else:
            self.proxy.set_state("replica2", "ready")
            self.proxy.wait_status("replica2", "UP")
        return self.proxy.port

    def stop(self):
        self.proxy.stop()
        for server in self.servers.values():
            server.stop()
        self.postgres.stop()


def summarise(rounds: list[dict], concurrency: int) -> dict:
    def values(scenario, field):
        return [one[scenario][field] for one in rounds]

    summary = {scenario: {field: statistics.median(values(scenario, field))
                          for field in ("requests_per_s", "p50_ms", "p99_ms")} for scenario in SCENARIOS}
    ratios = {"lb2_over_lb1": [one["lb-2"]["requests_per_s"] / one["lb-1"]["requests_per_s"] for one in rounds],
              "lb1_over_direct": [one["lb-1"]["requests_per_s"] / one["direct"]["requests_per_s"] for one in rounds],
              "lb1_minus_direct_p50_ms": [one["lb-1"]["p50_ms"] - one["direct"]["p50_ms"] for one in rounds]}
    summary["ratios"] = {name: {"median": statistics.median(found), "min": min(found), "max": max(found)}
                         for name, found in ratios.items()}
    summary["errors"] = sum(one[scenario]["errors"] for one in rounds for scenario in SCENARIOS)
    print(f"c={concurrency}: " + ", ".join(
        f"{scenario} {summary[scenario]['requests_per_s']:.1f} req/s p50 {summary[scenario]['p50_ms']:.1f} ms "
        f"p99 {summary[scenario]['p99_ms']:.1f} ms" for scenario in SCENARIOS), flush=True)
    print("    " + ", ".join(f"{name} {found['median']:.2f} ({found['min']:.2f}-{found['max']:.2f})"
                             for name, found in summary["ratios"].items()) + f", errors {summary['errors']}",
          flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6, help="length of each window")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one window per scenario")
    parser.add_argument("--concurrency", default="16,1")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers per replica")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads per gunicorn worker")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    sentences = make_sentences(500)
    load_before = os.getloadavg()
    bench = Bench(args.workers, args.torch_threads)
    results = []
    try:
        for scenario in SCENARIOS:  # warm up every path (first requests, connection set-up)
            window(bench.port_for(scenario), bench.key, sentences, 4, 1.5)
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            rounds = []
            for number in range(args.rounds):
                order = SCENARIOS[number % 3:] + SCENARIOS[:number % 3]
                rounds.append({scenario: window(bench.port_for(scenario), bench.key, sentences, concurrency,
                                                args.seconds) for scenario in order})
            results.append({"concurrency": concurrency, "rounds": rounds, "summary": summarise(rounds, concurrency)})
    finally:
        bench.stop()
    report = {"args": vars(args), "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                                              "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
              "results": results}
    if args.out:
        with open(args.out, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
