"""The sentence-transformers text-vectorisation trainer, run directly on a tiny
random-weight sentence-transformer, and its output served by the "huggingface"
upload format."""

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from core.settings import Settings
from tests.tiny_models import build_tiny_sentence_transformer
from trainers.base import EPOCH_KEYS
from trainers.sentence_pairs import SentencePairsTrainer
from uploads.formats.base import Version
from uploads.formats.hf_folder import HfFolder

from .helpers import Crashed, ListReporter, make_run

NOUNS = ("bicycle piano umbrella telescope guitar kettle lantern compass saddle violin blanket hammer "
         "ladder mirror pillow scooter teapot wallet anchor basket candle drum feather helmet "
         "jacket kayak magnet necklace orchid parrot quilt rocket").split()
PAIRS = [{"anchor": f"Where can I buy a {noun}?", "positive": f"The shop on the corner sells every kind of {noun}."}
         for noun in NOUNS]
TRAIN, VALIDATION = PAIRS[:24], PAIRS[24:]
# A random tiny model needs a large learning rate to move in a few steps.
HYPERPARAMETERS = {"epochs": 3, "batch_size": 8, "learning_rate": 2e-3, "seed": 3}
PAIR_KEYS = EPOCH_KEYS + ("right_positive_accuracy",)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny") / "sentence-transformer")
    build_tiny_sentence_transformer(path)
    return path


def _run(tmp_path, base_dir, train_rows, validation_rows, dataset_format, reporter, output_name="output",
         **overrides):
    return make_run(tmp_path, SentencePairsTrainer(), train_rows, validation_rows, dataset_format,
                    {**HYPERPARAMETERS, **overrides}, base_model="tiny", base_model_dir=base_dir,
                    reporter=reporter, output_name=output_name)


def _served(output_dir):
    version = Version(id=7, tasks=["text-vectorisation"], files_dir=output_dir, venv_dir="", settings=Settings(),
                      model_sandbox=None, device="cpu", half=False, load_settings=None)
    return HfFolder().serve(version)


def _encode(model_dir, texts):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir, device="cpu").encode(texts)


@pytest.fixture(scope="module")
def trained_pairs(tmp_path_factory, base_dir):
    tmp_path = tmp_path_factory.mktemp("pairs")
    reporter = ListReporter()
    run = _run(tmp_path, base_dir, TRAIN, VALIDATION, "text-pairs", reporter)
    return run, reporter, SentencePairsTrainer().train(run)


def test_pairs_training_reports_every_epoch_and_lowers_the_validation_loss(trained_pairs):
    run, reporter, result = trained_pairs

    assert [stats["epoch"] for stats in reporter.epochs] == [1, 2, 3]
    for stats in reporter.epochs:
        assert set(PAIR_KEYS) <= set(stats)
        assert stats["train_loss"] > 0 and stats["validation_loss"] > 0
        assert 0 <= stats["right_positive_accuracy"] <= 1
    assert reporter.epochs[-1]["validation_loss"] < reporter.epochs[0]["validation_loss"]
    best = min(reporter.epochs, key=lambda stats: stats["validation_loss"])
    assert result.best_epoch == best["epoch"] and result.metrics == best
    assert result.format == "huggingface" and result.tasks == ["text-vectorisation"]


def test_served_vectors_are_the_trained_models_and_differ_from_the_base(trained_pairs, base_dir):
    run, reporter, result = trained_pairs
    texts = [row["anchor"] for row in VALIDATION]

    vectors = _served(run.output_dir).runners["text-vectorisation"](texts)

    assert np.allclose(vectors, _encode(run.output_dir, texts), atol=1e-5)
    assert not np.allclose(vectors, _encode(base_dir, texts), atol=1e-3)


def test_output_is_a_sentence_transformers_folder_with_trained_json(trained_pairs):
    run, reporter, result = trained_pairs

    files = os.listdir(run.output_dir)
    assert {"modules.json", "config.json", "model.safetensors", "trained.json"} <= set(files)
    assert not [name for name in files if name.endswith((".pkl", ".bin", ".pt"))]
    with open(os.path.join(run.output_dir, "trained.json")) as trained_file:
        trained = json.load(trained_file)
    assert trained["format"] == "huggingface" and trained["tasks"] == ["text-vectorisation"]


def test_triplets_train_and_report_the_right_positive_accuracy(tmp_path, base_dir):
    triplets = [{**pair, "negative": f"The {NOUNS[index - 1]} is broken."} for index, pair in enumerate(PAIRS)]
    reporter = ListReporter()

    result = SentencePairsTrainer().train(
        _run(tmp_path, base_dir, triplets[:24], triplets[24:], "text-triplets", reporter, epochs=1))

    [stats] = reporter.epochs
    assert set(PAIR_KEYS) <= set(stats) and stats["validation_loss"] > 0
    assert result.metrics == stats


def test_scored_pairs_train_with_cosent_and_report_the_spearman_correlation(tmp_path, base_dir):
    scored = [{"sentence1": pair["anchor"], "sentence2": other["positive"], "score": float(pair is other)}
              for pair in PAIRS for other in (pair, PAIRS[(PAIRS.index(pair) + 5) % len(PAIRS)])]
    reporter = ListReporter()

    result = SentencePairsTrainer().train(
        _run(tmp_path, base_dir, scored[:48], scored[48:], "scored-pairs", reporter, epochs=1))

    [stats] = reporter.epochs
    assert set(EPOCH_KEYS + ("spearman_cosine",)) <= set(stats) and -1 <= stats["spearman_cosine"] <= 1
    assert stats["validation_loss"] is not None
    assert result.best_epoch == 1 and os.path.isfile(os.path.join(tmp_path, "output", "modules.json"))


def test_without_validation_rows_every_epoch_is_reported_and_the_last_kept(tmp_path, base_dir):
    reporter = ListReporter()

    result = SentencePairsTrainer().train(_run(tmp_path, base_dir, TRAIN, [], "text-pairs", reporter, epochs=2))

    assert [stats["epoch"] for stats in reporter.epochs] == [1, 2]
    assert all(stats["validation_loss"] is None for stats in reporter.epochs)
    assert result.best_epoch == 2


def test_rerun_after_a_crash_resumes_from_the_last_epoch_checkpoint(tmp_path, base_dir):
    with pytest.raises(Crashed):
        SentencePairsTrainer().train(_run(tmp_path, base_dir, TRAIN, VALIDATION, "text-pairs",
                                          ListReporter(crash_at_epoch=2)))

    reporter = ListReporter()
    result = SentencePairsTrainer().train(_run(tmp_path, base_dir, TRAIN, VALIDATION, "text-pairs", reporter,
                                               output_name="resumed"))

    # Epoch 1 again from its checkpoint's log, marked restored (the job keeps its own report
    # if it has one: a report lost with a killed process is filled in); then the epochs it ran.
    assert [(stats["epoch"], stats.get("restored", False)) for stats in reporter.epochs] == \
        [(1, True), (2, False), (3, False)]
    assert reporter.epochs[0]["validation_loss"] is not None and reporter.epochs[0]["train_loss"] is not None
    # Its train_ metric too, from the same evaluation's log entry.
    assert reporter.epochs[0]["train_metrics_rows"] == len(TRAIN)
    assert 0 <= reporter.epochs[0]["train_right_positive_accuracy"] <= 1
    assert any("Resuming from checkpoint-" in line for line in reporter.lines)
    assert result.best_epoch in (1, 2, 3) and result.metrics["epoch"] == result.best_epoch
    assert os.path.isfile(os.path.join(tmp_path, "resumed", "modules.json"))


def test_rerun_after_a_crash_without_validation_rows_reports_the_saved_epoch_again(tmp_path, base_dir):
    with pytest.raises(Crashed):
        SentencePairsTrainer().train(_run(tmp_path, base_dir, TRAIN, [], "text-pairs", ListReporter(crash_at_epoch=2)))

    reporter = ListReporter()
    SentencePairsTrainer().train(_run(tmp_path, base_dir, TRAIN, [], "text-pairs", reporter, output_name="resumed"))

    assert [(stats["epoch"], stats.get("restored", False)) for stats in reporter.epochs] == \
        [(1, True), (2, False), (3, False)]
    assert reporter.epochs[0]["validation_loss"] is None and reporter.epochs[0]["train_loss"] is not None
    assert 0 <= reporter.epochs[0]["train_right_positive_accuracy"] <= 1


def right_positive_accuracy(model_dir, rows) -> float:
    """The share of anchors whose nearest text (cosine), among every positive, is their own:
    computed here with the library on the saved folder, apart from the trainer's evaluator."""
    vectors = library_model(model_dir)
    anchors = vectors.encode([row["anchor"] for row in rows], normalize_embeddings=True)
    positives = vectors.encode([row["positive"] for row in rows], normalize_embeddings=True)
    return float(np.mean((anchors @ positives.T).argmax(axis=1) == np.arange(len(rows))))


def library_model(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir, device="cpu", local_files_only=True)


def test_every_epoch_reports_train_metrics_on_a_sample_and_the_kept_model_scores_the_test_rows(tmp_path, base_dir):
    reporter = ListReporter()
    run = replace(_run(tmp_path, base_dir, TRAIN, VALIDATION, "text-pairs", reporter, epochs=2),
                  test_rows=PAIRS[16:], train_metrics_rows=10)

    result = SentencePairsTrainer().train(run)

    for stats in reporter.epochs:
        assert stats["train_metrics_rows"] == 10 and 0 <= stats["train_right_positive_accuracy"] <= 1
    assert result.test_metrics == {"right_positive_accuracy": pytest.approx(
        right_positive_accuracy(run.output_dir, PAIRS[16:])), "rows": len(PAIRS) - 16}


def test_without_validation_rows_the_train_metric_is_the_last_epochs_on_every_training_row(tmp_path, base_dir):
    reporter = ListReporter()

    result = SentencePairsTrainer().train(_run(tmp_path, base_dir, TRAIN, [], "text-pairs", reporter, epochs=1))

    [stats] = reporter.epochs
    assert stats["train_metrics_rows"] == len(TRAIN) and stats["validation_loss"] is None
    assert stats["train_right_positive_accuracy"] == pytest.approx(
        right_positive_accuracy(os.path.join(tmp_path, "output"), TRAIN))
    assert result.test_metrics is None


def test_scored_pairs_report_train_spearman_and_score_the_test_rows(tmp_path, base_dir):
    from scipy.stats import spearmanr

    scored = [{"sentence1": pair["anchor"], "sentence2": other["positive"], "score": float(pair is other)}
              for pair in PAIRS for other in (pair, PAIRS[(PAIRS.index(pair) + 5) % len(PAIRS)])]
    reporter = ListReporter()
    run = replace(_run(tmp_path, base_dir, scored[:40], scored[40:52], "scored-pairs", reporter, epochs=1),
                  test_rows=scored[52:])

    result = SentencePairsTrainer().train(run)

    [stats] = reporter.epochs
    assert stats["train_metrics_rows"] == 40 and -1 <= stats["train_spearman_cosine"] <= 1
    model = library_model(run.output_dir)
    first = model.encode([row["sentence1"] for row in scored[52:]], normalize_embeddings=True)
    second = model.encode([row["sentence2"] for row in scored[52:]], normalize_embeddings=True)
    expected = spearmanr([row["score"] for row in scored[52:]], (first * second).sum(axis=1)).statistic
    assert result.test_metrics["spearman_cosine"] == pytest.approx(expected)
    assert result.test_metrics["rows"] == len(scored) - 52
