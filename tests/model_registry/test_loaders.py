"""The built-in loaders refuse a checkpoint that leaves parameters of the model they
build to random initialisation, and accept ones whose only gaps are tied weights."""

import json

import pytest

from model_registry.catalogue import ModelSpec
from model_registry.loaders import load_emotion_classifier, load_extractive_qa, load_seq2seq, load_zero_shot_nli
from model_registry.loaders.common import MissingWeights
from tests import tiny_models


def spec(loader: str) -> ModelSpec:
    return ModelSpec("uploaded", "uploaded", "uploaded", loader, "a test model")


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny-t5") / "model")
    tiny_models.build_tiny_t5(path)
    return path


@pytest.fixture(scope="module")
def bert_base_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny-bert-base") / "model")
    tiny_models.build_tiny_bert_base(path)
    return path


def test_a_seq2seq_checkpoint_read_as_extractive_qa_is_refused_naming_the_head(t5_dir):
    with pytest.raises(MissingWeights) as refused:
        load_extractive_qa(spec("extractive-qa"), t5_dir, "cpu", False)

    message = str(refused.value)
    assert "no weights for qa_outputs.bias, qa_outputs.weight" in message
    assert "T5ForQuestionAnswering" in message and "Upload a checkpoint trained for qa." in message


@pytest.mark.parametrize("loader", [load_zero_shot_nli, load_emotion_classifier])
def test_a_base_bert_without_a_classification_head_is_refused(bert_base_dir, loader):
    with pytest.raises(MissingWeights, match=r"no weights for classifier\.bias, classifier\.weight"):
        loader(spec("classifier"), bert_base_dir, "cpu", False)


def test_a_head_of_the_wrong_shape_is_refused_naming_both_shapes(tmp_path):
    # A GoEmotions checkpoint (28 labels) whose config.json was edited down to 3 labels.
    path = tmp_path / "model"
    tiny_models.build_tiny_emotion_classifier(str(path))
    config = json.loads((path / "config.json").read_text())
    config["id2label"] = {"0": "joy", "1": "anger", "2": "neutral"}
    config["label2id"] = {"joy": 0, "anger": 1, "neutral": 2}
    (path / "config.json").write_text(json.dumps(config))

    with pytest.raises(MissingWeights) as refused:
        load_emotion_classifier(spec("emotion-classifier"), str(path), "cpu", False)

    assert "wrong shape for classifier.bias ([28], the model needs [3])" in str(refused.value)


def test_weights_tied_to_the_embeddings_are_not_missing(t5_dir):
    # The T5 checkpoint holds only shared.weight: the encoder's and decoder's
    # embed_tokens and lm_head are tied to it, and transformers leaves them out.
    served = load_seq2seq(spec("seq2seq"), t5_dir, "cpu", False)

    [summary] = served.runners["summarisation"]([{"text": "a short text"}])
    assert isinstance(summary, str)


def test_a_catalogue_model_whose_files_lack_its_head_answers_503_naming_it(client_for, tmp_path, t5_dir):
    import shutil

    model_dir = tmp_path / "models"
    shutil.copytree(t5_dir, model_dir / "distilbert-base-cased-distilled-squad")
    api = client_for(MODEL_DIR=str(model_dir))

    answer = api.client.post("/qa", json={"question": "q?", "context": "c.", "model": "english"},
                             headers=api.headers)

    assert answer.status_code == 503, answer.json
    assert "distilbert-base-cased-distilled-squad" in answer.json["message"]
    assert "qa_outputs" in answer.json["message"]
