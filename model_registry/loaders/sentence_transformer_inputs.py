"""What a sentence-transformers model's token inputs are, for both of its runners
(torch, sentence_transformer.py; ONNX Runtime, sentence_transformer_onnx.py)."""

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def plain_text_inputs(model) -> list[str] | str:
    """The token inputs a model's first module reads, or why its inputs are not just
    tokens (then it is served through encode, which knows its prompts and modalities)."""
    if model.tokenizer is None:
        return "its first module reads no text"
    if getattr(model, "default_prompt_name", None):
        return f"it prepends the prompt {model.default_prompt_name!r} to every input"
    probe = model.preprocess(["probe"])
    extra = sorted(set(probe) - set(TEXT_INPUTS) - {"modality"})
    if extra or probe.get("modality", "text") != "text" or "attention_mask" not in probe:
        return f"its inputs are not only token ids ({', '.join(sorted(probe))})"
    return [name for name in TEXT_INPUTS if name in probe]


def pad_values(tokenizer, names: list[str]) -> dict[str, int]:
    values = {"input_ids": tokenizer.pad_token_id or 0, "attention_mask": 0,
              "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
    return {name: values[name] for name in names}
