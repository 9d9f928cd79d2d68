"""Report each epoch of a transformers Trainer (and the trainers built on it:
sentence-transformers, TRL) to the job, and stop it early by validation loss.

The Trainer logs the training loss and learning rate, then evaluates, then
saves its checkpoint, at the end of every epoch (eval/save/logging strategies
"epoch"); on_evaluate has all of an epoch's numbers.
"""

import math
import time

from transformers import TrainerCallback


class EpochReporter(TrainerCallback):
    """Sends each epoch's statistics to run.reporter; `extra(metrics)` adds a task's
    own (perplexity from the loss, say) to what the evaluation returned.

    With no validation rows (validating False) the Trainer never evaluates: each
    epoch is reported when its checkpoint is saved, which comes after its log,
    without validation values."""

    def __init__(self, reporter, extra=None, validating: bool = True):
        self.reporter = reporter
        self.extra = extra or (lambda metrics: {})
        self.validating = validating
        self.started = time.monotonic()
        self.train_loss = None
        self.learning_rate = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.train_loss = float(logs["loss"])
        if "learning_rate" in logs:
            self.learning_rate = float(logs["learning_rate"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.reporter.epoch(self._stats(state.epoch, state.global_step, metrics,
                                        round(time.monotonic() - self.started, 3)))

    def _stats(self, epoch, step, metrics, elapsed_s) -> dict:
        metrics = dict(metrics or {})
        validation_loss = metrics.pop("eval_loss", None)
        stats = {
            "epoch": int(round(epoch or 0)),
            "step": int(step),
            "train_loss": self.train_loss,
            "validation_loss": None if validation_loss is None or math.isnan(validation_loss) else float(validation_loss),
            "learning_rate": self.learning_rate,
            "elapsed_s": elapsed_s,
        }
        for key, value in metrics.items():
            if key.startswith("eval_") and not key.endswith(("_runtime", "_per_second", "preparation_time")):
                stats[key.removeprefix("eval_")] = value
        stats.update(self.extra(stats))
        return stats

    def on_train_begin(self, args, state, control, **kwargs):
        """A run resumed from a checkpoint carries its earlier epochs in the
        checkpoint's log: report them again, marked restored, so that an epoch
        whose report died with a killed process (after its checkpoint was
        saved) is still recorded; the job keeps a report it already has."""
        for entry in state.log_history:
            self.on_log(args, state, control, logs=entry)
            # An evaluation's entry (eval_loss, or only an evaluator's eval_ metrics
            # when a run without validation rows still scores its training rows).
            evaluated = any(key.startswith("eval_") and not key.endswith(("_runtime", "_per_second"))
                            for key in entry)
            if evaluated or (not self.validating and "loss" in entry):
                stats = self._stats(entry.get("epoch"), entry.get("step", 0), entry, None)
                self.reporter.epoch({**stats, "restored": True})
        self.train_loss = self.learning_rate = None

    def on_save(self, args, state, control, **kwargs):
        if not self.validating:
            self.on_evaluate(args, state, control, metrics={})


def epoch_arguments(hyperparameters: dict, checkpoint_dir: str) -> dict:
    """The TrainingArguments every epoch-reporting, resumable run shares: evaluate,
    log and checkpoint once per epoch, keep the best epoch by validation loss."""
    return {
        "output_dir": checkpoint_dir,
        "num_train_epochs": hyperparameters["epochs"],
        "per_device_train_batch_size": hyperparameters["batch_size"],
        "per_device_eval_batch_size": hyperparameters["batch_size"],
        "learning_rate": hyperparameters["learning_rate"],
        "seed": hyperparameters["seed"],
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
        # The best checkpoint and the last (to resume from) are all a run needs.
        "save_total_limit": 2,
        "report_to": [],
        "disable_tqdm": True,
    }


def last_checkpoint(checkpoint_dir: str, required: tuple[str, ...] = ()) -> str | None:
    """The newest complete checkpoint a Trainer left there, to resume from.

    A process killed while saving leaves a checkpoint folder without its
    trainer_state.json (the Trainer writes it after the weights, optimizer and
    RNG states) or with half of it, or without the `required` files a callback
    adds in on_save: such a folder is removed, and the one before it is the
    checkpoint to resume from."""
    import os
    import shutil

    from trainers.checkpoints import is_complete, numbered

    for _step, name in numbered(checkpoint_dir):
        folder = os.path.join(checkpoint_dir, name)
        if is_complete(folder, required):
            return folder
        shutil.rmtree(folder, ignore_errors=True)  # a save the crash cut short
    return None


def best_epoch(state) -> int | None:
    """The epoch of the checkpoint the Trainer kept as best (by validation loss)."""
    best = getattr(state, "best_model_checkpoint", None)
    if not best:
        return None
    step = int(best.rstrip("/").rsplit("-", 1)[-1])
    for entry in state.log_history:
        if entry.get("step") == step and "epoch" in entry:
            return int(round(entry["epoch"]))
    return None
