"""Running a trainer directly, as the job's child process does, with what it reports kept in lists."""

import os

from trainers.base import TrainingRun


class ListReporter:
    """Keeps every log line and epoch report; `crash_at_epoch` raises Crashed when
    that epoch is reported (a child killed after the previous epoch's checkpoint)."""

    def __init__(self, crash_at_epoch: int | None = None):
        self.lines: list[str] = []
        self.epochs: list[dict] = []
        self.crash_at_epoch = crash_at_epoch

    def log(self, line: str) -> None:
        self.lines.append(line)

    def epoch(self, stats: dict) -> None:
        if self.crash_at_epoch is not None and stats["epoch"] >= self.crash_at_epoch:
            raise Crashed(stats["epoch"])
        self.epochs.append(stats)


class Crashed(Exception):
    pass


def make_run(tmp_path, trainer, train_rows, validation_rows, dataset_format, hyperparameters=None,
             base_model=None, base_model_dir=None, base_model_file=None, reporter=None, dataset_dir=None,
             output_name="output") -> TrainingRun:
    """A TrainingRun of `trainer` whose checkpoints live under tmp_path (shared by
    every run made with the same tmp_path: a second run resumes the first)."""
    params = trainer.hyperparameters().load(hyperparameters or {})
    output_dir = os.path.join(tmp_path, output_name)
    os.makedirs(output_dir, exist_ok=True)
    return TrainingRun(
        job_id="job_test", task=trainer.task, base_model=base_model, base_model_dir=base_model_dir,
        base_model_file=base_model_file, hyperparameters=params, train_rows=train_rows,
        validation_rows=validation_rows, dataset_format=dataset_format, dataset_dir=dataset_dir or str(tmp_path),
        checkpoint_dir=os.path.join(tmp_path, "checkpoints"), output_dir=output_dir,
        reporter=reporter or ListReporter(), torch_threads=1,
    )
