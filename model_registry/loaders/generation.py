"""Backprop's generation parameters -> transformers' generate() arguments, and
the stopping of a request's rows once nobody waits for them (GenerationControl).

A request's items carry its GenerationControl under "control" (tasks/text_generation.py
puts it there; items without one, never stop early)."""

import time
from collections.abc import Callable

# Backprop's defaults (its reference example); the task schema fills them in.
DEFAULTS = {
    "min_length": 10,
    "max_length": 20,
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "num_beams": 1,
    "num_generations": 1,
}


def generate_kwargs(params: dict, pad_token_id: int | None) -> dict:
    """min/max_length count generated tokens; temperature 0 means greedy."""
    sampling = params["temperature"] > 0
    kwargs = {
        "min_new_tokens": params["min_length"],
        "max_new_tokens": params["max_length"],
        "repetition_penalty": params["repetition_penalty"],
        "num_beams": params["num_beams"],
        "num_return_sequences": params["num_generations"],
        "do_sample": sampling,
        "pad_token_id": pad_token_id,
    }
    if params["num_beams"] > 1:
        kwargs["length_penalty"] = params["length_penalty"]
    if sampling:
        kwargs.update(temperature=params["temperature"], top_k=params["top_k"], top_p=params["top_p"])
    else:
        # Greedy: make sure a model's own sampling defaults do not switch it back on.
        kwargs.update(temperature=None, top_k=None, top_p=None)
    return kwargs


def params_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def group_by_params(items: list[dict]) -> dict[tuple, list[int]]:
    """Indices of the items that share generation parameters (one generate call each)."""
    groups: dict[tuple, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(params_key(item["params"]), []).append(index)
    return groups


def shape_outputs(texts: list[str], count: int) -> list:
    """num_generations > 1 gives a list per input; 1 gives a string, as Backprop."""
    if count == 1:
        return texts
    return [texts[i : i + count] for i in range(0, len(texts), count)]


# ---- Stopping a request's rows when its client has gone or its deadline passed ----

# Why a row ended early, as the metric of generated tokens spells it.
CANCELLED = "cancelled"  # its client went away (a stream's write failed, or a waiting request saw its socket close)
DEADLINE = "deadline"  # REQUEST_TIMEOUT_S passed since its submit: its client got a 504


class GenerationControl:
    """What a request's rows look at before each new token: whether to stop, and why.

    One per HTTP request, carried in each of its batch items, so the runner (the
    batcher's thread) and the request's own thread share it: the request thread
    calls stop() when its client has gone or its wait ran out; the runner calls
    should_stop(), which also ends the rows itself once the deadline passes, so
    a generation never outlives its 504 by more than one token, whoever notices.
    """

    def __init__(self, deadline: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.deadline = deadline  # on `clock`; None: no deadline
        self._clock = clock
        self._flagged: str | None = None
        # Set by the runner when it stopped a row for this request: the reason.
        self.stopped: str | None = None
        # What the runner generated for each item, {id(item): [(finish reason, tokens) per output row]},
        # for the metrics (a dict: an item run twice, after its batch failed, is counted once).
        self.generated: dict[int, list[tuple[str, int]]] = {}

    def stop(self, reason: str) -> None:
        if self._flagged is None:
            self._flagged = reason

    @property
    def flagged(self) -> str | None:
        """Why the rows were told to stop (stop() or the deadline, once a runner looked), if they were."""
        return self._flagged

    def should_stop(self) -> str | None:
        reason = self._flagged
        if reason is None and self.deadline is not None and self._clock() >= self.deadline:
            reason = self._flagged = DEADLINE
        if reason is not None:
            self.stopped = reason
        return reason

    def rows(self) -> list[tuple[str, int]]:
        return [row for rows in self.generated.values() for row in rows]


class StopAbandoned:
    """A stopping criterion for generate(): ends the rows of the inputs whose
    GenerationControl says stop, leaving the batch's other rows running.

    generate() expands each input into consecutive rows (num_return_sequences
    samples, or beams), so row r belongs to input r // (rows / inputs). Beam
    search hands it its candidate rows, in the same order. It remembers the
    step at which each input was stopped, for the count of its tokens.
    """

    def __init__(self, controls: list[GenerationControl | None]):
        self.controls = controls
        self.stopped_at: dict[int, tuple[str, int]] = {}  # input index -> (reason, step)
        self._steps = 0

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self._steps += 1  # called once each new token is in input_ids
        for index, control in enumerate(self.controls):
            if control is not None and index not in self.stopped_at:
                reason = control.should_stop()
                if reason is not None:
                    self.stopped_at[index] = (reason, self._steps)
        stop = [index in self.stopped_at for index in range(len(self.controls))]
        rows = input_ids.shape[0]
        if rows % len(stop):  # not a layout this class knows: stop nothing rather than the wrong rows
            return torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
        return torch.tensor(stop, dtype=torch.bool, device=input_ids.device).repeat_interleave(rows // len(stop))


def record_generated(items: list[dict], criterion: StopAbandoned, new_tokens: list[list[int]],
                     eos_ids: set[int], pad_id: int | None) -> None:
    """Note in each item's control what was generated for it: per output row,
    why it ended (stop at an end-of-text token, length, or the reason it was
    stopped for) and its tokens up to there. `new_tokens` are the rows as
    generate() returned them, without the prompt, in the items' order."""
    if not items or len(new_tokens) % len(items):
        return
    per_item = len(new_tokens) // len(items)
    for index, item in enumerate(items):
        control = item.get("control")
        if control is None:
            continue
        stopped = criterion.stopped_at.get(index)
        rows = []
        for tokens in new_tokens[index * per_item : (index + 1) * per_item]:
            rows.append(_row_end(tokens, eos_ids, pad_id, stopped))
        control.generated[id(item)] = rows


def _row_end(tokens: list[int], eos_ids: set[int], pad_id: int | None, stopped) -> tuple[str, int]:
    """A row generate() returned: (why it ended, its tokens). A stopped row is
    padded after the step it was stopped at (with the end-of-text token where
    that is the pad), so only its tokens up to that step count."""
    limit = min(len(tokens), stopped[1]) if stopped else len(tokens)
    for position, token in enumerate(tokens[:limit]):
        if token in eos_ids:
            return "stop", position + 1
        if token == pad_id:  # padding: the row had ended
            return "stop", position
    return (stopped[0] if stopped else "length"), limit


def controls_of(items: list[dict]) -> list[GenerationControl | None]:
    return [item.get("control") for item in items]
