"""LightningModules and DataModules of distillgan: one recipe per module."""

from distillgan.lightning_modules.hifigan import (
    HiFiGANModule,
    VocoderConfig,
    VocoderDataModule,
    VocoderTrainConfig,
    load_vocoder_config,
)
from distillgan.lightning_modules.vae import VAEDataModule, VAEModule

__all__ = [
    "HiFiGANModule",
    "VAEDataModule",
    "VAEModule",
    "VocoderConfig",
    "VocoderDataModule",
    "VocoderTrainConfig",
    "load_vocoder_config",
]
