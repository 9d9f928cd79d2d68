"""A build's check of a model, task by task: each task's spec gives the sample
item the model runs on and the check of its answer (tasks/answers.py)."""

from tasks.spec import task_spec  # importing tasks registers every task's spec


def sample_item(task: str, emotion_threshold: float | None = None):
    """The task's sample batch item (emotion_threshold: unused, the threshold is a load-time setting)."""
    return task_spec(task).sample()


def shape_problem(task: str, item, output) -> str | None:
    """None if the output fits the task, else what is wrong."""
    return task_spec(task).check_answer(item, output)
