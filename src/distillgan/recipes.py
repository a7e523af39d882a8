"""Training recipes: each stage's whole config (its network's shape and its training) and the
one loader that reads them.

A recipe is a built-in YAML file in ``configs/`` (``vae``, ``vocoder``, ``vocoder_quick``,
``vocoder_tiny``, ``vocoder_prior``), then a user's YAML file, then the front end's overrides,
merged in that order and validated (:func:`distillgan.config.from_dict`: one clear line names a
bad key). The same validation guards a recipe read back from a model file. Each network's shape
lives beside its network (:class:`~distillgan.networks.vae.VAEModelConfig`,
:class:`~distillgan.networks.hifigan.HiFiGANConfig`); everything about how a run trains lives
here, including where it computes and at what precision (``train.accelerator``,
``train.precision``): the front ends set those as overrides, like any other setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from distillgan.config import builtin_recipe, from_dict, in_range, load_yaml, merge, require
from distillgan.mel import HOP_LENGTH, SAMPLE_RATE
from distillgan.networks.hifigan import HiFiGANConfig
from distillgan.networks.vae import VAEModelConfig

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# VAE stage


@dataclass
class VAETrainConfig:
    """The training half of the VAE recipe (``train:`` in ``configs/vae.yaml``)."""

    chunk_frames: int = 64  # ~0.74 s of mel per training example
    batch_size: int = 16
    lr: float = 1e-3
    epochs: int = 0  # 0: adapt to corpus size (see distillgan.training.vae_epochs_for)
    kl_weight: float = 0.01
    kl_warmup_steps: int = 500
    validation_fraction: float = 0.15
    seed: int = 0
    precision: str = "32"
    accelerator: str = "auto"

    def validate(self) -> None:
        in_range("train.chunk_frames", self.chunk_frames, 8, 8192)
        in_range("train.batch_size", self.batch_size, 1, 4096)
        in_range("train.lr", self.lr, 1e-7, 1.0)
        in_range("train.epochs", self.epochs, 0, 100_000)
        in_range("train.kl_weight", self.kl_weight, 0.0, 100.0)
        in_range("train.kl_warmup_steps", self.kl_warmup_steps, 0, 10_000_000)
        in_range("train.validation_fraction", self.validation_fraction, 0.0, 0.5)


@dataclass
class VAEConfig:
    """The whole VAE recipe: network shape (``model:``) and training (``train:``)."""

    model: VAEModelConfig = field(default_factory=VAEModelConfig)
    train: VAETrainConfig = field(default_factory=VAETrainConfig)

    def validate(self) -> None:
        require(
            self.train.chunk_frames % self.model.time_reduction == 0,
            f"config key 'train.chunk_frames' must be a multiple of {self.model.time_reduction}",
        )


# ---------------------------------------------------------------------------------------------
# Vocoder stage


# The allowed range of every numeric vocoder training setting: (key, lowest, highest).
_VOCODER_TRAIN_RANGES = (
    ("batch_size", 1, 1024),
    ("lr", 1e-7, 1.0),
    ("d_lr_ratio", 0.01, 10.0),
    ("weight_decay", 0.0, 1.0),
    ("lr_decay_per_step", 0.9, 1.0),
    ("epochs", 0, 1_000_000),
    ("steps_per_epoch", 0, 10_000_000),
    ("stft_weight", 0.0, 1e4),
    ("vae_aware_fraction", 0.0, 1.0),
    ("start_crop_fraction", 0.0, 1.0),
    ("warmup_steps", 0, 10_000_000),
    ("gain_db", 0.0, 24.0),
    ("d_input_noise", 0.0, 0.1),
    ("dc_weight", 0.0, 1e4),
    ("warmup_stft_weight", 0.0, 1e4),
    ("val_clips", 1, 64),
    ("val_clip_seconds", 0.1, 30.0),
    ("checkpoint_interval", 1, 100_000),
    ("preview_interval", 1, 100_000),
    ("max_nonfinite_steps", 1, 1_000_000),
)


@dataclass
class VocoderTrainConfig:
    """The training half of a vocoder recipe (``train:`` in ``configs/vocoder*.yaml``)."""

    segment_samples: int = 8192  # training crop; multiple of the 512-sample hop
    batch_size: int = 16
    lr: float = 2e-4  # generator; the discriminators use lr * d_lr_ratio
    d_lr_ratio: float = 0.5  # a slower discriminator over-fits a small corpus less
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    weight_decay: float = 0.01
    lr_decay_per_step: float = 0.99999  # exponential decay per generator step
    # where the generator starts: "prior" (the shipped universal prior), "scratch", or a
    # model's name or path (its vocoder)
    init: str = "scratch"
    epochs: int = 0  # 0: adapt to the corpus size (see distillgan.training)
    # generator steps per epoch; 0: about the training audio's duration once. A fixed number
    # makes the run a budget that does not grow with the corpus.
    steps_per_epoch: int = 0
    warmup_steps: int = 0  # generator-only reconstruction steps before the adversarial phase
    warmup_stft_weight: float = 1.0
    # multi-resolution STFT loss in the adversarial phase too (0 = the paper's losses only): it
    # sees levels and low frequencies that the mel's slaney filterbank weighs little
    stft_weight: float = 0.0
    # the mel filterbank gives 0 Hz no weight, so mel L1 cannot see a DC offset: this term
    # matches each generated crop's mean to the real crop's (both phases; 0 disables it)
    dc_weight: float = 0.0
    # share of each batch whose generator input is the VAE's reconstruction of the crop's mel
    # (the target stays the real crop): the vocoder learns the mels it renders at generation
    vae_aware_fraction: float = 0.0
    # share of training crops that begin at a file's first sample, where a one-shot's attack
    # meets the mel's reflect-padded first frame (uniform crops almost never start there)
    start_crop_fraction: float = 0.0
    mel_weight: float = 45.0
    feature_matching_weight: float = 2.0
    # augmentation against discriminator over-fitting on tiny corpora
    gain_db: float = 6.0  # random gain per example, ± dB (the mel target follows it)
    polarity_flip: bool = True  # random sign per example: same mel, new waveform
    d_input_noise: float = 1e-4  # Gaussian instance noise on discriminator inputs (≈ -80 dBFS)
    val_clips: int = 4
    val_clip_seconds: float = 2.0
    checkpoint_interval: int = 5  # epochs
    preview_interval: int = 5  # epochs
    max_nonfinite_steps: int = 20  # consecutive skipped steps before training stops
    seed: int = 0
    precision: str = "32"
    accelerator: str = "auto"
    keep_checkpoint: bool = False

    def validate(self) -> None:
        in_range("train.segment_samples", self.segment_samples, HOP_LENGTH * 4, SAMPLE_RATE * 10)
        require(
            self.segment_samples % HOP_LENGTH == 0,
            f"config key 'train.segment_samples' must be a multiple of {HOP_LENGTH}",
        )
        for key, lowest, highest in _VOCODER_TRAIN_RANGES:
            in_range(f"train.{key}", getattr(self, key), lowest, highest)
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "config key 'train.betas' must be two numbers in [0, 1)",
        )
        require(bool(self.init.strip()), "config key 'train.init' must be prior, scratch or a model name")

    @property
    def val_clip_samples(self) -> int:
        return max(HOP_LENGTH * 4, round(self.val_clip_seconds * SAMPLE_RATE / HOP_LENGTH) * HOP_LENGTH)


@dataclass
class VocoderConfig:
    """A whole vocoder recipe: network shape (``generator:``) and training (``train:``)."""

    generator: HiFiGANConfig = field(default_factory=HiFiGANConfig)
    train: VocoderTrainConfig = field(default_factory=VocoderTrainConfig)


# ---------------------------------------------------------------------------------------------
# The loader


def _load(cls: type[T], recipe: str, path: Path | str | None, overrides: dict[str, Any] | None) -> T:
    """The built-in ``recipe``, then the YAML file at ``path``, then ``overrides``, merged in that
    order and validated as ``cls`` (ConfigError names a bad key)."""
    data = builtin_recipe(recipe)
    if path is not None:
        data = merge(data, load_yaml(path))
    if overrides:
        data = merge(data, overrides)
    return from_dict(cls, data)


def load_vae_config(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> VAEConfig:
    """The VAE recipe (``configs/vae.yaml``), then ``path``, then ``overrides``."""
    return _load(VAEConfig, "vae", path, overrides)


def load_vocoder_config(
    path: Path | str | None = None, overrides: dict[str, Any] | None = None, *, recipe: str = "vocoder"
) -> VocoderConfig:
    """A built-in vocoder ``recipe`` ("vocoder", "vocoder_quick", "vocoder_tiny", "vocoder_prior"),
    then ``path``, then ``overrides``."""
    return _load(VocoderConfig, recipe, path, overrides)
