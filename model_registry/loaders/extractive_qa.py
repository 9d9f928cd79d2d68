"""Extractive question answering: the best answer span in the context, or "unknown".

Conversation history (prev_q/prev_a) is put before the question, so the model
reads it. Contexts longer than the model's limit are truncated (the question is
kept whole). The answer is the span (start <= end, at most MAX_ANSWER_TOKENS)
inside the context with the highest start + end logit; when the model scores
"no answer" (its first token) higher, the answer is "unknown", as in Backprop.
"""

import inspect

import torch

from ..catalogue import ModelSpec
from ..device import module_nbytes
from ..served_model import ServedModel
from .common import import_lock, inference, max_input_tokens, place

MAX_ANSWER_TOKENS = 30
UNKNOWN = "unknown"


def question_with_history(item: dict) -> str:
    history = " ".join(f"{q} {a}" for q, a in zip(item.get("prev_q") or [], item.get("prev_a") or []))
    return f"{history} {item['question']}".strip()


def best_span(start: torch.Tensor, end: torch.Tensor, in_context: torch.Tensor) -> tuple[int, int, float]:
    """Highest start[i] + end[j] over context tokens i <= j < i + MAX_ANSWER_TOKENS."""
    scores = start[:, None] + end[None, :]
    n = start.shape[0]
    allowed = torch.ones(n, n, dtype=torch.bool).triu() & ~torch.ones(n, n, dtype=torch.bool).triu(MAX_ANSWER_TOKENS)
    allowed &= in_context[:, None] & in_context[None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    flat = int(torch.argmax(scores))
    return flat // n, flat % n, float(scores.flatten()[flat])


def load_extractive_qa(spec: ModelSpec, path: str, device: str, half: bool) -> ServedModel:
    with import_lock:
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = place(AutoModelForQuestionAnswering.from_pretrained(path), device, half)
    max_tokens = max_input_tokens(tokenizer, model.config)
    accepted = set(inspect.signature(model.forward).parameters)

    def answer(items: list[dict]) -> list[str]:
        encoded = tokenizer(
            [question_with_history(item) for item in items],
            [item["context"] for item in items],
            padding=True,
            truncation="only_second",
            max_length=max_tokens,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = encoded.pop("offset_mapping")
        with inference():
            output = model(**{k: v.to(device) for k, v in encoded.items() if k in accepted})
        starts, ends = output.start_logits.float().cpu(), output.end_logits.float().cpu()
        answers = []
        for row, item in enumerate(items):
            in_context = torch.tensor([sid == 1 for sid in encoded.sequence_ids(row)])
            if not in_context.any():
                answers.append(UNKNOWN)
                continue
            i, j, score = best_span(starts[row], ends[row], in_context)
            null_score = float(starts[row][0] + ends[row][0])
            if null_score > score:
                answers.append(UNKNOWN)
                continue
            begin, finish = int(offsets[row][i][0]), int(offsets[row][j][1])
            answers.append(item["context"][begin:finish].strip() or UNKNOWN)
        return answers

    return ServedModel(spec.key, model, module_nbytes(model), device, {"qa": answer})

