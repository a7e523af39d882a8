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
neighbourhood of ``2 * NEIGHBOURS + 1`` bands: for a partial the mel resolves, every band it
lights up agrees on its frequency (within a few cents, measured on pure tones from 40 Hz to
4 kHz). The amplitude is the band's magnitude, calibrated so a pure tone's loudest band gets
about the tone's amplitude. Phase accumulates from the first frame; a chunk of a longer mel
starts from :func:`start_phases` of the whole, so chunked rendering equals one pass. Bands are
summed into ``channels`` interleaved channels (band ``b`` into channel ``b % channels``), so
neighbouring bands, which often carry the same partial at different phases, never cancel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distillgan.mel import HOP_LENGTH, mel_filterbank

NEIGHBOURS = 2  # bands each side whose energy places a band's frequency (2: a median 2 cents off)
# A pure tone of amplitude a peaks at a * 1024 / 2 in the STFT magnitude (the Hann window sums
# to 1024), so this makes its loudest band's amplitude about a
AMPLITUDE_SCALE = 1.0 / 512


def _band_geometry(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each band's centre frequency in cycles per sample, and its filter's peak height."""
    fbank = mel_filterbank(device)  # (128, 1025)
    bins = torch.linspace(0.0, 0.5, fbank.shape[1], device=device)
    return (fbank * bins).sum(1) / fbank.sum(1), fbank.amax(1)


def band_frames(mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel (B, 128, T) -> each band's frequency (cycles per sample) and amplitude, (B, 128, T)."""
    centre, height = _band_geometry(mel.device)
    magnitude = mel.float().exp() / height[:, None]  # the filter's response, as if its peak were 1
    width = 2 * NEIGHBOURS + 1
    weights = F.pad(magnitude.transpose(1, 2), (NEIGHBOURS, NEIGHBOURS)).unfold(-1, width, 1)
    centres = F.pad(centre[None], (NEIGHBOURS, NEIGHBOURS), mode="replicate")[0].unfold(0, width, 1)
    frequency = ((weights * centres).sum(-1) / weights.sum(-1)).transpose(1, 2)
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
