"""LightningModules and DataModules of distillgan: one recipe per module (the recipes' configs
are in :mod:`distillgan.recipes`)."""

from distillgan.lightning_modules.hifigan import HiFiGANModule, VocoderDataModule
from distillgan.lightning_modules.vae import VAEDataModule, VAEModule

__all__ = [
    "HiFiGANModule",
    "VAEDataModule",
    "VAEModule",
    "VocoderDataModule",
]
