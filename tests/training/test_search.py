"""Hyperparameter search jobs over HTTP (training/search.py): a search on a
seeded set where the default configuration underfits beats a plain job with
the defaults, its leaderboard is in the job, the same request tries the same
configurations, limits reject candidates (and all of them fail the job), the
request's own limits answer 422, and a search is cancelled like any job."""

import csv
import io
import json
import os
import random
import signal

import pytest

from .flow import add_dataset, start_job, until, wait_job

FEATURES = 12
# What every trial entry says about itself.
TRIAL_KEYS = {"trial", "hyperparameters", "searched", "status", "reason", "metric", "score", "metrics", "latency_ms",
              "size_mb", "share", "rounds", "elapsed_s", "rank", "best"}


@pytest.fixture
def api(client_for):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1, TRAINING_SEARCH_MAX_TRIALS=12,
                      TRAINING_SEARCH_MAX_TIME_S=600)


def linear_csv(rows: int = 240, seed: int = 7) -> str:
    """y, a noisy linear function of 12 numeric columns: a linear model fits it,
    a random forest (the tabular trainer's default) on 200 rows underfits it."""
    rng = random.Random(seed)
    weights = [rng.uniform(-2, 2) for _ in range(FEATURES)]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f"x{i}" for i in range(FEATURES)] + ["y"])
    for _ in range(rows):
        x = [round(rng.gauss(0, 1), 4) for _ in range(FEATURES)]
        writer.writerow(x + [round(sum(w * v for w, v in zip(weights, x)) + rng.gauss(0, 0.3), 4)])
    return out.getvalue()


# A space that trains fast, for the tests about something else than the scores.
SMALL_SPACE = {"estimator": ["ridge", "random_forest", "gradient_boosting"], "n_estimators": [5, 10]}


def search_body(dataset_id: str, **search) -> dict:
    return {"task": "tabular", "dataset_id": dataset_id, "hyperparameters": {"seed": 3},
            "search": {"trials": 6, **search}}


def leaderboard(job: dict) -> list[tuple]:
    """What a seeded search decides: per trial, what it drew, how it ended and its score."""
    return [(t["trial"], t["searched"], t["status"], t["rank"], t["share"], t["score"]) for t in job["trials"]]


@pytest.fixture
def linear(api):
    dataset = add_dataset(api.client, api.headers, linear_csv(), name="linear")
    assert dataset["status"] == "ready", dataset["parse_logs"]
    return dataset


def test_a_search_beats_the_default_configuration_and_its_leaderboard_is_in_the_job(api, linear):
    client, headers = api.client, api.headers
    default = wait_job(client, headers, start_job(client, headers, "plain", task="tabular",
                                                  dataset_id=linear["id"], hyperparameters={"seed": 3})["id"])
    assert default["status"] == "succeeded", default["message"]
    assert default["hyperparameters"]["estimator"] == "random_forest" and default["trials"] is None

    started = start_job(client, headers, "searched", **search_body(linear["id"]))
    assert started["search"]["space"]["estimator"]["choices"]  # the trainer's default space, filled in
    assert started["search"]["time_budget_s"] == 600
    job = wait_job(client, headers, started["id"])
    assert job["status"] == "succeeded", job["message"]
    print(f"\nlinear set, r2 on validation: default {default['metrics']['r2']:.4f}, "
          f"search's best {job['metrics']['r2']:.4f}")
    assert job["metrics"]["r2"] > default["metrics"]["r2"]

    trials = job["trials"]
    assert len(trials) == 6 and all(set(trial) == TRIAL_KEYS for trial in trials)
    assert all(trial["status"] == "kept" for trial in trials)  # no limits: every configuration counts
    assert [trial["rank"] for trial in trials] == [1, 2, 3, 4, 5, 6]  # the leaderboard, best first
    assert [trial["best"] for trial in trials] == [True] + [False] * 5
    scores = [trial["score"] for trial in trials]
    assert scores == sorted(scores, reverse=True) and trials[0]["metric"] == "r2"
    assert all(trial["latency_ms"] > 0 and trial["size_mb"] > 0 and trial["share"] == 1 for trial in trials)
    assert all(trial["hyperparameters"]["objective"] == "regression" for trial in trials)
    best = trials[0]
    assert job["metrics"]["r2"] == best["score"] and len({str(t["searched"]) for t in trials}) == 6
    assert job["epochs"] and job["epochs"][0]["r2"] == best["score"]  # the kept trial's epoch

    versions = client.get("/models/searched/versions", headers=headers).json
    assert [(v["version"], v["job_id"]) for v in versions] == [(1, job["id"])]
    assert f"trial {best['trial']} of 6" in versions[0]["description"]
    row = {f"x{i}": 0.1 for i in range(FEATURES)}
    answer = client.post("/predict", json={"model": "searched", "features": row}, headers=headers)
    assert answer.status_code == 200 and isinstance(answer.json["prediction"], float)

    # Another account sees neither the search nor its leaderboard.
    mallory = api.headers_for("mallory")
    assert client.get(f"/jobs/{job['id']}", headers=mallory).status_code == 404
    assert client.post(f"/jobs/{job['id']}/cancel", headers=mallory).status_code == 404


def test_the_same_search_tries_the_same_configurations_and_halving_narrows_them(api, linear):
    client, headers = api.client, api.headers
    body = search_body(linear["id"], method="halving", trials=9,
                       space={"estimator": ["random_forest", "gradient_boosting", "ridge"],
                              "n_estimators": {"min": 5, "max": 60, "log": True}, "max_depth": [2, 4, 8]})
    first = wait_job(client, headers, start_job(client, headers, "halved", **body)["id"])
    second = wait_job(client, headers, start_job(client, headers, "halved", **body)["id"])
    assert first["status"] == second["status"] == "succeeded", (first["message"], second["message"])
    assert leaderboard(first) == leaderboard(second)
    assert first["metrics"]["r2"] == second["metrics"]["r2"]

    statuses = [trial["status"] for trial in first["trials"]]
    # 9 on a ninth of the rows, 3 on a third, 1 on them all.
    assert statuses.count("kept") == 1 and statuses.count("eliminated") + statuses.count("failed") == 8
    kept = first["trials"][0]
    assert kept["best"] and kept["share"] == 1 and [r["share"] for r in kept["rounds"]] == [1 / 9, 1 / 3, 1]
    assert sorted(len(trial["rounds"]) for trial in first["trials"]) == [1] * 6 + [2] * 2 + [3]
    eliminated = next(trial for trial in first["trials"] if trial["status"] == "eliminated")
    assert eliminated["reason"].startswith("Round ") and "went on" in eliminated["reason"]

    # Another seed draws other configurations.
    from trainers.tabular import TabularHyperparameters
    from training.search import configurations

    base = {**first["trials"][0]["hyperparameters"], "seed": 4}
    drawn = configurations(TabularHyperparameters, base, first["search"]["space"], 9, 4)
    assert [{name: c[name] for name in body["search"]["space"]} for c in drawn] != [
        t["searched"] for t in sorted(first["trials"], key=lambda t: t["trial"])]


def test_a_limit_no_configuration_meets_fails_the_job_saying_which_each_missed(api, linear):
    client, headers = api.client, api.headers
    job = wait_job(client, headers, start_job(client, headers, "tiny", **search_body(
        linear["id"], trials=3, max_size_mb=0.000001, space=SMALL_SPACE))["id"])
    assert job["status"] == "failed"
    assert job["message"].startswith("No configuration trained on the whole training set met the search's limits")
    assert "max_size_mb 1e-06" in job["message"] and "3 rejected" in job["message"]
    assert [trial["status"] for trial in job["trials"]] == ["rejected"] * 3
    assert all("is over max_size_mb" in trial["reason"] and trial["rank"] is None for trial in job["trials"])
    assert job["version"] is None
    assert client.get("/models/tiny/versions", headers=headers).json == []

    # A metric the data has not (accuracy of a regression): each trial fails, saying so.
    unranked = wait_job(client, headers, start_job(client, headers, "unranked", **search_body(
        linear["id"], trials=2, metric="accuracy", space=SMALL_SPACE))["id"])
    assert unranked["status"] == "failed" and "2 failed" in unranked["message"]
    assert [trial["reason"] for trial in unranked["trials"]] == [
        "Its validation gave no accuracy (it has mae, mse, r2, train_loss, validation_loss)."] * 2

    # A latency limit every configuration meets rejects none.
    loose = wait_job(client, headers, start_job(client, headers, "loose", **search_body(
        linear["id"], trials=2, max_latency_ms=60_000, max_size_mb=1000, space=SMALL_SPACE))["id"])
    assert loose["status"] == "succeeded" and [t["status"] for t in loose["trials"]] == ["kept", "kept"]


def names(errors: dict, field: str) -> bool:
    """Whether the 422's errors name `field`: "search.trials" as a key, or nested
    as the request schema reports it ({"search": {"trials": [...]}})."""
    if field in errors:
        return True
    head, _, rest = field.partition(".")
    return bool(rest) and isinstance(errors.get(head), dict) and names(errors[head], rest)


@pytest.mark.parametrize("change, field", [
    ({"search": {"trials": 13}}, "search.trials"),
    ({"search": {"trials": 0}}, "search.trials"),
    ({"search": {"time_budget_s": 601}}, "search.time_budget_s"),
    ({"search": {"method": "grid"}}, "search.method"),
    ({"search": {"space": {"learning_rate": [0.1]}}}, "search.space.learning_rate"),
    ({"search": {"space": {"n_estimators": {"min": 1, "max": 5000}}}}, "search.space.n_estimators"),
    ({"search": {"space": {"n_estimators": {"min": 50, "max": 10}}}}, "search.space.n_estimators"),
    ({"search": {"space": {"estimator": ["svm"]}}}, "search.space.estimator"),
    ({"search": {"space": {"estimator": {"min": 1, "max": 2}}}}, "search.space.estimator"),
    ({"search": {"space": {"seed": [1, 2]}}}, "search.space.seed"),
    ({"search": {"space": {}}}, "search.space"),
    ({"search": {"metric": "bleu"}}, "search.metric"),
    ({"search": {"max_size_mb": -1}}, "search.max_size_mb"),
    ({"search": {"trials": 2}, "validation_split": 0}, "validation_split"),
])
def test_a_search_outside_its_limits_is_refused_saying_what_to_fix(api, linear, change, field):
    body = {"task": "tabular", "dataset_id": linear["id"], **change}
    refused = api.client.post("/models/bad/train", json=body, headers=api.headers)
    assert refused.status_code == 422, refused.json
    assert names(refused.json["errors"], field), refused.json
    assert api.client.get("/jobs", headers=api.headers).json["data"] == []


def test_a_trainer_that_cannot_search_is_refused(api):
    jsonl = "".join(json.dumps({"prompt": f"Item {i} is", "completion": f" number {i}."}) + "\n" for i in range(8))
    dataset = add_dataset(api.client, api.headers, jsonl)
    assert dataset["status"] == "ready", dataset["parse_logs"]
    refused = api.client.post("/models/bad/train", headers=api.headers, json={
        "task": "text-generation", "dataset_id": dataset["id"], "search": {"trials": 2}})
    assert refused.status_code == 422, refused.json
    assert "text-generation cannot be searched yet" in refused.json["message"]


def test_a_search_is_cancelled_like_any_job_and_makes_no_version(api, linear):
    client, headers = api.client, api.headers
    job = start_job(client, headers, "cancelled", **search_body(
        linear["id"], trials=12, space={"estimator": ["random_forest", "gradient_boosting"],
                                        "n_estimators": {"min": 300, "max": 1000}}))

    def a_trial_reported():
        state = client.get(f"/jobs/{job['id']}", headers=headers).json
        assert state["status"] in ("queued", "running"), state["message"]
        return any(trial["status"] != "queued" for trial in state["trials"] or [])

    until(a_trial_reported, 120)
    assert client.post(f"/jobs/{job['id']}/cancel", headers=headers).status_code == 200
    done = wait_job(client, headers, job["id"], timeout_s=60)
    assert done["status"] == "cancelled"
    assert any(trial["status"] in ("queued", "running") for trial in done["trials"])  # it stopped part-way
    assert client.get("/models/cancelled/versions", headers=headers).json == []


def test_a_setfit_search_on_the_packaged_minilm_keeps_the_best_and_serves_it(api):
    client, headers = api.client, api.headers
    texts = [("I love this", "positive"), ("what a great day", "positive"), ("wonderful film", "positive"),
             ("happy and joyful", "positive"), ("brilliant work", "positive"), ("fantastic service", "positive"),
             ("I hate this", "negative"), ("what an awful day", "negative"), ("terrible film", "negative"),
             ("sad and miserable", "negative"), ("dreadful work", "negative"), ("awful service", "negative")]
    dataset = add_dataset(client, headers, "text,label\n" + "".join(f"{t},{label}\n" for t, label in texts * 2))
    assert dataset["status"] == "ready", dataset["parse_logs"]
    job = wait_job(client, headers, start_job(
        client, headers, "sentiment", task="text-classification", dataset_id=dataset["id"], validation_split=0.25,
        hyperparameters={"epochs": 1, "num_iterations": 2, "seed": 5},
        search={"trials": 2, "space": {"learning_rate": [2e-5, 8e-5]}, "metric": "macro_f1",
                "max_size_mb": 500})["id"], timeout_s=600)
    assert job["status"] == "succeeded", job["message"]
    assert job["base_model"] == "all-MiniLM-L6-v2"
    assert sorted(trial["searched"]["learning_rate"] for trial in job["trials"]) == [2e-5, 8e-5]
    assert [trial["status"] for trial in job["trials"]] == ["kept", "kept"]
    assert all(trial["metric"] == "macro_f1" and trial["latency_ms"] > 0 and 10 < trial["size_mb"] < 500
               for trial in job["trials"])
    assert job["metrics"]["macro_f1"] == job["trials"][0]["score"]
    answer = client.post("/text-classification", json={"model": "sentiment", "text": "a wonderful day"},
                         headers=headers)
    assert answer.status_code == 200, answer.json
    assert set(answer.json["probabilities"]) == {"positive", "negative"}


def test_a_search_whose_process_is_killed_resumes_without_training_its_finished_trials_again(api, linear):
    client, headers = api.client, api.headers
    job = start_job(client, headers, "resumed", **search_body(
        linear["id"], trials=6, space={"estimator": ["random_forest"], "n_estimators": {"min": 200, "max": 400}}))
    finished = []

    def two_trials_finished():
        state = client.get(f"/jobs/{job['id']}", headers=headers).json
        assert state["status"] in ("queued", "running"), state["message"]
        finished[:] = [trial["trial"] for trial in state["trials"] or [] if trial["status"] == "kept"]
        return len(finished) >= 2

    until(two_trials_finished, 180)
    os.kill(api.app.extensions["training"].child_pid(job["id"]), signal.SIGKILL)
    done = wait_job(client, headers, job["id"])
    assert done["status"] == "succeeded", done["message"]
    assert done["attempts"] == 2 and [trial["status"] for trial in done["trials"]] == ["kept"] * 6
    log = client.get(f"/jobs/{job['id']}/log", headers=headers).json["log"]
    assert "killed by signal 9" in log
    for number in finished:  # trained once, before the kill; the second attempt read its measures back
        assert log.count(f"trial {number}: regression with random_forest") == 1, number
    assert all(log.count(f"trial {n}: regression with random_forest") >= 1 for n in range(1, 7))


def test_halving_shares_hold_every_label_and_configurations_are_distinct_and_within_the_space():
    from trainers.tabular import TabularHyperparameters
    from training.search import configurations, interleaved, share_schedule

    assert share_schedule("random", 9) == [1.0]
    assert share_schedule("halving", 9) == [1 / 9, 1 / 3, 1]
    assert share_schedule("halving", 8) == [1 / 3, 1] and share_schedule("halving", 2) == [1.0]
    rows = [{"features": {"x": i}, "label": label} for i, label in enumerate(["a"] * 60 + ["b"] * 30 + ["c"] * 9)]
    dealt = interleaved(rows, seed=1)
    assert sorted(row["features"]["x"] for row in dealt) == list(range(99))  # every row once
    first = [row["label"] for row in dealt[:11]]  # a ninth
    assert (first.count("a"), first.count("b"), first.count("c")) == (7, 3, 1)

    base = TabularHyperparameters().load({"objective": "classification"})
    space = {"estimator": {"choices": ["ridge", "logistic_regression", "random_forest"]},
             "max_depth": {"min": 2, "max": 9, "log": False}}
    drawn = configurations(TabularHyperparameters, base, space, 12, seed=9)
    assert drawn == configurations(TabularHyperparameters, base, space, 12, seed=9)
    # ridge does not classify: never drawn; logistic regression has no depth: drawn once, without one.
    assert {c["estimator"] for c in drawn} == {"logistic_regression", "random_forest"}
    assert [c["max_depth"] for c in drawn if c["estimator"] == "logistic_regression"] == [None]
    assert all(2 <= c["max_depth"] <= 9 for c in drawn if c["estimator"] == "random_forest")
    assert len({json.dumps(c, sort_keys=True) for c in drawn}) == len(drawn) == 9  # 1 + 8 depths: all there are
