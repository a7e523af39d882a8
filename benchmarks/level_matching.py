"""What vocoding's level matching does: a vocoder's network alone against the rendered output.

    python benchmarks/level_matching.py [--model NAME_OR_PATH] [--held-out DIR | --prior-corpus DIR]
                                        [--seconds S]

Vocodes held-out audio (mel of the original -> vocoder) two ways and prints, for each, log-mel
L1, multi-resolution STFT distance, the worst band level error (``evaluation.score``), the
2.9 ms loudness envelope's mean |dB| difference from the original's (over the 60 dB below the
original's loudest moment: are attacks smeared?) and the frame-rate comb excess:

* ``network alone``: the network's output;
* ``vocoded``: what every render is, level-matched to its mel (``vocoders/mel_match.py``).

The vocoder is the shipped prior, or a model's own with ``--model``. Held-out audio: the example
held-out sounds (default), a folder (``--held-out``), or the prior's own held-out files inside its
corpus (``--prior-corpus``, as built by ``scripts/prior/build_corpus.py``), the first ``--seconds``
of each.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from distillgan import evaluation
from distillgan.audio import load_audio
from distillgan.examples import write_example_held_out
from distillgan.mel import log_mel_spectrogram
from distillgan.modelfile import open_model, resolve_model
from distillgan.vocoders.hifigan import load_hifigan
from distillgan.vocoders.prior import PRIOR_PATH

ENVELOPE_FRAME = 128  # samples: 2.9 ms
ENVELOPE_RANGE_DB = 60.0


def envelope_error_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean |difference| of the two loudness envelopes where the original is within 60 dB of its peak."""

    def envelope(audio: np.ndarray) -> np.ndarray:
        frames = audio[: len(audio) // ENVELOPE_FRAME * ENVELOPE_FRAME].astype(np.float64)
        return 10 * np.log10((frames.reshape(-1, ENVELOPE_FRAME) ** 2).mean(1) + 1e-12)

    ref, est = envelope(reference), envelope(estimate)
    floor = ref.max() - ENVELOPE_RANGE_DB
    loud = ref > floor
    return float(np.abs(np.maximum(ref, floor) - np.maximum(est, floor))[loud].mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a model (name or path) whose own vocoder to measure")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--held-out", type=Path, help="a folder of audio files")
    source.add_argument("--prior-corpus", type=Path, help="the prior's corpus: its held-out files")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    path = resolve_model(args.model) if args.model else PRIOR_PATH
    vocoder = load_hifigan(path)
    with tempfile.TemporaryDirectory() as work:
        if args.prior_corpus:
            files = [
                args.prior_corpus / name for name in open_model(PRIOR_PATH).attrs("vocoder")["held_out_files"]
            ]
        elif args.held_out:
            files = sorted(p for p in args.held_out.iterdir() if p.is_file())
        else:
            files = write_example_held_out(Path(work) / "held-out")
        clips = [evaluation.fit_to_hop(load_audio(f)[: int(args.seconds * 44_100)]) for f in files]

    def network_alone(x: np.ndarray) -> np.ndarray:
        return vocoder.vocode(log_mel_spectrogram(torch.from_numpy(x)), level_matched=False)

    def vocoded(x: np.ndarray) -> np.ndarray:
        return vocoder.vocode(log_mel_spectrogram(torch.from_numpy(x)))

    print(f"vocoder {path}; {len(clips)} held-out clips (first {args.seconds:g} s of each)")
    print(
        f"{'':16s} {'mel L1':>7s} {'MR-STFT':>8s} {'worst band dB':>14s} {'envelope dB':>12s} {'comb dB':>8s}"
    )
    for name, render in (("network alone", network_alone), ("vocoded", vocoded)):
        outputs = [render(x) for x in clips]
        rendered = iter(outputs)
        score = evaluation.score(clips, lambda _, outputs=rendered: next(outputs))
        envelope = np.mean([envelope_error_db(x, y) for x, y in zip(clips, outputs, strict=True)])
        print(
            f"{name:16s} {score.log_mel_l1:7.3f} {score.mr_stft:8.3f} {score.bands_within:14.1f} "
            f"{envelope:12.2f} {score.comb_excess_db:+8.1f}"
        )


if __name__ == "__main__":
    main()
