"""Train the universal HiFi-GAN V2 prior in sittings, and export it as package data.

    python scripts/prior/train.py train CORPUS_DIR [--work DIR] [--minutes M] [--set KEY=VALUE]
                                    [--accelerator A] [--precision P]
    python scripts/prior/train.py export [--work DIR]

``train`` runs the product's own vocoder training (``distillgan.training.train_vocoder``) with
the ``vocoder_prior`` recipe on a corpus built by ``build_corpus.py``. The run lives in
``WORK/prior.distillgan`` (default ``/work/prior``): every epoch (200 generator steps) is
checkpointed into it, and the next sitting resumes it exactly, on any machine. A sitting stops
after ``--minutes``, on Ctrl+C or on SIGTERM, saving first.

``export`` writes ``src/distillgan/vocoders/prior/hifigan_v2_prior.h5``: a model file whose
``/vocoder`` is the prior generator (as any model's vocoder) and whose
``/vocoder_discriminators`` holds the reduced MPD + MSD, with the run's figures in its attrs.
Update ``CARD.md`` beside it with those figures.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

import yaml

from distillgan.audio import load_corpus
from distillgan.config import json_attr
from distillgan.lightning_modules.hifigan import load_vocoder_config
from distillgan.modelfile import ModelLock, open_model
from distillgan.progress import CancelToken, ProgressEvent
from distillgan.training import TrainerOptions, train_vocoder
from distillgan.vocoders import prior

WORK = Path("/work/prior")


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
            options=TrainerOptions(accelerator=args.accelerator, precision=args.precision),
        )
    print(f"stopped at epoch {result.epochs_completed}, {result.steps} steps: {result.metrics}", flush=True)


def _export(args: argparse.Namespace) -> None:
    path = prior.export(args.work / "prior.distillgan", prior.PRIOR_PATH)
    attrs = open_model(path).attrs("vocoder")
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {attrs['steps']} steps, "
        f"held-out mel L1 {attrs.get('val_mel_l1_last')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train")
    train.add_argument("corpus", type=Path)
    train.add_argument("--work", type=Path, default=WORK)
    train.add_argument("--minutes", type=float, default=60.0)
    train.add_argument("--accelerator", default="auto")
    train.add_argument("--precision", default=None)
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a train-config key from this sitting on (e.g. warmup_steps=6000)",
    )
    export = sub.add_parser("export")
    export.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args()
    _train(args) if args.command == "train" else _export(args)


if __name__ == "__main__":
    main()
