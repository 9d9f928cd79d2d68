"""Encoder-decoder models (BART, T5): summarisation, and for Backprop's T5 also QA,
emotion and generation, each by its text prefix.

Inputs longer than the encoder's limit are truncated to it (summaries of very
long documents cover their beginning; see docs/user-guide/models.md).
"""

from ..catalogue import ModelSpec
from ..device import module_nbytes
from ..served_model import ServedModel
from .common import (
    DEFAULT_SETTINGS,
    LoadSettings,
    from_pretrained,
    import_lock,
    inference,
    max_input_tokens,
    place,
)
from .generation import StopAbandoned, controls_of, generate_kwargs, group_by_params, record_generated, shape_outputs

# Backprop's t5-base-qa-summary-emotion was trained on these prompts, and
# answered with greedy decoding up to 96 tokens.
BACKPROP_T5_MAX_LENGTH = 96
PURPOSE = "text-to-text generation"


def backprop_t5_qa_prompt(item: dict) -> str:
    history = [f"q: {q} a: {a}" for q, a in zip(item.get("prev_q") or [], item.get("prev_a") or [])]
    return " ".join([*history, f"q: {item['question']}", f"c: {item['context']}"])


# The tasks this loader's models serve (checked against the catalogue at import).
TASKS = frozenset({"summarisation", "emotion", "qa", "text-generation"})


def load_seq2seq(spec: ModelSpec, path: str, device: str, half: bool,
                 settings: LoadSettings = DEFAULT_SETTINGS) -> ServedModel:
    with import_lock:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, StoppingCriteriaList

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = place(from_pretrained(AutoModelForSeq2SeqLM, path, PURPOSE), device, half)
    max_tokens = max_input_tokens(tokenizer, model.config)
    backprop_t5 = spec.prompts == "backprop-t5"

    eos = model.generation_config.eos_token_id
    eos_ids = {token for token in [*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id]
               if token is not None}

    def generate(prompts: list[str], items: list[dict] | None = None, **kwargs) -> list[str]:
        """`items`, when given, are the prompts' batch items: rows whose request was
        abandoned (client gone, deadline) end at their next token, and what each
        generated is noted in its control."""
        encoded = tokenizer(prompts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        abandoned = StopAbandoned(controls_of(items)) if items else None
        if abandoned is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([abandoned])
        with inference():
            output = model.generate(
                input_ids=encoded["input_ids"].to(device), attention_mask=encoded["attention_mask"].to(device), **kwargs
            )
        if abandoned is not None:  # each row starts with the decoder's start token: not generated
            record_generated(items, abandoned, output[:, 1:].tolist(), eos_ids, tokenizer.pad_token_id)
        return tokenizer.batch_decode(output, skip_special_tokens=True)

    def fixed_prompt(prefix: str):
        def run(items: list[dict]) -> list[str]:
            prompts = [f"{prefix}{item['text']}" for item in items]
            if backprop_t5:
                return generate(prompts, do_sample=False, max_length=BACKPROP_T5_MAX_LENGTH)
            return generate(prompts)  # the model's own generation settings (beams, lengths)

        return run

    def qa(items: list[dict]) -> list[str]:
        return generate([backprop_t5_qa_prompt(item) for item in items], do_sample=False, max_length=BACKPROP_T5_MAX_LENGTH)

    def text_generation(items: list[dict]) -> list:
        outputs: list = [None] * len(items)
        for indices in group_by_params(items).values():
            params = items[indices[0]]["params"]
            group = [items[i] for i in indices]
            texts = generate([item["text"] for item in group], group, **generate_kwargs(params, tokenizer.pad_token_id))
            for i, text in zip(indices, shape_outputs(texts, params["num_generations"])):
                outputs[i] = text
        return outputs

    # Every task the architecture can do; the catalogue (or a user model's
    # config.json) decides which of them are routed here.
    runners = {
        "summarisation": fixed_prompt("summarise: " if backprop_t5 else ""),
        "emotion": fixed_prompt("emotion: "),
        "qa": qa,
        "text-generation": text_generation,
    }
    return ServedModel(spec.key, model, module_nbytes(model), device, runners)
