"""The built-in example corpus and the synthesis helpers the test suite builds corpora from."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from distillgan.audio import SAMPLE_RATE
from distillgan.corpus import load_corpus
from distillgan.examples import (
    PEAK_DBFS,
    synth_bell,
    synth_noise_texture,
    synth_pluck,
    synth_tone,
    write_example_corpus,
)


def dbfs(value: float) -> float:
    return 20 * np.log10(value)


def test_example_corpus_is_byte_identical_every_time(tmp_path: Path) -> None:
    first = write_example_corpus(tmp_path / "one", seconds=1.0)
    second = write_example_corpus(tmp_path / "two", seconds=1.0)
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_example_corpus_format_and_levels(tmp_path: Path) -> None:
    paths = write_example_corpus(tmp_path / "examples")
    assert len(paths) >= 12
    assert paths == sorted(paths)
    kinds = {p.stem.split("_")[0] for p in paths}
    assert {"pluck", "bell", "rain", "wind", "drone"} <= kinds
    for path in paths:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (
            SAMPLE_RATE,
            1,
            "PCM_16",
            "WAV",
        )
        assert info.frames == 3 * SAMPLE_RATE
        audio, _ = sf.read(str(path), dtype="float64")
        assert dbfs(np.abs(audio).max()) == pytest.approx(PEAK_DBFS, abs=0.05), path.name
        assert dbfs(np.sqrt(np.mean(audio**2))) > -35, path.name  # not a near-silent file
        assert abs(audio.mean()) < 1e-3, path.name  # no DC offset
    corpus = load_corpus(tmp_path / "examples")
    assert len(corpus.files) == len(paths) and not corpus.skipped


SYNTHS: list[Callable[..., np.ndarray]] = [
    synth_pluck,
    synth_bell,
    synth_noise_texture,
    synth_tone,
]


@pytest.mark.parametrize("synth", SYNTHS, ids=lambda f: f.__name__)
def test_synths_are_seeded_float32_at_the_target_peak(synth: Callable[..., np.ndarray]) -> None:
    audio = synth(0.75, SAMPLE_RATE, 7)
    assert audio.dtype == np.float32 and audio.shape == (round(0.75 * SAMPLE_RATE),)
    assert np.isfinite(audio).all()
    assert dbfs(np.abs(audio).max()) == pytest.approx(PEAK_DBFS, abs=0.01)
    assert np.array_equal(audio, synth(0.75, SAMPLE_RATE, 7))
    assert not np.array_equal(audio, synth(0.75, SAMPLE_RATE, 8))
    assert len(synth(0.5, 16_000, 7)) == 8000  # any rate works


def test_synths_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        synth_noise_texture(1.0, kind="snow")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        synth_pluck(1.0, freq=30_000.0)
    with pytest.raises(ValueError):
        synth_tone(0.0)


def _fundamental(audio: np.ndarray, sr: int, lowest: float = 50.0) -> float:
    """Pitch from the strongest autocorrelation lag longer than a 1 kHz period."""
    spectrum = np.fft.rfft(audio, 2 * len(audio))
    corr = np.fft.irfft(np.abs(spectrum) ** 2)[: len(audio)]
    lo, hi = sr // 1000, int(sr / lowest)
    return sr / (lo + int(np.argmax(corr[lo:hi])))


@pytest.mark.parametrize("freq", [110.0, 196.0, 440.0])
def test_pluck_and_tone_sound_at_their_pitch(freq: float) -> None:
    assert _fundamental(synth_pluck(1.0, freq=freq), SAMPLE_RATE) == pytest.approx(freq, rel=0.01)
    assert _fundamental(synth_tone(1.0, freq=freq), SAMPLE_RATE) == pytest.approx(freq, rel=0.01)


def test_pluck_decays_and_bell_rings() -> None:
    pluck = synth_pluck(3.0, freq=220.0, t60_s=1.0)
    first, last = pluck[:SAMPLE_RATE], pluck[-SAMPLE_RATE:]
    assert dbfs(np.abs(last).max()) < dbfs(np.abs(first).max()) - 40
    bell = synth_bell(2.0, freq=440.0)
    spectrum = np.abs(np.fft.rfft(bell))
    freqs = np.fft.rfftfreq(len(bell), 1 / SAMPLE_RATE)
    strongest = freqs[np.argsort(spectrum)[-50:]]
    # An inharmonic bell: some strong energy lies far from every multiple of the strike note.
    distance = np.abs(strongest / 220.0 - np.round(strongest / 220.0))
    assert distance.max() > 0.1


def test_pluck_is_fast() -> None:
    synth_pluck(0.1, freq=880.0)  # warm-up
    start = time.perf_counter()
    synth_pluck(3.0, freq=880.0)  # the shortest period is the most iterations
    assert time.perf_counter() - start < 0.2


def test_tiny_corpus_fixture(tiny_corpus: Path) -> None:
    corpus = load_corpus(tiny_corpus)
    assert len(corpus.files) == 5 and not corpus.skipped
    assert all(1.0 <= f.duration_s <= 1.5 for f in corpus.files)


def test_models_dir_fixture(models_dir: Path) -> None:
    assert os.environ["DISTILLGAN_MODELS_DIR"] == str(models_dir)
    assert models_dir.is_dir() and not any(models_dir.iterdir())
