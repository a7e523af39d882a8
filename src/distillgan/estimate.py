"""How long a training run will be, and about how long it will take on this machine.

Before anything starts, both front ends show the run's length (epochs, and steps: generator
steps for the vocoder, optimizer steps for the VAE) and a time estimate, and the UI asks
before starting a run estimated over :data:`ASK_ABOVE_S`. Both call only :func:`estimate_run`
(through :func:`distillgan.runs.estimate`, for the plan they start) and show
:meth:`RunEstimate.text`.

**Epochs 0 means "the recipe decides", in both front ends** (``--epochs 0``, the UI's Epochs
field left at 0 or empty, ``train.epochs: 0`` in a recipe): the recipe's own ``train.epochs``
when it has one, else the adaptive default of :mod:`distillgan.training` (about 2 000 VAE
steps; about 20 000 adversarial vocoder steps after the warm-up). A resumed run's epochs 0
keeps the run's stored total. The estimate always shows the number 0 resolved to (and says
when it was adapted to the corpus), so it is never a surprise. Negative epochs are refused.

The time comes from a short measurement: the stage's own LightningModule trains a few
batches of the run's corpus through a tiny Lightning fit on one device of the run's kind, at
the run's precision (its real ``training_step``: no loss code is copied here). One untimed
step pays the one-time costs, then :data:`TIMED_STEPS` are timed. The vocoder's
reconstruction warm-up steps (generator only) and its adversarial steps (discriminators too)
cost differently: each kind is measured when the run has steps of both left. On an
accelerator the steps have the run's batch and crop; on a CPU a vocoder step is measured with
at most :data:`CPU_MEASURE_SAMPLES` audio samples (a VAE step with :data:`CPU_MEASURE_BATCH`
chunks) and its time scaled up in proportion (a CPU's step time grows about linearly with the
audio in it; for tiny networks, whose fixed costs weigh more, this errs long), and the text
says so. Validation, previews and checkpoint writes come on top; a multi-device run is
measured on one device (every process takes one batch per step). It is an estimate. A run of
at most :data:`TIMED_ABOVE_STEPS` steps left is not timed: measuring it would cost about as
much as running it.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any

import lightning as L
import torch

from distillgan.corpus import Corpus, format_duration
from distillgan.mel import HOP_LENGTH
from distillgan.training import RunLength, TrainerOptions, run_length_of

MIN_CROP = 4 * HOP_LENGTH  # the shortest crop a vocoder recipe allows

# The UI asks before starting a run estimated longer than this (seconds).
ASK_ABOVE_S = 3600.0
# On a CPU a measured vocoder step holds at most this many audio samples (batch x crop), a
# measured VAE step at most this many chunks; the time is scaled to the run's step. The quick
# recipe's whole step (4 x 4096): measured at a quarter and scaled up, per-step overheads made
# its estimate 2.7x too long (13 min 24 s for a 5-minute run).
CPU_MEASURE_SAMPLES = 16384
CPU_MEASURE_BATCH = 4
# Steps timed per kind (warm-up, adversarial), each after one untimed step of one-time costs.
TIMED_STEPS = 1
# A run with no more steps left than this is not timed: the measurement (a Trainer's set-up and up
# to 4 steps) would be a large share of it, and so few steps cannot come near ASK_ABOVE_S.
TIMED_ABOVE_STEPS = 50


@dataclass(frozen=True)
class RunEstimate:
    """A run's length and its estimated duration on this machine."""

    length: RunLength
    # one adversarial (vocoder) or optimizer (VAE) step at the run's batch size; None: not timed
    # (a run of at most TIMED_ABOVE_STEPS steps left)
    step_s: float | None
    warmup_step_s: float | None  # one warm-up step, when the run has warm-up steps left
    device: str  # where it was measured, e.g. "cpu", "cuda (NVIDIA H200)"
    scale: float = 1.0  # the run's step is this many times the measured one's audio (CPU)

    @property
    def seconds(self) -> float | None:
        if self.step_s is None:
            return None
        warmup = self.length.warmup_steps_left
        return warmup * (self.warmup_step_s or self.step_s) + (self.length.steps_left - warmup) * self.step_s

    @property
    def needs_confirmation(self) -> bool:
        """Whether the UI asks before starting (estimated over :data:`ASK_ABOVE_S`)."""
        seconds = self.seconds
        return seconds is not None and seconds > ASK_ABOVE_S

    def text(self) -> str:
        """E.g. ``Run length: 8 epochs × 100 generator steps = 800 steps (the first 500 a
        reconstruction warm-up). Estimated time: about 41 min 10 s on cpu (measured on steps 1/4 the
        size, scaled up; validation, previews and checkpoints come on top).``"""
        if self.seconds is None:
            return f"Run length: {self.length.text()}. Not timed: a run this short takes about as long as measuring it."
        how = "measured on steps of the run's size"
        if self.scale > 1:
            how = f"measured on steps 1/{self.scale:g} the size, scaled up"
        return (
            f"Run length: {self.length.text()}. Estimated time: about {format_duration(self.seconds)} "
            f"on {self.device} ({how}; validation, previews and checkpoints come on top)."
        )


def _datamodule(stage: str, cfg: Any, corpus: Corpus) -> Any:
    """The stage's own DataModule on ``corpus`` (its held-out split decides the epoch's length).
    The vocoder's VAE-aware batches are left out: they change what a batch holds, not its cost."""
    audio = [f.audio for f in corpus.files]
    if stage == "vae":
        from distillgan.lightning_modules.vae import VAEDataModule

        return VAEDataModule(audio, cfg)
    from distillgan.lightning_modules.hifigan import VocoderDataModule

    return VocoderDataModule(audio, cfg.train)


class _StepTimer(L.Callback):
    """The wall time of each training batch, its device work finished, until ``needed`` batches."""

    def __init__(self, needed: int) -> None:
        self.times: list[float] = []
        self.needed = needed
        self._start = 0.0

    @staticmethod
    def _sync(module: Any) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer: Any, module: Any, *args: Any) -> None:
        self._sync(module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
        self._sync(module)
        self.times.append(time.perf_counter() - self._start)
        trainer.should_stop = len(self.times) >= self.needed


def _device_name(trainer: Any) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def _measured_shape(stage: str, cfg: Any, device: str) -> tuple[int, int]:
    """(batch, crop) measured: the run's own on an accelerator; on a CPU at most
    :data:`CPU_MEASURE_SAMPLES` audio samples (or :data:`CPU_MEASURE_BATCH` VAE chunks) a step."""
    t = cfg.train
    if stage == "vae":
        return (min(t.batch_size, CPU_MEASURE_BATCH) if device == "cpu" else t.batch_size), t.chunk_frames
    if device != "cpu":
        return t.batch_size, t.segment_samples
    batch = max(1, min(t.batch_size, CPU_MEASURE_SAMPLES // t.segment_samples))
    crop = min(t.segment_samples, max(MIN_CROP, CPU_MEASURE_SAMPLES // HOP_LENGTH * HOP_LENGTH))
    return batch, crop


def _measure(stage: str, cfg: Any, corpus: Corpus, warmup: bool) -> tuple[float, float | None, str, float]:
    """Train a few batches with the stage's own module, on one device of the run's kind.

    Returns the seconds of one step (adversarial for the vocoder), of one warm-up step (None
    unless ``warmup``), the device's name and the factor the times were scaled by.
    """
    from distillgan.training import _lightning_trainer

    # each kind: one untimed step (one-time costs: allocations, lazy set-up), then TIMED_STEPS
    kinds = {"warmup": 0, "step": 1 + TIMED_STEPS} if stage == "vocoder" and warmup else {"step": 0}
    needed = len(kinds) * (1 + TIMED_STEPS)
    timer = _StepTimer(needed)
    with tempfile.TemporaryDirectory(prefix="distillgan-estimate-") as root:
        trainer = _lightning_trainer(
            TrainerOptions(devices=1),
            cfg.train.accelerator,
            # a small corpus may have fewer batches than that in an epoch: more epochs, same steps
            max_epochs=needed,
            limit_train_batches=needed,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            precision=cfg.train.precision,
            logger=False,
            callbacks=[timer],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
        )
        device = _device_name(trainer)
        batch, crop = _measured_shape(stage, cfg, device.split(" ")[0])
        t = cfg.train
        if stage == "vae":
            from distillgan.lightning_modules.vae import VAEModule

            cfg = replace(cfg, train=replace(t, batch_size=batch))
            datamodule = _datamodule("vae", cfg, corpus)
            module = VAEModule(cfg)
            module.vae.fit_to_corpus(datamodule.train_frames())
            scale = t.batch_size / batch
        else:
            from distillgan.lightning_modules.hifigan import HiFiGANModule

            # the module's own phase switch: the first steps are warm-up ones, the rest adversarial
            measured_warmup = 1 + TIMED_STEPS if warmup else 0
            train = replace(
                t, batch_size=batch, segment_samples=crop, warmup_steps=measured_warmup, steps_per_epoch=0
            )
            cfg = replace(cfg, train=train)
            datamodule = _datamodule("vocoder", cfg, corpus)
            module = HiFiGANModule(cfg, total_epochs=1)
            scale = (t.batch_size * t.segment_samples) / (batch * crop)
        trainer.fit(module, datamodule=datamodule)
    times = {
        kind: statistics.median(timer.times[first + 1 : first + 1 + TIMED_STEPS]) * scale
        for kind, first in kinds.items()
    }
    return times["step"], times.get("warmup"), device, scale


def run_length(
    stage: str,
    cfg: Any,
    corpus: Corpus,
    *,
    options: TrainerOptions | None = None,
    epochs: int | None = None,
    steps_done: int = 0,
) -> RunLength:
    """The length of the run ``train_vae``/``train_vocoder`` would start (cheap: nothing trains).

    Arguments as for :func:`estimate_run`.
    """
    from distillgan.training import _probe

    if stage not in ("vae", "vocoder"):
        raise ValueError(f"unknown stage {stage!r}")
    # the number of processes, as Lightning resolves it for the run
    world_size = _probe(options or TrainerOptions(), cfg.train.accelerator).world_size
    return run_length_of(stage, cfg, _datamodule(stage, cfg, corpus), world_size, epochs, steps_done)


def estimate_run(
    stage: str,
    cfg: Any,
    corpus: Corpus,
    *,
    options: TrainerOptions | None = None,
    epochs: int | None = None,
    steps_done: int = 0,
) -> RunEstimate:
    """The length of the run ``train_vae``/``train_vocoder`` would start, and its estimated time.

    Args:
        stage: ``"vae"`` or ``"vocoder"``.
        cfg: the run's resolved config (a ``VAEConfig`` or ``VocoderConfig``), as it will be
            passed to the training function (a resumed vocoder run: its stored recipe).
        corpus: the run's corpus, as loaded for training.
        options: the run's Trainer options (devices, nodes, strategy); the accelerator and
            precision are ``cfg``'s.
        epochs: the vocoder's ``epochs`` argument of ``train_vocoder`` (or a resumed run's
            total); None or 0: the recipe decides (for the VAE, pass it in ``cfg.train.epochs``).
        steps_done: a resumed run's steps already trained (the model file's ``steps``).

    Takes a few seconds (a short measured fit) unless the run is short; raises
    :class:`~distillgan.errors.ConfigError` for options Lightning refuses.
    """
    length = run_length(stage, cfg, corpus, options=options, epochs=epochs, steps_done=steps_done)
    if length.steps_left <= TIMED_ABOVE_STEPS:
        return RunEstimate(length, None, None, "")
    step_s, warmup_s, device, scale = _measure(stage, cfg, corpus, warmup=length.warmup_steps_left > 0)
    return RunEstimate(length, step_s, warmup_s, device, scale)


__all__ = [
    "ASK_ABOVE_S",
    "CPU_MEASURE_BATCH",
    "RunEstimate",
    "RunLength",
    "estimate_run",
    "run_length",
]
