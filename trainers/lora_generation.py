"""Text generation: a LoRA adapter (PEFT) on a catalogue causal language model, trained
with transformers' Trainer; the version is the adapter alone (a few MB), served
merged into its base (uploads/formats/lora_adapter.py).

A prompt-completion row is the prompt, the completion and end-of-text; a chat row
is rendered with the base's own chat template (the catalogue's, never the user's).
The loss counts only what the model is to write (the completion; the assistant
turns with their end-of-turn marker): other tokens are labelled -100. Each part is
tokenized as serving tokenizes it (the prompt alone; the conversation up to the
assistant's turn), so the model learns to continue exactly what it is sent.

Keeping on from a version: its adapter is loaded on the same base (PeftModel,
trainable) and trained on with the new rows; its shape (lora_r, lora_alpha,
target_modules) is the parent's. Each epoch reports train_perplexity, from the
epoch's mean training loss (dropout on); a test dataset is scored once at the
end, on the kept adapter: its loss and perplexity.
"""

import json
import os

from marshmallow import fields, validate

from model_registry.catalogue import CAUSAL_LM
from trainers.base import BaseHyperparameters, TaskTrainer, TrainingFailed, TrainingResult

FORMAT = "lora-adapter"
IGNORED = -100  # the label that the loss skips
# What a parent's adapter fixes: a job that keeps training it cannot change these.
ADAPTER_SHAPE = ("lora_r", "lora_alpha", "target_modules")


class LoraHyperparameters(BaseHyperparameters):
    # LoRA trains few weights from a small start: a higher rate than full fine-tuning.
    learning_rate = fields.Float(load_default=2e-4, validate=validate.Range(min=1e-7, max=1.0))
    batch_size = fields.Integer(load_default=4, validate=validate.Range(1, 512))
    lora_r = fields.Integer(load_default=8, validate=validate.Range(1, 256),
                            metadata={"description": "Rank of the adapter's update matrices."})
    lora_alpha = fields.Integer(load_default=16, validate=validate.Range(1, 1024),
                                metadata={"description": "Scale of the update (alpha / r)."})
    lora_dropout = fields.Float(load_default=0.05, validate=validate.Range(0, 0.5))
    target_modules = fields.List(
        fields.String(validate=validate.Length(1, 100)), load_default=None, validate=validate.Length(1, 64),
        metadata={"description": "Names of the base's linear layers to adapt (q_proj, v_proj ...); "
                                 "left out: its attention projections."})
    max_length = fields.Integer(load_default=512, validate=validate.Range(16, 4096),
                                metadata={"description": "Tokens per example; longer ones are cut at the end."})


class LoraGenerationTrainer(TaskTrainer):
    task = "text-generation"
    library = "transformers + peft"
    dataset_formats = ("prompt-completion", "chat")
    default_base_model = "smollm2-135m-instruct"
    base_loaders = (CAUSAL_LM,)
    hyperparameters = LoraHyperparameters
    limitations = ("Trains a LoRA adapter on a causal language model's linear layers, in float32; no "
                   "quantized (QLoRA) training, no packing of short examples, no generation metrics beyond "
                   "perplexity. Examples longer than max_length are cut at the end.")
    continues_from_formats = (FORMAT,)
    scores_test_rows = True

    def check_parent(self, hyperparameters: dict, parent_hyperparameters: dict) -> str | None:
        changed = [name for name in ADAPTER_SHAPE
                   if name in parent_hyperparameters and hyperparameters[name] != parent_hyperparameters[name]]
        if changed:
            return (f"{', '.join(changed)}: the adapter trained on from has "
                    + ", ".join(f"{name} {parent_hyperparameters[name]}" for name in changed)
                    + "; keeping on trains that adapter, whose shape stays as it is (leave these out).")
        return None

    def train(self, run) -> TrainingResult:
        import torch

        torch.set_num_threads(run.torch_threads)
        from peft import LoraConfig, PeftModel, get_peft_model
        from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, Trainer, TrainingArguments, set_seed

        from trainers.hf_callback import EpochReporter, best_epoch, epoch_arguments, last_checkpoint
        from trainers.metrics import perplexity

        hp = run.hyperparameters
        tokenizer, model = _load_base(run)
        train_set = _encode(run, run.train_rows, tokenizer, "training")
        validation_set = _encode(run, run.validation_rows, tokenizer, "validation") if run.validation_rows else []
        test_set = _encode(run, run.test_rows, tokenizer, "test") if run.test_rows else []

        set_seed(hp["seed"])  # the adapter's A matrices start random
        if run.parent_dir:  # keeping on: the parent's adapter, trainable, on the same base
            model = PeftModel.from_pretrained(model, run.parent_dir, is_trainable=True)
            targets = sorted(model.peft_config["default"].target_modules)
        else:
            targets = _target_modules(model, hp["target_modules"], run.base_model)
            model = get_peft_model(model, LoraConfig(
                task_type="CAUSAL_LM", r=hp["lora_r"], lora_alpha=hp["lora_alpha"],
                lora_dropout=hp["lora_dropout"], target_modules=targets))
        trainable, total = model.get_nb_trainable_parameters()
        run.reporter.log(f"LoRA on {', '.join(targets)}: {trainable:,} of {total:,} weights trained")

        arguments = epoch_arguments(hp, run.checkpoint_dir)
        # PeftModel's forward takes **kwargs, so the Trainer cannot see that it takes
        # labels; without them it would compute no validation loss.
        arguments["label_names"] = ["labels"]
        reported = _KeptEpochs(run.reporter)
        callbacks = [EpochReporter(reported, lambda epoch: {"perplexity": perplexity(epoch["validation_loss"]),
                                                            "train_perplexity": perplexity(epoch["train_loss"])},
                                   validating=bool(validation_set))]
        if not validation_set:
            arguments.update(eval_strategy="no", load_best_model_at_end=False, metric_for_best_model=None)
        if hp["early_stopping_patience"] > 0 and validation_set:
            callbacks.append(EarlyStoppingCallback(hp["early_stopping_patience"]))
        elif hp["early_stopping_patience"] > 0:
            run.reporter.log("No validation set: early stopping is off, every epoch is trained.")
        tokenizer.padding_side = "right"
        trainer = Trainer(
            model=model, args=TrainingArguments(**arguments), train_dataset=train_set,
            eval_dataset=validation_set or None, callbacks=callbacks,
            data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORED, padding=True),
        )
        output = trainer.train(resume_from_checkpoint=last_checkpoint(run.checkpoint_dir))

        kept = best_epoch(trainer.state) or int(round(trainer.state.epoch))
        test_metrics = None
        if test_set:  # the kept epoch's adapter (load_best_model_at_end put it back)
            trainer.remove_callback(EpochReporter)  # this evaluation is no epoch of the job's
            loss = trainer.evaluate(eval_dataset=test_set, metric_key_prefix="test")["test_loss"]
            test_metrics = {"loss": loss, "perplexity": perplexity(loss), "rows": len(test_set)}
        _save(run, trainer.model)
        return TrainingResult(
            format=FORMAT, tasks=[self.task], best_epoch=kept,
            metrics=reported.epochs.get(kept) or _epoch_stats(trainer.state, kept),
            description=f"LoRA adapter (r={trainer.model.peft_config['default'].r}) on {run.base_model}",
            samples_per_second=output.metrics.get("train_samples_per_second"), test_metrics=test_metrics,
            continued="continued from its adapter, on the same base model" if run.parent_dir else "")


def _load_base(run):
    """The base model in float32 on the CPU, and its tokenizer (with its chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model_registry.loaders.common import from_pretrained

    gguf = {"gguf_file": run.base_model_file} if (run.base_model_file or "").endswith(".gguf") else {}
    tokenizer = AutoTokenizer.from_pretrained(run.base_model_dir, **gguf)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # from_pretrained refuses a checkpoint that leaves weights random (MissingWeights).
    model = from_pretrained(AutoModelForCausalLM, run.base_model_dir, "text-generation", dtype=torch.float32, **gguf)
    if gguf:
        _forget_gguf_quantization(model, run.base_model)
    run.reporter.log(f"Loaded {run.base_model} ({type(model).__name__}, float32)")
    return tokenizer, model


def _forget_gguf_quantization(model, name: str) -> None:
    """transformers reads a GGUF file by dequantizing every tensor, yet marks the model
    as GGUF-quantized, and its Trainer refuses to train such a model. The weights it
    holds are ordinary float tensors, as trainable as any: drop the marks, having
    checked that this is still so."""
    if not all(weight.is_floating_point() for weight in model.parameters()):
        raise TrainingFailed(f"{name} is held quantized in memory: it cannot be trained. Choose another base model.")
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _target_modules(model, asked: list | None, name: str) -> list[str]:
    """The layers asked for, each naming linear layers of the base (PEFT's rule: it is
    the name or its end after a "."), or PEFT's default for the architecture."""
    import torch
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS
    from transformers.pytorch_utils import Conv1D

    # The output layer is left out: many models tie it to the input embeddings.
    output = model.get_output_embeddings()
    linear = [module_name for module_name, module in model.named_modules()
              if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not output]
    choices = sorted({module_name.rsplit(".", 1)[-1] for module_name in linear})
    if asked is None:
        asked = [target for target in DEFAULTS.get(model.config.model_type, []) if target in choices]
        if not asked:
            raise TrainingFailed(f"There is no default LoRA target for {name} ({model.config.model_type}): "
                                 f"name its layers in target_modules, among {', '.join(choices)}.")
        return list(asked)
    missing = [target for target in asked
               if not any(module_name == target or module_name.endswith("." + target) for module_name in linear)]
    if missing:
        raise TrainingFailed(f"target_modules names {', '.join(missing)}, which {name} has no linear layer called; "
                             f"its linear layers are {', '.join(choices)}.")
    return list(asked)


def _encode(run, rows: list, tokenizer, which: str) -> list[dict]:
    """Token ids and labels (-100 where the loss does not count) of every row, cut to
    max_length; a row with nothing left to learn once cut is dropped."""
    if run.dataset_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise TrainingFailed(f"{run.base_model} has no chat template: train it on a prompt-completion dataset.")
    max_length = run.hyperparameters["max_length"]
    examples, whole_text, dropped = [], 0, 0
    for row in rows:
        if run.dataset_format == "chat":
            segments, turns_only = _chat_segments(tokenizer, row["messages"])
            whole_text += not turns_only
        else:
            segments = _completion_segments(tokenizer, row)
        input_ids, labels = [], []
        for ids, learned in segments:
            input_ids += ids
            labels += ids if learned else [IGNORED] * len(ids)
        input_ids, labels = input_ids[:max_length], labels[:max_length]
        if all(label == IGNORED for label in labels):
            dropped += 1
            continue
        examples.append({"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels})
    if whole_text:
        run.reporter.log(f"{whole_text} {which} conversations are learned whole: the chat template does not "
                         "render their start as the start of the whole conversation.")
    if dropped:
        run.reporter.log(f"{dropped} {which} examples left out: nothing to learn in their first {max_length} tokens.")
    if not examples:
        raise TrainingFailed(f"No {which} example has a completion within its first {max_length} tokens: "
                             "raise max_length or shorten the prompts.")
    return examples


def _completion_segments(tokenizer, row: dict) -> list[tuple[list[int], bool]]:
    # The prompt as the served model's tokenizer reads it (special tokens and all),
    # then what it should write, ending with end-of-text so that it learns to stop.
    prompt = tokenizer(row["prompt"])["input_ids"]
    completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
    return [(prompt, False), (completion + [tokenizer.eos_token_id], True)]


def _chat_segments(tokenizer, messages: list[dict]) -> tuple[list[tuple[list[int], bool]], bool]:
    """The conversation as (token ids, learned) parts, and whether only the assistant
    turns are learned: each is what the template adds to the conversation before it
    rendered with the generation prompt (what serving sends the model). Where that
    is not a prefix of the whole conversation, the whole text is learned instead."""

    def render(upto: int, generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=generation_prompt)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]  # the template wrote them

    whole = render(len(messages), False)
    parts, done = [], ""
    try:
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before, through = render(index, True), render(index + 1, False)
            if not (before.startswith(done) and through.startswith(before) and whole.startswith(through)):
                return [(ids(whole), True)], False
            parts += [(before[len(done):], False), (through[len(before):], True)]
            done = through
    except ValueError:  # a turn the template cannot render alone (an empty conversation before it)
        return [(ids(whole), True)], False
    parts.append((whole[len(done):], False))
    return [(ids(text), learned) for text, learned in parts if text], True


class _KeptEpochs:
    """The job's reporter, keeping each epoch's statistics (the result repeats the best's)."""

    def __init__(self, reporter):
        self.reporter = reporter
        self.epochs: dict[int, dict] = {}

    def log(self, line: str) -> None:
        self.reporter.log(line)

    def epoch(self, stats: dict) -> None:
        self.reporter.epoch(stats)
        self.epochs[stats["epoch"]] = stats


def _epoch_stats(state, epoch: int) -> dict:
    """An epoch run before a crash: its statistics as the checkpoint's log history has them."""
    from trainers.metrics import perplexity

    stats = {"epoch": epoch, "step": None, "train_loss": None, "validation_loss": None,
             "learning_rate": None, "elapsed_s": None}
    for entry in state.log_history:
        if int(round(entry.get("epoch", 0))) != epoch:
            continue
        stats["step"] = entry.get("step", stats["step"])
        if "loss" in entry:
            stats["train_loss"], stats["learning_rate"] = entry["loss"], entry.get("learning_rate")
        if "eval_loss" in entry:
            stats["validation_loss"] = entry["eval_loss"]
    stats["perplexity"] = perplexity(stats["validation_loss"])
    return stats


def _save(run, model) -> None:
    """The adapter alone (safetensors + its config) and trained.json: serving loads
    the base again by its catalogue key, never by a path of this host."""
    import peft
    import transformers

    model.peft_config["default"].base_model_name_or_path = run.base_model
    # No embedding layer is adapted: nothing to save of them, nothing to ask the hub.
    model.save_pretrained(run.output_dir, save_embedding_layers=False)
    # PEFT's model card names the base by this host's path; the version does not need it.
    if os.path.exists(card := os.path.join(run.output_dir, "README.md")):
        os.remove(card)
    trained = {"tasks": ["text-generation"], "format": FORMAT,
               "description": f"LoRA adapter on {run.base_model}, trained on a {run.dataset_format} dataset",
               "base_model": run.base_model, "base_model_file": run.base_model_file,
               "library": f"peft {peft.__version__}, transformers {transformers.__version__}"}
    with open(os.path.join(run.output_dir, "trained.json"), "w") as file:
        json.dump(trained, file, indent=2)
