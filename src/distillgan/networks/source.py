"""The band-oscillator excitation: a sinusoid per mel band, read from the mel itself.

Why the generator needs it: a steady tone has the same mel in every frame, and a generator
built only of convolutions whose strides multiply to the hop turns a one-frame shift of its
input into a one-hop shift of its output. Given a constant mel it can only return a waveform
that repeats every 512 samples, whose energy lies on multiples of 44 100 / 512 = 86.1 Hz: a
329.6 Hz tone comes out at 258 and 345 Hz (``benchmarks/steady_tones.py``). HiFi-GAN and
BigVGAN are both built this way. An input whose phase runs with absolute time breaks that
symmetry, as the sine source of neural source-filter vocoders does; this one needs no pitch
tracker, so it serves polyphony, bells and noise alike.

Each band's oscillator runs at the band's energy-weighted centre frequency, taken over its
neighbourhood of ``2 * NEIGHBOURS + 1`` bands and calibrated on pure tones of known frequency:
for a partial the mel resolves, every band it lights up agrees on its frequency (a median 0.1
cent off, 6 at worst, on 300 pure tones from 40 Hz to 8 kHz). The amplitude is the band's magnitude, calibrated so a pure tone's loudest band gets
about the tone's amplitude. Phase accumulates from the first frame; a chunk of a longer mel
starts from :func:`start_phases` of the whole, so chunked rendering equals one pass. Bands are
summed into ``channels`` interleaved channels (band ``b`` into channel ``b % channels``), so
neighbouring bands, which often carry the same partial at different phases, never cancel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distillgan.mel import HOP_LENGTH, SAMPLE_RATE, cached_constants, log_mel_spectrogram, mel_filterbank

NEIGHBOURS = 2  # bands each side whose energy places a band's frequency
# A pure tone of amplitude a peaks at a * 1024 / 2 in the STFT magnitude (the Hann window sums
# to 1024), so this makes its loudest band's amplitude about a
AMPLITUDE_SCALE = 1.0 / 512


@cached_constants
def _band_geometry(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each band's centre frequency in cycles per sample, and its filter's peak height."""
    fbank = mel_filterbank(device)  # (128, 1025)
    bins = torch.linspace(0.0, 0.5, fbank.shape[1], device=device, dtype=torch.float32)
    return (fbank * bins).sum(1) / fbank.sum(1), fbank.amax(1)


def _centroids(magnitude: torch.Tensor) -> torch.Tensor:
    """Each band's energy-weighted centre frequency over its neighbourhood (cycles per sample)."""
    centre, _ = _band_geometry(magnitude.device)
    width = 2 * NEIGHBOURS + 1
    weights = F.pad(magnitude.transpose(1, 2), (NEIGHBOURS, NEIGHBOURS)).unfold(-1, width, 1)
    centres = F.pad(centre[None], (NEIGHBOURS, NEIGHBOURS), mode="replicate")[0].unfold(0, width, 1)
    return ((weights * centres).sum(-1) / weights.sum(-1)).transpose(1, 2)


def _magnitudes(mel: torch.Tensor) -> torch.Tensor:
    """Each band's filter response, as if its peak were 1 (linear), (B, 128, T)."""
    _, height = _band_geometry(mel.device)
    return mel.float().exp() / height[:, None]


# Frequencies (cycles per sample) of the pure tones that calibrate the centroids: 1 500 steps of
# 7 cents from 20 Hz to 21 kHz, finer than any error the interpolation between them leaves.
_CALIBRATION_TONES = torch.exp(torch.linspace(math.log(20.0), math.log(21_000.0), 1_500, dtype=torch.float64))


@cached_constants
def _calibration(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_cpu_calibration` on ``device`` (computed once, on the CPU, whatever the device)."""
    table, tones = _cpu_calibration()
    return table.to(device), tones.to(device)


@cached_constants
def _cpu_calibration() -> tuple[torch.Tensor, torch.Tensor]:
    """Per band, the centroid each calibration tone gets, (128, G) ascending, and the tones (G,).

    A tone's Hann main lobe is wider than the low bands, so the raw centroid is biased (up to
    40 cents below 300 Hz); mapping it back through what pure tones of known frequency give
    leaves under a cent for most. Where a band does not hear a tone, the tone maps to itself.
    """
    tones = _CALIBRATION_TONES / SAMPLE_RATE
    samples = torch.arange(3 * HOP_LENGTH * 2, dtype=torch.float64)
    audio = (0.3 * torch.sin(2 * math.pi * tones[:, None] * samples)).float()
    magnitude = _magnitudes(log_mel_spectrogram(audio)[..., 3:4])  # a frame wholly inside
    heard = magnitude[..., 0] > 1e-2 * magnitude[..., 0].amax(1, keepdim=True)  # (G, 128)
    centroid = torch.where(heard, _centroids(magnitude)[..., 0].double(), tones[:, None])
    table = torch.cummax(centroid.T.contiguous(), dim=1).values  # ascending, as searchsorted needs
    return table.float(), tones.float()


def band_frames(mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel (B, 128, T) -> each band's frequency (cycles per sample) and amplitude, (B, 128, T)."""
    magnitude = _magnitudes(mel)
    centroid = _centroids(magnitude)
    table, tones = _calibration(mel.device)
    batch, bands, frames = centroid.shape
    # per band, the tone whose centroid this is, linearly between the two nearest calibration tones
    flat = centroid.transpose(0, 1).reshape(bands, -1).contiguous()
    upper = torch.searchsorted(table, flat).clamp_(1, table.shape[1] - 1)
    lower = upper - 1
    low, high = table.gather(1, lower), table.gather(1, upper)
    share = ((flat - low) / (high - low).clamp_min(1e-12)).clamp_(0.0, 1.0)
    frequency = torch.lerp(tones[lower], tones[upper], share)
    frequency = frequency.reshape(bands, batch, frames).transpose(0, 1)
    return frequency, magnitude * AMPLITUDE_SCALE


def _frame_phases(frequency: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
    """Phase (cycles, in [0, 1)) at the start of every frame, from ``phase`` at the first (or 0)."""
    advance = frequency.double() * HOP_LENGTH
    # float64: summed over an hour of frames, float32 would be a tenth of a cycle off
    start = torch.cumsum(advance, -1) - advance
    if phase is not None:
        start = start + phase.double()[..., None]
    return torch.remainder(start, 1.0).float()


def start_phases(mel: torch.Tensor) -> torch.Tensor:
    """Each oscillator's phase (cycles, in [0, 1)) at the start of every frame, (B, 128, T)."""
    return _frame_phases(band_frames(mel)[0])


def excitation(mel: torch.Tensor, channels: int, phase: torch.Tensor | None = None) -> torch.Tensor:
    """Log-mel (B, 128, T) -> the oscillators summed into ``channels`` channels, (B, channels, T × 512).

    ``phase`` (B, 128) is where each oscillator stands at the first frame (cycles), for a chunk
    cut from a longer mel: ``start_phases(whole)[..., first_frame]``. ``None`` starts at 0.
    """
    frequency, amplitude = band_frames(mel)
    batch, bands, frames = frequency.shape
    start = _frame_phases(frequency, phase)
    # within a frame: the frame's frequency; the amplitude ramps to the next frame's
    offset = torch.arange(HOP_LENGTH, device=mel.device, dtype=torch.float32)
    ramp = offset / HOP_LENGTH
    slope = torch.cat([amplitude[..., 1:], amplitude[..., -1:]], -1) - amplitude
    out = frequency.new_zeros(batch, channels, frames * HOP_LENGTH)
    # one group of `channels` neighbouring bands at a time: memory stays at a few channels' worth
    for first in range(0, bands, channels):
        group = slice(first, first + channels)
        wave = torch.addcmul(start[:, group, :, None], frequency[:, group, :, None], offset)
        envelope = torch.addcmul(amplitude[:, group, :, None], slope[:, group, :, None], ramp)
        out += wave.mul_(2 * math.pi).sin_().mul_(envelope).reshape(batch, channels, -1)
    return out
