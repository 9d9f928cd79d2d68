"""The loaders' token counts (usage on /v1) are the tokens the model itself reads."""

import pytest

from model_registry.catalogue import SENTENCE_TRANSFORMER, ModelSpec
from model_registry.loaders.sentence_transformer import load_sentence_transformer
from model_registry.served_model import Capability

from ..tiny_models import packaged_minilm_dir

TEXTS = ["  spaces around  ", "iPhone 12 128GB", "Ünïcödé 日本語\n\ttabs", "tokens " * 600]


def counts_and_what_the_model_reads(folder: str, matryoshka: bool = False):
    spec = ModelSpec("m", "m", "local", SENTENCE_TRANSFORMER, "test", matryoshka=matryoshka)
    served = load_sentence_transformer(spec, folder, "cpu", False)
    # sentence-transformers' own preprocessing, as encode() runs it: its attention mask marks the tokens read.
    read = served.model.preprocess(TEXTS)["attention_mask"].sum(dim=1).tolist()
    return served, served.count_tokens(TEXTS), read


def test_a_sentence_transformer_counts_what_its_own_preprocessing_keeps(tiny_sentence_model_dir):
    served, counts, read = counts_and_what_the_model_reads(tiny_sentence_model_dir)
    assert counts == read
    assert counts[-1] == served.model.max_seq_length  # the long text: cut where the model cuts it
    assert Capability.SHORTER_VECTORS not in served.capabilities


def test_the_catalogue_flag_makes_vectors_truncatable(tiny_sentence_model_dir):
    served, _counts, _read = counts_and_what_the_model_reads(tiny_sentence_model_dir, matryoshka=True)
    assert Capability.SHORTER_VECTORS in served.capabilities


@pytest.mark.packaged_model
def test_the_packaged_model_counts_what_it_reads():
    served, counts, read = counts_and_what_the_model_reads(packaged_minilm_dir())
    assert counts == read and counts[-1] == 256
