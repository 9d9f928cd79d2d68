"""A/B of the service: this tree against another checkout, in one run.

For a change that should not cost speed (or should gain it), compare the code
before and after on a real model under the same load, side by side (the
default: /text-vectorisation on all-MiniLM-L6-v2; --endpoint chat:
/v1/chat/completions on SmolLM2-135M-Instruct, greedy, CHAT_MAX_TOKENS tokens):
this machine's speed drifts by tens of percent within a minute, so runs minutes
apart do not tell a few percent. Both servers run at once (an idle one takes no
CPU); each round drives one window on each, the order alternating from round to
round, and every round's ratio (this tree / the other) is kept. The other tree
runs with this venv's packages and the same settings.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/source_ab.py --other /tmp/before [--endpoint chat] [--backend torch] [--seconds 20] [--rounds 10] [--quick]

Prints, per scenario (text_vectorisation.py's standard plan; for chat: CHAT_PLAN),
items/s (sentences, or chat replies) and p50
of each tree and the median and range of the per-round ratios, and writes JSON (--out).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from text_vectorisation import QUICK_PLAN, ROOT, STANDARD_PLAN, Server, drive, make_sentences, percentile  # noqa: E402

CHAT_MODEL = "smollm2-135m-instruct"
CHAT_MAX_TOKENS = 16
CHAT_PLAN = [(1, 1), (4, 1)]


class ChatServer(Server):
    """The service answering /v1/chat/completions: one user message per request, greedy."""

    path = "/v1/chat/completions"

    @staticmethod
    def body(texts: list[str]) -> str:
        return json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": texts[0]}],
                           "max_tokens": CHAT_MAX_TOKENS, "temperature": 0})


def server_from(source: str, env: dict, label: str, base=Server) -> Server:
    class FromSource(base):
        pass

    FromSource.source = source
    return FromSource(env, label)


def compare(this, other, sentences, concurrency, per_request, seconds, rounds) -> dict:
    window = seconds / rounds
    windows = {"this": [], "other": []}
    for round_number in range(rounds):
        order = (("this", this), ("other", other)) if round_number % 2 == 0 else (("other", other), ("this", this))
        for name, server in order:
            windows[name].append(drive(server, sentences, concurrency, per_request, window))

    def rate(row):
        return row["requests"] * per_request / row["elapsed_s"]

    ratios = [rate(mine) / rate(theirs) for mine, theirs in zip(windows["this"], windows["other"])]
    result = {"concurrency": concurrency, "sentences_per_request": per_request,
              "ratios": ratios, "median_ratio": statistics.median(ratios)}
    for name, rows in windows.items():
        latencies = [value for row in rows for value in row["latencies"]]
        requests, elapsed = sum(row["requests"] for row in rows), sum(row["elapsed_s"] for row in rows)
        result[name] = {"items_per_s": requests * per_request / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
                        "errors": sum(row["errors"] for row in rows)}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", required=True, help="another checkout of the service (a git worktree)")
    parser.add_argument("--endpoint", choices=("text-vectorisation", "chat"), default="text-vectorisation")
    parser.add_argument("--backend", default="torch", help="INFER_BACKEND of both servers")
    parser.add_argument("--seconds", type=float, default=20, help="seconds per scenario and tree")
    parser.add_argument("--rounds", type=int, default=10, help="window pairs per scenario")
    parser.add_argument("--out", help="JSON results (default bench/results/source_ab[_chat].json)")
    parser.add_argument("--quick", action="store_true",
                        help="text-vectorisation: only single-sentence requests at concurrency 1 and 16")
    args = parser.parse_args()
    chat = args.endpoint == "chat"
    args.out = args.out or os.path.join(ROOT, "bench", "results", "source_ab_chat.json" if chat else "source_ab.json")
    sentences = make_sentences(2048)
    env = {"INFER_BACKEND": args.backend,
           "INFER_ONNX_CACHE_DIR": os.environ.get("INFER_ONNX_CACHE_DIR") or tempfile.mkdtemp(prefix="infer-ab-")}
    if chat:
        env["INFER_PRELOAD_MODELS"] = f"text-generation:{CHAT_MODEL}"
    base = ChatServer if chat else Server
    this = server_from(ROOT, env, "this tree", base)
    other = server_from(os.path.abspath(args.other), env, "other tree", base)
    try:
        for server in (this, other):
            drive(server, sentences, 4, 1, 2)  # warm up every worker
        plan = CHAT_PLAN if chat else QUICK_PLAN if args.quick else STANDARD_PLAN
        results = [compare(this, other, sentences, c, n, args.seconds, args.rounds) for c, n in plan]
    finally:
        this.stop()
        other.stop()
    print(f"{args.endpoint}: items/s are {'replies' if chat else 'sentences'}/s")
    print(f"{'scenario':<16}{'this items/s':>13}{'other items/s':>14}{'this p50':>10}{'other p50':>11}"
          f"{'ratio (median, range)':>26}")
    for row in results:
        print(f"c={row['concurrency']} x {row['sentences_per_request']:<8}{row['this']['items_per_s']:>13.1f}"
              f"{row['other']['items_per_s']:>14.1f}{row['this']['p50_ms']:>8.2f}ms{row['other']['p50_ms']:>9.2f}ms"
              f"{row['median_ratio']:>12.3f} ({min(row['ratios']):.2f}-{max(row['ratios']):.2f})")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump({"other": os.path.abspath(args.other), "endpoint": args.endpoint, "backend": args.backend,
                   "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
