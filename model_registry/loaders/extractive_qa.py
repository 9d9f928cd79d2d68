"""Extractive question answering: the best answer span in the context, or "unknown".

Conversation history (prev_q/prev_a) is put before the question, so the model
reads it. A context longer than the model's limit is read in overlapping windows
(the question whole in each, WINDOW_OVERLAP tokens shared by neighbours, as the
transformers QA pipeline and the original SQuAD code do), so an answer near the
end of a long document is found. The answer is the span (start <= end, at most
MAX_ANSWER_TOKENS) inside the context with the highest start + end logit over
all windows; when the lowest "no answer" score of any window (its first token's
start + end) is higher still, the answer is "unknown", as in Backprop.
"""

import torch

from core.errors import InvalidInput

from ..catalogue import ModelSpec
from ..served_model import ServedModel
from .common import DEFAULT_SETTINGS, LoadSettings, import_lock, max_input_tokens
from .encoder_heads import load_encoder

MAX_ANSWER_TOKENS = 30
WINDOW_OVERLAP = 128
# Windows per forward pass: a batch of long documents must not become one pass
# over hundreds of windows (activation memory grows with it).
WINDOWS_PER_PASS = 16
# Each window must hold at least this many context tokens beside the question.
MIN_NEW_CONTEXT_TOKENS = 32
UNKNOWN = "unknown"


def question_with_history(item: dict) -> str:
    history = " ".join(f"{q} {a}" for q, a in zip(item.get("prev_q") or [], item.get("prev_a") or []))
    return f"{history} {item['question']}".strip()


def fit_question(tokenizer, item: dict, budget: int) -> str:
    """The question with as much of its history as fits in `budget` tokens: the
    oldest history goes first; a question that alone is too long is a 422."""
    text = question_with_history(item)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoded["input_ids"]) <= budget:
        return text
    question_tokens = len(tokenizer(item["question"], add_special_tokens=False)["input_ids"])
    if question_tokens > budget:
        raise InvalidInput(
            f"The question is {question_tokens} tokens long; this model reads at most {budget} "
            "question tokens beside the context. Shorten the question.",
            errors={"question": [f"at most {budget} tokens for this model"]},
        )
    keep_from = encoded["offset_mapping"][-budget][0]
    return text[keep_from:]


def best_span(start: torch.Tensor, end: torch.Tensor, in_context: torch.Tensor) -> tuple[int, int, float]:
    """Highest start[i] + end[j] over context tokens i <= j < i + MAX_ANSWER_TOKENS."""
    scores = start[:, None] + end[None, :]
    n = start.shape[0]
    allowed = torch.ones(n, n, dtype=torch.bool).triu() & ~torch.ones(n, n, dtype=torch.bool).triu(MAX_ANSWER_TOKENS)
    allowed &= in_context[:, None] & in_context[None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    flat = int(torch.argmax(scores))
    return flat // n, flat % n, float(scores.flatten()[flat])


# The tasks this loader's models serve (checked against the catalogue at import).
TASKS = frozenset({"qa"})


def load_extractive_qa(spec: ModelSpec, path: str, device: str, half: bool,
                       settings: LoadSettings = DEFAULT_SETTINGS) -> ServedModel:
    with import_lock:
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = load_encoder(spec.key, path, AutoModelForQuestionAnswering, "qa", ("start_logits", "end_logits"),
                         device, half, settings)
    max_tokens = max_input_tokens(tokenizer, model.config)
    accepted = set(model.input_names)

    overlap = min(WINDOW_OVERLAP, max_tokens // 4)
    special_tokens = tokenizer.num_special_tokens_to_add(pair=True)
    question_budget = max_tokens - special_tokens - overlap - MIN_NEW_CONTEXT_TOKENS

    def answer(items: list[dict]) -> list[str]:
        encoded = tokenizer(
            [fit_question(tokenizer, item, question_budget) for item in items],
            [item["context"] for item in items],
            padding=True,
            truncation="only_second",
            max_length=max_tokens,
            stride=overlap,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = encoded.pop("offset_mapping")
        item_of_window = encoded.pop("overflow_to_sample_mapping").tolist()
        inputs = {k: v for k, v in encoded.items() if k in accepted}
        starts, ends = [], []
        for first in range(0, len(item_of_window), WINDOWS_PER_PASS):
            output = model(**{k: v[first : first + WINDOWS_PER_PASS] for k, v in inputs.items()})
            starts.append(output.start_logits.float().cpu())
            ends.append(output.end_logits.float().cpu())
        starts, ends = torch.cat(starts), torch.cat(ends)

        best: dict[int, tuple[float, int, int, int]] = {}  # item -> (score, window, start, end)
        least_null: dict[int, float] = {}
        for window, item in enumerate(item_of_window):
            in_context = torch.tensor([sid == 1 for sid in encoded.sequence_ids(window)])
            if not in_context.any():
                continue
            i, j, score = best_span(starts[window], ends[window], in_context)
            if item not in best or score > best[item][0]:
                best[item] = (score, window, i, j)
            null_score = float(starts[window][0] + ends[window][0])
            least_null[item] = min(null_score, least_null.get(item, null_score))

        answers = []
        for index, item in enumerate(items):
            if index not in best or least_null[index] > best[index][0]:
                answers.append(UNKNOWN)
                continue
            _score, window, i, j = best[index]
            begin, finish = int(offsets[window][i][0]), int(offsets[window][j][1])
            answers.append(item["context"][begin:finish].strip() or UNKNOWN)
        return answers

    served = ServedModel(spec.key, model.model, model.nbytes, device, {"qa": answer})
    served.backend = model.backend
    return served

