"""A built-in example corpus, synthesised by our own code from fixed seeds.

It lets a new user (``distillgan demo``) and the test suite train on something real-sounding
without downloading anything: plucked strings, inharmonic bells, noise textures (rain,
wind, surf) and bowed drones. Every generator is pure seeded NumPy, so the same call gives
the same samples, and :func:`write_example_corpus` the same bytes, every time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from distillgan.audio import write_audio
from distillgan.mel import SAMPLE_RATE

__all__ = [
    "PEAK_DBFS",
    "synth_bell",
    "synth_noise_texture",
    "synth_pluck",
    "synth_tone",
    "write_example_corpus",
    "write_example_held_out",
]

PEAK_DBFS = -3.0
_PEAK = 10 ** (PEAK_DBFS / 20)
_FADE_IN_S = 0.001  # just enough to avoid a click, short enough to keep plucks sharp
_FADE_OUT_S = 0.01

NoiseKind = Literal["rain", "wind", "surf"]


def _num_samples(seconds: float, sr: int) -> int:
    if seconds <= 0 or sr <= 0:
        raise ValueError(f"seconds and sr must be positive, got {seconds} s at {sr} Hz")
    return max(1, round(seconds * sr))


def _finish(x: np.ndarray, sr: int) -> np.ndarray:
    """Short fades at both ends, then peak-normalise to :data:`PEAK_DBFS`; float32."""
    x = np.asarray(x, dtype=np.float64).copy()
    fade_in = min(len(x), max(1, round(_FADE_IN_S * sr)))
    fade_out = min(len(x), max(1, round(_FADE_OUT_S * sr)))
    x[:fade_in] *= np.linspace(0.0, 1.0, fade_in, endpoint=False)
    x[len(x) - fade_out :] *= np.linspace(1.0, 0.0, fade_out)
    peak = np.abs(x).max()
    if peak > 0:
        x *= _PEAK / peak
    return x.astype(np.float32)


def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _slow_lfo(n: int, sr: int, rng: np.random.Generator, rates: tuple[float, ...]) -> np.ndarray:
    """A smooth, non-repeating-looking wander in [0, 1] built from a few slow sines."""
    t = _time(n, sr)
    phases = rng.uniform(0, 2 * np.pi, len(rates))
    weights = rng.uniform(0.5, 1.0, len(rates))
    wave = (weights[:, None] * np.sin(2 * np.pi * np.asarray(rates)[:, None] * t + phases[:, None])).sum(0)
    span = np.ptp(wave)
    return (wave - wave.min()) / span if span > 0 else np.ones(n)


def _band_noise(
    n: int, sr: int, rng: np.random.Generator, centre_hz: float, octaves: float, tilt: float = 0.0
) -> np.ndarray:
    """White noise shaped in the frequency domain by a Gaussian band on a log-frequency axis.

    ``tilt`` adds a slope in dB per octave around the centre (negative = darker).
    """
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    with np.errstate(divide="ignore"):
        distance = np.log2(np.maximum(freqs, 1e-3) / centre_hz)
    gain = np.exp(-0.5 * (distance / octaves) ** 2) * 10 ** (tilt * distance / 20)
    gain[0] = 0.0  # no DC
    return np.fft.irfft(spectrum * gain, n)


def synth_pluck(
    seconds: float,
    sr: int = SAMPLE_RATE,
    seed: int = 0,
    *,
    freq: float = 220.0,
    t60_s: float = 3.0,
    brightness: float = 0.7,
) -> np.ndarray:
    """A Karplus-Strong plucked string (whole-sample delay: high notes may sit a few cents off).

    ``t60_s`` is the time the string takes to fall by 60 dB; ``brightness`` (0..1) is how
    much of the raw noise burst survives a first smoothing, i.e. how hard the pluck is.
    """
    n = _num_samples(seconds, sr)
    if not 0 < freq < sr / 2:
        raise ValueError(f"freq must be between 0 and {sr / 2} Hz, got {freq}")
    rng = np.random.default_rng(seed)
    # The two-point average in the loop adds half a sample of delay to the delay line.
    period = max(2, round(sr / freq - 0.5))
    burst = rng.uniform(-1.0, 1.0, period)
    burst -= burst.mean()  # a zero-mean burst leaves no DC ringing in the loop
    burst = brightness * burst + (1 - brightness) * 0.5 * (burst + np.roll(burst, 1))
    # Loop gain per round trip, so every pitch decays in the same time.
    gain = 10 ** (-3 * period / (sr * t60_s))
    # The recurrence y[i] = gain * (y[i-P] + y[i-P-1]) / 2 only reaches back at least one
    # period, so a whole period can be computed at once from the one before it. Index 0
    # is a zero "sample before the start".
    y = np.zeros(n + 1)
    y[1 : 1 + min(period, n)] = burst[: min(period, n)]
    for start in range(1 + period, n + 1, period):
        stop = min(start + period, n + 1)
        y[start:stop] = (
            gain * 0.5 * (y[start - period : stop - period] + y[start - period - 1 : stop - period - 1])
        )
    return _finish(y[1:], sr)


def synth_bell(
    seconds: float,
    sr: int = SAMPLE_RATE,
    seed: int = 0,
    *,
    freq: float = 440.0,
    t60_s: float = 3.0,
) -> np.ndarray:
    """An inharmonic bell: detuned non-integer partials, higher ones dying away sooner."""
    n = _num_samples(seconds, sr)
    rng = np.random.default_rng(seed)
    ratios = np.array([0.5, 1.0, 1.18, 1.51, 2.0, 2.47, 2.98, 3.67, 4.21, 5.43])
    ratios = ratios * rng.uniform(0.985, 1.015, len(ratios))
    partials = freq * ratios
    keep = partials < 0.45 * sr
    partials, ratios = partials[keep], ratios[keep]
    amplitudes = rng.uniform(0.4, 1.0, len(partials)) / np.sqrt(ratios)
    decay_rates = np.log(1000) / (t60_s / ratios**0.8)  # per second; e^-rate*T60 = -60 dB
    phases = rng.uniform(0, 2 * np.pi, len(partials))
    t = _time(n, sr)
    tones = np.sin(2 * np.pi * partials[:, None] * t + phases[:, None])
    x = (amplitudes[:, None] * np.exp(-decay_rates[:, None] * t) * tones).sum(0)
    strike = np.minimum(1.0, t / 0.003)  # a 3 ms strike instead of a click
    return _finish(x * strike, sr)


def synth_noise_texture(
    seconds: float,
    sr: int = SAMPLE_RATE,
    seed: int = 0,
    *,
    kind: NoiseKind = "rain",
) -> np.ndarray:
    """Filtered-noise textures: ``rain`` (hiss plus droplets), ``wind`` (two drifting
    bands), ``surf`` (dark noise swelling slowly)."""
    n = _num_samples(seconds, sr)
    rng = np.random.default_rng(seed)
    makers: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
        "rain": _rain,
        "wind": _wind,
        "surf": _surf,
    }
    if kind not in makers:
        raise ValueError(f"kind must be one of {sorted(makers)}, got {kind!r}")
    return _finish(makers[kind](n, sr, rng), sr)


def _rain(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    hiss = _band_noise(n, sr, rng, centre_hz=min(6000.0, 0.3 * sr), octaves=1.5, tilt=-2.0)
    hiss /= np.abs(hiss).max() + 1e-12
    # Droplets: sparse random impulses, each family ringing at its own pitch, added by an
    # FFT convolution (one pass instead of a loop over drops).
    drops = np.zeros(n)
    for centre in (1800.0, 3100.0, 4700.0):
        centre = min(centre, 0.4 * sr)
        count = rng.poisson(25 * n / sr)
        impulses = np.zeros(n)
        impulses[rng.integers(0, n, count)] = rng.uniform(0.2, 1.0, count)
        length = max(8, round(0.012 * sr))
        k = np.arange(length) / sr
        kernel = np.exp(-k / 0.002) * np.sin(2 * np.pi * centre * rng.uniform(0.9, 1.1) * k)
        kernel -= kernel.mean()  # a decaying sine has a net offset; drops should not add DC
        drops += np.fft.irfft(np.fft.rfft(impulses, n + length) * np.fft.rfft(kernel, n + length))[:n]
    drops /= np.abs(drops).max() + 1e-12
    gusts = 0.6 + 0.4 * _slow_lfo(n, sr, rng, (0.11, 0.27, 0.53))
    return gusts * (0.5 * hiss + drops)


def _wind(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    low = _band_noise(n, sr, rng, centre_hz=rng.uniform(300, 500), octaves=0.5)
    high = _band_noise(n, sr, rng, centre_hz=rng.uniform(900, 1400), octaves=0.3)
    # Crossfading two bands makes the "pitch" of the wind drift without a time-varying filter.
    blend = _slow_lfo(n, sr, rng, (0.09, 0.23, 0.41))
    level = 0.2 + 0.8 * _slow_lfo(n, sr, rng, (0.07, 0.17, 0.37))
    low /= np.abs(low).max() + 1e-12
    high /= np.abs(high).max() + 1e-12
    return level * ((1 - blend) * low + blend * 0.7 * high)


def _surf(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    body = _band_noise(n, sr, rng, centre_hz=250.0, octaves=1.6, tilt=-3.0)
    body /= np.abs(body).max() + 1e-12
    swell = _slow_lfo(n, sr, rng, (0.13, 0.31)) ** 2
    return (0.1 + 0.9 * swell) * body


def synth_tone(
    seconds: float,
    sr: int = SAMPLE_RATE,
    seed: int = 0,
    *,
    freq: float = 110.0,
    vibrato_hz: float = 5.0,
    vibrato_depth: float = 0.004,
) -> np.ndarray:
    """A bowed drone: a band-limited saw-like harmonic series with vibrato, a soft bow
    attack and release, and a breath of bow noise. ``vibrato_depth`` is relative to ``freq``."""
    n = _num_samples(seconds, sr)
    if not 0 < freq < sr / 2:
        raise ValueError(f"freq must be between 0 and {sr / 2} Hz, got {freq}")
    rng = np.random.default_rng(seed)
    t = _time(n, sr)
    rate = vibrato_hz * rng.uniform(0.9, 1.1)
    instantaneous = freq * (1 + vibrato_depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(instantaneous) / sr
    # Harmonics stop below Nyquist even at the top of the vibrato, so nothing aliases.
    harmonics = np.arange(1, int(0.45 * sr / (freq * (1 + vibrato_depth))) + 1)[:24]
    amplitudes = rng.uniform(0.6, 1.0, len(harmonics)) / harmonics
    x = (amplitudes[:, None] * np.sin(harmonics[:, None] * phase)).sum(0)
    bow = _band_noise(n, sr, rng, centre_hz=min(2500.0, 0.3 * sr), octaves=1.0)
    x = x / (np.abs(x).max() + 1e-12) + 0.03 * bow / (np.abs(bow).max() + 1e-12)
    ramp = max(1, round(min(0.25, seconds / 4) * sr))
    envelope = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / ramp)
    return _finish(x * envelope, sr)


# (file stem, generator of one example at the given length)
_EXAMPLES: tuple[tuple[str, Callable[[float], np.ndarray]], ...] = (
    ("pluck_110hz", lambda s: synth_pluck(s, seed=11, freq=110.0, t60_s=5.0, brightness=0.6)),
    ("pluck_196hz", lambda s: synth_pluck(s, seed=12, freq=196.0, t60_s=4.0, brightness=0.8)),
    ("pluck_294hz", lambda s: synth_pluck(s, seed=13, freq=294.0, t60_s=3.5, brightness=0.7)),
    ("pluck_440hz", lambda s: synth_pluck(s, seed=14, freq=440.0, t60_s=3.0, brightness=0.9)),
    ("bell_220hz", lambda s: synth_bell(s, seed=21, freq=220.0, t60_s=4.0)),
    ("bell_523hz", lambda s: synth_bell(s, seed=22, freq=523.0, t60_s=3.0)),
    ("bell_880hz", lambda s: synth_bell(s, seed=23, freq=880.0, t60_s=2.2)),
    ("rain_a", lambda s: synth_noise_texture(s, seed=31, kind="rain")),
    ("rain_b", lambda s: synth_noise_texture(s, seed=32, kind="rain")),
    ("wind_a", lambda s: synth_noise_texture(s, seed=33, kind="wind")),
    ("wind_b", lambda s: synth_noise_texture(s, seed=34, kind="wind")),
    ("surf", lambda s: synth_noise_texture(s, seed=35, kind="surf")),
    ("drone_73hz", lambda s: synth_tone(s, seed=41, freq=73.4)),
    ("drone_147hz", lambda s: synth_tone(s, seed=42, freq=146.8, vibrato_depth=0.006)),
)


# Unseen sounds of the same kinds (other seeds, pitches and decays): the held-out set of the
# fidelity benchmark, never part of the example corpus.
_HELD_OUT: tuple[tuple[str, Callable[[float], np.ndarray]], ...] = (
    ("pluck_165hz", lambda s: synth_pluck(s, seed=51, freq=165.0, t60_s=4.5, brightness=0.7)),
    ("pluck_587hz", lambda s: synth_pluck(s, seed=52, freq=587.0, t60_s=2.5, brightness=0.85)),
    ("bell_330hz", lambda s: synth_bell(s, seed=53, freq=330.0, t60_s=3.5)),
    ("bell_698hz", lambda s: synth_bell(s, seed=54, freq=698.0, t60_s=2.5)),
    ("rain_c", lambda s: synth_noise_texture(s, seed=55, kind="rain")),
    ("wind_c", lambda s: synth_noise_texture(s, seed=56, kind="wind")),
    ("surf_b", lambda s: synth_noise_texture(s, seed=57, kind="surf")),
    ("drone_98hz", lambda s: synth_tone(s, seed=58, freq=98.0, vibrato_depth=0.005)),
)


def _write(
    folder: Path | str, sounds: tuple[tuple[str, Callable[[float], np.ndarray]], ...], seconds: float
) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, make in sounds:
        path = folder / f"{stem}.wav"
        write_audio(path, make(seconds), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return sorted(paths)


def write_example_corpus(folder: Path | str, *, seconds: float = 3.0) -> list[Path]:
    """Write the example corpus (14 WAV files, 44.1 kHz 16-bit, peaks at -3 dBFS) into
    ``folder`` (created if needed) and return the paths in sorted order."""
    return _write(folder, _EXAMPLES, seconds)


def write_example_held_out(folder: Path | str, *, seconds: float = 3.0) -> list[Path]:
    """Write 8 unseen sounds of the example corpus's kinds (the fidelity benchmark's held-out set)."""
    return _write(folder, _HELD_OUT, seconds)
