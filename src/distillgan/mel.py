"""The one mel spectrogram of the project: BigVGAN-v2 ``44khz_128band_512x`` format.

Every stage (VAE, per-model HiFi-GAN, BigVGAN) speaks this mel, so nothing sits between
them. It is always computed in float32, even under autocast.
"""

from __future__ import annotations

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

_basis_cache: dict[tuple[str, int | None], tuple[torch.Tensor, torch.Tensor]] = {}


def _basis(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mel filterbank (n_mels, n_fft//2+1) and Hann window, cached per device."""
    key = (device.type, device.index)
    if key not in _basis_cache:
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
        _basis_cache[key] = (fbank.to(device), window.to(device))
    return _basis_cache[key]


def mel_filterbank(device: torch.device) -> torch.Tensor:
    """The mel filterbank, (128, 1025): row ``b`` weighs the STFT magnitudes that make band ``b``."""
    return _basis(device)[0]


def mel_frames(num_samples: int) -> int:
    """Frames the canonical mel yields for ``num_samples`` samples."""
    return num_samples // HOP_LENGTH


def log_mel_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    """Log-mel of mono 44.1 kHz audio: ``(..., samples)`` -> ``(..., 128, samples // 512)`` float32."""
    with torch.autocast(device_type=audio.device.type, enabled=False):
        fbank, window = _basis(audio.device)
        lead = audio.shape[:-1]
        x = audio.reshape(-1, audio.shape[-1]).float()
        pad = (N_FFT - HOP_LENGTH) // 2
        # reflect needs more samples than the pad; clips under 17 ms are zero-padded instead
        mode = "reflect" if x.shape[-1] > pad else "constant"
        x = F.pad(x.unsqueeze(1), (pad, pad), mode=mode).squeeze(1)
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
        magnitude = torch.sqrt(spec.real.square() + spec.imag.square() + MAGNITUDE_EPS)
        mel = torch.matmul(fbank, magnitude)
        mel = torch.log(torch.clamp(mel, min=LOG_CLAMP))
        return mel.reshape(*lead, N_MELS, mel.shape[-1])
