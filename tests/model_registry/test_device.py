"""Where models run: the choice follows what torch reports, whatever this machine has."""

import types

import pytest
import torch

from model_registry.device import pick_device, use_half_precision


@pytest.fixture
def accelerators(monkeypatch):
    """accelerators(cuda=..., mps=...): make torch report these as available."""

    def _set(cuda: bool, mps: bool | None):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        if mps is None:  # a torch without the mps backend (torch.backends imports it lazily: replace it)
            monkeypatch.setattr(torch, "backends", types.SimpleNamespace())
        else:
            monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return _set


@pytest.mark.parametrize(
    "cuda,mps,chosen",
    [
        (True, True, "cuda"),
        (True, False, "cuda"),
        (False, True, "mps"),
        (False, False, "cpu"),
        (False, None, "cpu"),
    ],
)
@pytest.mark.parametrize("setting", ["auto", ""])
def test_auto_picks_cuda_then_mps_then_cpu(accelerators, cuda, mps, chosen, setting):
    accelerators(cuda, mps)
    assert pick_device(setting) == chosen


@pytest.mark.parametrize("setting", ["cpu", "cuda:1", "mps"])
@pytest.mark.parametrize("cuda,mps", [(True, True), (False, False)])
def test_a_named_device_is_used_as_named(accelerators, setting, cuda, mps):
    accelerators(cuda, mps)
    assert pick_device(setting) == setting


@pytest.mark.parametrize(
    "setting,device,half",
    [
        ("auto", "cuda", True),
        ("auto", "cuda:1", True),
        ("auto", "mps", False),  # mps fp16 is uneven
        ("auto", "cpu", False),  # CPU fp16 kernels are slow
        ("on", "cuda", True),
        ("on", "mps", True),
        ("on", "cpu", False),
        ("off", "cuda", False),
    ],
)
def test_half_precision_policy(setting, device, half):
    assert use_half_precision(setting, device) is half
