"""Loader functions: a folder of model files in, a ServedModel out.

One module per kind of model, each declaring the tasks its models serve
(``TASKS``); LOADERS maps the catalogue's loader names to them. The catalogue
is checked against it at import: a row naming a task its model's loader cannot
serve fails here, with a message, not in a user's request. Loaders never trust
remote code: a model that needs custom code is a user model and runs in its own
sandboxed worker.
"""

from collections.abc import Callable
from dataclasses import dataclass

from . import causal_lm, classifier, clip, cross_encoder, extractive_qa, nli, sentence_transformer, seq2seq
from ..catalogue import (
    CAUSAL_LM,
    CLIP,
    CROSS_ENCODER,
    EMOTION_CLASSIFIER,
    EXTRACTIVE_QA,
    MODELS,
    SENTENCE_TRANSFORMER,
    SEQ2SEQ,
    TASK_MODELS,
    ZERO_SHOT_NLI,
    ModelSpec,
)
from .causal_lm import load_causal_lm
from .classifier import load_emotion_classifier
from .clip import load_clip
from .common import DEFAULT_SETTINGS, LoadSettings
from .cross_encoder import load_cross_encoder
from .extractive_qa import load_extractive_qa
from .nli import load_zero_shot_nli
from .seq2seq import load_seq2seq
from .sentence_transformer import load_sentence_transformer


@dataclass(frozen=True)
class Loader:
    # (spec, path, device, half, settings) -> ServedModel
    load: Callable
    tasks: frozenset[str]


LOADERS = {
    SENTENCE_TRANSFORMER: Loader(load_sentence_transformer, sentence_transformer.TASKS),
    CLIP: Loader(load_clip, clip.TASKS),
    ZERO_SHOT_NLI: Loader(load_zero_shot_nli, nli.TASKS),
    EXTRACTIVE_QA: Loader(load_extractive_qa, extractive_qa.TASKS),
    SEQ2SEQ: Loader(load_seq2seq, seq2seq.TASKS),
    CAUSAL_LM: Loader(load_causal_lm, causal_lm.TASKS),
    EMOTION_CLASSIFIER: Loader(load_emotion_classifier, classifier.TASKS),
    CROSS_ENCODER: Loader(load_cross_encoder, cross_encoder.TASKS),
}


class CatalogueError(Exception):
    """The catalogue names a loader, or a task of a loader, that does not exist."""


def check_catalogue(models: dict[str, ModelSpec], task_models: dict[str, dict], loaders: dict[str, Loader]) -> None:
    for spec in models.values():
        if spec.loader not in loaders:
            raise CatalogueError(f"model {spec.key} names loader {spec.loader!r}, which does not exist; "
                                 f"loaders: {', '.join(sorted(loaders))}")
    for task, names in task_models.items():
        for name, key in names.items():
            loader = models[key].loader
            if task not in loaders[loader].tasks:
                raise CatalogueError(
                    f"TASK_MODELS[{task!r}][{name!r}] is {key}, whose loader {loader} cannot serve {task} "
                    f"(it serves {', '.join(sorted(loaders[loader].tasks))})")


check_catalogue(MODELS, TASK_MODELS, LOADERS)


def loader_for(spec: ModelSpec) -> Callable:
    return LOADERS[spec.loader].load


__all__ = ["DEFAULT_SETTINGS", "LOADERS", "Loader", "LoadSettings", "check_catalogue", "loader_for",
           "load_causal_lm", "load_clip", "load_cross_encoder", "load_emotion_classifier", "load_extractive_qa",
           "load_seq2seq", "load_sentence_transformer", "load_zero_shot_nli"]
