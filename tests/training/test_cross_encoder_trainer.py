"""The rerank trainer (sentence-transformers' CrossEncoderTrainer), run directly on a tiny
random-weight cross-encoder from scored pairs, and its output served by the "huggingface"
upload format's cross-encoder loader with the scores of the library's own CrossEncoder."""

import json
import os
from dataclasses import replace

import pytest

from core.settings import Settings
from tests.tiny_models import build_tiny_cross_encoder
from trainers.base import EPOCH_KEYS, TrainingFailed
from trainers.cross_encoder import CrossEncoderTrainer
from uploads.formats.base import Version
from uploads.formats.hf_folder import HfFolder

from .helpers import ListReporter, make_run

TOPICS = ("bicycle piano umbrella telescope guitar kettle lantern compass saddle violin blanket hammer "
          "ladder mirror pillow scooter").split()
# Each question with its own answer (relevant, 1) and another topic's (not, 0).
SCORED = [{"sentence1": f"Where can I buy a {topic}?", "sentence2": f"The corner shop sells every kind of {answer}.",
           "score": float(answer == topic)}
          for index, topic in enumerate(TOPICS) for answer in (topic, TOPICS[(index + 3) % len(TOPICS)])]
TRAIN, VALIDATION = SCORED[:24], SCORED[24:]
HYPERPARAMETERS = {"epochs": 2, "batch_size": 8, "learning_rate": 2e-3, "seed": 3}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny") / "cross-encoder")
    build_tiny_cross_encoder(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_dir):
    tmp_path = tmp_path_factory.mktemp("rerank")
    reporter = ListReporter()
    run = make_run(tmp_path, CrossEncoderTrainer(), TRAIN, VALIDATION, "scored-pairs", HYPERPARAMETERS,
                   base_model="tiny", base_model_dir=base_dir, reporter=reporter)
    return run, reporter, CrossEncoderTrainer().train(run)


def library_scores(model_dir, pairs):
    from sentence_transformers import CrossEncoder

    return [float(score) for score in CrossEncoder(model_dir, device="cpu", local_files_only=True).predict(pairs)]


def test_training_reports_every_epoch_with_the_spearman_correlation(trained):
    run, reporter, result = trained

    assert [stats["epoch"] for stats in reporter.epochs] == [1, 2]
    for stats in reporter.epochs:
        assert set(EPOCH_KEYS) <= set(stats) and stats["validation_loss"] > 0
        assert any(key.endswith("spearman") for key in stats), stats
    best = min(reporter.epochs, key=lambda stats: stats["validation_loss"])
    assert result.best_epoch == best["epoch"] and result.metrics == best
    assert result.format == "huggingface" and result.tasks == ["rerank"]


def test_the_output_serves_the_trained_scores_and_they_moved_from_the_base(trained, base_dir):
    run, reporter, result = trained
    pairs = [(row["sentence1"], row["sentence2"]) for row in VALIDATION]
    version = Version(id=7, tasks=["rerank"], files_dir=run.output_dir, venv_dir="", settings=Settings(),
                      model_sandbox=None, device="cpu", half=False, load_settings=None)

    served = HfFolder().serve(version).runners["rerank"]([{"query": q, "document": d} for q, d in pairs])

    assert [output["score"] for output in served] == pytest.approx(library_scores(run.output_dir, pairs), abs=1e-5)
    assert [output["score"] for output in served] != pytest.approx(library_scores(base_dir, pairs), abs=1e-3)
    with open(os.path.join(run.output_dir, "trained.json")) as trained_file:
        assert json.load(trained_file)["tasks"] == ["rerank"]


def test_only_scored_pairs_train_a_reranker(tmp_path, base_dir):
    run = make_run(tmp_path, CrossEncoderTrainer(), [{"anchor": "a", "positive": "b"}], [], "text-pairs",
                   HYPERPARAMETERS, base_model="tiny", base_model_dir=base_dir)

    with pytest.raises(TrainingFailed, match="scored-pairs"):
        CrossEncoderTrainer().train(run)


def test_every_epoch_reports_train_metrics_and_the_kept_model_scores_the_test_rows(tmp_path, base_dir):
    import torch
    from scipy.stats import pearsonr, spearmanr

    reporter = ListReporter()
    test_rows = SCORED[20:]
    run = replace(make_run(tmp_path, CrossEncoderTrainer(), TRAIN, VALIDATION, "scored-pairs", HYPERPARAMETERS,
                           base_model="tiny", base_model_dir=base_dir, reporter=reporter),
                  test_rows=test_rows, train_metrics_rows=16)

    result = CrossEncoderTrainer().train(run)

    for stats in reporter.epochs:
        assert stats["train_metrics_rows"] == 16
        assert -1 <= stats["train_spearman"] <= 1 and -1 <= stats["train_pearson"] <= 1
    scores = library_scores(run.output_dir, [(row["sentence1"], row["sentence2"]) for row in test_rows])
    truth = [row["score"] for row in test_rows]
    # The loss BinaryCrossEntropyLoss trains: its scores are the sigmoid of the logits.
    logits = torch.logit(torch.tensor(scores, dtype=torch.float64))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(truth, dtype=torch.float64))
    assert result.test_metrics == {"spearman": pytest.approx(spearmanr(truth, scores).statistic, abs=1e-6),
                                   "pearson": pytest.approx(pearsonr(truth, scores).statistic, abs=1e-6),
                                   "loss": pytest.approx(float(loss), abs=1e-4), "rows": len(test_rows)}
