"""Where models run: cuda, then mps, then cpu, unless the config names one."""

import torch


def pick_device(setting: str = "auto") -> str:
    if setting and setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def use_half_precision(setting: str, device: str) -> bool:
    """fp16 only on cuda by default: CPU fp16 kernels are slow and mps is uneven."""
    if setting == "on":
        return device != "cpu"
    if setting == "off":
        return False
    return device.startswith("cuda")


def module_nbytes(module) -> int:
    """Memory a torch module's weights and buffers take."""
    total = 0
    for tensor in list(module.parameters()) + list(module.buffers()):
        total += tensor.numel() * tensor.element_size()
    return total
