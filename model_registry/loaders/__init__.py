"""Loader functions: a folder of model files in, a ServedModel out.

One module per kind of model; LOADERS maps the catalogue's loader names to them.
Loaders never trust remote code: a model that needs custom code is a user model
and runs in its own worker process.
"""

from ..catalogue import (
    CAUSAL_LM,
    CLIP,
    EMOTION_CLASSIFIER,
    EXTRACTIVE_QA,
    MODELS,
    SENTENCE_TRANSFORMER,
    SEQ2SEQ,
    ZERO_SHOT_NLI,
    ModelSpec,
)
from .causal_lm import load_causal_lm
from .classifier import load_emotion_classifier
from .clip import load_clip
from .extractive_qa import load_extractive_qa
from .nli import load_zero_shot_nli
from .seq2seq import load_seq2seq
from .sentence_transformer import load_sentence_transformer

LOADERS = {
    SENTENCE_TRANSFORMER: load_sentence_transformer,
    CLIP: load_clip,
    ZERO_SHOT_NLI: load_zero_shot_nli,
    EXTRACTIVE_QA: load_extractive_qa,
    SEQ2SEQ: load_seq2seq,
    CAUSAL_LM: load_causal_lm,
    EMOTION_CLASSIFIER: load_emotion_classifier,
}

missing = {spec.loader for spec in MODELS.values()} - set(LOADERS)
assert not missing, f"catalogue names loaders that do not exist: {missing}"


def loader_for(spec: ModelSpec):
    return LOADERS[spec.loader]
