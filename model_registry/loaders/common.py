"""What the loaders share: safe first imports, device placement, input length limits."""

import threading

import torch

# Model libraries are imported on first load, not at start (the CLI and health
# endpoints do not need them); their first import is not thread-safe, and two
# models may load at once in two threads.
import_lock = threading.Lock()


def place(model, device: str, half: bool):
    """Move a model to its device, in half precision where chosen, for inference."""
    model.to(device)
    if half:
        model.half()
    model.eval()
    return model


def max_input_tokens(tokenizer, config, default: int = 512) -> int:
    """The longest input the model takes: tokenizers of small models often claim 1e30."""
    limits = [default]
    if getattr(tokenizer, "model_max_length", None) and tokenizer.model_max_length < 1e9:
        limits = [tokenizer.model_max_length]
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        # Some architectures (RoBERTa) reserve position ids for padding.
        limits.append(positions - 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta") else positions)
    return min(limits)


def inference():
    return torch.inference_mode()
