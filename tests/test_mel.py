"""The canonical mel (design.md): frame count, dtype under autocast, filterbank, values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillgan import mel
from distillgan.mel import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, log_mel_spectrogram, mel_frames


def slaney_hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above (as librosa, htk=False)."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(
        hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz) / logstep, hz / f_sp
    )


def slaney_mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = np.asarray(mels, dtype=np.float64)
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def slaney_filterbank() -> np.ndarray:
    """The definition written out independently: triangles between mel-spaced edges, area-normalised."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = slaney_mel_to_hz(
        np.linspace(slaney_hz_to_mel(0.0), slaney_hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2)
    )
    weights = np.zeros((N_MELS, len(fft_freqs)))
    for i in range(N_MELS):
        lower = (fft_freqs - edges[i]) / (edges[i + 1] - edges[i])
        upper = (edges[i + 2] - fft_freqs) / (edges[i + 2] - edges[i + 1])
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : N_MELS + 2] - edges[:N_MELS]))[:, None]
    return weights


def test_filterbank_equals_the_slaney_definition() -> None:
    fbank, window = mel._basis(torch.device("cpu"))
    assert fbank.shape == (N_MELS, N_FFT // 2 + 1)
    assert fbank.dtype == torch.float32
    np.testing.assert_allclose(fbank.numpy(), slaney_filterbank(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(window.numpy(), np.hanning(N_FFT + 1)[:-1], atol=1e-6)  # periodic Hann


@pytest.mark.parametrize("samples", [512, 2048, 44_100, 44_100 * 3 + 77])
def test_frames_are_samples_over_hop(samples: int) -> None:
    audio = torch.randn(samples) * 0.1
    out = log_mel_spectrogram(audio)
    assert out.shape == (N_MELS, samples // HOP_LENGTH) == (N_MELS, mel_frames(samples))


def test_leading_axes_are_kept() -> None:
    out = log_mel_spectrogram(torch.randn(2, 3, 4096) * 0.1)
    assert out.shape == (2, 3, N_MELS, 8)


def test_float32_under_bf16_autocast_and_same_values() -> None:
    audio = torch.randn(2, 8192) * 0.3
    plain = log_mel_spectrogram(audio)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = log_mel_spectrogram(audio)
        from_bf16_input = log_mel_spectrogram(audio.bfloat16())
    assert under_autocast.dtype == torch.float32
    assert from_bf16_input.dtype == torch.float32
    torch.testing.assert_close(under_autocast, plain)


def test_values_match_a_direct_computation() -> None:
    """Reflect padding, |STFT| with the 1e-9 floor, slaney mel, natural log clamped at 1e-5."""
    gen = np.random.default_rng(0)
    audio = gen.standard_normal(4096).astype(np.float64) * 0.2
    pad = (N_FFT - HOP_LENGTH) // 2
    padded = np.pad(audio, pad, mode="reflect")
    window = np.hanning(N_FFT + 1)[:-1]
    frames = [
        padded[i * HOP_LENGTH : i * HOP_LENGTH + N_FFT] * window for i in range(len(audio) // HOP_LENGTH)
    ]
    spectrum = np.fft.rfft(np.stack(frames), axis=-1)
    magnitude = np.sqrt(spectrum.real**2 + spectrum.imag**2 + 1e-9)
    expected = np.log(np.maximum(slaney_filterbank() @ magnitude.T, 1e-5))
    got = log_mel_spectrogram(torch.from_numpy(audio).float()).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_silence_hits_the_floor_and_a_sine_lands_in_its_band() -> None:
    silence = log_mel_spectrogram(torch.zeros(8192))
    # sqrt(1e-9) through the filterbank is far below the clamp: silence is exactly log(1e-5)
    assert torch.allclose(silence, torch.full_like(silence, float(np.log(1e-5))))
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = log_mel_spectrogram(0.5 * torch.sin(2 * torch.pi * 1000.0 * t))
    peak_bin = int(tone.mean(-1).argmax())
    centres = slaney_mel_to_hz(
        np.linspace(slaney_hz_to_mel(0.0), slaney_hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2)
    )[1:-1]
    assert abs(centres[peak_bin] - 1000.0) < 120.0


def test_basis_is_cached_per_device() -> None:
    first = mel._basis(torch.device("cpu"))
    second = mel._basis(torch.device("cpu"))
    assert first[0] is second[0] and first[1] is second[1]


@pytest.mark.parametrize("samples", [600, 20 * HOP_LENGTH, 20 * HOP_LENGTH + 100])
def test_audio_from_spectrum_inverts_the_mels_stft(samples: int) -> None:
    audio = torch.randn(2, samples, generator=torch.Generator().manual_seed(samples))
    spec = mel.spectrum(audio)
    assert spec.shape == (2, N_FFT // 2 + 1, mel_frames(samples))
    torch.testing.assert_close(mel.log_mel_from_spectrum(spec), log_mel_spectrogram(audio))
    torch.testing.assert_close(mel.audio_from_spectrum(spec, samples), audio, atol=2e-6, rtol=0)
