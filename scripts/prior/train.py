"""Train the universal HiFi-GAN V2 prior in sittings, and export it as package data.

    python scripts/prior/train.py train CORPUS_DIR [--work DIR] [--minutes M] [--set KEY=VALUE]
                                    [--accelerator A] [--precision P]
    python scripts/prior/train.py export CORPUS_DIR [--work DIR]

``train`` runs the product's own vocoder training (``distillgan.training.train_vocoder``) with
the ``vocoder_prior`` recipe on a corpus built by ``build_corpus.py``. The run lives in
``WORK/prior.distillgan`` (default ``scripts/prior/run``, kept in the repo): every epoch (200
steps) is checkpointed into it, and the next sitting resumes it exactly, on any machine. A sitting stops
after ``--minutes``, on Ctrl+C or on SIGTERM, saving first.

``export`` writes ``src/distillgan/vocoders/prior/hifigan_v2_prior.h5`` (a model file whose
``/vocoder`` is the run's kept generator and whose ``/vocoder_discriminators`` holds the reduced
MPD + MSD) and its ``CARD.md`` with the run's figures.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from distillgan import evaluation
from distillgan.audio import load_audio
from distillgan.config import json_attr
from distillgan.corpus import load_corpus
from distillgan.mel import SAMPLE_RATE, log_mel_spectrogram
from distillgan.modelfile import ModelLock, open_model
from distillgan.progress import CancelToken, ProgressEvent
from distillgan.recipes import load_vocoder_config
from distillgan.training import train_vocoder
from distillgan.vocoders import prior
from distillgan.vocoders.hifigan import HiFiGANVocoder, load_hifigan
from distillgan.vocoders.mel_match import LEVEL_MATCHED

WORK = Path(__file__).parent / "run"  # the run's resumable state, kept in the repo between sittings
CARD_SECONDS = 5  # of each held-out file, for the card's figures of the shipped generator
# The prior's phases so far, for the card: (first step, kind), counted over its whole lineage.
# Sittings change warmup_steps (--set), which the model file keeps only as its latest value, so
# the history is kept here. The current run started (--set init=prior) from the shipped prior of
# EXTENDS steps, which had no band-oscillator source; its steps count on from there.
EXTENDS = 14_001
PHASES = (
    (0, "reconstruction"),
    (6_000, "adversarial"),
    (7_830, "reconstruction"),
    (EXTENDS, "reconstruction, with the band-oscillator source added (its convs starting at zero)"),
    (EXTENDS + 23_198, "reconstruction, a quarter of the crops starting at a file's first sample"),
)


def _train(args: argparse.Namespace) -> None:
    model = args.work / "prior.distillgan"
    args.work.mkdir(parents=True, exist_ok=True)
    resume = model.exists() and open_model(model).has("vocoder_checkpoint")
    corpus = load_corpus(args.corpus)
    print(
        f"{len(corpus.files)} files, {sum(f.duration_s for f in corpus.files) / 60:.1f} min; resume={resume}",
        flush=True,
    )
    changes = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    for key in ("accelerator", "precision"):  # the recipe's, set as the CLI sets them
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    cfg = load_vocoder_config(None, {"train": changes}, recipe="vocoder_prior")
    if resume:  # the run's own recipe, as the product resumes, with this sitting's changes
        stored = open_model(model).attrs("vocoder")
        train = {**json_attr(stored["train_config"]), **changes}
        cfg = load_vocoder_config(None, {"generator": json_attr(stored["config"]), "train": train})
    cancel = CancelToken()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: cancel.cancel())
    timer = threading.Timer(args.minutes * 60, cancel.cancel)
    timer.daemon = True
    timer.start()
    started = time.monotonic()

    def report(event: ProgressEvent) -> None:
        if event.kind in ("epoch", "checkpoint"):
            print(
                f"{time.monotonic() - started:7.0f}s {event.kind} {event.epoch} step {event.step} "
                f"{json.dumps({k: round(v, 4) for k, v in (event.metrics or {}).items()})}",
                flush=True,
            )

    with ModelLock(model, owner="scripts/prior/train.py") as lock:
        result = train_vocoder(
            corpus,
            model,
            cfg,
            lock=lock,
            listener=report,
            cancel=cancel,
            resume=resume,
        )
    print(f"stopped at epoch {result.epochs_completed}, {result.steps} steps: {result.metrics}", flush=True)


CARD = """# distillgan's universal HiFi-GAN V2 prior

`hifigan_v2_prior.h5` is a distillgan model file: `/vocoder` holds a HiFi-GAN V2 generator in
the project's mel format (44.1 kHz, 128 slaney mels, hop 512; folded weights, float32), driven
by the band-oscillator excitation (`distillgan/networks/source.py`, 4 channels), and
`/vocoder_discriminators` the MPD + MSD at 1/8 of the published widths, trained with it. Every
per-model vocoder starts from it unless told otherwise (`--init`). Made by
`scripts/prior/build_corpus.py` and `scripts/prior/train.py` (which also writes this card).

## Training data

{minutes:.0f} minutes of audio rendered on one machine from fixed seeds, no recorded music and
no loop library; each 20 s file at a random level (peaks -30 to -1 dBFS):

| source | share | what | licence |
| --- | --- | --- | --- |
| FluidR3_GM.sf2 (Debian `fluid-soundfont-gm`) through fluidsynth | with TimGM6mb: 50 % instruments, 12 % drums | all 128 General MIDI programs across their pitch ranges at velocities 15-127 (notes, runs, chords); the 8 GM drum kits | MIT |
| TimGM6mb.sf2 (Debian `timgm6mb-soundfont`) through fluidsynth | (shared with the row above) | the same programs and kits with other samples | GPL-2.0 (the soundfont; whether audio rendered from it, and weights trained on that, are covered is unsettled: drop it from `SOUNDFONTS` for a corpus free of the question) |
| espeak-ng (Debian `espeak-ng`) | 18 % | speech in 15 languages, 14 voice variants, random pitch and speed | GPL-3.0-or-later (the synthesizer; the rendered audio is this project's) |
| distillgan's example synthesizers (`distillgan.examples`) | 10 % | plucks, bells, rain, wind, surf, bowed drones with random parameters | MIT (this project) |
| signal textures (`build_corpus.py`) | 10 % | coloured and band noise, sweeps 20 Hz-20 kHz, pulse trains, harmonic stacks | MIT (this project) |

## Training

The product's own `HiFiGANModule` (`vocoder_prior` recipe: 4 x 4096-sample crops, AdamW lr 5e-4
decaying x0.99997 per step), in float32 on a 2-core AVX2 CPU shared with other work, resumed
across sittings. Its phases (generator steps):

{phases}

Reconstruction: mel L1 x45 + multi-resolution STFT x45 + DC term, generator only. Adversarial:
LSGAN + feature matching x2 + mel L1 x45 + MR-STFT x15 + DC term against the 1/8-width MPD + MSD.
On this CPU a reconstruction step costs about a sixth of an adversarial one and lowered the
held-out error faster, so the later sittings went back to reconstruction
(`--set warmup_steps=N`, N beyond the run's steps).

## Figures

- generator steps: {steps:,}
- held-out log-mel L1 (mean |difference| of natural-log mels) of {scored} on {clips} clips of
  2 s from {files} whole files never trained on: **{best:.3f}** at the current run's kept epoch
  {best_epoch}
- the shipped generator on the first {seconds:g} s of each held-out file, log-mel L1 /
  multi-resolution STFT distance / worst band level error: the network alone {alone}, the
  level-matched render every vocoding gives {matched}
- held-out files: {held}
- shipped: the kept epoch's generator, and the discriminators of the run's latest state (trained
  in the adversarial steps only)
"""


def _phases(steps: int) -> str:
    """The card's list of :data:`PHASES` up to ``steps``, with the adversarial total."""
    ends = [start for start, _ in PHASES[1:]] + [steps]
    spans = [
        (start, min(end, steps), kind)
        for (start, kind), end in zip(PHASES, ends, strict=True)
        if start < steps
    ]
    adversarial = sum(end - start for start, end, kind in spans if kind == "adversarial")
    rows = "\n".join(f"- {start:,}-{end:,}: {kind}" for start, end, kind in spans)
    return f"{rows}\n\n{adversarial:,} of the {steps:,} steps adversarial."


def _figures(vocoder: HiFiGANVocoder, clips: list[np.ndarray], *, level_matched: bool) -> str:
    """The card's figures for one way of rendering the held-out clips (as
    ``benchmarks/level_matching.py --prior-corpus`` measures them)."""
    score = evaluation.score(
        clips,
        lambda x: vocoder.vocode(log_mel_spectrogram(torch.from_numpy(x)), level_matched=level_matched),
    )
    return f"{score.log_mel_l1:.3f} / {score.mr_stft:.3f} / {score.bands_within:.1f} dB"


def _export(args: argparse.Namespace) -> None:
    path = prior.export(args.work / "prior.distillgan", prior.PRIOR_PATH)
    attrs = open_model(path).attrs("vocoder")
    train = json_attr(attrs["train_config"])
    held = attrs.get("held_out_files") or []
    corpus = load_corpus(args.corpus)
    vocoder = load_hifigan(path)
    clips = [
        evaluation.fit_to_hop(load_audio(args.corpus / name)[: CARD_SECONDS * SAMPLE_RATE]) for name in held
    ]
    card = CARD.format(
        minutes=sum(f.duration_s for f in corpus.files) / 60,
        phases=_phases(EXTENDS + attrs["steps"]),
        steps=EXTENDS + attrs["steps"],
        clips=train["val_clips"],
        files=len(held),
        best=attrs["val_mel_l1_best"],
        best_epoch=attrs["best_epoch"],
        seconds=CARD_SECONDS,
        alone=_figures(vocoder, clips, level_matched=False),
        matched=_figures(vocoder, clips, level_matched=True),
        # sittings from before vocoding's level matching scored the network alone (about twice
        # as high); a sitting after it scores the level-matched render, so its epochs are the kept ones
        scored="the level-matched render"
        if attrs.get("held_out_render") == LEVEL_MATCHED
        else "the network's output alone (before vocoding's level matching)",
        held=", ".join(f"`{name}`" for name in held),
    )
    (path.parent / "CARD.md").write_text(card)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its CARD.md: {attrs['steps']} steps, "
        f"held-out mel L1 {attrs['val_mel_l1_best']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train")
    train.add_argument("corpus", type=Path)
    train.add_argument("--work", type=Path, default=WORK)
    train.add_argument("--minutes", type=float, default=60.0)
    train.add_argument("--accelerator", default=None)
    train.add_argument("--precision", default=None)
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a train-config key from this sitting on (e.g. warmup_steps=6000)",
    )
    export = sub.add_parser("export")
    export.add_argument("corpus", type=Path, help="the prior's corpus (for the card's figures)")
    export.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args()
    _train(args) if args.command == "train" else _export(args)


if __name__ == "__main__":
    main()
