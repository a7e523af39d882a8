"""A run's random numbers are its own: networks are built from the run's seed and training draws
from per-step generators, never from torch's global generator, which other threads of the
process (another UI job, Lightning's ``isolate_rng`` around each fit's sanity check) rewind and
draw from at any moment."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch

from distillgan.corpus import load_corpus
from distillgan.lightning_modules import HiFiGANModule, VAEModule
from distillgan.modelfile import ModelLock, open_model
from distillgan.recipes import VAEConfig, load_vae_config, load_vocoder_config
from distillgan.seeding import seeded
from distillgan.training import train_vae
from tests.robustness.harness import TINY_VAE


def _vae_config(**train: object) -> VAEConfig:
    return load_vae_config(None, {**TINY_VAE, "train": {**TINY_VAE["train"], "accelerator": "cpu", **train}})


def _vocoder(seed: int) -> L.LightningModule:
    return HiFiGANModule(load_vocoder_config(None, {"train": {"seed": seed}}, recipe="vocoder_tiny"))


def _vae(seed: int) -> L.LightningModule:
    return VAEModule(_vae_config(seed=seed))


@pytest.mark.parametrize("build", [_vocoder, _vae], ids=["vocoder", "vae"])
def test_a_network_is_built_from_its_seed_alone(build: Callable[[int], L.LightningModule]) -> None:
    torch.manual_seed(1)
    before = torch.get_rng_state()
    first = build(0).state_dict()
    assert torch.equal(torch.get_rng_state(), before)  # nothing drawn from the global generator
    torch.manual_seed(2)
    again, other_seed = build(0).state_dict(), build(1).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    # every drawn tensor (weights, biases, spectral norm's vectors) follows the seed
    drawn = [k for k in first if first[k].is_floating_point() and first[k].numel() > 1 and first[k].std() > 0]
    assert drawn and all(not torch.equal(first[k], other_seed[k]) for k in drawn)


def test_the_seeded_generator_is_this_threads_only() -> None:
    """Another thread building a network meanwhile draws from the global generator, as before."""
    drawn: list[torch.Tensor] = []
    started, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        started.wait()
        torch.manual_seed(5)
        drawn.append(torch.nn.Linear(3, 3).weight.detach().clone())
        release.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with seeded(0):
        started.set()
        release.wait(timeout=30)
    thread.join()
    torch.manual_seed(5)
    assert torch.equal(drawn[0], torch.nn.Linear(3, 3).weight.detach())


def test_vae_training_ignores_draws_from_the_global_generator(tiny_corpus: Path, tmp_path: Path) -> None:
    """The latent's sampling noise comes from the run's own per-step generator: draws from the
    global one in the middle of training (here on every progress event) change nothing."""

    def train(name: str, listener: Callable[[object], None]) -> dict[str, torch.Tensor]:
        path = tmp_path / f"{name}.distillgan"
        with ModelLock(path, owner="test") as lock:
            train_vae(load_corpus(tiny_corpus), path, _vae_config(), lock=lock, listener=listener)
        return open_model(path).tensors("vae")

    quiet = train("quiet", lambda event: None)
    disturbed = train("disturbed", lambda event: torch.rand(1000))
    assert quiet.keys() == disturbed.keys()
    assert all(torch.equal(quiet[k], disturbed[k]) for k in quiet)
