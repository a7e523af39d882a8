"""Build and run a Lightning Trainer for each stage: the CLI and the UI run a
:class:`~distillgan.runs.Plan` with :func:`run_plan`.

Nothing here trains: it wires the LightningModules, DataModules and callbacks together,
picks adaptive defaults, and reports the outcome as a :class:`RunResult`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillgan.corpus import Corpus, build_manifest
from distillgan.errors import ConfigError, DistillganError
from distillgan.modelfile import DatasetRecord, ModelLock, Section, StageRecord, VocoderRecord
from distillgan.progress import CancelToken, ProgressListener

if TYPE_CHECKING:
    from distillgan.recipes import VAEConfig, VocoderConfig
    from distillgan.runs import Plan

VAE_TARGET_STEPS = 2000
VOCODER_TARGET_STEPS = 20_000


@dataclass
class TrainerOptions:
    """Where a run's processes go, passed straight to Lightning's Trainer. What they compute on
    and at what precision is the recipe's (``train.accelerator``, ``train.precision``): a front
    end sets those as overrides of the recipe, like any other training setting."""

    devices: str | int = "auto"
    num_nodes: int = 1
    strategy: str = "auto"


@dataclass
class RunResult:
    status: str  # "complete" | "partial" (stopped early: cancel or a reported error)
    cancelled: bool
    epoch: int  # epoch (from 1) the saved state belongs to
    epochs_completed: int
    total_epochs: int
    steps: int
    model_path: Path
    log_dir: str | None
    metrics: dict[str, float] = field(default_factory=dict)


def run_dir(model_path: Path) -> Path:
    """Per-model folder for TensorBoard logs and previews: ``<models dir>/runs/<name>/``."""
    return model_path.parent / "runs" / model_path.stem


def logged_history(log_dir: str | Path, stage: str, before_step: int) -> list[tuple[int, str, float]]:
    """``(step, metric, value)`` points (``train/…`` and ``val/…``) that earlier runs of ``stage``
    logged to TensorBoard beside ``log_dir`` (this run's folder), below ``before_step``.

    This is the history a resumed run continues: the newest earlier run (whose checkpoint is
    being resumed), then, for the steps before that run started, the run it resumed, and so on
    back to a run that started in epoch 0 (Lightning logs the epoch beside every metric).
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    here = Path(log_dir)
    points: list[tuple[int, str, float]] = []
    below = before_step
    # folder names end in a sortable timestamp: newest first
    for run in sorted(here.parent.glob(f"{stage}-*"), reverse=True):
        if run == here or not run.is_dir():
            continue
        events = EventAccumulator(str(run), size_guidance={"scalars": 0})  # 0: keep every point
        events.Reload()
        tags = events.Tags()["scalars"]
        logged = [
            (event.step, tag, float(event.value))
            for tag in tags
            if tag.startswith(("train/", "val/"))
            for event in events.Scalars(tag)
        ]
        if not logged:
            continue
        points += [point for point in logged if point[0] < below]
        below = min(below, min(step for step, _, _ in logged))
        if "epoch" not in tags or events.Scalars("epoch")[0].value == 0:
            break  # this run started afresh: older runs belong to another history
    return sorted(points)


def quiet_lightning() -> None:
    """Lightning's info banners would garble the Rich display; our callbacks report instead."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LitLogger.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")
    os.environ.setdefault("PL_DISABLE_TIPS", "1")


def vae_epochs_for(steps_per_epoch: int) -> int:
    """About VAE_TARGET_STEPS steps in all, within 10..1000 epochs (under DDP a step is one batch
    on every process)."""
    return max(10, min(1000, math.ceil(VAE_TARGET_STEPS / max(1, steps_per_epoch))))


def vocoder_epochs_for(steps_per_epoch: int, warmup_steps: int = 0) -> int:
    """About VOCODER_TARGET_STEPS adversarial steps after the warm-up, within 5..5000 epochs
    (under DDP a step is one batch on every process)."""
    target = warmup_steps + VOCODER_TARGET_STEPS
    return max(5, min(5000, math.ceil(target / max(1, steps_per_epoch))))


def steps_per_epoch(lengths: list[int], crop: int, batch_size: int, world_size: int = 1) -> int:
    """Steps in an epoch that sees about the whole (training) corpus once across ``world_size``
    processes; never zero. The crop loader's own count (:func:`distillgan.data.epoch_batches`)."""
    from distillgan.data import epoch_batches

    return epoch_batches(lengths, crop, batch_size, world_size)


@dataclass(frozen=True)
class RunLength:
    """A run's length in the user's units. Steps are generator steps (vocoder) or optimizer
    steps (VAE); under DDP a step is one batch on every process."""

    stage: str
    epochs: int
    steps_per_epoch: int
    steps_done: int = 0  # a resumed run's steps already trained
    warmup_steps: int = 0  # the vocoder's reconstruction warm-up (generator-only steps)
    adaptive: bool = False  # the epochs were adapted to the corpus (no number asked for anywhere)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def steps_left(self) -> int:
        return max(0, self.total_steps - self.steps_done)

    @property
    def warmup_steps_left(self) -> int:
        return max(0, min(self.warmup_steps, self.total_steps) - self.steps_done)

    def text(self) -> str:
        """E.g. ``8 epochs × 100 generator steps = 800 steps (the first 500 a reconstruction
        warm-up), 300 left``."""
        unit = "generator steps" if self.stage == "vocoder" else "steps"
        text = (
            f"{_count(self.epochs, 'epoch')}{' (adapted to the corpus)' if self.adaptive else ''} × "
            f"{self.steps_per_epoch:,} {unit} = {self.total_steps:,} steps"
        )
        if self.warmup_steps:
            text += f" (the first {min(self.warmup_steps, self.total_steps):,} a reconstruction warm-up)"
        if self.steps_done:
            text += f", {self.steps_left:,} left"
        return text


def run_length_of(
    stage: str, cfg: Any, datamodule: Any, world_size: int, epochs: int | None = None, steps_done: int = 0
) -> RunLength:
    """The length :func:`train_vae` / :func:`train_vocoder` train (and the estimate shows):
    ``datamodule`` is the stage's own, whose training split decides an epoch's steps; ``epochs``
    the vocoder's ``epochs`` argument (None or 0: the recipe decides, else the adaptive default)."""
    t = cfg.train
    if stage == "vae":
        per_epoch = steps_per_epoch(
            [m.shape[-1] for m in datamodule.train_mels], t.chunk_frames, t.batch_size, world_size
        )
        chosen = epochs or t.epochs
        return RunLength(
            "vae", chosen or vae_epochs_for(per_epoch), per_epoch, steps_done, adaptive=not chosen
        )
    # a recipe's fixed steps_per_epoch counts steps, which every process takes together
    per_epoch = t.steps_per_epoch or steps_per_epoch(
        [a.shape[-1] for a in datamodule.train_audio], t.segment_samples, t.batch_size, world_size
    )
    chosen = epochs or t.epochs
    total = chosen or vocoder_epochs_for(per_epoch, t.warmup_steps)
    return RunLength("vocoder", total, per_epoch, steps_done, t.warmup_steps, adaptive=not chosen)


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# A resumed vocoder run keeps these from its own stored recipe: they shape the optimisation.
KEPT_ON_RESUME = ("lr", "batch_size", "warmup_steps", "steps_per_epoch", "init")


@dataclass
class ResumedVocoderRun:
    cfg: VocoderConfig  # the run's own recipe, with the settings that may change applied
    total_epochs: int | None  # None: the recipe decides
    ignored: list[str]  # asked-for settings that resuming keeps as they were


def resumed_vocoder_run(
    vocoder: VocoderRecord, train_overrides: dict[str, Any], epochs: int | None, *, go_on: str
) -> ResumedVocoderRun:
    """The recipe of an unfinished vocoder run, from the model file's ``/vocoder`` record.

    Settings in :data:`KEPT_ON_RESUME` keep their stored values (those asked for differently
    are listed in ``ignored``); the others (intervals, precision, ...) may change. ``epochs``
    extends the run. The stored configs are untrusted: the config loader validates them.

    Raises :class:`DistillganError` when the run has no epochs left to train; ``go_on`` tells
    the user how to continue in the front end's own terms (``{done}`` is the epochs trained).
    """
    from distillgan.recipes import load_vocoder_config

    stored_train = vocoder.train_config or {}
    ignored = [
        k for k in KEPT_ON_RESUME if k in train_overrides and train_overrides[k] != stored_train.get(k)
    ]
    train = {**stored_train, **{k: v for k, v in train_overrides.items() if k not in KEPT_ON_RESUME}}
    cfg = load_vocoder_config(None, {"generator": vocoder.config or {}, "train": train})
    done = vocoder.epochs_completed or 0
    total = epochs or vocoder.total_epochs or None
    if total is not None and total <= done:
        raise DistillganError(f"the saved run has already trained {done} epochs: {go_on.format(done=done)}")
    return ResumedVocoderRun(cfg, total, ignored)


def _lightning_trainer(options: TrainerOptions, accelerator: str, **settings: Any) -> Any:
    """``L.Trainer`` on the recipe's ``accelerator`` and ``options``' devices, nodes and strategy;
    a value Lightning refuses becomes one clear error."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    quiet_lightning()
    try:
        return L.Trainer(
            accelerator=accelerator,
            devices=options.devices,
            num_nodes=options.num_nodes,
            strategy=options.strategy,
            **settings,
        )
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as exc:
        # e.g. an unknown --accelerator, a GPU asked for on a machine without one, a bad --devices
        raise ConfigError(f"cannot set up training: {str(exc).strip().splitlines()[0]}") from exc


def _probe(options: TrainerOptions, accelerator: str) -> Any:
    """The Trainer ``options`` resolve to, built and dropped (nothing starts): its strategy and
    world size are Lightning's own answers, for torchrun and srun too."""
    return _lightning_trainer(
        options,
        accelerator,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _gan_options(options: TrainerOptions, accelerator: str) -> tuple[TrainerOptions, int]:
    """``options`` for the vocoder, as Lightning resolves them (from a Trainer built and dropped;
    nothing starts): a strategy whose DDP tolerates parameters without gradients in a backward,
    whether DDP was asked for or Lightning chose it (``auto`` on several devices or nodes,
    torchrun, srun), and the run's number of processes.

    The GAN step runs one backward per network (and the warm-up never touches the
    discriminators), which plain DDP reports as an error.
    """
    from lightning.pytorch.strategies import DDPStrategy

    probe = _probe(options, accelerator)
    strategy = options.strategy
    if isinstance(probe.strategy, DDPStrategy):
        if strategy == "auto":  # Lightning's own choice: ddp, or ddp_fork in an interactive session
            strategy = "ddp_fork" if probe.strategy.launcher.is_interactive_compatible else "ddp"
        if strategy in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook"):
            strategy = f"{strategy}_find_unused_parameters_true"
    return replace(options, strategy=strategy), probe.world_size


def _trainer(
    model_path: Path,
    length: RunLength,
    train: Any,
    options: TrainerOptions,
    callbacks: list[Any],
    val_every: int,
) -> Any:
    """The Lightning Trainer of a run; ``train`` is the recipe's train section (the run's
    accelerator and precision), ``options`` where its processes go."""
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(
        save_dir=str(run_dir(model_path)),
        name="tensorboard",
        version=f"{length.stage}-{datetime.now().strftime('%Y%m%d-%H%M%S')}",
        default_hp_metric=False,
    )
    return _lightning_trainer(
        options,
        train.accelerator,
        max_epochs=length.epochs,
        precision=train.precision,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=True,  # our ModelFileCheckpoint replaces the default ModelCheckpoint
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=val_every,
        log_every_n_steps=max(1, min(50, length.steps_per_epoch)),
    )


def _check_replaceable(model_path: Path) -> None:
    """Refuse now, with its reason, a model file that the new run's first save could not replace
    (a newer schema, no permission, open in another program). A damaged one (not HDF5, truncated,
    corrupt) holds nothing to keep: that save replaces it. Either way the file stays as it is until
    then. Called with the model's lock held."""
    import contextlib

    from distillgan.errors import DamagedModelFileError
    from distillgan.modelfile import open_model

    if model_path.exists():
        with contextlib.suppress(DamagedModelFileError):
            open_model(model_path)


def _fit(trainer: Any, module: Any, datamodule: Any, model_path: Path, resume: bool, checkpoint: Any) -> None:
    """``trainer.fit``, resuming from the state saved in ``model_path`` when ``resume``.

    That state comes from a file (untrusted): until training starts, a failure to restore it
    (weights that do not fit the network, a damaged loop or optimizer state) is the file's
    fault and becomes one clear error instead of a crash.
    """
    from distillgan.errors import DistillganError, ModelFileError

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(model_path) if resume else None)
    except DistillganError:
        raise
    except Exception as exc:
        if not resume or checkpoint.started:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelFileError(
            f"cannot resume from the training state saved in {model_path}: it is damaged or does not "
            f"fit this run ({first}); start over with --fresh"
        ) from exc


def _result(trainer: Any, checkpoint: Any, cancel: CancelToken, model_path: Path) -> RunResult:
    # the progress of the latest save, as written (nothing saved: nothing done)
    saved = checkpoint.last_saved or StageRecord("partial", 0, 0, 0, 0)
    metrics = {
        k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1
    }
    return RunResult(
        status=saved.status,
        cancelled=cancel.cancelled,
        epoch=saved.epoch,
        epochs_completed=saved.epochs_completed,
        total_epochs=saved.total_epochs,
        steps=saved.steps,
        model_path=model_path,
        log_dir=trainer.logger.log_dir if trainer.logger is not None else None,
        metrics=metrics,
    )


def _run(
    module: Any,
    datamodule: Any,
    length: RunLength,
    train: Any,
    checkpoint: Any,
    *,
    own_callbacks: list[Any] | None = None,
    extra_callbacks: list[Any] | None = None,
    val_every: int,
    listener: ProgressListener | None,
    cancel: CancelToken | None,
    options: TrainerOptions,
    resume: bool,
) -> RunResult:
    """Fit ``module`` on ``datamodule`` for ``length`` (either stage), saving through
    ``checkpoint`` (a ``ModelFileCheckpoint``), and report the outcome.

    Callbacks in this order: cancelling, the stage's ``own_callbacks``, the checkpoint, progress
    for ``listener``, then the caller's ``extra_callbacks``.
    """
    from distillgan.callbacks import CancelOnRequest, ProgressReporter

    cancel = cancel or CancelToken()
    callbacks: list[Any] = [CancelOnRequest(cancel), *(own_callbacks or []), checkpoint]
    if listener is not None:
        callbacks.append(ProgressReporter(listener, length.stage))
    callbacks.extend(extra_callbacks or [])
    model_path = checkpoint.model_path
    trainer = _trainer(model_path, length, train, options, callbacks, val_every)
    _fit(trainer, module, datamodule, model_path, resume, checkpoint)
    return _result(trainer, checkpoint, cancel, model_path)


def train_vae(
    corpus: Corpus,
    model_path: Path,
    cfg: VAEConfig,
    *,
    lock: ModelLock | None,
    listener: ProgressListener | None = None,
    cancel: CancelToken | None = None,
    options: TrainerOptions | None = None,
    resume: bool = False,
) -> RunResult:
    """Train (or resume) the VAE stage of ``model_path`` on ``corpus``."""
    from distillgan.callbacks import ModelFileCheckpoint
    from distillgan.lightning_modules.vae import VAEDataModule, VAEModule

    options = options or TrainerOptions()
    datamodule = VAEDataModule([f.audio for f in corpus.files], cfg)
    length = run_length_of("vae", cfg, datamodule, _probe(options, cfg.train.accelerator).world_size)
    epochs = length.epochs
    module = VAEModule(cfg, total_epochs=epochs)
    module.vae.fit_to_corpus(datamodule.train_frames())
    val_every = max(1, epochs // 50)
    dataset = Section(attrs=DatasetRecord(build_manifest(corpus)).to_attrs())
    if not resume and lock is not None and lock.held:
        _check_replaceable(model_path)
    checkpoint = ModelFileCheckpoint(
        model_path,
        "vae",
        every_n_epochs=max(val_every, epochs // 10),
        lock=lock,
        owner="distillgan train vae",
        # A new run replaces a model with its first save, atomically: until then the old model
        # (its vocoder too) stays whole, whatever happens to this run (kill, crash, full disk).
        extra_sections={} if resume else {"dataset": dataset, "vocoder": None, "vocoder_checkpoint": None},
        replace_damaged=not resume,
        listener=listener,
    )
    return _run(
        module,
        datamodule,
        length,
        cfg.train,
        checkpoint,
        val_every=val_every,
        listener=listener,
        cancel=cancel,
        options=options,
        resume=resume,
    )


def train_vocoder(
    corpus: Corpus,
    model_path: Path,
    cfg: VocoderConfig,
    *,
    lock: ModelLock | None,
    listener: ProgressListener | None = None,
    cancel: CancelToken | None = None,
    options: TrainerOptions | None = None,
    resume: bool = False,
    epochs: int | None = None,
    extra_callbacks: list[Any] | None = None,
    bigvgan_dir: Path | None = None,
) -> RunResult:
    """Train (or resume) the per-model HiFi-GAN vocoder of ``model_path`` on ``corpus``.

    ``cfg`` is a :class:`~distillgan.recipes.VocoderConfig`; on resume it
    must be the run's stored config. ``epochs`` overrides the total (e.g. to extend a run).
    A fresh run starts from what ``cfg.train.init`` names. A finished run scores BigVGAN-v2
    on the same held-out clips when it is on this machine (``bigvgan_dir``, else the hub cache).
    """
    from distillgan.callbacks import AudioPreviews, BigVGANScore, ModelFileCheckpoint
    from distillgan.lightning_modules.hifigan import HiFiGANModule, VocoderDataModule
    from distillgan.modelfile import open_model
    from distillgan.vocoders.prior import starting_weights

    t = cfg.train
    options, world_size = _gan_options(options or TrainerOptions(), t.accelerator)
    vae = None
    if t.vae_aware_fraction > 0 and model_path.exists() and open_model(model_path).has("vae"):
        from distillgan.generation import load_vae

        vae = load_vae(model_path)
    datamodule = VocoderDataModule(
        [f.audio for f in corpus.files],
        t,
        names=[os.path.relpath(f.path, corpus.root) for f in corpus.files],
        vae=vae,
    )
    length = run_length_of("vocoder", cfg, datamodule, world_size, epochs)
    start = None if resume else starting_weights(t.init, model_path.parent, exclude=model_path)
    module = HiFiGANModule(cfg, total_epochs=length.epochs, start=start)
    checkpoint = ModelFileCheckpoint(
        model_path,
        "vocoder",
        every_n_epochs=t.checkpoint_interval,
        keep_checkpoint=t.keep_checkpoint,
        lock=lock,
        owner="distillgan train vocoder",
        listener=listener,
    )
    return _run(
        module,
        datamodule,
        length,
        t,
        checkpoint,
        own_callbacks=[
            AudioPreviews(
                run_dir(model_path) / "previews", every_n_epochs=t.preview_interval, listener=listener
            ),
            BigVGANScore(bigvgan_dir),
        ],
        extra_callbacks=extra_callbacks,
        val_every=1,
        listener=listener,
        cancel=cancel,
        options=options,
        resume=resume,
    )


def run_plan(
    plan: Plan,
    corpus: Corpus,
    *,
    lock: ModelLock | None,
    listener: ProgressListener | None = None,
    cancel: CancelToken | None = None,
    options: TrainerOptions | None = None,
) -> RunResult:
    """Run a :class:`~distillgan.runs.Plan` (what both front ends start): its config, epochs and
    resume decision are the plan's."""
    request = plan.request
    common: dict[str, Any] = {
        "lock": lock,
        "listener": listener,
        "cancel": cancel,
        "options": options,
        "resume": plan.resume,
    }
    if plan.stage == "vae":
        return train_vae(corpus, request.model_path, plan.cfg, **common)
    return train_vocoder(
        corpus, request.model_path, plan.cfg, epochs=plan.epochs, bigvgan_dir=request.bigvgan_dir, **common
    )
