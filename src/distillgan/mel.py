"""The one mel spectrogram of the project: BigVGAN-v2 ``44khz_128band_512x`` format.

Every stage (VAE, per-model HiFi-GAN, BigVGAN) speaks this mel, so nothing sits between
them. It is always computed in float32, even under autocast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch
import torch.nn.functional as F
import torchaudio

SAMPLE_RATE = 44_100
N_FFT = 2048
WIN_LENGTH = 2048
HOP_LENGTH = 512
N_MELS = 128
F_MIN = 0.0
F_MAX = 22_050.0
MAGNITUDE_EPS = 1e-9
LOG_CLAMP = 1e-5

P = ParamSpec("P")
T = TypeVar("T")


def cached_constants(build: Callable[P, T]) -> Callable[P, T]:
    """``functools.cache`` for functions that build constant tensors (filters, windows, tables).

    They are built outside inference mode even when first asked for inside it (vocoding runs
    in ``torch.inference_mode``): an inference tensor could never take part in training after.
    """

    @functools.cache
    @functools.wraps(build)
    def cached(*args: P.args, **kwargs: P.kwargs) -> T:
        with torch.inference_mode(False):
            return build(*args, **kwargs)

    return cached


@cached_constants
def _basis(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mel filterbank (n_mels, n_fft//2+1) and Hann window, cached per device."""
    # float32 whatever the default dtype (Lightning's "bf16-true"/"64-true" change it)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        fbank = torchaudio.functional.melscale_fbanks(
            n_freqs=N_FFT // 2 + 1,
            f_min=F_MIN,
            f_max=F_MAX,
            n_mels=N_MELS,
            sample_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        ).T.contiguous()
        window = torch.hann_window(WIN_LENGTH)
    finally:
        torch.set_default_dtype(default)
    return fbank.to(device), window.to(device)


def mel_filterbank(device: torch.device) -> torch.Tensor:
    """The mel filterbank, (128, 1025): row ``b`` weighs the STFT magnitudes that make band ``b``."""
    return _basis(device)[0]


def mel_frames(num_samples: int) -> int:
    """Frames the canonical mel yields for ``num_samples`` samples."""
    return num_samples // HOP_LENGTH


_PAD = (N_FFT - HOP_LENGTH) // 2  # each side: frame t is centred on sample t * 512 + 256


def spectrum(audio: torch.Tensor) -> torch.Tensor:
    """The mel's STFT of ``(..., samples)`` audio: ``(..., 1025, samples // 512)`` complex64.

    Frame ``t`` covers samples ``t * 512 - 768`` to ``t * 512 + 1280`` (Hann window), the ends
    reflect-padded. :func:`audio_from_spectrum` inverts it.
    """
    with torch.autocast(device_type=audio.device.type, enabled=False):
        _, window = _basis(audio.device)
        lead = audio.shape[:-1]
        x = audio.reshape(-1, audio.shape[-1]).float()
        # reflect needs more samples than the pad; clips under 17 ms are zero-padded instead
        mode = "reflect" if x.shape[-1] > _PAD else "constant"
        x = F.pad(x.unsqueeze(1), (_PAD, _PAD), mode=mode).squeeze(1)
        spec = torch.stft(
            x,
            N_FFT,
            hop_length=HOP_LENGTH,
            win_length=WIN_LENGTH,
            window=window,
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return spec.reshape(*lead, *spec.shape[-2:])


def log_mel_from_spectrum(spec: torch.Tensor) -> torch.Tensor:
    """The log-mel of a :func:`spectrum`: ``(..., 1025, T)`` complex -> ``(..., 128, T)`` float32."""
    fbank, _ = _basis(spec.device)
    magnitude = torch.sqrt(spec.real.square() + spec.imag.square() + MAGNITUDE_EPS)
    return torch.log(torch.clamp(torch.matmul(fbank, magnitude), min=LOG_CLAMP))


def log_mel_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    """Log-mel of mono 44.1 kHz audio: ``(..., samples)`` -> ``(..., 128, samples // 512)`` float32."""
    with torch.autocast(device_type=audio.device.type, enabled=False):
        return log_mel_from_spectrum(spectrum(audio))


def audio_from_spectrum(spec: torch.Tensor, samples: int) -> torch.Tensor:
    """``samples`` samples of audio whose :func:`spectrum` is ``spec`` (weighted overlap-add).

    Exact for an unchanged spectrum; for a changed one, the audio whose spectrum is nearest.
    """
    with torch.autocast(device_type=spec.device.type, enabled=False):
        _, window = _basis(spec.device)
        lead, frames = spec.shape[:-2], spec.shape[-1]
        windowed = torch.fft.irfft(spec.reshape(-1, *spec.shape[-2:]), n=N_FFT, dim=1) * window[:, None]
        length = (frames - 1) * HOP_LENGTH + N_FFT

        def overlap_add(columns: torch.Tensor) -> torch.Tensor:
            return F.fold(columns, (1, length), kernel_size=(1, N_FFT), stride=(1, HOP_LENGTH))[:, 0, 0]

        weight = overlap_add(window.square()[None, :, None].expand(1, -1, frames))
        audio = (overlap_add(windowed) / weight.clamp(min=1e-8))[:, _PAD : _PAD + samples]
        return audio.reshape(*lead, audio.shape[-1])
