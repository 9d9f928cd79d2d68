"""The SetFit text-classification trainer, run directly on the real packaged
all-MiniLM-L6-v2, and its "setfit" serving format."""

import json
import os

import numpy as np
import pytest

from core.settings import Settings
from tests.tiny_models import packaged_minilm_dir
from trainers.base import EPOCH_KEYS
from trainers.setfit_text import SetFitTextTrainer
from uploads.formats.base import Version
from uploads.formats.setfit_model import SetFitModelFormat

from .helpers import Crashed, ListReporter, make_run

SENTENCES = {
    "sport": [
        "The striker scored twice in the second half.", "Our team won the championship final.",
        "The goalkeeper saved a penalty kick.", "She ran the marathon in under three hours.",
        "The tennis match went to five sets.", "He hit a home run in the ninth inning.",
        "The referee showed a red card to the defender.", "The cyclists raced up the mountain stage.",
        "The coach picked a new captain for the season.", "They trained at the stadium every morning.",
        "The swimmer broke the world record.", "Fans cheered as the players took the pitch.",
        "The boxer won the fight by knockout.", "The basketball team lost in overtime.",
        "She served an ace to win the set.", "The rugby players scrummed in the mud.",
        "The sprinter false-started in the hundred metres.", "The league table changed after the derby.",
    ],
    "cooking": [
        "Chop the onions and fry them in butter.", "Bake the bread for forty minutes.",
        "Season the soup with salt and pepper.", "Whisk the eggs with sugar until pale.",
        "Simmer the tomato sauce for an hour.", "Roast the chicken with garlic and lemon.",
        "Knead the dough until it is smooth.", "Grill the vegetables over a high heat.",
        "Stir the risotto and add stock slowly.", "Marinate the beef overnight in soy sauce.",
        "Melt the chocolate over a pan of water.", "Slice the carrots and steam them.",
        "Boil the pasta in salted water.", "Fold the flour into the batter gently.",
        "Peel the potatoes and mash them with milk.", "Toast the spices in a dry pan.",
        "Glaze the ham with honey before roasting.", "Let the cake cool before icing it.",
    ],
    "weather": [
        "Heavy rain is expected this afternoon.", "A cold front brings snow to the hills.",
        "Tomorrow will be sunny and warm.", "Strong winds knocked down trees overnight.",
        "Fog will clear by mid-morning.", "Thunderstorms are forecast for the weekend.",
        "Temperatures will drop below freezing tonight.", "A heatwave is building over the south.",
        "Showers will spread from the west.", "The humidity makes it feel hotter than it is.",
        "Hail fell across the city in the evening.", "Clouds will thicken later with light drizzle.",
        "Frost is likely in rural areas at dawn.", "A storm warning covers the coast tonight.",
        "Skies stay clear with a gentle breeze.", "Sleet turns to snow on higher ground.",
        "The forecast says the drought will continue.", "Gusts of sixty miles an hour hit the islands.",
    ],
}
LABELS = sorted(SENTENCES)
TRAIN = [{"text": text, "label": label} for label, texts in SENTENCES.items() for text in texts[:12]]
VALIDATION = [{"text": text, "label": label} for label, texts in SENTENCES.items() for text in texts[12:]]
# Few pairs and epochs: the whole file runs on 2 CPU cores in well under a minute or two.
HYPERPARAMETERS = {"epochs": 2, "num_iterations": 2, "batch_size": 16, "learning_rate": 2e-5, "seed": 7,
                   "max_length": 32, "early_stopping_patience": 1}
CLASSIFICATION_KEYS = ("accuracy", "macro_f1", "per_class", "confusion_matrix")


def _run(tmp_path, reporter, output_name="output", **overrides):
    trainer = SetFitTextTrainer()
    return make_run(tmp_path, trainer, TRAIN, VALIDATION, "text-label", {**HYPERPARAMETERS, **overrides},
                    base_model="all-MiniLM-L6-v2", base_model_dir=packaged_minilm_dir(), reporter=reporter,
                    output_name=output_name)


def _served(output_dir):
    version = Version(id=1, tasks=["text-classification"], files_dir=output_dir, venv_dir="", settings=Settings(),
                      model_sandbox=None, device="cpu", half=False, load_settings=None)
    return SetFitModelFormat().serve(version)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained run, and the SetFitModel it trained as SetFit holds it in memory
    (caught at SetFit's head phase, the last step of training)."""
    from setfit import Trainer

    tmp_path = tmp_path_factory.mktemp("setfit")
    reporter = ListReporter()
    run = _run(tmp_path, reporter)
    models = []
    train_classifier = Trainer.train_classifier

    def keep_model(self, *args, **kwargs):
        train_classifier(self, *args, **kwargs)
        models.append(self.model)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "train_classifier", keep_model)
        result = SetFitTextTrainer().train(run)
    return run, reporter, result, models[0]


def test_every_epoch_reports_the_classification_statistics(trained):
    run, reporter, result, setfit_model = trained

    assert [stats["epoch"] for stats in reporter.epochs] == [1, 2]
    for stats in reporter.epochs:
        assert set(EPOCH_KEYS + CLASSIFICATION_KEYS) <= set(stats)
        assert stats["validation_loss"] > 0 and stats["train_loss"] > 0 and stats["learning_rate"] >= 0
        assert stats["confusion_matrix"]["labels"] == LABELS
        assert sum(map(sum, stats["confusion_matrix"]["matrix"])) == len(VALIDATION)
        assert set(stats["per_class"]) == set(LABELS)
    assert result.best_epoch in (1, 2)
    best = min(reporter.epochs, key=lambda stats: stats["validation_loss"])
    assert result.best_epoch == best["epoch"] and result.metrics == best


def test_trained_classifier_beats_chance_on_the_validation_rows(trained):
    run, reporter, result, setfit_model = trained

    assert result.metrics["accuracy"] >= 0.8
    assert result.format == "setfit" and result.tasks == ["text-classification"]


def test_output_holds_no_pickle_and_trained_json_lists_the_labels(trained):
    run, reporter, result, setfit_model = trained

    files = os.listdir(run.output_dir)
    assert not [name for name in files if name.endswith((".pkl", ".pickle", ".joblib", ".bin", ".pt"))]
    assert {"modules.json", "head.safetensors", "head.json", "trained.json"} <= set(files)
    with open(os.path.join(run.output_dir, "trained.json")) as trained_file:
        trained_json = json.load(trained_file)
    assert trained_json["labels"] == LABELS and trained_json["format"] == "setfit"
    assert trained_json["tasks"] == ["text-classification"] and trained_json["base_model"] == "all-MiniLM-L6-v2"
    assert _served(run.output_dir).model.max_seq_length == HYPERPARAMETERS["max_length"]


def test_served_probabilities_equal_setfits_own_predict_proba(trained):
    run, reporter, result, setfit_model = trained
    texts = [row["text"] for row in VALIDATION] + ["Sunny spells and a light breeze.", "Drain the noodles."]
    served = _served(run.output_dir)

    answers = served.runners["text-classification"]([{"text": text, "labels": None} for text in texts])

    assert served.trained_labels == LABELS
    expected = setfit_model.predict_proba(texts, as_numpy=True)
    assert np.allclose([[answer[label] for label in LABELS] for answer in answers], expected, atol=1e-5)
    assert [max(answer, key=answer.get) for answer in answers] == list(setfit_model.predict(texts))


def test_served_classifier_scores_a_subset_of_its_labels_when_sent_some(trained):
    run, reporter, result, setfit_model = trained
    served = _served(run.output_dir)

    [everything, subset] = served.runners["text-classification"]([
        {"text": "Light rain and wind later today.", "labels": None},
        {"text": "Light rain and wind later today.", "labels": ["weather", "sport"]},
    ])

    assert set(everything) == set(LABELS) and max(everything, key=everything.get) == "weather"
    assert set(subset) == {"weather", "sport"}
    assert sum(subset.values()) == pytest.approx(1.0)
    share = everything["weather"] / (everything["weather"] + everything["sport"])
    assert subset["weather"] == pytest.approx(share)


def test_rerun_after_a_crash_resumes_from_the_last_epoch_checkpoint(tmp_path):
    with pytest.raises(Crashed):
        SetFitTextTrainer().train(_run(tmp_path, ListReporter(crash_at_epoch=2), num_iterations=1))
    checkpoints = os.path.join(tmp_path, "checkpoints")
    [checkpoint] = [name for name in os.listdir(checkpoints) if name.startswith("checkpoint-")]
    assert {"model.safetensors", "head.safetensors", "head.json"} <= set(os.listdir(os.path.join(checkpoints, checkpoint)))

    reporter = ListReporter()
    result = SetFitTextTrainer().train(_run(tmp_path, reporter, output_name="resumed", num_iterations=1))

    assert [stats["epoch"] for stats in reporter.epochs] == [2]
    assert any("Resuming from checkpoint-" in line for line in reporter.lines)
    assert result.best_epoch in (1, 2)
    assert os.path.isfile(os.path.join(tmp_path, "resumed", "head.safetensors"))


def test_without_validation_rows_epochs_report_no_validation_values_and_the_last_is_kept(tmp_path):
    reporter = ListReporter()
    run = make_run(tmp_path, SetFitTextTrainer(), TRAIN, [], "text-label", {**HYPERPARAMETERS, "num_iterations": 1},
                   base_model="all-MiniLM-L6-v2", base_model_dir=packaged_minilm_dir(), reporter=reporter)

    result = SetFitTextTrainer().train(run)

    assert [stats["epoch"] for stats in reporter.epochs] == [1, 2]
    for stats in reporter.epochs:
        assert set(EPOCH_KEYS + CLASSIFICATION_KEYS) <= set(stats) and stats["train_loss"] > 0
        assert all(stats[key] is None for key in ("validation_loss",) + CLASSIFICATION_KEYS)
    assert result.best_epoch == 2
    answer = _served(run.output_dir).runners["text-classification"]([{"text": "Snow tonight.", "labels": None}])[0]
    assert set(answer) == set(LABELS)


def test_setfit_format_is_never_detected_in_an_upload_and_cannot_be_built(trained):
    from uploads.formats import BuildFailed, named

    run, reporter, result, setfit_model = trained
    version = Version(id=1, tasks=["text-classification"], files_dir=run.output_dir, venv_dir="", settings=Settings(),
                      model_sandbox=None, device="cpu", half=False, load_settings=None)

    assert named("setfit").detect(run.output_dir, {}) is False
    with pytest.raises(BuildFailed, match="made by training jobs"):
        named("setfit").build(version, {}, say=print)
