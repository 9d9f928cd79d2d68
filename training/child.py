"""python -m training.child JOB_DIR: run one training job, from its job.json (a
TrainingRequest, training/child_records.py), to the files of a model version.

The job runner (training/jobs.py) starts this process for every attempt of a job
and reads what it reports, one JSON object per line on the file descriptor
named by INFER_TRAINING_EVENTS_FD: log lines, each epoch's statistics, the row
counts, and at the end the result (a TrainingResult) or why it failed. It has no database access
and none of the service's secrets: all it sees is its job folder, the dataset's
rows and the base model's files. A crash (killed, out of memory) ends it
without a result; the runner then starts it again, and the trainer resumes from
the last epoch checkpoint in JOB_DIR/checkpoints.

It holds an exclusive lock on JOB_DIR/lock while it runs, so a job never trains
twice at once on this host, whatever the database says.
"""

import fcntl
import json
import os
import random
import resource
import shutil
import sys
import threading
import time
import traceback

from .child_priority import lower_priority
from .child_records import TrainingRequest, TrainingResult

# Exit status when another process holds the job's lock: not a crash of this job.
ALREADY_RUNNING = 75
# What a library's error says when the address-space cap (INFER_TRAINING_MEMORY_MB) stopped it.
OUT_OF_MEMORY = ("memory", "cannot allocate", "failed to map segment")


class Events:
    """What the child reports to the runner, one JSON line per event."""

    def __init__(self, fd: int):
        self._out = os.fdopen(fd, "w", buffering=1)
        self._lock = threading.Lock()

    def send(self, event: str, **fields) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            try:
                self._out.write(line + "\n")
            except BrokenPipeError:  # the runner is gone: nobody will record this job's progress
                os._exit(1)

    # The Reporter protocol of trainers/base.py
    def log(self, line: str) -> None:
        self.send("log", line=str(line))

    def epoch(self, stats: dict) -> None:
        self.send("epoch", stats=stats)


def events_channel() -> Events:
    """The events pipe the runner named. In the sandbox it is this process's
    stdout: moved to a descriptor of its own, and stdout pointed at stderr (the
    job's child.out), so nothing a library prints can pass for an event."""
    fd = int(os.environ["INFER_TRAINING_EVENTS_FD"])
    if fd == 1:
        fd = os.dup(1)
        os.dup2(2, 1)
    return Events(fd)


def lock_job(job_dir: str):
    handle = open(os.path.join(job_dir, "lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None
    return handle


def exit_with_parent() -> None:
    """The runner that started this process died: stop, rather than train on
    unobserved (the job is resumed by whichever runner takes it over)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def split_rows(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """Hold out `fraction` of the rows for validation, the same way on every
    attempt (a resumed job validates on the same rows); stratified by label when
    every label has at least two rows."""
    if not fraction:
        return rows, []
    count = max(1, round(len(rows) * fraction))
    if count >= len(rows):
        raise ValueError(f"validation_split {fraction} leaves no rows to train on ({len(rows)} rows)")
    labels = [row.get("label") for row in rows] if rows and isinstance(rows[0], dict) else []
    label_counts = {}
    for label in labels:
        label_counts[label] = label_counts.get(label, 0) + 1
    stratify = (labels and all(isinstance(label, str) for label in labels) and min(label_counts.values()) >= 2
                and len(label_counts) <= count)
    if stratify:
        from sklearn.model_selection import train_test_split

        train, validation = train_test_split(rows, test_size=count, random_state=seed, stratify=labels)
        return list(train), list(validation)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [row for i, row in enumerate(rows) if i not in held], [row for i, row in enumerate(rows) if i in held]


def run(request: TrainingRequest, job_dir: str, events: Events) -> TrainingResult:
    import torch

    from core.settings import Settings
    from model_registry.loaders import DEFAULT_SETTINGS
    from tasks.spec import task_spec, trainer_for
    from trainers.base import TrainingFailed, TrainingRun
    from uploads import formats

    from .datasets import read_rows

    threads = request.torch_threads
    torch.set_num_threads(threads)
    if request.memory_mb and not torch.cuda.is_available():
        # On CPU only: CUDA maps far more address space than it uses.
        limit = request.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    trainer = trainer_for(request.task)
    rows = read_rows(request.dataset_dir)
    if request.validation_dataset_dir:
        train_rows, validation_rows = rows, read_rows(request.validation_dataset_dir)
    else:
        try:
            train_rows, validation_rows = split_rows(rows, request.validation_split or 0.0,
                                                     request.hyperparameters.get("seed", 42))
        except ValueError as exc:
            raise TrainingFailed(str(exc)) from None
    test_rows = read_rows(request.test_dataset_dir) if request.test_dataset_dir else []
    events.send("rows", train=len(train_rows), validation=len(validation_rows))
    output_dir = os.path.join(job_dir, "output")
    shutil.rmtree(output_dir, ignore_errors=True)  # what a crashed attempt left half-written
    os.makedirs(output_dir)
    checkpoint_dir = os.path.join(job_dir, "checkpoints")
    os.makedirs(checkpoint_dir, exist_ok=True)
    parent = request.parent
    events.log(f"training {request.task} with {trainer.library}"
               + (f", keeping on from your version {parent['model']}@{parent['version']}," if parent
                  else f" from {request.base_model}" if request.base_model else "")
               + f" on {len(train_rows)} rows, validating on {len(validation_rows)}"
               + (f", testing on {len(test_rows)}" if test_rows else ""))

    def training_run(hyperparameters, rows, checkpoints, output, reporter) -> TrainingRun:
        return TrainingRun(
            job_id=request.job_id, task=request.task, base_model=request.base_model,
            base_model_dir=request.base_model_dir, base_model_file=request.base_model_file,
            hyperparameters=hyperparameters, train_rows=rows, validation_rows=validation_rows,
            dataset_format=request.dataset_format, dataset_dir=request.dataset_dir, checkpoint_dir=checkpoints,
            output_dir=output, reporter=reporter, torch_threads=threads, parent_dir=request.parent_dir,
            parent=parent, test_rows=test_rows, train_metrics_rows=request.train_metrics_rows,
            validation_dataset_dir=request.validation_dataset_dir, test_dataset_dir=request.test_dataset_dir,
        )

    if request.search:  # several configurations, the best one's files left in output_dir
        from .search import Search

        result = Search(request, trainer, train_rows, validation_rows, job_dir, events, training_run).run()
    else:
        result = trainer.train(training_run(request.hyperparameters, train_rows, checkpoint_dir, output_dir, events))
    if parent:
        events.log(f"kept on from {parent['model']}@{parent['version']}: {result.continued}")
    # The new version must serve before it is published: load it as the service
    # will and run each task once, as a build does with an upload.
    version = formats.Version(0, list(result.tasks), output_dir, "", Settings().with_overrides(request.settings), None,
                              "cpu", False, DEFAULT_SETTINGS)
    served = formats.named(result.format).serve(version)
    try:
        for task in result.tasks:
            item = trainer.sample_input(train_rows, task_spec(task).sample())
            output = served.runners[task]([item])[0]
            problem = task_spec(task).check_answer(item, output)
            if problem:
                raise TrainingFailed(f"the trained model's answer to a sample {task} input {problem}")
            events.log(f"{task}: the trained model answered its sample")
    finally:
        if served.on_close:
            served.on_close()
    return TrainingResult(format=result.format, tasks=list(result.tasks), best_epoch=result.best_epoch,
                          metrics=result.metrics, description=result.description,
                          samples_per_second=result.samples_per_second, test_metrics=result.test_metrics,
                          continued=result.continued)


def main(argv: list[str]) -> int:
    job_dir = argv[1]
    events = events_channel()
    lock = lock_job(job_dir)
    if lock is None:
        events.log("another process is training this job; this one stops")
        return ALREADY_RUNNING
    exit_with_parent()
    with open(os.path.join(job_dir, "job.json")) as job_file:
        request = TrainingRequest.from_dict(json.load(job_file))
    lower_priority(request)
    from trainers.base import TrainingFailed

    try:
        events.send("result", result=run(request, job_dir, events).to_dict())
    except TrainingFailed as exc:
        events.send("failed", message=str(exc))
    except Exception as exc:
        events.log(traceback.format_exc())
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError) or any(word in message.lower() for word in OUT_OF_MEMORY):
            # The same data and settings would run out again: a failure, not a crash to retry.
            message = (f"The training ran out of memory (INFER_TRAINING_MEMORY_MB: {request.memory_mb} MB); "
                       f"lower batch_size or max_length, or train a smaller base model. ({message[:300]})")
        events.send("failed", message=message)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
