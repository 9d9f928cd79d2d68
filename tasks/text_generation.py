"""POST /text-generation with every Backprop parameter, each bounded.

min_length and max_length count generated tokens; temperature 0 (or do_sample
false, which Backprop's Python client sends) is deterministic: greedy, or beam
search with num_generations beams when more outputs than beams are asked for;
num_generations > 1 answers a list per input. Every parameter left out takes
the reference's default (Backprop's client sends only those its user set).
Prompts longer than the model's context are cut from the left, keeping the
latest text.

A generation nobody waits for stops at its next token (the spec's
stops_when_abandoned; the route watches it, web/client_gone.py): its client has
gone (499), or REQUEST_TIMEOUT_S passed since its submit (504). The tokens every
generation produced are counted in infer_generated_tokens_total, those of a
stopped one included.
"""

from marshmallow import ValidationError, fields, post_load, validate

from model_registry.catalogue import CAUSAL_LM
from model_registry.loaders.generation import DEFAULTS
from trainers.lora_generation import LoraGenerationTrainer

from .answers import SAMPLE_TEXT, strings_answer
from .common import OutputResponse, StrictSchema, TextOrTexts, as_batch, check_at_most, model_field
from .spec import TaskSpec, register

TASK = "text-generation"


class TextGenerationBody(StrictSchema):
    # A causal model (gpt2) cannot start from zero tokens: "" would fail inside generate().
    text = TextOrTexts(required=True, empty_error="The text is empty: send at least one character for the model to continue.",
                       metadata={"description": "Text to continue, or a list for a batch."})
    # Left out, it is 10, or max_length when that is lower (a client setting only max_length=5).
    min_length = fields.Integer(load_default=None, validate=validate.Range(min=0), metadata={
        "default": DEFAULTS["min_length"],
        "description": "Fewest tokens to generate; left out: 10, or max_length if that is lower."})
    max_length = fields.Integer(load_default=DEFAULTS["max_length"], validate=validate.Range(min=1),
                                metadata={"description": "Most tokens to generate (at most INFER_GEN_MAX_NEW_TOKENS)."})
    temperature = fields.Float(load_default=DEFAULTS["temperature"], validate=validate.Range(min=0, max=10),
                               metadata={"description": "0 is greedy and deterministic; higher is more random."})
    top_k = fields.Integer(load_default=DEFAULTS["top_k"], validate=validate.Range(min=0),
                           metadata={"description": "Sample among the k likeliest tokens; 0 means all."})
    top_p = fields.Float(load_default=DEFAULTS["top_p"], validate=validate.Range(min=0, max=1, min_inclusive=False),
                         metadata={"description": "Sample among the likeliest tokens whose probabilities add up to p."})
    repetition_penalty = fields.Float(load_default=DEFAULTS["repetition_penalty"],
                                      validate=validate.Range(min=0, max=10, min_inclusive=False),
                                      metadata={"description": "Above 1 discourages repetition."})
    length_penalty = fields.Float(load_default=DEFAULTS["length_penalty"], validate=validate.Range(min=-10, max=10),
                                  metadata={"description": "With beams: above 1 favours longer outputs."})
    num_beams = fields.Integer(load_default=DEFAULTS["num_beams"], validate=validate.Range(min=1),
                               metadata={"description": "Beam search width; 1 is no beam search (at most INFER_GEN_MAX_BEAMS)."})
    num_generations = fields.Integer(load_default=DEFAULTS["num_generations"], validate=validate.Range(min=1),
                                     metadata={"description": "Outputs per input (at most INFER_GEN_MAX_GENERATIONS)."})
    do_sample = fields.Boolean(load_default=None, truthy={True}, falsy={False}, metadata={
        "description": "Not in the Backprop API reference; Backprop's Python client sends it. false: deterministic, "
                       "as temperature 0 (temperature, top_k and top_p are then not used); true: sample (temperature "
                       "must then be above 0). Left out: temperature decides."})
    model = model_field("gpt2-large (default), t5-base-qa-summary-emotion, smollm2-135m-instruct, or your own model.")

    @post_load
    def to_items(self, data, **kwargs):
        check_at_most("GEN_MAX_NEW_TOKENS", "max_length", data["max_length"])
        check_at_most("GEN_MAX_BEAMS", "num_beams", data["num_beams"])
        check_at_most("GEN_MAX_GENERATIONS", "num_generations", data["num_generations"])
        if data["min_length"] is None:
            data["min_length"] = min(DEFAULTS["min_length"], data["max_length"])
        if data["min_length"] > data["max_length"]:
            raise ValidationError({"min_length": ["min_length must not exceed max_length."]})
        do_sample = data.pop("do_sample")
        if do_sample is False:
            data["temperature"] = 0
        elif do_sample and data["temperature"] == 0:
            raise ValidationError({"do_sample": ["do_sample true samples: send a temperature above 0 with it."]})
        if data["temperature"] == 0 and data["num_generations"] > data["num_beams"]:
            # Deterministic decoding gives one output per beam: the n best beams are n different outputs.
            check_at_most("GEN_MAX_BEAMS", "num_generations", data["num_generations"])
            data["num_beams"] = data["num_generations"]
        texts, is_batch = as_batch(data.pop("text"))
        model = data.pop("model")
        return {"items": [{"text": text, "params": data} for text in texts], "is_batch": is_batch, "model": model}


SPEC = register(TaskSpec(
    TASK, "/text-generation", "Text generation.", "Continue a text (or a batch of texts)",
    TextGenerationBody, OutputResponse, response_keys=("output",), stops_when_abandoned=True,
    sample=lambda: {"text": SAMPLE_TEXT, "params": {**DEFAULTS, "min_length": 1, "max_length": 4, "temperature": 0}},
    check_answer=strings_answer, to_user_input=lambda item: {"text": item["text"], **item["params"]},
    # A Hugging Face folder of an encoder-decoder model goes to the seq2seq loader
    # instead (uploads.serving.hf_loader reads its config.json).
    hf_loader=CAUSAL_LM,
    trainer=LoraGenerationTrainer,
))
