"""text-classification with SetFit: contrastive fine-tuning of a
sentence-transformers body on pairs of the training texts, then a
logistic-regression head on the body's sentence vectors.

SetFit's body phase is a sentence-transformers (so transformers) Trainer; this
trainer gives it what a job needs through that Trainer's own hooks:

- every epoch, a sentence-transformers evaluator (HeadEvaluator) fits SetFit's
  head (a fresh copy of model.model_head, a LogisticRegression) on the current
  body's vectors of the training texts and scores the validation texts: log
  loss (the epoch's validation loss), accuracy, macro F1, per class, confusion
  matrix. SetFit's Trainer.evaluate() is never called: it loads its
  metric with `evaluate.load`, from the hub.
- transformers checkpoints the body each epoch, keeps the best by that log loss
  (load_best_model_at_end), stops early on it, and resumes from the last
  checkpoint. SetFit's train_embeddings() calls the body Trainer's train()
  without resume_from_checkpoint, so train() here sets up the same pairs and
  loss with SetFit's get_dataset() and calls it with the checkpoint itself.
- each checkpoint also holds that epoch's head (save_head), so it is a whole
  classifier; the version's head is SetFit's own, fitted on the kept body.
- the evaluator also scores the training texts (a seeded sample of at most
  run.train_metrics_rows) with the head it fitted on them: the epoch's train_
  metrics cost no encoding beyond the head's fit. A test dataset is scored once,
  with the version's head on the kept body.

Keeping on from a version: its body (a sentence-transformers folder) is the
starting point instead of the catalogue model's, trained on with the new rows'
pairs; its head is fitted again, on the new rows (the labels may change).
"""

import json
import os
import time

from marshmallow import fields, validate

from model_registry.catalogue import SENTENCE_TRANSFORMER
from trainers.base import (
    BaseHyperparameters,
    TaskTrainer,
    TrainingFailed,
    TrainingResult,
    TrainingRun,
    prefixed,
    train_metrics_sample,
)

# What the evaluator returns for the Trainer to rank epochs by; SetFit's body
# Trainer prefixes evaluation metrics with "eval_embedding_".
RANK_METRIC = "eval_embedding_log_loss"
# Each checkpoint's epoch statistics, for the result of a run that resumed after it.
EPOCH_STATS = "epoch_stats.json"


class SetFitHyperparameters(BaseHyperparameters):
    # epochs: passes of the contrastive body phase over the pairs; learning_rate:
    # the body's (SetFit's body_learning_rate).
    num_iterations = fields.Integer(load_default=20, validate=validate.Range(1, 100), metadata={
        "description": "Sentence pairs made per training text (half alike, half not); SetFit's num_iterations."})
    max_length = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(8, 512), metadata={
        "description": "Tokens read per text, longer ones cut; null: the base model's own limit."})


class SetFitTextTrainer(TaskTrainer):
    task = "text-classification"
    library = "setfit"
    dataset_formats = ("text-label",)
    default_base_model = "all-MiniLM-L6-v2"
    base_loaders = (SENTENCE_TRANSFORMER,)
    hyperparameters = SetFitHyperparameters
    limitations = ("One label per text (no multi-label). The head is SetFit's default logistic regression, fitted "
                   "after the body (no differentiable head, so no head learning rate, no end-to-end training).")

    classifies_its_labels = True
    continues_from_formats = ("setfit",)
    scores_test_rows = True
    checkpoint_files = (EPOCH_STATS,)

    def train(self, run: TrainingRun) -> TrainingResult:
        import torch

        torch.set_num_threads(run.torch_threads)
        from setfit import SetFitModel, Trainer, TrainingArguments
        from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback

        from model_registry.trained.setfit_head import save_head
        from trainers.hf_callback import last_checkpoint

        params = run.hyperparameters
        texts, labels = [row["text"] for row in run.train_rows], [str(row["label"]) for row in run.train_rows]
        classes = _check_labels(labels, [str(row["label"]) for row in run.validation_rows])
        validating = bool(run.validation_rows)

        # Keeping on: the parent's body (its folder is a sentence-transformer's; its head is not SetFit's pickle,
        # so SetFit makes a fresh one, fitted on these rows at the end).
        model = SetFitModel.from_pretrained(run.parent_dir or run.base_model_dir, local_files_only=True,
                                            labels=classes)
        _limit_length(model.model_body, params["max_length"])
        args = TrainingArguments(
            output_dir=run.checkpoint_dir, num_epochs=(params["epochs"], 1), batch_size=(params["batch_size"], 16),
            body_learning_rate=(params["learning_rate"], 1e-5), num_iterations=params["num_iterations"],
            seed=params["seed"], report_to="none", show_progress_bar=False,
            eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch", logging_first_step=False,
            # The best checkpoint and the last (to resume from) are all a run needs.
            save_total_limit=2,
            load_best_model_at_end=validating, metric_for_best_model=RANK_METRIC if validating else None,
            greater_is_better=False,
        )
        head_evaluator, epoch_reporter = _epoch_hooks()
        sample = train_metrics_sample(list(range(len(texts))), run.train_metrics_rows, params["seed"])
        evaluator = head_evaluator(model, texts, labels, run.validation_rows, sample)
        callbacks = [epoch_reporter(run.reporter, evaluator, run.checkpoint_dir, save_head)]
        if validating and params["early_stopping_patience"] > 0:
            callbacks.append(EarlyStoppingCallback(params["early_stopping_patience"]))
        trainer = Trainer(model=model, args=args, train_dataset=_dataset(texts, labels), callbacks=callbacks)
        # The job reports epochs itself; the Trainer's progress bars and printed logs would only fill its stderr.
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)

        # SetFit's train_embeddings(), with the resume it does not pass on.
        body_trainer = trainer.st_trainer
        body_trainer.train_dataset, body_trainer.loss = trainer.get_dataset(texts, labels, args=args)
        body_trainer.eval_dataset, body_trainer.evaluator = None, evaluator
        resume_from = last_checkpoint(run.checkpoint_dir, required=self.checkpoint_files)
        if resume_from:
            run.reporter.log(f"Resuming from {os.path.basename(resume_from)}.")
        output = body_trainer.train(resume_from_checkpoint=resume_from)
        # SetFit's head phase, on the kept (best) body.
        trainer.train_classifier(texts, labels, args=args)

        model.model_body.save_pretrained(run.output_dir)
        save_head(model.model_head, run.output_dir)
        # The kept epoch's statistics, from its checkpoint: it may have run before a crash.
        kept_checkpoint = body_trainer.state.best_model_checkpoint if validating else None
        with open(os.path.join(kept_checkpoint or last_checkpoint(run.checkpoint_dir, required=(EPOCH_STATS,)), EPOCH_STATS)) as stats_file:
            metrics = json.load(stats_file)
        description = f"SetFit classifier of {len(classes)} labels, from {run.base_model or 'a sentence-transformer'}."
        _write_trained_json(run, classes, description)
        return TrainingResult(
            format="setfit", tasks=[self.task], best_epoch=metrics["epoch"], metrics=metrics, description=description,
            # Sentence pairs per second of the body phase: SetFit trains on pairs made from the texts.
            samples_per_second=output.metrics.get("train_samples_per_second"),
            test_metrics=_test_metrics(model, run.test_rows),
            continued=("continued from its sentence-transformer body's weights; the head fitted again on the new rows"
                       if run.parent_dir else ""),
        )


def _test_metrics(model, test_rows: list) -> dict | None:
    """The version (the kept body and its head) scored on the test rows."""
    if not test_rows:
        return None
    from trainers.metrics import scored_classification

    vectors = model.model_body.encode([row["text"] for row in test_rows], show_progress_bar=False)
    head = model.model_head
    metrics = scored_classification([str(row["label"]) for row in test_rows],
                                    [str(label) for label in head.predict(vectors)], [str(c) for c in head.classes_],
                                    head.predict_proba(vectors))
    return {"loss": metrics.pop("log_loss"), **metrics}


def _check_labels(train_labels: list[str], validation_labels: list[str]) -> list[str]:
    classes = sorted(set(train_labels))
    if len(classes) < 2:
        raise TrainingFailed(f"A classifier needs at least two labels in its training rows; they have {classes}.")
    unseen = sorted(set(validation_labels) - set(classes))
    if unseen:
        raise TrainingFailed(f"The validation rows have labels no training row has: {unseen}. Add training "
                             "examples of them, or take those rows out.")
    return classes


def _limit_length(body, max_length: int | None) -> None:
    """Read at most max_length tokens per text, within what the base model's positions allow."""
    if max_length is None:
        return
    positions = getattr(getattr(body[0], "auto_model", None), "config", None)
    limit = getattr(positions, "max_position_embeddings", None) or max_length
    body.max_seq_length = min(max_length, limit)


def _dataset(texts: list[str], labels: list[str]):
    from datasets import Dataset

    return Dataset.from_dict({"text": texts, "label": labels})


def _write_trained_json(run: TrainingRun, classes: list[str], description: str) -> None:
    import setfit

    with open(os.path.join(run.output_dir, "trained.json"), "w") as trained_file:
        json.dump({"tasks": ["text-classification"], "description": description, "format": "setfit",
                   "base_model": run.base_model, "library": f"setfit {setfit.__version__}", "labels": classes},
                  trained_file, indent=2)


def _epoch_hooks():
    """The evaluator and the callback classes, defined once their libraries are
    imported (this module imports none at import time: web workers read it)."""
    from sentence_transformers.base.evaluation import BaseEvaluator
    from transformers import TrainerCallback

    class HeadEvaluator(BaseEvaluator):
        """Fits SetFit's head on the body as it is now and scores the validation
        rows; keeps the full statistics (per class, confusion matrix) for the
        reporter, and returns the numbers the Trainer ranks and stops by."""

        def __init__(self, model, texts, labels, validation_rows, train_sample):
            super().__init__()
            self.train_sample = train_sample  # indices of the texts the train_ metrics score
            self.greater_is_better = False
            self.primary_metric = "log_loss"
            self.model, self.texts, self.labels = model, texts, labels
            self.validation_texts = [row["text"] for row in validation_rows]
            self.validation_labels = [str(row["label"]) for row in validation_rows]
            self.head = None
            self.last: dict = {}

        def __call__(self, body, output_path=None, epoch=-1, steps=-1) -> dict:
            from sklearn.base import clone

            from trainers.metrics import classification_metrics

            self.head = clone(self.model.model_head)
            train_vectors = body.encode(self.texts, show_progress_bar=False)
            self.head.fit(train_vectors, self.labels)
            sampled = train_vectors[self.train_sample]
            train_metrics = classification_metrics(
                [self.labels[i] for i in self.train_sample], [str(label) for label in self.head.predict(sampled)],
                list(self.head.classes_), self.head.predict_proba(sampled))
            train_metrics = {**prefixed(train_metrics, "train_"), "train_metrics_rows": len(self.train_sample)}
            if not self.validation_texts:
                self.last = {**dict.fromkeys(("validation_loss", "accuracy", "macro_f1", "per_class",
                                              "confusion_matrix")), **train_metrics}
                return {}
            vectors = body.encode(self.validation_texts, show_progress_bar=False)
            predicted = [str(label) for label in self.head.predict(vectors)]
            metrics = classification_metrics(self.validation_labels, predicted, list(self.head.classes_),
                                              self.head.predict_proba(vectors))
            self.last = {"validation_loss": metrics.pop("log_loss"), **metrics, **train_metrics}
            return {"log_loss": self.last["validation_loss"], "accuracy": metrics["accuracy"],
                    "macro_f1": metrics["macro_f1"]}

    class EpochReporter(TrainerCallback):
        """Reports each epoch with the evaluator's statistics, and saves the
        epoch's head into its checkpoint."""

        def __init__(self, reporter, evaluator, checkpoint_dir, save_head):
            self.reporter, self.evaluator = reporter, evaluator
            self.checkpoint_dir, self.save_head = checkpoint_dir, save_head
            self.started = time.monotonic()
            self.train_loss = self.learning_rate = self.stats = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            # SetFit renames the body Trainer's "loss" to "embedding_loss".
            if "embedding_loss" in logs:
                self.train_loss = float(logs["embedding_loss"])
            if "learning_rate" in logs:
                self.learning_rate = float(logs["learning_rate"])

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            stats = {
                "epoch": int(round(state.epoch or 0)), "step": int(state.global_step),
                "train_loss": self.train_loss, "validation_loss": None, "learning_rate": self.learning_rate,
                "elapsed_s": round(time.monotonic() - self.started, 3), **self.evaluator.last,
            }
            self.reporter.epoch(stats)
            self.stats = stats

        def on_save(self, args, state, control, **kwargs):
            folder = os.path.join(self.checkpoint_dir, f"checkpoint-{state.global_step}")
            self.save_head(self.evaluator.head, folder)
            # Written last, whole or not at all: it marks the checkpoint complete (last_checkpoint).
            with open(os.path.join(folder, EPOCH_STATS + ".partial"), "w") as stats_file:
                json.dump(self.stats, stats_file)
            os.replace(os.path.join(folder, EPOCH_STATS + ".partial"), os.path.join(folder, EPOCH_STATS))

    return HeadEvaluator, EpochReporter
