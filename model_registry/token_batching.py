"""Token-aware batching: items tokenised ahead of their pass, passes cut by a token budget.

A text model's cost is the padded batch it reads (items x the longest item), not
the number of items: one 200-token sentence in a pass of 31 short ones makes the
whole pass 200 tokens wide. So a model that can say how long each item is gives
the batcher a PreparedRunner:

- ``prepare`` tokenises a request's inputs on the request thread, when it is
  submitted, so tokenising overlaps with the forward pass that is running (the
  batch worker only pads and runs);
- ``run`` takes prepared items (``Tokens``) and returns one output per item;
- the batcher sorts the items it takes by length and cuts them into passes
  with ``plan_passes``: similar lengths together, each pass within the budget.

Calling a PreparedRunner on raw task inputs prepares them first, so it is also
the task's plain runner (a build's sample run, a training job's check).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


class Tokens:
    """One input, tokenised and unpadded: {"input_ids": [...], "attention_mask": [...], ...}."""

    __slots__ = ("ids",)

    def __init__(self, ids: dict[str, list[int]]):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids["input_ids"])

    def __repr__(self) -> str:
        return f"Tokens({len(self)})"


def split_rows(encoded: dict, padding_side: str = "right") -> list[Tokens]:
    """A padded batch from a tokenizer (lists or arrays, with an attention_mask) as
    one unpadded Tokens per row."""
    rows = []
    masks = [list(map(int, mask)) for mask in encoded["attention_mask"]]
    for row, mask in enumerate(masks):
        length = sum(mask)
        keep = slice(0, length) if padding_side == "right" else slice(len(mask) - length, len(mask))
        rows.append(Tokens({name: [int(v) for v in values[row]][keep] for name, values in encoded.items()}))
    return rows


def collate(items: Sequence[Tokens], pad_values: dict[str, int], padding_side: str = "right") -> dict[str, np.ndarray]:
    """Pad items to the longest of them: {name: int64 array (items, longest)}.

    ``pad_values`` gives each input's pad value (input_ids: the tokenizer's pad
    token; attention_mask: 0), as the tokenizer itself pads.
    """
    longest = max(len(item) for item in items)
    batch = {}
    for name, pad in pad_values.items():
        array = np.full((len(items), longest), pad, dtype=np.int64)
        for row, item in enumerate(items):
            values = item.ids[name]
            if padding_side == "right":
                array[row, : len(values)] = values
            else:
                array[row, longest - len(values):] = values
        batch[name] = array
    return batch


@dataclass(frozen=True)
class PreparedRunner:
    prepare: Callable[[list], list]  # task inputs -> one Tokens each (on the request thread)
    run: Callable[[list], list]  # Tokens -> one output each (the forward pass)

    @staticmethod
    def tokens(item) -> int:
        return len(item)

    def __call__(self, items: list) -> list:
        if all(isinstance(item, Tokens) for item in items):
            return self.run(items)
        return self.run(self.prepare(items))


def plan_passes(lengths: Sequence[Sequence[int]], max_items: int, max_tokens: int) -> list[list[tuple[int, int]]]:
    """Cut the items of several requests into forward passes.

    ``lengths[r][i]`` is the token count of item i of request r. Returns passes,
    each a list of (request, item) pairs: items sorted by length (shortest first,
    ties in arrival order), each pass the longest run of them whose padded size
    (count x its longest item) stays within ``max_tokens`` and whose count stays
    within ``max_items``. An item longer than the budget alone gets a pass of its own.
    """
    ordered = sorted(
        ((length, request, item) for request, row in enumerate(lengths) for item, length in enumerate(row)),
        key=lambda entry: entry[0],  # sorted() is stable: equal lengths keep their arrival order
    )
    passes: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for length, request, item in ordered:
        # Sorted ascending, so this item is the longest of the pass it would join.
        if current and (len(current) + 1 > max_items or (len(current) + 1) * length > max_tokens):
            passes.append(current)
            current = []
        current.append((request, item))
    if current:
        passes.append(current)
    return passes


def run_in_passes(requests: list, item_tokens: Callable, run: Callable[[list], list],
                  fail: Callable, max_items: int, max_tokens: int) -> None:
    """Run the batcher's requests (each with .items and .future) in the passes
    plan_passes makes, answering each as soon as its last item is done.

    A failed pass fails the requests in it only if it held one request; else each
    of them is run again alone, so a bad input fails only its own request.
    ``fail(request, exc)`` answers a request with the error.
    """
    lengths = [[item_tokens(item) for item in request.items] for request in requests]
    outputs = [[None] * len(request.items) for request in requests]
    left = [len(request.items) for request in requests]
    for request in requests:
        if not request.items:
            request.future.set_result([])
    failed: set[int] = set()
    for pass_items in plan_passes(lengths, max_items, max_tokens):
        if all(index in failed for index, _item in pass_items):
            continue
        try:
            results = run([requests[index].items[item] for index, item in pass_items])
        except Exception as exc:
            if len(requests) == 1:
                fail(requests[0], exc)
                return
            failed.update(index for index, _item in pass_items)
            continue
        for (index, item), result in zip(pass_items, results):
            outputs[index][item] = result
            left[index] -= 1
            if not left[index] and index not in failed:
                requests[index].future.set_result(outputs[index])
    for index in sorted(failed):
        run_in_passes([requests[index]], item_tokens, run, fail, max_items, max_tokens)
