"""Each running sequence's next token, chosen with its own parameters.

The logits are processed as transformers' generate() processes them, in the
same order (repetition penalty, the minimum length's ban on end-of-text, then
temperature, top-k and top-p), so a greedy sequence here picks exactly the
token generate() would on the same logits, and a sampled one draws from the
same distribution. A batch of plain greedy rows (the common case) costs one
argmax; only rows that need them pay for the per-row steps.
"""

import torch

NEG_INF = float("-inf")


def next_tokens(logits: torch.Tensor, rows: list, eos_ids: list[int]) -> list[int]:
    """One token per row of `logits` (rows x vocabulary). A row is anything with
    `request` (CompletionRequest: temperature, top_k, top_p, min_tokens,
    repetition_penalty), `tokens` (generated so far) and `generator` (a
    torch.Generator, or None for torch's global one)."""
    logits = logits.float()
    if all(_plain_greedy(row) for row in rows):
        return logits.argmax(dim=-1).tolist()
    logits = logits.clone()
    tokens = []
    for index, row in enumerate(rows):
        request = row.request
        scores = logits[index]
        if request.repetition_penalty != 1.0:
            _penalise_repeats(scores, request.prompt_ids + row.tokens, request.repetition_penalty)
        if len(row.tokens) < request.min_tokens and eos_ids:
            scores[eos_ids] = NEG_INF
        if request.temperature == 0:
            tokens.append(int(scores.argmax()))
        else:
            tokens.append(_sample(scores, request, row.generator))
    return tokens


def _plain_greedy(row) -> bool:
    request = row.request
    return (request.temperature == 0 and request.repetition_penalty == 1.0
            and len(row.tokens) >= request.min_tokens)


def _penalise_repeats(scores: torch.Tensor, seen: list[int], penalty: float) -> None:
    """transformers' RepetitionPenaltyLogitsProcessor on one row."""
    index = torch.tensor(sorted(set(seen)), dtype=torch.long, device=scores.device)
    picked = scores[index]
    scores[index] = torch.where(picked < 0, picked * penalty, picked / penalty)


def _sample(scores: torch.Tensor, request, generator: torch.Generator | None) -> int:
    """transformers' temperature, top-k and top-p warpers, then a draw."""
    scores = scores / request.temperature
    if request.top_k and request.top_k < scores.numel():
        kth = torch.topk(scores, request.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, NEG_INF)
    if request.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= 1 - request.top_p
        remove[-1] = False  # the likeliest token always stays
        scores = scores.masked_fill(remove.scatter(0, order, remove), NEG_INF)
    probabilities = scores.softmax(dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=generator))
