"""text-vectorisation: fine-tune a sentence-transformers model on pairs of texts
with the library's own SentenceTransformerTrainer.

- text-pairs {anchor, positive} and text-triplets {anchor, positive, negative}:
  MultipleNegativesRankingLoss (each anchor's positive against the other
  positives of its batch, and its negative), batches without duplicate texts
  (a duplicate would be scored as a negative of itself).
- scored-pairs {sentence1, sentence2, score in [0, 1]}: CoSENTLoss (the
  ranking of the pairs' cosine similarities), or CosineSimilarityLoss (their
  squared distance to the scores).

Each epoch the Trainer evaluates (the loss on the validation rows, plus a cheap
metric of what the vectors are for: right_positive_accuracy for pairs and
triplets, spearman_cosine for scored pairs), reports it (hf_callback), and
checkpoints; the best epoch by validation loss is kept, and a rerun resumes
from the last checkpoint. The output is a sentence-transformers folder, served
by the "huggingface" format like any uploaded one.

The same evaluator call also scores the metric on the training rows (a seeded
sample of at most run.train_metrics_rows), reported as train_<metric> with
train_metrics_rows: one more encoding pass per epoch, no second evaluation loop.
A test dataset is scored once, after training, by the kept epoch's model with
the same metric (TrainingResult.test_metrics, with its rows); not its loss,
which for MultipleNegativesRankingLoss depends on which rows share a batch.

Keeping on from a version this trainer made: that folder is the starting point,
trained on with the new rows.
"""

import json
import os
from functools import partial

from marshmallow import fields, validate

from model_registry.catalogue import SENTENCE_TRANSFORMER
from trainers.base import (
    BaseHyperparameters,
    TaskTrainer,
    TrainingFailed,
    TrainingResult,
    TrainingRun,
    train_metrics_sample,
)

# The columns of each dataset format, in the order the losses read them.
COLUMNS = {
    "text-pairs": ("anchor", "positive"),
    "text-triplets": ("anchor", "positive", "negative"),
    "scored-pairs": ("sentence1", "sentence2", "score"),
}
# Each reported epoch's statistics, kept beside the checkpoints: the result's
# metrics are the kept epoch's, which may have run before a crash.
EPOCH_STATS_DIR = "epoch_stats"


class SentencePairsHyperparameters(BaseHyperparameters):
    scored_pairs_loss = fields.String(load_default="cosent", validate=validate.OneOf(["cosent", "cosine"]), metadata={
        "description": "For scored-pairs: cosent (CoSENTLoss: the pairs' similarities ranked as their scores are) "
                       "or cosine (CosineSimilarityLoss: each similarity pulled to its score)."})
    max_length = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(8, 512), metadata={
        "description": "Tokens read per text, longer ones cut; null: the base model's own limit."})


class SentencePairsTrainer(TaskTrainer):
    task = "text-vectorisation"
    library = "sentence-transformers"
    dataset_formats = tuple(COLUMNS)
    default_base_model = "all-MiniLM-L6-v2"
    base_loaders = (SENTENCE_TRANSFORMER,)
    continues_from_formats = ("huggingface",)
    hyperparameters = SentencePairsHyperparameters
    scores_test_rows = True
    limitations = ("Full fine-tuning of the whole model (no adapters, no Matryoshka dimensions); one dataset and "
                   "one loss per job; hard negatives only as the triplets give them (none are mined).")

    def train(self, run: TrainingRun) -> TrainingResult:
        import torch

        torch.set_num_threads(run.torch_threads)
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
        from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
        from sentence_transformers.base.sampler import BatchSamplers
        from trainers.hf_callback import best_epoch, epoch_arguments, last_checkpoint

        params, columns = run.hyperparameters, COLUMNS.get(run.dataset_format)
        if columns is None:
            raise TrainingFailed(f"text-vectorisation trains on {', '.join(COLUMNS)}, not {run.dataset_format}.")
        validating = bool(run.validation_rows)

        # Keeping on: the parent version is a sentence-transformers folder this trainer saved.
        model = SentenceTransformer(run.parent_dir or run.base_model_dir, local_files_only=True,
                                    trust_remote_code=False)
        if params["max_length"]:
            model.max_seq_length = min(params["max_length"], _position_limit(model) or params["max_length"])
        arguments = epoch_arguments(params, run.checkpoint_dir)
        if not validating:
            # Still "evaluated" each epoch (an evaluator with nothing to score), so every
            # epoch is reported; the last is kept.
            arguments.update(load_best_model_at_end=False, metric_for_best_model=None)
        if run.dataset_format != "scored-pairs":
            arguments["batch_sampler"] = BatchSamplers.NO_DUPLICATES
        reporter, callbacks = epoch_reporting(run, validating)

        def dataset(rows):
            return Dataset.from_dict({column: [row[column] for row in rows] for column in columns})

        trainer = SentenceTransformerTrainer(
            model=model, args=Arguments(**arguments), train_dataset=dataset(run.train_rows),
            eval_dataset=dataset(run.validation_rows) if validating else None,
            loss=_loss(run.dataset_format, params["scored_pairs_loss"], model),
            evaluator=with_train_metrics(run, partial(_evaluator, run.dataset_format, batch_size=params["batch_size"])),
            callbacks=callbacks,
        )
        resume_from = last_checkpoint(run.checkpoint_dir)
        if resume_from:
            run.reporter.log(f"Resuming from {os.path.basename(resume_from)}.")
        output = trainer.train(resume_from_checkpoint=resume_from)

        # load_best_model_at_end has put the best epoch's weights back into the model.
        model.save_pretrained(run.output_dir)
        kept = (best_epoch(trainer.state) if validating else None) or int(round(trainer.state.epoch))
        metrics = reporter.stats_of(kept)
        description = (f"Sentence vectors fine-tuned on {len(run.train_rows)} {run.dataset_format} rows, "
                       f"from {run.base_model or 'a sentence-transformer'}.")
        _write_trained_json(run, description)
        test_metrics = test_rows_metrics(model, run.test_rows,
                                         partial(_evaluator, run.dataset_format, batch_size=params["batch_size"]))
        return TrainingResult(format="huggingface", tasks=[self.task], best_epoch=kept, metrics=metrics,
                              description=description, test_metrics=test_metrics,
                              samples_per_second=output.metrics.get("train_samples_per_second"),
                              continued="continued from its weights" if run.parent_dir else "")


def _position_limit(model) -> int | None:
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    return getattr(config, "max_position_embeddings", None)


def _loss(dataset_format: str, scored_pairs_loss: str, model):
    from sentence_transformers.sentence_transformer import losses

    if dataset_format != "scored-pairs":
        return losses.MultipleNegativesRankingLoss(model)
    if scored_pairs_loss == "cosine":
        return losses.CosineSimilarityLoss(model)
    return losses.CoSENTLoss(model)


def _evaluator(dataset_format: str, rows: list, name: str = "", batch_size: int = 16):
    """The epoch's metric beyond the loss: cheap, computed on the validation rows
    (or, named "train", on the training rows: its metrics are then train_<metric>)."""
    from sentence_transformers.base.evaluation import BaseEvaluator

    if not rows:
        return _nothing_to_score(BaseEvaluator)
    if dataset_format == "scored-pairs":
        from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

        return EmbeddingSimilarityEvaluator([row["sentence1"] for row in rows], [row["sentence2"] for row in rows],
                                            [row["score"] for row in rows], batch_size=batch_size, name=name,
                                            similarity_fn_names=["cosine"], write_csv=False)
    return _right_positive_accuracy(BaseEvaluator, rows, batch_size, name)


def _nothing_to_score(base):
    class NothingToScore(base):
        """No validation rows: the Trainer still "evaluates" each epoch, and so reports it."""

        def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict:
            return {}

    return NothingToScore()


def _right_positive_accuracy(base, rows: list, batch_size: int, name: str):
    class RightPositiveAccuracy(base):
        """The share of validation anchors whose most similar text, among every
        validation positive (and negative), is their own positive: what a search
        over the vectors would get right first."""

        def __init__(self):
            super().__init__()
            self.primary_metric = "right_positive_accuracy"
            self.anchors = [row["anchor"] for row in rows]
            self.candidates = [row["positive"] for row in rows] + [row["negative"] for row in rows if "negative" in row]

        def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict:
            import torch

            def vectors(texts):
                return model.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)

            anchors, candidates = vectors(self.anchors), vectors(self.candidates)
            nearest = (anchors @ candidates.T).argmax(dim=1)
            right = nearest == torch.arange(len(self.anchors), device=nearest.device)
            return self.prefix_name_to_metrics({"right_positive_accuracy": float(right.float().mean())}, name)

    return RightPositiveAccuracy()


def with_train_metrics(run: TrainingRun, evaluator_of):
    """The epoch's evaluator: `evaluator_of(rows, name)`'s metrics on the validation
    rows, and on the training rows (all, or a seeded sample of run.train_metrics_rows)
    named "train" (train_<metric>, and so kept apart in the model card's data too),
    with train_metrics_rows. The Trainer prefixes them all eval_, which the epoch
    reporter takes off again."""
    from sentence_transformers.base.evaluation import BaseEvaluator

    train_rows = train_metrics_sample(run.train_rows, run.train_metrics_rows, run.hyperparameters["seed"])

    class WithTrainMetrics(BaseEvaluator):
        def __init__(self):
            super().__init__()
            self.validation, self.train = evaluator_of(run.validation_rows), evaluator_of(train_rows, "train")
            self.primary_metric = getattr(self.validation, "primary_metric", None)

        def __call__(self, model, output_path=None, epoch=-1, steps=-1) -> dict:
            # No output_path for the train-set pass: its numbers are the epoch report's only.
            validation = self.validation(model, output_path, epoch, steps)
            train = self.train(model, None, epoch, steps)
            return {**validation, **train, "train_metrics_rows": len(train_rows)}

    return WithTrainMetrics()


def test_rows_metrics(model, test_rows: list, evaluator_of) -> dict | None:
    """The kept model's metric on the test rows (None: no test dataset)."""
    if not test_rows:
        return None
    return {**evaluator_of(test_rows)(model), "rows": len(test_rows)}


def epoch_reporting(run: TrainingRun, validating: bool) -> tuple["_RecordingReporter", list]:
    """The run's reporter, keeping each epoch's statistics on disk too (the kept
    epoch's are read back at the end), and the Trainer callbacks that report each
    epoch and, with a validation set, stop early after early_stopping_patience."""
    from transformers import EarlyStoppingCallback

    from trainers.hf_callback import EpochReporter

    reporter = _RecordingReporter(run.reporter, os.path.join(run.checkpoint_dir, EPOCH_STATS_DIR))
    callbacks = [EpochReporter(reporter)]
    patience = run.hyperparameters["early_stopping_patience"]
    if validating and patience > 0:
        callbacks.append(EarlyStoppingCallback(patience))
    return reporter, callbacks


class _RecordingReporter:
    """Passes reports on, and writes each epoch's statistics to a file (an epoch
    run again after a crash writes its file again)."""

    def __init__(self, reporter, directory: str):
        self.reporter, self.directory = reporter, directory
        os.makedirs(directory, exist_ok=True)

    def log(self, line: str) -> None:
        self.reporter.log(line)

    def epoch(self, stats: dict) -> None:
        self.reporter.epoch(stats)
        with open(os.path.join(self.directory, f"epoch-{stats['epoch']}.json"), "w") as stats_file:
            json.dump(stats, stats_file)

    def stats_of(self, epoch: int) -> dict:
        with open(os.path.join(self.directory, f"epoch-{epoch}.json")) as stats_file:
            return json.load(stats_file)


def _write_trained_json(run: TrainingRun, description: str) -> None:
    import sentence_transformers

    with open(os.path.join(run.output_dir, "trained.json"), "w") as trained_file:
        json.dump({"tasks": ["text-vectorisation"], "description": description, "format": "huggingface",
                   "base_model": run.base_model,
                   "library": f"sentence-transformers {sentence_transformers.__version__}",
                   "dataset_format": run.dataset_format}, trained_file, indent=2)
