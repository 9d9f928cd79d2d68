"""The tensors of sequences decoding together: one KV cache, left-padded.

Every row's tokens end at the right edge, so each step appends one column for
all rows: the new token's key and value, and a 1 in the attention mask. A row
that joins is left-padded (zero keys and values, masked) to the batch's width,
or the batch to its; a row that leaves is cut out, and columns that only
padding uses any more are dropped. Position ids come from the mask (a row's
real tokens so far), as generate() computes them for a left-padded batch, so a
row's attention and positions are the same wherever it sits in the batch.

This needs a cache whose layers are plain tensors of keys and values (batch,
heads, tokens, dim): transformers' DynamicCache with DynamicLayer layers, what
GPT-2, Llama, Qwen, Phi and most decoder-only models use. supports() tells;
models with sliding-window or recurrent layers keep the static generate() path.
"""

import inspect

import torch


def supports(cache) -> bool:
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return isinstance(cache, DynamicCache) and all(type(layer) is DynamicLayer for layer in cache.layers)


def forward_kwargs(model) -> dict:
    """Ask for the last position's logits only, where the model's forward lets us:
    a prefill chunk's full logits would be tokens x vocabulary floats."""
    accepted = inspect.signature(model.forward).parameters
    return {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}


def positions(attention: torch.Tensor) -> torch.Tensor:
    """Each column's position in its row's own text (padding: 0)."""
    return (attention.cumsum(dim=-1) - 1).clamp(min=0)


class KVBatch:
    def __init__(self, cache, attention: torch.Tensor, rows: list, next_input: torch.Tensor, extra: dict):
        self.cache = cache
        self.attention = attention  # rows x width, 1 where a row has a real token
        self.rows = rows
        self.next_input = next_input  # each row's newest token, fed at the next step
        self._extra = extra  # forward() arguments for this model (forward_kwargs)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def width(self) -> int:
        return self.attention.shape[1]

    def step(self, model) -> torch.Tensor:
        """One decoding step for every row: the logits of each row's next token."""
        ones = torch.ones((len(self.rows), 1), dtype=self.attention.dtype, device=self.attention.device)
        self.attention = torch.cat([self.attention, ones], dim=1)
        out = model(
            input_ids=self.next_input[:, None],
            attention_mask=self.attention,
            position_ids=self.attention.sum(dim=-1, keepdim=True) - 1,
            past_key_values=self.cache,
            use_cache=True,
            **self._extra,
        )
        return out.logits[:, -1]

    def set_next(self, tokens: list[int]) -> None:
        self.next_input = torch.tensor(tokens, dtype=torch.long, device=self.attention.device)

    def keep(self, indices: list[int]) -> None:
        """Only these rows go on (in this order)."""
        if len(indices) == len(self.rows):
            return
        picked = torch.tensor(indices, dtype=torch.long, device=self.attention.device)
        self.cache.batch_select_indices(picked)
        self.attention = self.attention[picked]
        self.next_input = self.next_input[picked]
        self.rows = [self.rows[i] for i in indices]
        self._trim()

    def _trim(self) -> None:
        used = self.attention.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first > 0:
            self.attention = self.attention[:, first:]
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, first:]
                layer.values = layer.values[:, :, first:]

    def join(self, other: "KVBatch") -> None:
        """Take `other`'s rows in behind this batch's."""
        width = max(self.width, other.width)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_pad_left(mine.keys, width, 2), _pad_left(theirs.keys, width, 2)])
            mine.values = torch.cat([_pad_left(mine.values, width, 2), _pad_left(theirs.values, width, 2)])
        self.attention = torch.cat([_pad_left(self.attention, width, 1), _pad_left(other.attention, width, 1)])
        self.next_input = torch.cat([self.next_input, other.next_input])
        self.rows = self.rows + other.rows


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
