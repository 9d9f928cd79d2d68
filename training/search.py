"""A hyperparameter search: one training job whose child trains several
configurations of its trainer (the trials) and keeps the best as the version.

Why in the training child: a trial is a training run like any other (the same
trainer, rows, sandbox, memory cap, cancel and crash handling), and the child
is where the trained files can be measured as they will be served: each
trial's latency (the median time to answer one validation row, loaded as the
service loads a version, on this machine) and size (the bytes of its files)
are taken there, and a trial over the job's max_latency_ms or max_size_mb is
rejected.

Two methods, both drawing from `space` with a generator seeded by the job's
`seed` hyperparameter, so the same request tries the same configurations:

- random: `trials` configurations, each trained on the whole training set.
- halving (successive halving, factor ETA): every configuration trains on a
  share of the training rows (1/ETA^k), the best 1/ETA of those go on to a
  share ETA times larger, up to the whole set; only a configuration trained
  on the whole set can be published.

The time budget is checked before each run: a run started within it ends, and
what is left is marked over_budget. The leaderboard is reported trial by trial
(a "trial" event, saved on the job's row by training/records.py); when no
configuration trained on the whole set meets the limits, the job fails saying
which limit each one missed.

A crash of the child resumes the search: finished runs are kept in
JOB_DIR/search/state.json with their measures, and are not trained again.
With S3 storage the worker copies that state and the best whole-set run's
files to the bucket, so a worker on another host resumes it the same way
(training/search_store.py).
"""

import json
import math
import os
import random
import shutil
import statistics
import time
import traceback

from marshmallow import ValidationError, fields

# The factor of successive halving: each round keeps the best third and gives it three times the rows.
ETA = 3
# Validation rows the latency is measured on (one request each).
LATENCY_ROWS = 8
# A share of the training rows is never smaller than this many rows.
MIN_SHARE_ROWS = 12
# Values one choice list may hold.
MAX_CHOICES = 50
# The searched space when the job sends none: per task, values within the trainer's schema ranges.
DEFAULT_SPACES = {
    "tabular": {
        "estimator": ["random_forest", "gradient_boosting", "logistic_regression", "ridge"],
        "n_estimators": {"min": 10, "max": 400, "log": True},
        "max_depth": {"min": 2, "max": 32, "log": True},
    },
    "text-classification": {
        "learning_rate": {"min": 1e-5, "max": 1e-4, "log": True},
        "epochs": [1, 2],
        "num_iterations": {"min": 5, "max": 20},
    },
}
SEARCHABLE_TASKS = tuple(DEFAULT_SPACES)
# Metrics a search ranks by: True when higher is better.
METRICS = {"accuracy": True, "macro_f1": True, "r2": True, "mae": False, "mse": False, "validation_loss": False}
TASK_METRICS = {"tabular": tuple(METRICS), "text-classification": ("accuracy", "macro_f1", "validation_loss")}
# Never searched: the seed seeds the search itself.
NOT_SEARCHED = ("seed",)


class SearchProblem(ValueError):
    """What is wrong with a search request: the field (under `search`) and what to fix."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field, self.problem = field, problem


# --- the request ------------------------------------------------------------------------


def check_search(task: str, schema_class, hyperparameters: dict, search: dict) -> dict:
    """The search as the job keeps it (the space filled in, each range and choice
    checked against the trainer's schema), or SearchProblem. `hyperparameters`:
    the job's, validated, every default filled in."""
    if task not in DEFAULT_SPACES:
        raise SearchProblem("task", f"{task} cannot be searched yet; tasks that can: {', '.join(SEARCHABLE_TASKS)}.")
    metric = search.get("metric")
    if metric is not None and metric not in TASK_METRICS[task]:
        raise SearchProblem("metric", f"{task} ranks by one of {', '.join(TASK_METRICS[task])}; not {metric!r}.")
    sent = search.get("space")
    space = {name: _read_range(schema_class, hyperparameters, name, spec)
             for name, spec in (DEFAULT_SPACES[task] if sent is None else sent).items()}
    if not space:
        raise SearchProblem("space", "Name at least one hyperparameter to search, or leave space out.")
    return {**search, "space": space}


def _read_range(schema_class, hyperparameters: dict, name: str, spec) -> dict:
    """{"choices": [...]} or {"min", "max", "log"}, each value one the schema accepts."""
    field = schema_class().fields.get(name)
    if field is None or name in NOT_SEARCHED:
        searchable = [key for key in schema_class().fields if key not in NOT_SEARCHED]
        raise SearchProblem(f"space.{name}", f"not a hyperparameter this trainer searches; it has "
                                             f"{', '.join(searchable)}.")
    if isinstance(spec, list):
        if not 1 <= len(spec) <= MAX_CHOICES:
            raise SearchProblem(f"space.{name}", f"a list of 1 to {MAX_CHOICES} values to choose from.")
        if any(isinstance(value, (dict, list)) for value in spec):
            raise SearchProblem(f"space.{name}", "choices are numbers, strings, booleans or null.")
        values = [_checked(schema_class, hyperparameters, name, value) for value in spec]
        return {"choices": list(dict.fromkeys(values))}
    if isinstance(spec, dict) and set(spec) <= {"min", "max", "log"} and {"min", "max"} <= set(spec):
        if not isinstance(field, (fields.Integer, fields.Float)):
            raise SearchProblem(f"space.{name}", "a range is for numbers; give a list of choices.")
        low, high, log = spec["min"], spec["max"], spec.get("log", False)
        if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in (low, high)):
            raise SearchProblem(f"space.{name}", "min and max are numbers.")
        if not isinstance(log, bool):
            raise SearchProblem(f"space.{name}", "log is true or false.")
        if low > high:
            raise SearchProblem(f"space.{name}", f"min {low} is above max {high}.")
        if log and low <= 0:
            raise SearchProblem(f"space.{name}", "a log range needs min above 0.")
        low, high = (_checked(schema_class, hyperparameters, name, value) for value in (low, high))
        return {"min": low, "max": high, "log": log}
    raise SearchProblem(f"space.{name}", 'a list of values, or {"min": ..., "max": ..., "log": true|false}.')


def _checked(schema_class, hyperparameters: dict, name: str, value):
    try:
        return schema_class().load({**hyperparameters, name: value})[name]
    except ValidationError as exc:
        messages = exc.messages.get(name) or exc.messages
        raise SearchProblem(f"space.{name}", f"{value!r}: {_text(messages)}") from None


def _text(messages) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{key}: {_text(value)}" for key, value in messages.items())
    if isinstance(messages, list):
        return " ".join(_text(value) for value in messages)
    return str(messages)


# --- the configurations -----------------------------------------------------------------


def configurations(schema_class, base: dict, space: dict, count: int, seed: int) -> list[dict]:
    """Up to `count` distinct configurations drawn from `space` over `base`, the
    same for the same arguments. A choice the base rules out (a regression's
    logistic_regression) is never drawn; a drawn value that does not go with the
    others (max_depth for ridge) falls back to the base's."""
    rng = random.Random(seed)
    space = {name: _feasible(schema_class, base, name, spec) for name, spec in sorted(space.items())}
    found: dict[str, dict] = {}
    for _ in range(count * 20):
        if len(found) == count:
            break
        drawn = {name: _draw(rng, spec) for name, spec in space.items()}
        candidate = _loaded(schema_class, base, drawn)
        if candidate is not None:
            found.setdefault(json.dumps(candidate, sort_keys=True), candidate)
    return list(found.values())


def _feasible(schema_class, base: dict, name: str, spec: dict) -> dict:
    if "choices" not in spec:
        return spec
    kept = [value for value in spec["choices"] if _loaded(schema_class, base, {name: value}) is not None]
    return {"choices": kept or [base.get(name)]}


def _draw(rng: random.Random, spec: dict):
    if "choices" in spec:
        return rng.choice(spec["choices"])
    low, high = spec["min"], spec["max"]
    integer = isinstance(low, int) and isinstance(high, int)
    if spec.get("log"):
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if integer:
        return min(high, max(low, round(value)))
    return min(high, max(low, float(f"{value:.4g}")))


def _loaded(schema_class, base: dict, drawn: dict) -> dict | None:
    """base with the drawn values, as the schema loads it; each drawn value the
    schema refuses falls back to the base's (a schema may name one at a time)."""
    candidate = {**base, **drawn}
    for _ in range(len(drawn) + 1):
        try:
            return schema_class().load(candidate)
        except ValidationError as exc:
            refused = [name for name in exc.messages if name in drawn]
            if not refused:
                return None
            candidate = {**candidate, **{name: base.get(name) for name in refused}}
    return None


def pinned_base(task: str, hyperparameters: dict, train_rows: list) -> dict:
    """The base configuration the search draws over. Tabular "auto" decides the
    objective from the estimator; in a search the estimator varies, so the
    objective is decided once, from the data, and every candidate keeps it."""
    if task == "tabular" and hyperparameters.get("objective") == "auto":
        from trainers.tabular import decide_objective

        labels = [row["label"] for row in train_rows]
        return {**hyperparameters, "objective": decide_objective("auto", "random_forest", labels)}
    return dict(hyperparameters)


def share_schedule(method: str, count: int) -> list[float]:
    """The shares of the training rows each round trains on: [1.0] for random;
    for halving 1/ETA^K, ..., 1/ETA, 1 with K rounds of elimination."""
    if method != "halving" or count < 2:
        return [1.0]
    rounds = int(math.log(count) / math.log(ETA) + 1e-9)
    return [ETA ** (k - rounds) for k in range(rounds + 1)] if rounds else [1.0]


def interleaved(rows: list, seed: int) -> list:
    """The rows shuffled, then dealt label by label, so that any first share holds
    every label in its proportion (a classification's share has its classes)."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    groups: dict[str, list] = {}
    for row in order:
        groups.setdefault(json.dumps(row.get("label"), default=str), []).append(row)
    if len(groups) > len(rows) / 2:  # regression or near-unique labels: the shuffle is enough
        return order
    dealt, queues = [], [list(group) for group in groups.values()]
    total = len(order)
    taken = [0] * len(queues)
    for position in range(1, total + 1):
        # The label furthest behind its proportion goes next.
        index = min(range(len(queues)), key=lambda i: (taken[i] - position * len(queues[i]) / total
                                                        if taken[i] < len(queues[i]) else math.inf, i))
        dealt.append(queues[index][taken[index]])
        taken[index] += 1
    return dealt


# --- running it -------------------------------------------------------------------------


class TrialReporter:
    """A trial's Reporter (trainers/base.py): its lines in the job's log, marked
    with the trial; its epochs kept for its entry (the job's epochs are the best
    trial's, sent when it is chosen)."""

    def __init__(self, events, label: str):
        self.events, self.label, self.epochs = events, label, []

    def log(self, line: str) -> None:
        self.events.log(f"{self.label}: {line}")

    def epoch(self, stats: dict) -> None:
        self.epochs.append(dict(stats))


class Search:
    """One search job's run in its child (training/child.py calls `run`)."""

    def __init__(self, request, trainer, train_rows: list, validation_rows: list, job_dir: str, events,
                 training_run):
        self.request, self.trainer, self.events = request, trainer, events
        self.search = request.search
        self.train_rows, self.validation_rows = train_rows, validation_rows
        self.folder = os.path.join(job_dir, "search")
        self.job_dir = job_dir
        # training_run(hyperparameters, train_rows, checkpoint_dir, output_dir, reporter) -> a TrainingRun
        self.training_run = training_run
        self.state_file = os.path.join(self.folder, "state.json")
        os.makedirs(self.folder, exist_ok=True)
        self.state = self._load_state()
        self.trials: dict[int, dict] = {}

    def _load_state(self) -> dict:
        try:
            with open(self.state_file) as file:
                state = json.load(file)
        except (OSError, ValueError):
            state = {}
        state.setdefault("started", time.time())  # a resumed search keeps its first start: one budget
        state.setdefault("runs", {})
        return state

    def _save_state(self) -> None:
        with open(self.state_file + ".partial", "w") as file:
            json.dump(self.state, file)
        os.replace(self.state_file + ".partial", self.state_file)

    def run(self):
        from trainers.base import TrainingFailed

        if not self.validation_rows:
            raise TrainingFailed("A search ranks its trials on validation rows; this job has none.")
        search, request = self.search, self.request
        schema = self.trainer.hyperparameters
        base = pinned_base(request.task, request.hyperparameters, self.train_rows)
        seed = request.hyperparameters.get("seed", 42)
        candidates = configurations(schema, base, search["space"], search["trials"], seed)
        shares = share_schedule(search.get("method", "random"), len(candidates))
        self._save_state()
        self.events.log(f"search ({search.get('method', 'random')}): {len(candidates)} configurations of "
                        f"{', '.join(search['space'])}; rounds on "
                        + ", ".join(f"{share:.0%}" for share in shares) + " of the training rows")
        ordered = interleaved(self.train_rows, seed)
        for number, hyperparameters in enumerate(candidates, 1):
            self.trials[number] = {
                "trial": number, "hyperparameters": hyperparameters,
                "searched": {name: hyperparameters.get(name) for name in search["space"]},
                "status": "queued", "reason": "", "metric": search.get("metric"), "score": None, "metrics": {},
                "latency_ms": None, "size_mb": None, "share": None, "rounds": [], "elapsed_s": None,
                "rank": None, "best": False,
            }
            self._report(number)
        alive = list(self.trials)
        for round_number, share in enumerate(shares):
            rows = ordered[:max(min(MIN_SHARE_ROWS, len(ordered)), round(len(ordered) * share))]
            scored = []
            for number in alive:
                if self._over_budget():
                    self._finish(number, "over_budget", f"The time budget of {search['time_budget_s']} s ran out "
                                 "before it" + (" started." if round_number == 0 else
                                                f" trained on {share:.0%} of the rows."))
                    continue
                if self._train(number, share, rows, last=share == shares[-1]):
                    scored.append(number)
            if share == shares[-1]:
                break
            keep = max(1, math.ceil(len(scored) / ETA))
            ranked = self._ranked(scored)
            for number in ranked[keep:]:
                cutoff = self.trials[ranked[keep - 1]]["score"]
                self._finish(number, "eliminated", f"Round {round_number + 1} ({share:.0%} of the rows): "
                             f"{self._metric(number)} {_figure(self.trials[number]['score'])}; the best {keep} of "
                             f"{len(scored)} went on (the last with {_figure(cutoff)}).")
            alive = ranked[:keep]
        return self._choose()

    # --- one run ---------------------------------------------------------------------

    def _train(self, number: int, share: float, rows: list, last: bool) -> bool:
        """Train trial `number` on `rows` and measure it; True when it met the
        limits (it may go on, or be chosen)."""
        from trainers.base import TrainingFailed

        trial = self.trials[number]
        key = f"{number}@{share:.6f}"
        run_dir = os.path.join(self.folder, f"trial-{number}", f"share-{share:.6f}")
        output_dir, checkpoint_dir = os.path.join(run_dir, "output"), os.path.join(run_dir, "checkpoints")
        done = self.state["runs"].get(key)
        if done is None:
            trial["status"], trial["share"] = "running", share
            self._report(number)
            shutil.rmtree(output_dir, ignore_errors=True)
            os.makedirs(output_dir)
            os.makedirs(checkpoint_dir, exist_ok=True)
            reporter = TrialReporter(self.events, f"trial {number}" + (f" ({share:.0%} of the rows)"
                                                                        if share < 1 else ""))
            started = time.monotonic()
            try:
                result = self.trainer.train(self.training_run(trial["hyperparameters"], rows, checkpoint_dir,
                                                              output_dir, reporter))
                done = self._measured(result, output_dir, reporter.epochs, time.monotonic() - started)
            except TrainingFailed as exc:
                done = {"ok": False, "failed": f"Its training failed: {exc}"}
            except MemoryError:
                raise  # the child says what the memory cap is
            except Exception as exc:  # a library refusing one configuration: the others may still train
                reporter.log(traceback.format_exc())
                done = {"ok": False, "failed": f"Its training failed: {type(exc).__name__}: {str(exc)[:300]}"}
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the run is over: its measures are in the state
            if not (last and done.get("ok")):
                shutil.rmtree(output_dir, ignore_errors=True)  # only a whole-set run can be published
            self.state["runs"][key] = done
            self._save_state()
        went_on = self._record(number, share, done)
        if last:
            self._keep_best_output()
        return went_on

    def _keep_best_output(self) -> None:
        """Only the best whole-set run's files so far stay: the job's folder counts in the account's quota."""
        kept = self._ranked([number for number, trial in self.trials.items() if trial["status"] == "kept"])
        for number in self.trials:
            if not kept or number != kept[0]:
                shutil.rmtree(os.path.join(self.folder, f"trial-{number}", f"share-{1.0:.6f}", "output"),
                              ignore_errors=True)

    def _measured(self, result, output_dir: str, epochs: list, elapsed_s: float) -> dict:
        from uploads.archive import tree_bytes

        # A trial is ranked on its validation: never on its training rows' own metrics
        # (train_accuracy...: a model that memorises wins them) nor on a test set's.
        metrics = {name: value for name, value in (result.metrics or {}).items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)
                   and name not in ("epoch", "step", "elapsed_s", "learning_rate")
                   and (name == "train_loss" or not name.startswith(("train_", "test_")))}
        metric = self.search.get("metric") or next(
            (name for name in ("accuracy", "r2") if metrics.get(name) is not None), "validation_loss")
        if metrics.get(metric) is None:
            return {"ok": False, "failed": f"Its validation gave no {metric} (it has "
                                           f"{', '.join(sorted(metrics)) or 'no metrics'})."}
        return {"ok": True, "metric": metric, "score": metrics[metric], "metrics": metrics,
                "size_mb": tree_bytes(output_dir) / 2**20, "latency_ms": self._latency_ms(result, output_dir),
                "elapsed_s": elapsed_s, "epochs": epochs, "result": {
                    "format": result.format, "tasks": list(result.tasks), "best_epoch": result.best_epoch,
                    "metrics": result.metrics, "description": result.description,
                    "samples_per_second": result.samples_per_second}}

    def _latency_ms(self, result, output_dir: str) -> float:
        """The median time to answer one validation row, the trained files
        loaded as the service loads a version, after one answer to warm up."""
        from core.settings import Settings
        from model_registry.loaders import DEFAULT_SETTINGS
        from tasks.spec import task_spec
        from uploads import formats

        task = result.tasks[0]
        sample = self.trainer.sample_input(self.train_rows, task_spec(task).sample())
        items = [_item_for(row, sample) for row in self.validation_rows[:LATENCY_ROWS]]
        version = formats.Version(0, list(result.tasks), output_dir, "",
                                  Settings().with_overrides(self.request.settings), None, "cpu", False,
                                  DEFAULT_SETTINGS)
        served = formats.named(result.format).serve(version)
        try:
            answer = served.runners[task]
            answer([items[0]])
            times = []
            for item in items:
                started = time.perf_counter()
                answer([item])
                times.append(time.perf_counter() - started)
        finally:
            if served.on_close:
                served.on_close()
        return statistics.median(times) * 1000

    def _record(self, number: int, share: float, done: dict) -> bool:
        trial = self.trials[number]
        trial["share"] = share
        if not done.get("ok"):
            self._finish(number, "failed", done["failed"])
            return False
        trial.update({key: done[key] for key in ("metric", "score", "metrics", "latency_ms", "size_mb")})
        trial["elapsed_s"] = round((trial["elapsed_s"] or 0) + done["elapsed_s"], 3)
        trial["rounds"] = [entry for entry in trial["rounds"] if entry["share"] != share] + [
            {"share": share, "score": done["score"], "latency_ms": done["latency_ms"], "size_mb": done["size_mb"]}]
        missed = self._missed(trial)
        if missed:
            self._finish(number, "rejected", "; ".join(missed) + ".")
            return False
        trial["status"] = "kept" if share == 1 else "running"
        self._report(number)
        return True

    def _missed(self, trial: dict) -> list[str]:
        missed = []
        limit = self.search.get("max_latency_ms")
        if limit is not None and trial["latency_ms"] > limit:
            missed.append(f"latency {_figure(trial['latency_ms'])} ms is over max_latency_ms {limit}")
        limit = self.search.get("max_size_mb")
        if limit is not None and trial["size_mb"] > limit:
            missed.append(f"size {_figure(trial['size_mb'])} MB is over max_size_mb {limit}")
        return missed

    # --- the end ---------------------------------------------------------------------

    def _choose(self):
        from trainers.base import TrainingFailed, TrainingResult

        kept = self._ranked([number for number, trial in self.trials.items() if trial["status"] == "kept"])
        for rank, number in enumerate(kept, 1):
            self.trials[number]["rank"] = rank
            self.trials[number]["best"] = rank == 1
        for number in self.trials:
            self._report(number)
        if not kept:
            raise TrainingFailed(self._none_kept())
        best = kept[0]
        share_dir = os.path.join(self.folder, f"trial-{best}", f"share-{1.0:.6f}")
        done = self.state["runs"][f"{best}@{1.0:.6f}"]
        output_dir = os.path.join(self.job_dir, "output")
        shutil.rmtree(output_dir, ignore_errors=True)
        os.rename(os.path.join(share_dir, "output"), output_dir)
        shutil.rmtree(self.folder, ignore_errors=True)  # the other trials' files: the leaderboard keeps their measures
        for stats in done["epochs"]:  # the job's epochs are the kept trial's
            self.events.epoch(stats)
        trial = self.trials[best]
        result = dict(done["result"])
        result["description"] = (f"{result['description']} (search: trial {best} of {len(self.trials)}, "
                                 f"{trial['metric']} {_figure(trial['score'])}: "
                                 + ", ".join(f"{name} {value}" for name, value in trial["searched"].items()
                                             if value is not None) + ")")
        self.events.log(f"search: trial {best} is the best, {trial['metric']} {_figure(trial['score'])}")
        return TrainingResult(**result)

    def _none_kept(self) -> str:
        ended = {}
        for trial in self.trials.values():
            ended.setdefault(trial["status"], []).append(trial)
        parts = []
        for trial in ended.get("rejected", [])[:10]:
            parts.append(f"trial {trial['trial']}: {trial['reason'].rstrip('.')}")
        summary = ", ".join(f"{len(trials)} {status.replace('_', ' ')}" for status, trials in sorted(ended.items()))
        message = f"No configuration trained on the whole training set met the search's limits ({summary})."
        if parts:
            message += " " + "; ".join(parts) + "."
        if "over_budget" in ended:
            message += " Raise time_budget_s or try fewer trials."
        return message + " The leaderboard is in the job's trials."

    def _ranked(self, numbers: list[int]) -> list[int]:
        """Best first by the metric; the earlier trial first on a tie."""
        def key(number):
            trial = self.trials[number]
            return (-trial["score"] if METRICS.get(trial["metric"], True) else trial["score"], number)
        return sorted(numbers, key=key)

    def _metric(self, number: int) -> str:
        return self.trials[number]["metric"] or self.search.get("metric") or "score"

    def _over_budget(self) -> bool:
        return time.time() - self.state["started"] >= self.search["time_budget_s"]

    def _finish(self, number: int, status: str, reason: str) -> None:
        self.trials[number]["status"], self.trials[number]["reason"] = status, reason
        self._report(number)

    def _report(self, number: int) -> None:
        self.events.send("trial", trial=self.trials[number])


def _item_for(row: dict, sample):
    """A request item from a validation row, shaped as the task's sample."""
    if isinstance(row.get("features"), dict):
        return dict(row["features"])
    if isinstance(sample, dict) and "text" in sample and isinstance(row.get("text"), str):
        return {**sample, "text": row["text"]}
    return sample


def _figure(value) -> str:
    return "none" if value is None else f"{value:.4g}"
