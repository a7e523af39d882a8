"""Held-out fidelity of the quick vocoder budget: fine-tuned from the shipped prior vs from scratch.

    python benchmarks/fidelity.py [--corpus DIR] [--held-out DIR] [--minutes M] [--json]
                                  [--vae-aware F] [--only prior|scratch] [--set KEY=VALUE]
                                  [--seeds N]

Defaults: the example corpus (14 sounds) and its 8 unseen held-out sounds (other seeds,
pitches and decays of the same kinds, ``distillgan.examples.write_example_held_out``), and a
cap of 8 minutes of wall time per vocoder run. One run trains a VAE on the corpus (the demo's
100 epochs), then the ``vocoder_quick`` budget twice, side by side on the same VAE:

* ``prior``: the recipe as shipped (fine-tunes the universal prior);
* ``scratch``: the same step budget from a random generator, with the settings the quick
  recipe used before the prior (tuned for a start from scratch: lr 1e-3, 828 warm-up steps).

A first row, ``prior as shipped``, scores the prior itself (no fine-tuning) on the same sounds:
what the budget adds to its start. For each row it prints, on the held-out sounds (never
trained on): log-mel L1, multi-resolution STFT distance (auraloss defaults), the frame-rate
comb excess (``evaluation.comb_share_db``: on steady partials the generator buzzes at 86.1 Hz
harmonics, ``benchmarks/steady_tones.py``), the
level error per band in dB (mean |error|, and the worst clip's signed error, over clips where the
band holds at least 1 % of the energy), the energy added in the other bands
(``evaluation.added_energy_db``, the worst clip: rumble under a texture, hiss over a drone), the
VAE round trip (mel -> VAE -> vocoder, against the original) and wall time and generator steps.
All of these are of the vocoded output, level-matched to its mel as every render is
(``distillgan.vocoders.mel_match``); "net" gives the network's output before that, the measure
of what the prior gives the network itself.
``--vae-aware F`` adds a third run from the prior with ``train.vae_aware_fraction=F``.
``--seeds N`` trains every run N times (``train.seed`` 0 to N-1, same VAE) and prints the
mean and range of each arm's log-mel L1 and their ratio: one run per arm moves by a quarter
from one seed (or VAE) to the next, so a single ratio does not settle the target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from distillgan import evaluation
from distillgan.corpus import load_corpus
from distillgan.examples import write_example_corpus, write_example_held_out
from distillgan.generation import load_vae
from distillgan.mel import log_mel_spectrogram
from distillgan.modelfile import ModelLock, open_model, vocoder_record
from distillgan.networks.vae import reconstruct
from distillgan.progress import CancelToken
from distillgan.recipes import load_vae_config, load_vocoder_config
from distillgan.training import train_vae, train_vocoder
from distillgan.vocoders.hifigan import HiFiGANVocoder, load_hifigan
from distillgan.vocoders.prior import PRIOR_PATH

UNTUNED = "prior as shipped"  # the baseline row: the prior, no fine-tuning
# the quick recipe as it was before the prior existed, tuned for a random start
SCRATCH = {"init": "scratch", "lr": 0.001, "lr_decay_per_step": 0.9995, "warmup_steps": 828}


def _train_vocoder(model: Path, corpus, overrides: dict, minutes: float) -> dict:
    cfg = load_vocoder_config(recipe="vocoder_quick", overrides={"train": overrides})
    cancel = CancelToken()
    timer = threading.Timer(minutes * 60, cancel.cancel)
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    with ModelLock(model, owner="benchmarks/fidelity.py") as lock:
        result = train_vocoder(corpus, model, cfg, lock=lock, cancel=cancel)
    timer.cancel()
    record = vocoder_record(open_model(model))
    return {
        "wall_s": round(time.monotonic() - started, 1),
        "steps": result.steps,
        "status": result.status,
        # the epoch /vocoder keeps (the network's best held-out error) and the errors per epoch
        "best_epoch": record.best_epoch,
        "val_history": [round(v, 4) for v in record.val_mel_l1_history or ()],
        "val_network_history": [round(v, 4) for v in record.val_network_mel_l1_history or ()],
        # the starting generator's network error on the same clips (epoch 0 of the keep-best)
        "start_network": None
        if record.start_network_mel_l1 is None
        else round(record.start_network_mel_l1, 4),
    }


def _score(vocoder: HiFiGANVocoder, clips: list[np.ndarray], vae) -> dict:
    def direct(x: np.ndarray) -> np.ndarray:
        return vocoder.vocode(log_mel_spectrogram(torch.from_numpy(x)))

    def round_trip(x: np.ndarray) -> np.ndarray:
        return vocoder.vocode(reconstruct(vae, log_mel_spectrogram(torch.from_numpy(x))))

    def network_alone(x: np.ndarray) -> np.ndarray:
        return vocoder.vocode(log_mel_spectrogram(torch.from_numpy(x)), level_matched=False)

    held_out = evaluation.score(clips, direct)
    through_vae = evaluation.score(clips, round_trip)
    network = evaluation.score(clips, network_alone)
    return {
        "log_mel_l1": round(held_out.log_mel_l1, 4),
        "mr_stft": round(held_out.mr_stft, 4),
        "band_mean_abs_db": [None if v is None else round(v, 2) for v in held_out.band_mean_abs_db],
        "band_worst_db": [None if v is None else round(v, 2) for v in held_out.band_worst_db],
        "bands_within_db": round(held_out.bands_within, 2),
        "added_worst_db": None if held_out.added_worst_db is None else round(held_out.added_worst_db, 1),
        "comb_excess_db": round(held_out.comb_excess_db, 1),
        "vae_round_trip_log_mel_l1": round(through_vae.log_mel_l1, 4),
        "vae_round_trip_mr_stft": round(through_vae.mr_stft, 4),
        "network_log_mel_l1": round(network.log_mel_l1, 4),
        "network_mr_stft": round(network.mr_stft, 4),
        "network_bands_within_db": round(network.bands_within, 2),
    }


def _spread(runs: dict, arm: str, seeds: int) -> dict:
    """Mean, lowest and highest over an arm's seeds, of the figures the targets are set on."""
    rows = [runs[arm if seeds == 1 else f"{arm}/{seed}"] for seed in range(seeds)]
    keys = ("log_mel_l1", "network_log_mel_l1", "bands_within_db")
    return {
        key: [round(float(np.mean(v)), 4), min(v), max(v)] for key in keys for v in [[r[key] for r in rows]]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--held-out", type=Path, default=None)
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-time cap per vocoder run")
    parser.add_argument("--vae-epochs", type=int, default=100)
    parser.add_argument("--only", choices=["prior", "scratch"], default=None, help="train one of the two")
    parser.add_argument(
        "--vae-aware",
        type=float,
        default=None,
        metavar="F",
        help="also train from the prior with train.vae_aware_fraction=F (measures VAE-aware fine-tuning)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a train-config override for both runs (YAML value), e.g. vae_aware_fraction=0.5",
    )
    parser.add_argument("--seeds", type=int, default=1, metavar="N", help="train each run with seeds 0..N-1")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    extra = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    work = Path(tempfile.mkdtemp(prefix="distillgan-fidelity-"))
    try:
        corpus_dir = args.corpus or (write_example_corpus(work / "corpus")[0].parent)
        held_out_dir = args.held_out or (write_example_held_out(work / "held-out")[0].parent)
        corpus = load_corpus(corpus_dir)
        clips = [f.audio for f in load_corpus(held_out_dir).files]
        base = work / "base.distillgan"
        started = time.monotonic()
        with ModelLock(base, owner="benchmarks/fidelity.py") as lock:
            train_vae(corpus, base, load_vae_config(None, {"train": {"epochs": args.vae_epochs}}), lock=lock)
        vae = load_vae(base)
        results: dict = {"settings": extra, "vae_wall_s": round(time.monotonic() - started, 1), "runs": {}}
        # what fine-tuning starts from, scored as it ships: what the budget adds to it
        untuned = {"wall_s": 0.0, "steps": 0, "status": "-", "best_epoch": 0, "start_network": None}
        results["runs"][UNTUNED] = {**untuned, **_score(load_hifigan(PRIOR_PATH), clips, vae)}
        runs = {"prior": extra, "scratch": {**extra, **SCRATCH}}
        if args.vae_aware is not None:
            runs[f"prior+vae{args.vae_aware:g}"] = {**extra, "vae_aware_fraction": args.vae_aware}
        arms = [
            n for n in runs if not args.only or n in (args.only, *[n for n in runs if n.startswith("prior+")])
        ]
        for seed in range(args.seeds):
            for arm in arms:
                name = arm if args.seeds == 1 else f"{arm}/{seed}"
                model = work / f"{arm}-{seed}.distillgan"
                shutil.copy(base, model)
                run = _train_vocoder(model, corpus, {**runs[arm], "seed": seed}, args.minutes)
                results["runs"][name] = {**run, **_score(load_hifigan(model), clips, vae)}
                model.unlink()
        results["arms"] = {arm: _spread(results["runs"], arm, args.seeds) for arm in arms}
        if args.json:
            print(json.dumps(results))
            return
        bands = [name for name, _, _ in evaluation.BANDS]
        print(
            f"corpus {corpus_dir} ({len(corpus.files)} files); held out {held_out_dir} ({len(clips)} files)"
        )
        print(
            f"{'':16s} {'mel L1':>7s} {'MR-STFT':>8s} {'comb dB':>7s} {'added':>6s} {'VAE mel':>8s} {'VAE STFT':>8s} "
            f"{'net mel':>7s} {'net STFT':>8s} {'steps':>6s} {'kept':>4s} "
            f"{'wall s':>7s}  " + " ".join(f"{b:>14s}" for b in bands)
        )
        for name, r in results["runs"].items():
            cells = [
                "-" if m is None else f"{m:5.1f} ({w:+5.1f})"
                for m, w in zip(r["band_mean_abs_db"], r["band_worst_db"], strict=True)
            ]
            print(
                f"{name:16s} {r['log_mel_l1']:7.3f} {r['mr_stft']:8.3f} {r['comb_excess_db']:+7.1f} "
                f"{'-' if r['added_worst_db'] is None else format(r['added_worst_db'], '+6.1f'):>6s} "
                f"{r['vae_round_trip_log_mel_l1']:8.3f} "
                f"{r['vae_round_trip_mr_stft']:8.3f} {r['network_log_mel_l1']:7.3f} {r['network_mr_stft']:8.3f} "
                f"{r['steps']:6d} {r['best_epoch'] or 0:4d} {r['wall_s']:7.0f}  "
                + " ".join(f"{c:>14s}" for c in cells)
            )
        print(
            "bands: mean |level error| dB (worst clip's signed error), where the reference holds >= 1 % of its energy; "
            "added: the most energy any clip's output puts in the bands its original holds < 1 % of its energy in, "
            "dB relative to the original's whole energy (rumble, hiss); "
            "comb: how much more of the output's energy than the original's sits on the 86.1 Hz frame-rate harmonics; "
            "net: the network's output before vocoding's level matching; "
            "kept: the epoch /vocoder holds (the network's best held-out mel error during training; "
            f"0: the start); {UNTUNED}: the prior fine-tuning starts from, not trained on the corpus"
        )
        if args.seeds > 1:
            for arm, spread in results["arms"].items():
                print(
                    f"{arm} over seeds 0-{args.seeds - 1}: log-mel L1 mean {spread['log_mel_l1'][0]:.3f} "
                    f"(range {spread['log_mel_l1'][1]:.3f}-{spread['log_mel_l1'][2]:.3f}), networks alone mean "
                    f"{spread['network_log_mel_l1'][0]:.3f} (range {spread['network_log_mel_l1'][1]:.3f}-"
                    f"{spread['network_log_mel_l1'][2]:.3f}), worst band {spread['bands_within_db'][2]:.1f} dB"
                )
        if {"prior", "scratch"} <= results["arms"].keys():
            prior, scratch = results["arms"]["prior"], results["arms"]["scratch"]
            ratio = prior["log_mel_l1"][0] / scratch["log_mel_l1"][0]
            network_ratio = prior["network_log_mel_l1"][0] / scratch["network_log_mel_l1"][0]
            means = "" if args.seeds == 1 else " (of the means over seeds)"
            print(
                f"prior / scratch log-mel L1{means}: {ratio:.2f} (target <= 0.5), networks alone "
                f"{network_ratio:.2f}; worst band error from the prior: {prior['bands_within_db'][2]:.1f} dB "
                "(target <= 3)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
