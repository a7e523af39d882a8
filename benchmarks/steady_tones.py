"""Can a vocoder render a steady partial that is not a harmonic of the frame rate?

    python benchmarks/steady_tones.py [--model NAME_OR_PATH] [--bigvgan DIR] [--seconds S]

A mel-conditioned convolutional generator whose upsampling strides multiply to the hop (512)
maps a one-frame shift of its input to a 512-sample shift of its output. A steady tone has the
same mel in every frame, so away from the clip's edges such a generator can only return a
waveform that repeats every 512 samples: energy on the 86.1 Hz frame-rate harmonics
(44 100 / 512), none at the tone's own frequency. HiFi-GAN and BigVGAN are both built this way;
training longer does not change it.

For pure tones at frequencies off that comb (the ones a musician tunes to), this prints, per
vocoder: the output's level at the tone's frequency against the original's (0 dB is right),
the frequency the output is strongest at, how far the output is from 512-periodic (0: exactly
periodic), and the comb excess (``evaluation.comb_share_db``, the output's minus the
original's; ``benchmarks/fidelity.py`` prints the same figure on held-out sounds). Vocoders:
the shipped prior always, a model's own vocoder with ``--model``, BigVGAN-v2 from a local
folder (``config.json`` + ``bigvgan_generator.pt``) with ``--bigvgan``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from distillgan.audio import SAMPLE_RATE
from distillgan.evaluation import comb_share_db
from distillgan.mel import HOP_LENGTH, log_mel_spectrogram
from distillgan.modelfile import resolve_model
from distillgan.vocoders.base import Vocoder
from distillgan.vocoders.hifigan import load_hifigan
from distillgan.vocoders.prior import PRIOR_PATH

# Equal-tempered A2, G3, E4 (the bell of the example held-out set), C5, A5: none on the comb.
FREQUENCIES_HZ = (110.0, 196.0, 329.63, 523.25, 880.0)
EDGE_FRAMES = 24  # left out at each end: a generator's padding breaks the symmetry near the edges


def _level_db(spectrum: np.ndarray, freqs: np.ndarray, hz: float) -> float:
    near = np.abs(freqs - hz) <= 3.0
    return float(10 * np.log10(spectrum[near].max() + 1e-30))


def tone_figures(vocoder: Vocoder, hz: float, seconds: float) -> dict[str, float]:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    mel = log_mel_spectrogram(torch.from_numpy(tone)[None])[0]
    out = vocoder.vocode(mel)
    edge = EDGE_FRAMES * HOP_LENGTH
    n = min(len(out), len(tone)) - 2 * edge
    ref, est = tone[edge : edge + n].astype(np.float64), out[edge : edge + n].astype(np.float64)
    window = np.hanning(n)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    ref_spec = np.abs(np.fft.rfft(ref * window)) ** 2
    est_spec = np.abs(np.fft.rfft(est * window)) ** 2
    audible = freqs >= 20.0  # a DC offset is not the pitch heard
    return {
        "partial_db": _level_db(est_spec, freqs, hz) - _level_db(ref_spec, freqs, hz),
        "peak_hz": float(freqs[audible][np.argmax(est_spec[audible])]),
        "aperiodic": float(np.abs(est[HOP_LENGTH:] - est[:-HOP_LENGTH]).max() / (np.abs(est).max() + 1e-12)),
        "comb_excess_db": comb_share_db(est) - comb_share_db(ref),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a model (name or path) whose own vocoder to measure too")
    parser.add_argument("--bigvgan", type=Path, help="a local BigVGAN-v2 folder to measure too")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    vocoders: dict[str, Vocoder] = {"prior": load_hifigan(PRIOR_PATH)}
    if args.model:
        vocoders[f"model {args.model}"] = load_hifigan(resolve_model(args.model))
    if args.bigvgan:
        from distillgan.vocoders.bigvgan import load_bigvgan_vocoder

        vocoders["BigVGAN-v2"] = load_bigvgan_vocoder(args.bigvgan)

    print(
        f"{'vocoder':<20} {'tone Hz':>8} {'level at tone':>14} {'strongest at':>13} {'aperiodic':>10} {'comb dB':>8}"
    )
    for name, vocoder in vocoders.items():
        for hz in FREQUENCIES_HZ:
            f = tone_figures(vocoder, hz, args.seconds)
            print(
                f"{name:<20} {hz:>8.2f} {f['partial_db']:>+11.1f} dB {f['peak_hz']:>10.1f} Hz "
                f"{f['aperiodic']:>10.3f} {f['comb_excess_db']:>+8.1f}"
            )


if __name__ == "__main__":
    main()
