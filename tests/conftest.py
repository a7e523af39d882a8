"""Fixtures shared across the test suite (keep this file small)."""

from __future__ import annotations

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
