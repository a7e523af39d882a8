"""Level matching: a vocoder's output brought to the band levels its mel asks for.

A neural vocoder renders the mel's phase and fine structure well but misplaces quiet energy:
its nonlinearities add rumble and hiss where the mel is nearly silent (distortion products of
the loud bands), and a short fine-tune leaves some bands short (a pluck's attack above 4 kHz).
The mel states every band's level in every frame, so the output is corrected towards it: the
output's own spectrum (:func:`distillgan.mel.spectrum`, the mel's framing) is scaled, each
band-frame by the ratio of the mel's level to the output's, spread over the STFT bins by the
mel filters, and turned back into audio, three times over (:data:`PASSES`). The network's
phase is kept; only levels move.

Measured on the prior's 16 held-out files (first 5 s each), network alone -> level-matched
(``python benchmarks/level_matching.py --prior-corpus DIR``, 2026-12-02). The prior of 52 153
steps: log-mel L1 0.393 -> 0.166, multi-resolution STFT distance 0.888 -> 0.727, the worst
band level error 14.2 -> 2.8 dB, the 2.9 ms loudness envelope 4.24 -> 3.08 dB from the
original's (attacks are not smeared), the frame-rate comb excess +2.4 -> +1.4 dB; one pass
with at most 12 dB of raise gave 0.196, 0.741, 10.0 dB, 3.23 dB and +0.8 dB. The prior of
62 005 steps: 0.382 -> 0.150, 0.898 -> 0.720, 10.6 -> 4.0 dB, 5.03 -> 2.96 dB, +4.2 -> +1.9 dB;
with 0 Hz only cut (2026-12-03): 0.151, 0.716, 4.5 dB (an organ's band below 60 Hz: its lowest
partials leak into the 0 Hz bin, no longer raised with them), 2.97 dB, +1.4 dB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distillgan.mel import (
    HOP_LENGTH,
    N_FFT,
    audio_from_spectrum,
    cached_constants,
    log_mel_from_spectrum,
    mel_filterbank,
    spectrum,
)

# How a model file's vocoder section says its held-out figures score level-matched renders
# (``VocoderRecord.held_out_render``): older files scored the network's output alone.
LEVEL_MATCHED = "level-matched"
# A band the network left nearly empty is raised by at most this much in all: more would only
# amplify its noise (with three passes, 24 dB left fewer bands short than 12 or 18).
MAX_BOOST_DB = 24.0
MAX_CUT_DB = 60.0  # added hiss under a quiet texture can sit 30 dB and more over the mel
# Corrections, each measured on the previous one's audio. Scaling overlapping STFT frames is
# not exact: the window's spectral spread and the overlap-add pull every gain part of the way
# back towards its neighbours' (one pass left the surf clip's 20-60 Hz, 10 dB short from the
# network, still 3-6 dB short), so each pass corrects what the one before left.
PASSES = 3
# Frames either side of a corrected sample whose audio it depends on: each pass reads audio at
# most N_FFT samples away. One frame of margin.
REACH_FRAMES = PASSES * math.ceil(N_FFT / HOP_LENGTH) + 1


@cached_constants
def _band_to_bin(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1025, 128)``: each STFT bin's share of each mel band's gain (rows sum to 1), and
    ``(1025,)``: which bins no filter covers (0 Hz).

    An uncovered bin takes its nearest band's gain, but only where that gain cuts (see
    :func:`match_to_mel`).
    """
    fbank = mel_filterbank(device)  # (128, 1025)
    weights = fbank.T.clone()
    uncovered = weights.sum(1) <= 0
    if uncovered.any():
        peaks = fbank.argmax(1).float()  # each band's peak bin
        bins = torch.arange(fbank.shape[1], device=device, dtype=torch.float32)
        nearest = (bins[uncovered, None] - peaks[None]).abs().argmin(1)
        weights[uncovered] = torch.nn.functional.one_hot(nearest, fbank.shape[0]).float()
    return weights / weights.sum(1, keepdim=True), uncovered


def match_to_mel(audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """``(..., T * 512)`` audio rendered from the log-mel ``(..., 128, T)``, each band-frame's
    level set to the mel's (within +24 / -60 dB of the output's own, in all)."""
    with torch.autocast(device_type=audio.device.type, enabled=False):
        spec = spectrum(audio.float())
        frames = min(spec.shape[-1], mel.shape[-1])
        wanted = mel[..., :frames].float()
        log_gain = torch.zeros_like(wanted)
        to_bin, uncovered = _band_to_bin(audio.device)
        matched = audio
        for done in range(PASSES):
            own = log_mel_from_spectrum(spectrum(matched) if done else spec)
            # the total gain so far, corrected by what is still off, within the bounds
            log_gain = (log_gain + wanted - own[..., :frames]).clamp(
                -MAX_CUT_DB * math.log(10) / 20, MAX_BOOST_DB * math.log(10) / 20
            )
            # frames the mel lacks: unchanged
            bin_log_gain = torch.matmul(to_bin, F.pad(log_gain, (0, spec.shape[-1] - frames)))
            # the mel says nothing of 0 Hz: raised with the lowest band, the network's offset
            # rose with it (a surf clip's by 14 dB, its energy below 60 Hz 1.6 dB over the
            # original's; 0.1 dB with this), so an uncovered bin is only ever cut
            bin_gain = torch.where(uncovered[:, None], bin_log_gain.clamp(max=0), bin_log_gain).exp()
            matched = audio_from_spectrum(spec * bin_gain, audio.shape[-1])
        return matched
