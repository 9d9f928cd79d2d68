"""The CLIP linear probe, on the tiny random-weight CLIP: coloured images are told
apart better than chance, the served head answers as scikit-learn's fitted on the
same features, a subset of labels shares the probability, a crashed run resumes
from its features, and over HTTP a trained version answers without labels."""

import base64
import io
import os
import random

import pytest

from core.settings import Settings
from tests.tiny_models import build_tiny_clip
from trainers.base import EPOCH_KEYS
from trainers.clip_probe import ClipProbeTrainer, image_encoder
from uploads.formats import Version, named

from ..tasks.test_predict import add_trained_version
from .helpers import Crashed, ListReporter, make_run

BASE = "clip-vit-base-patch32"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A MODEL_DIR holding the tiny CLIP under the catalogue key the probe trains from."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_clip(str(root / BASE))
    return str(root)


def coloured_image(colour, seed: int):
    """A 32x32 image of one colour, each pixel jittered a little."""
    from PIL import Image

    generator = random.Random(seed)
    pixels = [tuple(max(0, min(255, c + generator.randint(-25, 25))) for c in colour) for _ in range(32 * 32)]
    image = Image.new("RGB", (32, 32))
    image.putdata(pixels)
    return image


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(dataset_dir, train rows, validation rows): 5 training and 2 validation images per colour."""
    root = tmp_path_factory.mktemp("colours")
    train, validation = [], []
    for label, colour in COLOURS.items():
        os.makedirs(root / "images" / label)
        for index in range(7):
            relative = f"images/{label}/{index}.png"
            coloured_image(colour, seed=hash((label, index)) % 1000).save(root / relative)
            (train if index < 5 else validation).append({"image": relative, "label": label})
    return str(root), train, validation


def train(tmp_path, model_dir, dataset, reporter=None, output_name="output"):
    trainer = ClipProbeTrainer()
    dataset_dir, train_rows, validation_rows = dataset
    run = make_run(tmp_path, trainer, train_rows, validation_rows, "image-folders", {"batch_size": 8},
                   base_model=BASE, base_model_dir=os.path.join(model_dir, BASE), dataset_dir=dataset_dir,
                   reporter=reporter or ListReporter(), output_name=output_name)
    return run, trainer.train(run)


def serve(output_dir: str, model_dir: str):
    version = Version(1, ["image-classification"], output_dir, "", Settings(model_dir=model_dir), None, "cpu",
                      False, None)
    return named("clip-probe").serve(version)


def images_of(dataset, rows):
    from PIL import Image

    return [Image.open(os.path.join(dataset[0], row["image"])).convert("RGB") for row in rows]


def test_the_probe_tells_colours_apart_better_than_chance_reporting_one_epoch(tmp_path, model_dir, dataset):
    reporter = ListReporter()

    _, result = train(tmp_path, model_dir, dataset, reporter=reporter)

    [epoch] = reporter.epochs
    assert set(EPOCH_KEYS) | {"accuracy", "macro_f1", "per_class", "confusion_matrix", "log_loss"} <= set(epoch)
    assert (epoch["epoch"], epoch["step"], epoch["learning_rate"]) == (1, 15, None)
    assert epoch["accuracy"] > 1 / len(COLOURS)
    assert epoch["validation_loss"] == epoch["log_loss"]
    assert (result.format, result.tasks, result.best_epoch) == ("clip-probe", ["image-classification"], 1)


def test_the_served_probe_answers_as_scikit_learns_head_on_the_same_features(tmp_path, model_dir, dataset):
    from sklearn.linear_model import LogisticRegression

    run, _ = train(tmp_path, model_dir, dataset)
    _, encode = image_encoder(os.path.join(model_dir, BASE))
    _, train_rows, validation_rows = dataset
    head = LogisticRegression(C=1.0, max_iter=1000).fit(
        encode(images_of(dataset, train_rows)), [row["label"] for row in train_rows])

    served = serve(run.output_dir, model_dir)
    answers = served.runners["image-classification"](
        [{"image": image, "labels": None} for image in images_of(dataset, validation_rows)])

    expected = head.predict_proba(encode(images_of(dataset, validation_rows)))
    for answer, row in zip(answers, expected.tolist()):
        assert answer == pytest.approx(dict(zip(head.classes_.tolist(), row)), abs=1e-4)
    assert served.trained_labels == ["blue", "green", "red"]


def test_a_subset_of_the_trained_labels_shares_the_probability(tmp_path, model_dir, dataset):
    run, _ = train(tmp_path, model_dir, dataset)
    served = serve(run.output_dir, model_dir)
    [image] = images_of(dataset, dataset[2][:1])

    [everything, subset] = served.runners["image-classification"](
        [{"image": image, "labels": None}, {"image": image, "labels": ["red", "blue"]}])

    assert set(subset) == {"red", "blue"}
    assert sum(subset.values()) == pytest.approx(1)
    assert subset["red"] / subset["blue"] == pytest.approx(everything["red"] / everything["blue"])


def test_a_run_that_crashed_resumes_from_its_checkpointed_features(tmp_path, model_dir, dataset):
    with pytest.raises(Crashed):
        train(tmp_path, model_dir, dataset, reporter=ListReporter(crash_at_epoch=1))
    reporter = ListReporter()

    train(tmp_path, model_dir, dataset, reporter=reporter, output_name="again")

    assert any("resumed" in line for line in reporter.lines)
    assert [epoch["epoch"] for epoch in reporter.epochs] == [1]


def test_epochs_are_refused_saying_the_fit_is_one_pass():
    from marshmallow import ValidationError

    with pytest.raises(ValidationError, match="one pass"):
        ClipProbeTrainer.hyperparameters().load({"epochs": 2})


def test_over_http_a_trained_version_classifies_without_labels(client_for, model_dir, dataset):
    api = client_for(MODEL_DIR=model_dir)
    dataset_dir, train_rows, validation_rows = dataset
    add_trained_version(api.app, "alice", "colours", ClipProbeTrainer(), train_rows, validation_rows,
                        "image-folders", {"batch_size": 8}, base_model=BASE,
                        base_model_dir=os.path.join(model_dir, BASE), dataset_dir=dataset_dir)
    buffer = io.BytesIO()
    coloured_image(COLOURS["red"], seed=99).save(buffer, "PNG")
    image = base64.b64encode(buffer.getvalue()).decode()

    unlabelled = api.client.post("/image-classification", json={"image": image, "model": "colours"},
                                 headers=api.headers)
    unknown = api.client.post("/image-classification", json={"image": image, "model": "colours",
                                                             "labels": ["red", "purple"]}, headers=api.headers)

    assert unlabelled.status_code == 200, unlabelled.json
    assert set(unlabelled.json["probabilities"]) == set(COLOURS)
    assert sum(unlabelled.json["probabilities"].values()) == pytest.approx(1)
    assert unknown.status_code == 422 and "purple" in unknown.json["message"]


def test_keeping_on_warm_starts_from_the_parents_coefficients_and_reports_train_metrics(tmp_path, model_dir, dataset):
    from dataclasses import replace

    parent_run, _ = train(tmp_path / "parent", model_dir, dataset)
    trainer = ClipProbeTrainer()
    dataset_dir, train_rows, validation_rows = dataset
    reporter = ListReporter()
    run = replace(make_run(tmp_path / "child", trainer, train_rows, validation_rows, "image-folders",
                           {"batch_size": 8}, base_model=BASE, base_model_dir=os.path.join(model_dir, BASE),
                           dataset_dir=dataset_dir, reporter=reporter),
                  parent_dir=parent_run.output_dir, parent={"model": "colours", "version": 1}, train_metrics_rows=6)

    result = trainer.train(run)

    assert result.continued == "warm start: the solver starts from the parent's coefficients"
    [epoch] = reporter.epochs
    assert epoch["train_metrics_rows"] == 6
    assert sum(sum(row) for row in epoch["train_confusion_matrix"]["matrix"]) == 6
    assert {"train_accuracy", "train_macro_f1", "train_per_class"} <= set(epoch)
    # Two of the three labels: the parent's coefficients cannot start that fit.
    two = [row for row in train_rows if row["label"] != "blue"]
    refit = trainer.train(replace(run, train_rows=two, checkpoint_dir=str(tmp_path / "again"),
                                  output_dir=str(tmp_path / "child" / "output")))
    assert refit.continued.startswith("refit: the labels differ")


def test_validation_and_test_images_are_read_from_their_own_datasets_folders(tmp_path, model_dir, dataset):
    from dataclasses import replace

    dataset_dir, train_rows, validation_rows = dataset
    elsewhere = tmp_path / "test-dataset"
    test_rows = []
    for label, colour in COLOURS.items():
        os.makedirs(elsewhere / "only-here" / label)
        for index in range(2):
            relative = f"only-here/{label}/{index}.png"  # no such file in the training dataset's folder
            coloured_image(colour, seed=100 + index).save(elsewhere / relative)
            test_rows.append({"image": relative, "label": label})
    trainer = ClipProbeTrainer()
    run = replace(make_run(tmp_path, trainer, train_rows, test_rows, "image-folders", {"batch_size": 8},
                           base_model=BASE, base_model_dir=os.path.join(model_dir, BASE), dataset_dir=dataset_dir),
                  validation_dataset_dir=str(elsewhere), test_rows=test_rows, test_dataset_dir=str(elsewhere))

    result = trainer.train(run)

    assert sum(map(sum, result.test_metrics["confusion_matrix"]["matrix"])) == len(test_rows)
    assert result.test_metrics["accuracy"] == result.metrics["accuracy"]  # the same rows, validated and tested
