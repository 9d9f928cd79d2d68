"""The log-probability a decoder-only model gives each token of a prompt: what
/v1/completions answers with echo, logprobs and max_tokens 0 (scoring a text,
no generation), and so what perplexity is computed from (lm-eval-harness's
loglikelihood tasks, the service's evaluations of generation datasets). With
max_tokens 1 and temperature 0 (what lm-eval-harness sends), the same pass also
gives the greedy next token: the likeliest at the prompt's last position.

One forward pass over the prompt's tokens, as the tokenizer makes them (a BOS
only where the tokenizer adds one by default); the log-softmax of the logits at
position i - 1 gives token i its log-probability, and the first token, which has
no context, has none (null, as OpenAI answers). Log-softmax runs in float32
whatever the model's dtype, one row at a time so that a batch never holds a
float32 copy of all its logits at once.

It is a runner of the model's ServedModel, RUNNER, with its own Batcher: a
request queues in its account's share and takes its turn like any other, and
rows of several requests share a pass. Rows are padded on the right (a prompt's
positions then start at 0 as they do alone) with an attention mask; a pass holds
at most PASS_TOKENS padded tokens (a longer prompt runs alone), since its logits
are tokens x vocabulary floats.
"""

from dataclasses import dataclass, field

import torch

from .common import inference
from .generation import GenerationControl

# The name of the scoring runner in a ServedModel's runners.
RUNNER = "prompt-logprobs"
# The most tokens, padding included, one forward pass scores: its logits are this
# many rows of the vocabulary (about 200 MB in float32 for a 50k vocabulary).
PASS_TOKENS = 1024
# Positions whose log-softmax is taken at once (each a vocabulary of float32).
LOG_SOFTMAX_ROWS = 256
# OpenAI's legacy API answers at most 5 alternatives per token.
MAX_TOP_LOGPROBS = 5


@dataclass
class ScoringRequest:
    """One prompt, already tokenized, and how many likeliest alternatives to report per token."""

    prompt_ids: list[int]
    top: int = 0
    # Also the likeliest next token (greedy, one token generated), as lm-eval-harness asks
    # with max_tokens 1: the last position's logits, read in the same pass.
    next_token: bool = False
    # The request's deadline and stop flag (client gone, wait over); None: neither.
    control: GenerationControl | None = field(default=None, compare=False)


@dataclass
class PromptScores:
    # token_logprobs[i]: log P(token i | tokens before it); None for the first token.
    token_logprobs: list[float | None]
    # top[i]: the `top` likeliest tokens at position i, [(token id, log-probability)], best first;
    # None for the first token. Empty lists when no alternatives were asked for.
    top: list[list[tuple[int, float]] | None]
    # With next_token: (its id, its log-probability, its `top` alternatives); else None.
    next: tuple[int, float, list[tuple[int, float]]] | None = None


class PromptScorer:
    """Scores prompts on a causal LM (the runner: `run`)."""

    def __init__(self, model, device: str, pad_id: int):
        self.model = model
        self.device = device
        self.pad_id = pad_id

    def run(self, requests: list[ScoringRequest]) -> list[PromptScores | None]:
        """Each request's scores, in order; None for one whose client has gone or whose deadline
        passed before its pass (the route has answered it already)."""
        scores: list[PromptScores | None] = [None] * len(requests)
        for positions in _passes(requests):
            wanted = []
            for position in positions:
                control = requests[position].control
                stopped = control.should_stop() if control is not None else None
                if stopped is not None:
                    control.stopped = stopped
                elif not requests[position].prompt_ids:  # an empty prompt: no token to score
                    scores[position] = PromptScores([], [])
                else:
                    wanted.append(position)
            if wanted:
                for position, result in zip(wanted, self._score([requests[p] for p in wanted])):
                    scores[position] = result
        return scores

    def _score(self, requests: list[ScoringRequest]) -> list[PromptScores]:
        width = max(len(request.prompt_ids) for request in requests)
        input_ids = [r.prompt_ids + [self.pad_id] * (width - len(r.prompt_ids)) for r in requests]
        attention = [[1] * len(r.prompt_ids) + [0] * (width - len(r.prompt_ids)) for r in requests]
        with inference():
            logits = self.model(
                input_ids=torch.tensor(input_ids, device=self.device),
                attention_mask=torch.tensor(attention, device=self.device),
            ).logits
            return [self._row(request, logits[row]) for row, request in enumerate(requests)]

    @staticmethod
    def _row(request: ScoringRequest, logits) -> PromptScores:
        ids = request.prompt_ids
        # Position i - 1 predicts token i (the last position, the next token); the padding
        # after the prompt is never read.
        read = len(ids) if request.next_token else len(ids) - 1
        following = ids[1:] + ([-1] if request.next_token else [])  # the next token: no actual one
        actual, top, last = [], [], None
        # A few positions at a time: a whole context's log-softmax in float32 would be a
        # second copy of the logits (8,192 x 49,152 floats, 1.6 GB, for SmolLM2).
        for start in range(0, read, LOG_SOFTMAX_ROWS):
            logprobs = torch.log_softmax(logits[start:min(read, start + LOG_SOFTMAX_ROWS)].float(), dim=-1)
            known = [token for token in following[start:start + len(logprobs)] if token >= 0]
            if known:
                index = torch.tensor(known, device=logprobs.device, dtype=torch.long).unsqueeze(1)
                actual += logprobs[: len(known)].gather(1, index).squeeze(1).tolist()
            if request.top:
                values, indices = torch.topk(logprobs, min(request.top, logprobs.shape[-1]), dim=-1)
                top += [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
            else:
                top += [[] for _ in range(len(logprobs))]
            last = logprobs[-1]
        following_token = None
        if request.next_token:
            best = int(torch.argmax(last))
            following_token = (best, float(last[best]), top.pop())
        return PromptScores([None, *actual][: len(ids)], [None, *top][: len(ids)], following_token)


def _passes(requests: list[ScoringRequest]) -> list[list[int]]:
    """The requests' positions grouped into passes of at most PASS_TOKENS padded tokens
    (a longer prompt alone), similar lengths together so that little is padding."""
    order = sorted(range(len(requests)), key=lambda p: len(requests[p].prompt_ids))
    passes: list[list[int]] = []
    for position in order:
        length = len(requests[position].prompt_ids)  # the longest yet: the pass's width
        if passes and (len(passes[-1]) + 1) * length <= PASS_TOKENS:
            passes[-1].append(position)
        else:
            passes.append([position])
    return passes
