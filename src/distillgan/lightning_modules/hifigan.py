"""The vocoder stage: a per-model HiFi-GAN V2 trained on the model's own corpus.

One recipe, manual optimization: an optional generator-only reconstruction warm-up, then
per batch one discriminator step followed by one generator step (LSGAN + feature
matching + mel L1). Work is done once: real audio goes through the discriminators without
a graph in the generator step, the discriminators are frozen during the generator
backward, and non-finite steps are skipped on the device without a host sync.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from distillgan import config as cfg_lib
from distillgan.config import in_range, require
from distillgan.data import RandomCropLoader, hold_out
from distillgan.errors import TrainingError
from distillgan.mel import HOP_LENGTH, SAMPLE_RATE, log_mel_spectrogram
from distillgan.modelfile import Section
from distillgan.networks.hifigan import (
    Discriminators,
    Generator,
    HiFiGANConfig,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)


@dataclass
class VocoderTrainConfig:
    segment_samples: int = 8192  # training crop; multiple of the 512-sample hop
    batch_size: int = 16
    lr: float = 2e-4  # generator; the discriminators use lr * d_lr_ratio
    d_lr_ratio: float = 0.5  # a slower discriminator over-fits a small corpus less
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    weight_decay: float = 0.01
    lr_decay_per_step: float = 0.99999  # exponential decay per generator step
    epochs: int = 0  # 0: adapt to the corpus size (see distillgan.training)
    warmup_steps: int = 0  # generator-only reconstruction steps before the adversarial phase
    warmup_stft_weight: float = 1.0
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
        in_range("train.batch_size", self.batch_size, 1, 1024)
        in_range("train.lr", self.lr, 1e-7, 1.0)
        in_range("train.d_lr_ratio", self.d_lr_ratio, 0.01, 10.0)
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "config key 'train.betas' must be two numbers in [0, 1)",
        )
        in_range("train.weight_decay", self.weight_decay, 0.0, 1.0)
        in_range("train.lr_decay_per_step", self.lr_decay_per_step, 0.9, 1.0)
        in_range("train.epochs", self.epochs, 0, 1_000_000)
        in_range("train.warmup_steps", self.warmup_steps, 0, 10_000_000)
        in_range("train.gain_db", self.gain_db, 0.0, 24.0)
        in_range("train.d_input_noise", self.d_input_noise, 0.0, 0.1)
        in_range("train.val_clips", self.val_clips, 1, 64)
        in_range("train.val_clip_seconds", self.val_clip_seconds, 0.1, 30.0)
        in_range("train.checkpoint_interval", self.checkpoint_interval, 1, 100_000)
        in_range("train.preview_interval", self.preview_interval, 1, 100_000)
        in_range("train.max_nonfinite_steps", self.max_nonfinite_steps, 1, 1_000_000)

    @property
    def val_clip_samples(self) -> int:
        return max(HOP_LENGTH * 4, round(self.val_clip_seconds * SAMPLE_RATE / HOP_LENGTH) * HOP_LENGTH)


@dataclass
class VocoderConfig:
    generator: HiFiGANConfig = field(default_factory=HiFiGANConfig)
    train: VocoderTrainConfig = field(default_factory=VocoderTrainConfig)


def load_vocoder_config(
    path: Path | str | None = None, overrides: dict[str, Any] | None = None, *, recipe: str = "vocoder"
) -> VocoderConfig:
    data = cfg_lib.builtin_recipe(recipe)
    if path is not None:
        data = cfg_lib.merge(data, cfg_lib.load_yaml(path))
    if overrides:
        data = cfg_lib.merge(data, overrides)
    return cfg_lib.from_dict(VocoderConfig, data)


class VocoderDataModule(L.LightningDataModule):
    """Random audio crops from the whole corpus in memory (on the training device).

    ``audio``: mono 44.1 kHz float arrays/tensors, one per file. ``val_clips`` fixed clips
    cut from the ends of the longest files are never trained on; they give the held-out
    mel error each epoch and the audio previews.
    """

    def __init__(self, audio: Sequence[Any], cfg: VocoderTrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        sequences = [torch.as_tensor(a, dtype=torch.float32).flatten() for a in audio]
        self.train_audio, self.val_audio = hold_out(
            sequences, cfg.val_clip_samples, cfg.val_clips, cfg.segment_samples
        )
        self.train_loader: RandomCropLoader | None = None

    def setup(self, stage: str) -> None:
        if self.train_loader is None:
            trainer = self.trainer
            rank = trainer.global_rank if trainer is not None else 0
            self.train_loader = RandomCropLoader(
                self.train_audio, self.cfg.segment_samples, self.cfg.batch_size, seed=self.cfg.seed, rank=rank
            )
            if trainer is not None:
                self.train_loader.to(trainer.strategy.root_device)

    def train_dataloader(self) -> RandomCropLoader:
        assert self.train_loader is not None
        return self.train_loader

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.stack(self.val_audio)), batch_size=len(self.val_audio))


class HiFiGANModule(L.LightningModule):
    """Per-model HiFi-GAN V2 training recipe (see module docstring)."""

    def __init__(self, cfg: VocoderConfig, *, total_epochs: int = 1) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        self.total_epochs = total_epochs
        self.generator = Generator(cfg.generator)
        self.discriminators = Discriminators(cfg.generator)
        self.save_hyperparameters({"config": cfg_lib.to_dict(cfg), "total_epochs": total_epochs})
        self.batches_trained = 0
        self.nonfinite_skipped = 0
        self.val_history: list[float] = []
        self.last_validation_audio: torch.Tensor | None = None  # (clips, samples), for previews
        self._stft_loss: torch.nn.Module | None = None
        self._consecutive_bad: torch.Tensor | None = None
        self._total_bad: torch.Tensor | None = None

    # ---------------------------------------------------------------- optimizers

    def configure_optimizers(self) -> Any:
        t = self.cfg.train
        opt_g = torch.optim.AdamW(
            self.generator.parameters(), t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay, fused=True
        )
        opt_d = torch.optim.AdamW(
            self.discriminators.parameters(),
            t.lr * t.d_lr_ratio,
            betas=tuple(t.betas),
            weight_decay=t.weight_decay,
            fused=True,
        )
        sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, t.lr_decay_per_step)
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, t.lr_decay_per_step)
        return [opt_g, opt_d], [sched_g, sched_d]

    # ---------------------------------------------------------------- training

    def _generator_for(self, step: int) -> tuple[torch.Generator, torch.Generator]:
        """Seeded per batch, so augmentation is identical after a resume."""
        # integers only: tuple-of-int hashes are stable across processes (str hashes are salted)
        seed = hash((self.cfg.train.seed, self.global_rank, step, 0xA06)) & 0x7FFF_FFFF_FFFF
        cpu = torch.Generator().manual_seed(seed)
        dev = cpu if self.device.type == "cpu" else torch.Generator(device=self.device).manual_seed(seed)
        return cpu, dev

    def augment(self, audio: torch.Tensor, cpu_gen: torch.Generator) -> torch.Tensor:
        t = self.cfg.train
        batch = audio.shape[0]
        gain_db = (torch.rand(batch, generator=cpu_gen) * 2 - 1) * t.gain_db
        scale = 10 ** (gain_db / 20)
        if t.polarity_flip:
            scale = scale * torch.where(torch.rand(batch, generator=cpu_gen) < 0.5, -1.0, 1.0)
        audio = audio * scale.to(audio.device, audio.dtype)[:, None]
        # keep boosted examples inside [-1, 1]: the generator ends in tanh
        peak = audio.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
        return audio / peak

    def _d_noise(self, x: torch.Tensor, dev_gen: torch.Generator) -> torch.Tensor:
        sigma = self.cfg.train.d_input_noise
        if sigma == 0:
            return x
        return x + sigma * torch.randn(x.shape, generator=dev_gen, device=x.device, dtype=x.dtype)

    def _guard(self, optimizer: Any, loss: torch.Tensor) -> torch.Tensor:
        """Flag, on the device, a step whose loss or gradients are non-finite.

        The fused AdamW skips a flagged step by itself (its ``found_inf``), so nothing
        non-finite reaches the weights and no host sync is needed. Under 16-mixed the
        GradScaler sets ``found_inf`` instead; the flag then only counts.
        """
        flag = (~torch.isfinite(loss.detach())).float()
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, flag, torch.ones((), device=flag.device))
        if not self._uses_grad_scaler():
            optimizer.optimizer.found_inf = flag
        return flag

    def _uses_grad_scaler(self) -> bool:
        return getattr(self.trainer.precision_plugin, "scaler", None) is not None

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()  # type: ignore[misc]
        sched_g, sched_d = self.lr_schedulers()  # type: ignore[misc]
        t = self.cfg.train
        cpu_gen, dev_gen = self._generator_for(self.batches_trained)
        real = self.augment(batch, cpu_gen)
        mel = log_mel_spectrogram(real)
        real = real.unsqueeze(1)
        fake = self.generator(mel)
        fake_mel = log_mel_spectrogram(fake.squeeze(1))
        mel_l1 = F.l1_loss(fake_mel, mel)

        if self.batches_trained < t.warmup_steps:
            stft = self.stft_loss(fake.float(), real)
            g_loss = t.mel_weight * mel_l1 + t.warmup_stft_weight * stft
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            bad = self._guard(opt_g, g_loss)
            opt_g.step()
            sched_g.step()
            self._count_bad(bad)
            self.log_dict(
                {
                    "train/g_loss": g_loss.detach(),
                    "train/mel_l1": mel_l1.detach(),
                    "train/stft": stft.detach(),
                },
                prog_bar=True,
            )
        else:
            # discriminator step: real and (detached) fake in one batched forward
            batch_size = real.shape[0]
            d_in = self._d_noise(torch.cat([real, fake.detach()]), dev_gen)
            logits, _ = self.discriminators(d_in)
            d_loss = discriminator_loss([x[:batch_size] for x in logits], [x[batch_size:] for x in logits])
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            bad_d = self._guard(opt_d, d_loss)
            opt_d.step()

            # generator step: targets from real audio without a graph; discriminators frozen
            self.toggle_optimizer(opt_g)
            with torch.no_grad():
                _, real_features = self.discriminators(self._d_noise(real, dev_gen))
            fake_logits, fake_features = self.discriminators(self._d_noise(fake, dev_gen))
            adv = generator_adversarial_loss(fake_logits)
            fm = feature_matching_loss(real_features, fake_features)
            g_loss = adv + t.feature_matching_weight * fm + t.mel_weight * mel_l1
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            bad_g = self._guard(opt_g, g_loss)
            opt_g.step()
            self.untoggle_optimizer(opt_g)
            sched_g.step()
            sched_d.step()
            self._count_bad(torch.maximum(bad_d, bad_g))
            self.log_dict(
                {
                    "train/g_loss": g_loss.detach(),
                    "train/d_loss": d_loss.detach(),
                    "train/adv": adv.detach(),
                    "train/fm": fm.detach(),
                    "train/mel_l1": mel_l1.detach(),
                },
                prog_bar=True,
            )
        self.log("lr", sched_g.get_last_lr()[0], prog_bar=True)
        self.batches_trained += 1

    def stft_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self._stft_loss is None:
            import auraloss

            self._stft_loss = auraloss.freq.MultiResolutionSTFTLoss(
                fft_sizes=[512, 1024, 2048], hop_sizes=[128, 256, 512], win_lengths=[512, 1024, 2048]
            ).to(self.device)
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self._stft_loss(fake.float(), real.float())

    def _count_bad(self, flag: torch.Tensor) -> None:
        if self._consecutive_bad is None or self._total_bad is None:
            self._consecutive_bad = torch.zeros((), device=flag.device)
            self._total_bad = torch.zeros((), device=flag.device)
        self._consecutive_bad = (self._consecutive_bad + flag) * flag
        self._total_bad = self._total_bad + flag

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # one host sync every 25 batches, not per step
        if self._consecutive_bad is not None and self.batches_trained % 25 == 0:
            self._check_nonfinite()

    def on_train_epoch_end(self) -> None:
        self._check_nonfinite()

    def _check_nonfinite(self) -> None:
        if self._consecutive_bad is None or self._total_bad is None:
            return
        self.nonfinite_skipped = int(self._total_bad)
        if int(self._consecutive_bad) >= self.cfg.train.max_nonfinite_steps:
            raise TrainingError(
                f"training stopped: {int(self._consecutive_bad)} steps in a row had non-finite losses "
                "(all skipped; the saved weights are the last finite ones). Try a lower --lr or --precision 32"
            )

    # ---------------------------------------------------------------- validation

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        (clips,) = batch
        mel = log_mel_spectrogram(clips)
        audio = self.generator(mel).squeeze(1)
        val_l1 = F.l1_loss(log_mel_spectrogram(audio), mel)
        self.log("val/mel_l1", val_l1, prog_bar=True, sync_dist=True)
        self.last_validation_audio = audio.detach().float().cpu()

    def on_validation_epoch_end(self) -> None:
        value = self.trainer.callback_metrics.get("val/mel_l1")
        if value is not None and not self.trainer.sanity_checking:
            self.val_history.append(float(value))

    # ---------------------------------------------------------------- state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_nonfinite()
        checkpoint["distillgan"] = {
            "batches_trained": self.batches_trained,
            "nonfinite_skipped": self.nonfinite_skipped,
            "val_history": list(self.val_history),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("distillgan", {})
        self.batches_trained = int(state.get("batches_trained", 0))
        self.nonfinite_skipped = int(state.get("nonfinite_skipped", 0))
        self.val_history = [float(v) for v in state.get("val_history", [])]
        rng = state.get("rng", {})
        if "python" in rng:
            random.setstate(rng["python"])
        if "numpy" in rng:
            np.random.set_state(rng["numpy"])
        if "torch" in rng:
            torch.set_rng_state(rng["torch"].cpu())
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])

    def model_file_sections(self, progress: dict[str, Any]) -> dict[str, Section]:
        """The inference generator (weight norm folded) and its training summary."""
        weights = self.generator.inference_state_dict()
        history = self.val_history
        attrs = {
            "type": "hifigan_v2",
            "config": cfg_lib.to_json(self.cfg.generator),
            "train_config": cfg_lib.to_json(self.cfg.train),
            "status": progress["status"],
            "epochs": progress["epochs_completed"],
            "epoch": progress["epoch"],
            "total_epochs": progress["total_epochs"],
            "steps": progress["steps"],
            "warmup_steps": self.cfg.train.warmup_steps,
            "val_mel_l1_best": min(history) if history else None,
            "val_mel_l1_last": history[-1] if history else None,
            "val_mel_l1_history": json.dumps(history[-500:]),
            "nonfinite_skipped": self.nonfinite_skipped,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return {
            "vocoder": Section(
                attrs=attrs, tensors={f"generator/{k}": v.detach().float().cpu() for k, v in weights.items()}
            )
        }
