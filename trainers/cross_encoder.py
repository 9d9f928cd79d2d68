"""rerank: fine-tune a cross-encoder on scored pairs with sentence-transformers' own
CrossEncoderTrainer.

- scored-pairs {sentence1, sentence2, score in [0, 1]}: sentence1 is the query,
  sentence2 the document, score how relevant it is; BinaryCrossEntropyLoss pulls
  the sigmoid of the model's logit to the score (what the served score is).

Each epoch the Trainer evaluates (the loss on the validation rows, and the
Spearman correlation of the model's scores with theirs: is the order right),
reports it (hf_callback), and checkpoints; the best epoch by validation loss is
kept, and a rerun resumes from the last checkpoint, as for the sentence-pair
trainer (trainers/sentence_pairs.py, whose epoch bookkeeping this shares). The
output is a CrossEncoder folder, served by the "huggingface" format's
cross-encoder loader like an uploaded one.

The same evaluator call scores the training rows too (a seeded sample of at most
run.train_metrics_rows): train_pearson and train_spearman, with
train_metrics_rows. A test dataset is scored once, after training, by the kept
epoch's model: pearson and spearman on its rows, and the loss (the binary
cross-entropy of the scores' logits, the mean over its rows).
"""

import json
import os
from functools import partial

from marshmallow import fields, validate

from model_registry.catalogue import CROSS_ENCODER
from trainers.base import BaseHyperparameters, TaskTrainer, TrainingFailed, TrainingResult, TrainingRun
from trainers.sentence_pairs import _nothing_to_score, epoch_reporting, test_rows_metrics, with_train_metrics

TASK = "rerank"
COLUMNS = ("sentence1", "sentence2", "score")


class CrossEncoderHyperparameters(BaseHyperparameters):
    max_length = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(8, 512), metadata={
        "description": "Tokens read per (query, document) pair, longer ones cut; null: the base model's own limit."})


class CrossEncoderTrainer(TaskTrainer):
    task = TASK
    library = "sentence-transformers"
    dataset_formats = ("scored-pairs",)
    default_base_model = "ms-marco-MiniLM-L6-v2"
    base_loaders = (CROSS_ENCODER,)
    hyperparameters = CrossEncoderHyperparameters
    scores_test_rows = True
    limitations = ("Full fine-tuning of a one-label cross-encoder on scored pairs (query, document, relevance "
                   "from 0 to 1) with binary cross-entropy; no listwise losses, no mined hard negatives.")

    def train(self, run: TrainingRun) -> TrainingResult:
        import torch

        torch.set_num_threads(run.torch_threads)
        from datasets import Dataset
        from sentence_transformers.cross_encoder import CrossEncoder
        from sentence_transformers.cross_encoder import CrossEncoderTrainer as LibraryTrainer
        from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments as Arguments
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
        from trainers.hf_callback import best_epoch, epoch_arguments, last_checkpoint

        if run.dataset_format != "scored-pairs":
            raise TrainingFailed(f"rerank trains on scored-pairs, not {run.dataset_format}.")
        params, validating = run.hyperparameters, bool(run.validation_rows)
        model = CrossEncoder(run.base_model_dir, device="cpu", local_files_only=True, trust_remote_code=False)
        if model.num_labels != 1:
            raise TrainingFailed(f"The base model has {model.num_labels} output labels; a reranker has one.")
        if params["max_length"]:
            model.max_seq_length = min(params["max_length"], model.max_seq_length)
        arguments = epoch_arguments(params, run.checkpoint_dir)
        if not validating:
            arguments.update(load_best_model_at_end=False, metric_for_best_model=None)
        reporter, callbacks = epoch_reporting(run, validating)

        def dataset(rows):
            return Dataset.from_dict({column: [row[column] for row in rows] for column in COLUMNS})

        trainer = LibraryTrainer(
            model=model, args=Arguments(**arguments), train_dataset=dataset(run.train_rows),
            eval_dataset=dataset(run.validation_rows) if validating else None,
            loss=BinaryCrossEntropyLoss(model),
            evaluator=with_train_metrics(run, partial(_evaluator, batch_size=params["batch_size"])),
            callbacks=callbacks,
        )
        resume_from = last_checkpoint(run.checkpoint_dir)
        if resume_from:
            run.reporter.log(f"Resuming from {os.path.basename(resume_from)}.")
        output = trainer.train(resume_from_checkpoint=resume_from)

        # load_best_model_at_end has put the best epoch's weights back into the model.
        model.save_pretrained(run.output_dir)
        kept = (best_epoch(trainer.state) if validating else None) or int(round(trainer.state.epoch))
        description = (f"A reranker fine-tuned on {len(run.train_rows)} scored pairs, "
                       f"from {run.base_model or 'a cross-encoder'}.")
        _write_trained_json(run, description)
        test_metrics = test_rows_metrics(model, run.test_rows, partial(_evaluator, batch_size=params["batch_size"]))
        if test_metrics:
            test_metrics["loss"] = _loss(model, run.test_rows, params["batch_size"])
        return TrainingResult(format="huggingface", tasks=[TASK], best_epoch=kept, metrics=reporter.stats_of(kept),
                              description=description, test_metrics=test_metrics,
                              samples_per_second=output.metrics.get("train_samples_per_second"))


def _evaluator(rows: list, name: str = "", batch_size: int = 16):
    """The epoch's metric beyond the loss: the Spearman correlation of the scores on
    the validation rows (or, named "train", on the training rows: train_spearman)."""
    if not rows:
        from sentence_transformers.base.evaluation import BaseEvaluator

        return _nothing_to_score(BaseEvaluator)
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderCorrelationEvaluator

    return CrossEncoderCorrelationEvaluator([[row["sentence1"], row["sentence2"]] for row in rows],
                                            [row["score"] for row in rows], batch_size=batch_size, name=name,
                                            write_csv=False)


def _loss(model, rows: list, batch_size: int) -> float:
    """BinaryCrossEntropyLoss's value on these rows: the mean over them of the
    binary cross-entropy between the sigmoid of the logit and the score."""
    import torch

    logits = model.predict([[row["sentence1"], row["sentence2"]] for row in rows], batch_size=batch_size,
                           activation_fn=torch.nn.Identity(), convert_to_tensor=True)
    scores = torch.tensor([float(row["score"]) for row in rows], device=logits.device)
    return float(torch.nn.functional.binary_cross_entropy_with_logits(logits.float().view(-1), scores))


def _write_trained_json(run: TrainingRun, description: str) -> None:
    import sentence_transformers

    with open(os.path.join(run.output_dir, "trained.json"), "w") as trained_file:
        json.dump({"tasks": [TASK], "description": description, "format": "huggingface",
                   "base_model": run.base_model,
                   "library": f"sentence-transformers {sentence_transformers.__version__}",
                   "dataset_format": run.dataset_format}, trained_file, indent=2)
