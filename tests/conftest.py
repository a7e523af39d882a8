"""Fixtures shared across the test suite (keep this file small)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from distillgan.audio import SAMPLE_RATE, write_audio
from distillgan.examples import synth_bell, synth_noise_texture, synth_pluck, synth_tone


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """Five short (1.0–1.5 s) synthesised 44.1 kHz files in ``tmp_path/"corpus"``."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    sounds = {
        "pluck_a.wav": synth_pluck(1.0, seed=1, freq=196.0),
        "bell.wav": synth_bell(1.2, seed=2, freq=523.0),
        "noise.wav": synth_noise_texture(1.5, seed=3, kind="rain"),
        "tone.wav": synth_tone(1.3, seed=4, freq=110.0),
        "pluck_b.wav": synth_pluck(1.1, seed=5, freq=330.0),
    }
    for name, audio in sounds.items():
        write_audio(folder / name, audio, SAMPLE_RATE)
    return folder


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, existing, empty models folder, announced through ``DISTILLGAN_MODELS_DIR``."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("DISTILLGAN_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def vae_model(tiny_corpus: Path, models_dir: Path) -> Path:
    """``models_dir/tiny.distillgan`` as ``train vae`` leaves it: a (tiny, untrained) VAE and the
    manifest of ``tiny_corpus``; ready for ``train vocoder``."""
    from distillgan.corpus import build_manifest, load_corpus
    from distillgan.lightning_modules.vae import VAEModule
    from distillgan.modelfile import ModelLock, Section, StageRecord, write_model
    from distillgan.recipes import load_vae_config

    cfg = load_vae_config(None, {"model": {"latent_dim": 4, "channels": [16, 16]}, "train": {"epochs": 1}})
    progress = StageRecord(status="complete", epoch=1, epochs_completed=1, total_epochs=1, steps=1)
    sections = VAEModule(cfg).model_file_sections(progress)
    sections["dataset"] = Section(attrs={"manifest": build_manifest(load_corpus(tiny_corpus))})
    path = models_dir / "tiny.distillgan"
    with ModelLock(path, owner="test") as lock:
        write_model(path, sections, lock=lock, create=True)
    return path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny networks run faster on one intra-op thread, and 2 shared cores are not oversubscribed."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
