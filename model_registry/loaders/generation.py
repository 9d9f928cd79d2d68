"""Backprop's generation parameters -> transformers' generate() arguments."""

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
