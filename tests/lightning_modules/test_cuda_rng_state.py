"""A vocoder checkpoint keeps the CUDA RNG state of its own device only, and resumes on a machine
with fewer GPUs than the one that saved it. No GPU needed: torch.cuda's RNG calls are stood in for
by fakes that behave like one visible GPU."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from distillgan.lightning_modules.hifigan import HiFiGANModule
from distillgan.recipes import load_vocoder_config


def state(value: int) -> torch.Tensor:
    return torch.full((16,), value, dtype=torch.uint8)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[int]]]:
    """torch.cuda as on a machine with one GPU (device 0, the current one); returns the
    ``(device, state)`` pairs set on it."""
    restored: list[tuple[int, list[int]]] = []

    def set_rng_state(new_state: torch.Tensor, device: Any = "cuda") -> None:
        index = device if isinstance(device, int) else (torch.device(device).index or 0)
        if index >= 1:
            raise IndexError("tuple index out of range")  # what torch says for a missing GPU
        restored.append((index, new_state.tolist()))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": state(7))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [state(7)])
    # set_rng_state_all looks its helper up in torch.cuda.random
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    return restored


def module() -> HiFiGANModule:
    return HiFiGANModule(load_vocoder_config(None, {"train": {}}, recipe="vocoder_tiny"), total_epochs=1)


def test_a_checkpoint_keeps_only_this_devices_cuda_rng_state(
    one_gpu: list[tuple[int, list[int]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # eight GPUs visible, training on one of them: only that one's state is saved
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [state(i) for i in range(8)])
    checkpoint: dict[str, Any] = {}
    module().on_save_checkpoint(checkpoint)
    assert [s.tolist() for s in checkpoint["distillgan"]["rng"]["cuda"]] == [state(7).tolist()]


def test_a_checkpoint_saved_with_eight_gpus_resumes_on_one(one_gpu: list[tuple[int, list[int]]]) -> None:
    checkpoint: dict[str, Any] = {}
    module().on_save_checkpoint(checkpoint)
    checkpoint["distillgan"]["rng"]["cuda"] = [state(i) for i in range(8)]  # as older files hold it
    module().on_load_checkpoint(checkpoint)
    assert one_gpu == [(0, state(0).tolist())]
