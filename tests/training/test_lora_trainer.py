"""LoRA text-generation training (transformers' Trainer + PEFT) and its version,
served merged into the catalogue base it was trained on."""

import json
import math
import os

import pytest

from core.settings import Settings
from model_registry.catalogue import CAUSAL_LM, MODELS, ModelSpec
from model_registry.loaders import DEFAULT_SETTINGS
from model_registry.loaders.generation import DEFAULTS, generate_kwargs
from tests.tiny_models import SMOLLM2_GGUF, build_tiny_causal_lm, smollm2_dir
from trainers.base import EPOCH_KEYS, TrainingFailed
from trainers.lora_generation import IGNORED, LoraGenerationTrainer, _chat_segments, _completion_segments
from uploads.formats import Version, named

from .helpers import Crashed, ListReporter, make_run

TINY = "tiny-causal-lm"
SMOLLM2 = "smollm2-135m-instruct"
PROMPT = "Favourite colour:"
COLOUR_ROWS = [{"prompt": PROMPT, "completion": " green green green"}] * 8


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A model dir holding the tiny random Llama under its catalogue key."""
    models = tmp_path_factory.mktemp("models")
    build_tiny_causal_lm(str(models / TINY))
    return str(models)


@pytest.fixture
def tiny_in_catalogue(monkeypatch, models_dir):
    monkeypatch.setitem(MODELS, TINY, ModelSpec(TINY, "tests/tiny-causal-lm", "main", CAUSAL_LM, "tiny Llama"))
    return os.path.join(models_dir, TINY)


def tiny_run(tmp_path, base_dir, hyperparameters, reporter=None, output_name="output"):
    trainer = LoraGenerationTrainer()
    return trainer, make_run(tmp_path, trainer, COLOUR_ROWS, COLOUR_ROWS[:2], "prompt-completion",
                             {"learning_rate": 1e-2, **hyperparameters}, base_model=TINY, base_model_dir=base_dir,
                             reporter=reporter, output_name=output_name)


def served_version(output_dir, models_dir):
    return Version(id=7, tasks=["text-generation"], files_dir=output_dir, venv_dir="",
                   settings=Settings(model_dir=models_dir), model_sandbox=None, device="cpu", half=False,
                   load_settings=DEFAULT_SETTINGS)


def chat(question, answer):
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)


def learned_text(tokenizer, segments):
    ids = [token for part, learned in segments for token in (part if learned else [IGNORED] * len(part))]
    return tokenizer.decode([token for token in ids if token != IGNORED])


def test_chat_loss_counts_the_assistant_turns_only(smollm2_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"},
                {"role": "assistant", "content": "Goodbye."}]

    segments, turns_only = _chat_segments(smollm2_tokenizer, messages)

    assert turns_only
    assert learned_text(smollm2_tokenizer, segments) == "Hello.<|im_end|>\nGoodbye.<|im_end|>\n"
    whole = smollm2_tokenizer.apply_chat_template(messages, tokenize=False)
    assert smollm2_tokenizer.decode([token for part, _ in segments for token in part]) == whole


def test_completion_loss_counts_the_completion_and_its_end_only(smollm2_tokenizer):
    segments = _completion_segments(smollm2_tokenizer, {"prompt": "Q: 2+2? A:", "completion": " 4"})

    assert learned_text(smollm2_tokenizer, segments) == " 4" + smollm2_tokenizer.eos_token
    assert segments[0][0] == smollm2_tokenizer("Q: 2+2? A:")["input_ids"]  # as serving tokenizes the prompt


@pytest.mark.packaged_model
def test_lora_on_smollm2_lowers_the_validation_loss_and_saves_only_the_adapter(tmp_path):
    train = [chat(f"What is secret word number {i}?", "The secret word is pumpernickel.") for i in range(8)]
    validation = [chat(f"Tell me secret word {i}.", "The secret word is pumpernickel.") for i in range(2)]
    trainer = LoraGenerationTrainer()
    reporter = ListReporter()
    run = make_run(tmp_path, trainer, train, validation, "chat",
                   {"epochs": 2, "learning_rate": 1e-3, "max_length": 64}, base_model=SMOLLM2,
                   base_model_dir=smollm2_dir(), base_model_file=SMOLLM2_GGUF, reporter=reporter)

    result = trainer.train(run)

    first, second = reporter.epochs
    assert set(EPOCH_KEYS) | {"perplexity"} <= set(first)
    assert second["validation_loss"] < first["validation_loss"]
    assert second["perplexity"] == pytest.approx(math.exp(second["validation_loss"]))
    assert (result.format, result.best_epoch, result.metrics) == ("lora-adapter", 2, second)
    assert sorted(os.listdir(run.output_dir)) == ["adapter_config.json", "adapter_model.safetensors", "trained.json"]
    assert os.path.getsize(os.path.join(run.output_dir, "adapter_model.safetensors")) < 10 * 2**20
    with open(os.path.join(run.output_dir, "trained.json")) as file:
        trained = json.load(file)
    assert (trained["base_model"], trained["base_model_file"]) == (SMOLLM2, SMOLLM2_GGUF)
    with open(os.path.join(run.output_dir, "adapter_config.json")) as file:
        assert json.load(file)["base_model_name_or_path"] == SMOLLM2  # a key, not this host's path


def test_a_crashed_run_resumes_from_its_last_epoch_checkpoint(tmp_path, tiny_in_catalogue):
    trainer, crashing = tiny_run(tmp_path, tiny_in_catalogue, {"epochs": 3}, ListReporter(crash_at_epoch=2))
    with pytest.raises(Crashed):
        trainer.train(crashing)

    reporter = ListReporter()
    trainer, resumed = tiny_run(tmp_path, tiny_in_catalogue, {"epochs": 3}, reporter, output_name="resumed")
    result = trainer.train(resumed)

    # Epoch 1 again from its checkpoint's log, marked restored (the job keeps its own report
    # if it has one: a report lost with a killed process is filled in); then the epochs it ran.
    assert [(stats["epoch"], stats.get("restored", False)) for stats in reporter.epochs] == \
        [(1, True), (2, False), (3, False)]
    assert reporter.epochs[0]["validation_loss"] is not None and reporter.epochs[0]["train_loss"] is not None
    assert result.metrics["epoch"] == result.best_epoch
    assert result.metrics["validation_loss"] is not None  # epoch 1's too, read back from its checkpoint
    assert os.path.isfile(os.path.join(resumed.output_dir, "adapter_model.safetensors"))


def test_without_validation_rows_every_epoch_is_reported_without_validation_values(tmp_path, tiny_in_catalogue):
    trainer = LoraGenerationTrainer()
    reporter = ListReporter()
    run = make_run(tmp_path, trainer, COLOUR_ROWS, [], "prompt-completion", {"epochs": 2}, base_model=TINY,
                   base_model_dir=tiny_in_catalogue, reporter=reporter)

    result = trainer.train(run)

    reported = [(stats["epoch"], stats["validation_loss"], stats["perplexity"]) for stats in reporter.epochs]
    assert reported == [(1, None, None), (2, None, None)]
    assert all(stats["train_loss"] is not None for stats in reporter.epochs)
    assert result.best_epoch == 2


def test_served_adapter_generates_as_the_unmerged_peft_model_does(tmp_path, tiny_in_catalogue, models_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hyperparameters = {"epochs": 2, "target_modules": ["q_proj", "v_proj", "o_proj"]}
    trainer, run = tiny_run(tmp_path, tiny_in_catalogue, hyperparameters)
    trainer.train(run)

    served = named("lora-adapter").serve(served_version(run.output_dir, models_dir))
    params = {**DEFAULTS, "min_length": 1, "max_length": 6, "temperature": 0}
    [served_text] = served.runners["text-generation"]([{"text": PROMPT, "params": params}])

    tokenizer = AutoTokenizer.from_pretrained(tiny_in_catalogue)
    encoded = tokenizer(PROMPT, return_tensors="pt")
    settings = generate_kwargs(params, tokenizer.pad_token_id)
    base = AutoModelForCausalLM.from_pretrained(tiny_in_catalogue).eval()

    def generated(model):
        continuation = model.generate(**encoded, **settings)[0, encoded["input_ids"].shape[1]:]
        return PROMPT + tokenizer.decode(continuation, skip_special_tokens=True)

    with torch.inference_mode():
        base_logits, base_text = base(**encoded).logits, generated(base)
        unmerged = PeftModel.from_pretrained(base, run.output_dir).eval()  # wraps base's layers in place
        peft_logits, peft_text = unmerged(**encoded).logits, generated(unmerged)
        served_logits = served.model(**encoded).logits

    assert torch.allclose(served_logits, peft_logits, atol=1e-4)
    assert not torch.allclose(served_logits, base_logits, atol=1e-2)
    assert served_text == peft_text
    assert served_text != base_text
    assert (served.key, set(served.runners)) == ("user-7", {"text-generation", "completions", "prompt-logprobs"})
    # The tokenizer, and so its chat template, is the catalogue base's: run for /v1/chat.
    assert served.completion.runs_chat_template


def test_target_modules_the_base_lacks_fail_naming_its_layers(tmp_path, tiny_in_catalogue):
    trainer, run = tiny_run(tmp_path, tiny_in_catalogue, {"target_modules": ["q_proj", "query_key_value"]})

    with pytest.raises(TrainingFailed, match=r"target_modules names query_key_value.*its linear layers are .*q_proj"):
        trainer.train(run)


def test_a_lora_adapter_cannot_be_uploaded(tmp_path):
    assert named("lora-adapter").detect(str(tmp_path), {"model_type": "llama"}) is False


def test_keeping_on_trains_the_parents_adapter_and_scores_the_test_rows(tmp_path, tiny_in_catalogue):
    from dataclasses import replace

    from safetensors.numpy import load_file

    trainer, parent_run = tiny_run(tmp_path / "parent", tiny_in_catalogue, {"epochs": 1})
    trainer.train(parent_run)
    reporter = ListReporter()
    # A learning rate too small to move the weights: what the child saves is what it started from.
    _, child_run = tiny_run(tmp_path / "child", tiny_in_catalogue, {"epochs": 1, "learning_rate": 1e-7}, reporter)
    child_run = replace(child_run, parent_dir=parent_run.output_dir, parent={"model": "colours", "version": 1},
                        test_rows=COLOUR_ROWS[:3])

    result = trainer.train(child_run)

    assert result.continued == "continued from its adapter, on the same base model"
    parent_weights = load_file(os.path.join(parent_run.output_dir, "adapter_model.safetensors"))
    child_weights = load_file(os.path.join(child_run.output_dir, "adapter_model.safetensors"))
    assert set(parent_weights) == set(child_weights)
    trained_b = [name for name in parent_weights if "lora_B" in name]
    assert trained_b and all(abs(parent_weights[name]).max() > 0 for name in trained_b)  # a fresh B starts at 0
    for name in parent_weights:
        assert child_weights[name] == pytest.approx(parent_weights[name], abs=1e-4), name
    [epoch] = reporter.epochs
    assert epoch["train_perplexity"] == pytest.approx(math.exp(epoch["train_loss"]))
    assert result.test_metrics["rows"] == 3
    assert result.test_metrics["perplexity"] == pytest.approx(math.exp(result.test_metrics["loss"]))


def test_keeping_on_cannot_change_the_adapters_shape():
    trainer = LoraGenerationTrainer()
    parent = trainer.hyperparameters().load({})
    assert trainer.check_parent(trainer.hyperparameters().load({}), parent) is None
    problem = trainer.check_parent(trainer.hyperparameters().load({"lora_r": 16}), parent)
    assert "lora_r" in problem and "8" in problem
