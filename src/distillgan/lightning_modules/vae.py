"""The VAE stage: a mel-spectrogram VAE trained on random mel chunks of the corpus."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from distillgan import config as cfg_lib
from distillgan.corpus import pack_short_sounds
from distillgan.data import CropDataModule, RandomCropLoader, hold_out
from distillgan.mel import HOP_LENGTH, LOG_CLAMP, log_mel_spectrogram
from distillgan.modelfile import Section, StageRecord, VAERecord
from distillgan.modelfile.records import VAE
from distillgan.networks.vae import CORPUS_LIMITS, MelVAE, kl_divergence
from distillgan.recipes import VAEConfig
from distillgan.seeding import seeded, step_generators

MEL_FLOOR = float(torch.log(torch.tensor(LOG_CLAMP)))


class VAEDataModule(CropDataModule):
    """Mel chunks of an in-memory corpus with a per-file held-out tail for validation.

    ``audio`` is a list of mono 44.1 kHz float32 arrays or tensors, one per file. Files shorter
    than two chunks (one-shots) are packed together with short silences between them
    (:func:`~distillgan.corpus.pack_short_sounds`), so every sequence can give up a held-out
    chunk and still train on one. Holding out the *end* of the longest sequences (rather than
    whole files) gives a validation set even for a 5-file corpus.
    """

    def __init__(self, audio: Sequence[Any], cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        chunk = cfg.train.chunk_frames
        sounds = [torch.as_tensor(a, dtype=torch.float32) for a in audio]
        sequences, _ = pack_short_sounds(sounds, 2 * chunk * HOP_LENGTH)
        self.mels = [log_mel_spectrogram(s) for s in sequences]
        total_chunks = sum(m.shape[-1] for m in self.mels) / chunk
        count = max(1, round(cfg.train.validation_fraction * total_chunks))
        self.train_mels, self.val_chunks = hold_out(self.mels, chunk, count, min_remaining=chunk)

    def train_frames(self) -> torch.Tensor:
        """Every training frame, (128, T): what the VAE's normalization and limits are fitted to."""
        return torch.cat(self.train_mels, dim=-1)

    def setup(self, stage: str) -> None:
        if self.train_loader is None:
            trainer = self.trainer
            self._attach_loader(
                RandomCropLoader(
                    self.train_mels,
                    self.cfg.train.chunk_frames,
                    self.cfg.train.batch_size,
                    seed=self.cfg.train.seed,
                    rank=trainer.global_rank if trainer is not None else 0,
                    world_size=trainer.world_size if trainer is not None else 1,
                    fill=MEL_FLOOR,
                )
            )

    def train_dataloader(self) -> RandomCropLoader:
        assert self.train_loader is not None
        return self.train_loader

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.stack(self.val_chunks)), batch_size=self.cfg.train.batch_size)


class VAEModule(L.LightningModule):
    """Recipe: reconstruction MSE (normalized mel) + KL with linear warm-up; Adam."""

    def __init__(self, cfg: VAEConfig, *, total_epochs: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.total_epochs = total_epochs
        with seeded(cfg.train.seed):
            self.vae = MelVAE(cfg.model)
        self.save_hyperparameters({"config": cfg_lib.to_dict(cfg), "total_epochs": total_epochs})
        self.val_history: list[float] = []

    def kl_weight(self) -> float:
        warmup = self.cfg.train.kl_warmup_steps
        ramp = 1.0 if warmup == 0 else min(1.0, self.global_step / warmup)
        return self.cfg.train.kl_weight * ramp

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        _, generator = step_generators(self.cfg.train.seed, self.global_rank, self.global_step, self.device)
        recon, mu, logvar = self.vae(batch, generator)
        recon_loss = self.vae.normalized_error(recon.float(), batch)
        kl = kl_divergence(mu.float(), logvar.float())
        loss = recon_loss + self.kl_weight() * kl
        self.log_dict({"train/loss": loss, "train/recon": recon_loss, "train/kl": kl}, prog_bar=True)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        (mel,) = batch
        mu, logvar = self.vae.encode(mel)
        recon = self.vae.decode(mu)
        recon_loss = self.vae.normalized_error(recon.float(), mel)
        kl = kl_divergence(mu.float(), logvar.float())
        # full KL weight: validation loss stays comparable across the warm-up
        self.log_dict(
            {"val/recon": recon_loss, "val/loss": recon_loss + self.cfg.train.kl_weight * kl},
            prog_bar=True,
            sync_dist=True,
        )
        if batch_idx == 0 and self.logger is not None and hasattr(self.logger, "experiment"):
            self._log_mel_image(mel[0], recon[0])

    def on_validation_epoch_end(self) -> None:
        value = self.trainer.callback_metrics.get("val/recon")
        if value is not None and not self.trainer.sanity_checking:
            self.val_history.append(float(value))

    def _log_mel_image(self, target: torch.Tensor, recon: torch.Tensor) -> None:
        experiment = self.logger.experiment  # type: ignore[union-attr]
        if not hasattr(experiment, "add_image"):
            return
        pair = torch.cat([target, recon], dim=0).float().flip(0)
        image = (pair - pair.min()) / (pair.max() - pair.min() + 1e-6)
        experiment.add_image("mel/target_top_recon_bottom", image[None], self.global_step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.vae.parameters(), lr=self.cfg.train.lr)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_history"] = list(self.val_history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_history = list(checkpoint.get("val_history", []))
        # a run saved before the VAE had limits resumes with the ones fitted to its corpus now
        for name in CORPUS_LIMITS:
            checkpoint["state_dict"].setdefault(f"vae.{name}", getattr(self.vae, name))

    def model_file_sections(self, progress: StageRecord) -> dict[str, Section]:
        """The inference part of this stage as it goes into the model file.

        ``progress`` comes from :class:`~distillgan.callbacks.ModelFileCheckpoint`.
        """
        history = self.val_history
        record = VAERecord(
            **progress.progress(),
            config=cfg_lib.to_dict(self.cfg),
            val_recon_first=history[0] if history else None,
            val_recon_last=history[-1] if history else None,
            val_recon_best=min(history) if history else None,
        )
        weights = {f"weights/{k}": v.detach().float().cpu() for k, v in self.vae.state_dict().items()}
        return {VAE: Section(attrs=record.to_attrs(), tensors=weights)}
