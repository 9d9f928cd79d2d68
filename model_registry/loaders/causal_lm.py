"""Decoder-only language models (GPT-2, SmolLM2 from GGUF): text generation.

The output is the prompt followed by its continuation, as Backprop's gpt2-large
answered. Requests go through the model's continuous batch (loaders/continuous):
each joins the running sequences between decoding steps and leaves when it ends.
Called directly, and for beam search, the runner is the static path: requests
with the same parameters share one generate call (left-padded). Prompts longer
than the model's context are cut from the left so the most recent text is
kept, leaving room for max_length new tokens.
"""

from collections.abc import Callable

from ..catalogue import ModelSpec
from ..device import module_nbytes
from ..served_model import ServedModel
from . import completion, prompt_scoring
from .common import (
    DEFAULT_SETTINGS,
    LoadSettings,
    from_pretrained,
    import_lock,
    inference,
    max_input_tokens,
    place,
)
from .continuous.task_queues import continuous_generation
from .generation import StopAbandoned, controls_of, generate_kwargs, group_by_params, record_generated, shape_outputs
from .shared_tokenizers import SerialTokenizer

# The tasks this loader's models serve (checked against the catalogue at import).
TASKS = frozenset({"text-generation"})


def load_causal_lm(spec: ModelSpec, path: str, device: str, half: bool,
                   settings: LoadSettings = DEFAULT_SETTINGS, adapt: Callable | None = None) -> ServedModel:
    """`adapt`, if given, changes the model as read from its files, before it is moved
    to its device and halved: a trained LoRA adapter is merged into its base there."""
    with import_lock:
        from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteriaList

    gguf = {"gguf_file": spec.filename} if spec.filename and spec.filename.endswith(".gguf") else {}
    tokenizer = AutoTokenizer.from_pretrained(path, **gguf)
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = from_pretrained(AutoModelForCausalLM, path, "text-generation", **gguf)
    if adapt is not None:
        model = adapt(model)
    model = place(model, device, half)
    context = max_input_tokens(tokenizer, model.config, default=2048)
    tokenizer = SerialTokenizer(tokenizer)  # from here on, used by several threads
    engine = completion.CompletionEngine(model, tokenizer, device, context)

    def text_generation(items: list[dict]) -> list:
        outputs: list = [None] * len(items)
        for indices in group_by_params(items).values():
            params = items[indices[0]]["params"]
            group = [items[i] for i in indices]
            prompts = [item["text"] for item in group]
            encoded = tokenizer(
                prompts, padding=True, truncation=True,
                max_length=max(1, context - params["max_length"]), return_tensors="pt",
            )
            # Rows whose request was abandoned (client gone, deadline) end at their next token.
            abandoned = StopAbandoned(controls_of(group))
            with inference():
                generated = model.generate(
                    input_ids=encoded["input_ids"].to(device),
                    attention_mask=encoded["attention_mask"].to(device),
                    stopping_criteria=StoppingCriteriaList([abandoned]),
                    **generate_kwargs(params, tokenizer.pad_token_id),
                )
            prompt_length = encoded["input_ids"].shape[1]
            new_tokens = generated[:, prompt_length:]
            record_generated(group, abandoned, new_tokens.tolist(), engine.eos_ids, tokenizer.pad_token_id)
            continuations = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            repeat = params["num_generations"]
            texts = [prompts[n // repeat] + continuation for n, continuation in enumerate(continuations)]
            for i, text in zip(indices, shape_outputs(texts, repeat)):
                outputs[i] = text
        return outputs

    continuous = continuous_generation(engine, settings.generation, tokenizer, context, engine.run, text_generation)
    runners = ({"text-generation": continuous.text_generation, completion.RUNNER: continuous.completions}
               if continuous is not None else {"text-generation": text_generation, completion.RUNNER: engine.run})
    # Prompts scored for /v1/completions' logprobs: a pass of its own, through its own batcher.
    runners[prompt_scoring.RUNNER] = prompt_scoring.PromptScorer(model, device, engine.pad_id).run
    served = ServedModel(spec.key, model, module_nbytes(model), device, runners)
    return served.declare(completion=engine,
                          count_tokens=lambda texts: [len(ids) for ids in tokenizer(texts)["input_ids"]])
