"""The vocoder stage: a per-model HiFi-GAN V2 trained on the model's own corpus.

Recipe (manual optimization, every number in ``configs/vocoder*.yaml``):

* an optional **reconstruction warm-up**: ``warmup_steps`` generator-only steps on mel L1
  (×45) + multi-resolution STFT loss (auraloss). They cost a few percent of a GAN step and
  give a usable vocoder quickly on a CPU;
* then per batch one **discriminator step** (MPD periods 2, 3, 5, 7, 11 + HiFi-GAN's
  3-scale MSD, LSGAN) and one **generator step** (LSGAN + feature matching ×2 + mel L1 ×45,
  optionally + multi-resolution STFT ×``stft_weight``), AdamW (0.8, 0.99), discriminators at
  half the generator's learning rate, exponential decay per generator step.

The generator (and, at the same width, the discriminators) starts from what ``train.init``
names: the shipped universal prior, scratch, or another model's vocoder
(:mod:`distillgan.vocoders.prior`). Every epoch scores its held-out clips twice: the render
as vocoding gives it (level-matched, ``val/mel_l1``, the figure compared with BigVGAN's) and
the network's own output (``val/network_mel_l1``). The model file keeps the generator of the
epoch whose network error is lowest: level matching holds the render's error at a floor within
a few hundred steps, where epochs differ by noise (choosing by it, a run kept a warm-up epoch
over all its adversarial ones), while the network's error keeps falling as training improves
it, and the less matching has to repair, the less noise it raises. A trained start is scored
the same way before the first step and is epoch 0 of that choice: an epoch replaces it only by
beating it. ``vae_aware_fraction`` of each batch can take the VAE's reconstruction of the crop's
mel as input (the target stays the real crop), so the vocoder learns the mels it renders at
generation.

An optional DC term (``dc_weight``, used by the quick recipe) matches each generated crop's
mean to the real crop's: the slaney mel filterbank gives 0 Hz no weight, so mel L1 alone
lets a short run drift into an audible offset.

Augmentation against discriminator over-fitting on tiny corpora: a random gain (±6 dB) and
polarity per example (the mel target is computed after it, so the generator learns the
same mapping; polarity gives new waveforms for the same mel), and light Gaussian instance
noise (1e-4, about -80 dBFS) on the discriminators' inputs only. Time shifts come free
from the random crops.

Work is done once: real and fake audio share one discriminator forward in the D step; in
the G step the discriminators are frozen (no weight gradients) and the real audio's feature
targets come without a graph. Non-finite steps are skipped on the device by the fused
optimizer (no host sync); the mel target, STFT and losses stay float32 under any autocast.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from distillgan import config as cfg_lib
from distillgan.corpus import pack_short_sounds
from distillgan.data import (
    HOLD_OUT_FILES_FROM,
    CropDataModule,
    RandomCropLoader,
    fit_length,
    hold_out,
    hold_out_files,
)
from distillgan.errors import ConfigError, ModelFileError, TrainingError
from distillgan.mel import HOP_LENGTH, LOG_CLAMP, SAMPLE_RATE, log_mel_spectrogram
from distillgan.modelfile import Section, StageRecord, VocoderRecord
from distillgan.modelfile.records import VOCODER
from distillgan.networks.hifigan import (
    Discriminators,
    Generator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from distillgan.networks.vae import MelVAE, reconstruct
from distillgan.recipes import VocoderConfig, VocoderTrainConfig
from distillgan.seeding import seeded, step_generators
from distillgan.vocoders.hifigan import TYPE
from distillgan.vocoders.mel_match import LEVEL_MATCHED, match_to_mel
from distillgan.vocoders.prior import StartingWeights, weight_normed


def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether the corpus may live on ``device``: always on CPU, within a quarter of free GPU memory."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= free // 4
    return nbytes <= 1 << 30


# Audio previews are at least this long where the held-out audio allows (see ``preview_audio``).
PREVIEW_SECONDS = 2.0
# in whole frames, rounded as ``val_clip_seconds`` is: the full recipe's 2 s clips are previews
PREVIEW_SAMPLES = round(PREVIEW_SECONDS * SAMPLE_RATE / HOP_LENGTH) * HOP_LENGTH


class VocoderDataModule(CropDataModule):
    """The whole corpus in memory as one buffer; training batches are random crops of it.

    Args:
        audio: mono 44.1 kHz float arrays or tensors, one per file (e.g.
            ``[f.audio for f in distillgan.corpus.load_corpus(folder).files]``).
        cfg: the training half of a :class:`VocoderConfig` (crop length, batch size, seed,
            held-out clips, steps per epoch).
        names: the files' names, to say which were held out.
        vae: the model's VAE, for VAE-aware batches (``cfg.vae_aware_fraction``): each training
            file's mel is reconstructed through it once, and batches come with those frames.

    Held-out audio is never trained on: it gives the held-out mel error each epoch (the same
    ``cfg.val_clips`` clips of ``cfg.val_clip_seconds`` every time) and the audio previews
    (``preview_audio``: those clips, or, when they are shorter than ``PREVIEW_SAMPLES`` and
    whole files are held out, the last ``PREVIEW_SAMPLES`` of each held-out file).
    A corpus of at least ``HOLD_OUT_FILES_FROM`` files holds whole files out (unseen audio,
    named in ``held_out_files``); a smaller one cuts the clips off the ends of its longest
    files (``held_out_files`` is empty: the figure comes from the training files). An epoch
    is ``cfg.steps_per_epoch`` batches, or (0) about the training audio's total duration once
    across all processes, and is never empty. The crops of every batch depend only on the
    seed, the rank and the batch's index, and the loader's position is part of Lightning's
    checkpoint, so a run resumed mid-epoch sees exactly the batches it would have seen.
    """

    def __init__(
        self,
        audio: Sequence[Any],
        cfg: VocoderTrainConfig,
        names: Sequence[str] | None = None,
        vae: MelVAE | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        sequences = [torch.as_tensor(np.asarray(a), dtype=torch.float32).flatten() for a in audio]
        if not sequences:
            raise ValueError("VocoderDataModule needs at least one sound")
        names = list(names) if names is not None else [f"file {i + 1}" for i in range(len(sequences))]
        # one-shots are joined (with short silences) into sounds at least a crop and a clip long
        sequences, packs = pack_short_sounds(sequences, max(cfg.segment_samples, cfg.val_clip_samples))
        names = [" + ".join(names[i] for i in pack) for pack in packs]
        self.held_out_files: list[str] = []
        if len(sequences) >= HOLD_OUT_FILES_FROM:
            self.train_audio, self.val_audio, held = hold_out_files(
                sequences, cfg.val_clip_samples, cfg.val_clips
            )
            self.held_out_files = [names[i] for i in held]
            self.preview_audio = self.val_audio
            if cfg.val_clip_samples < PREVIEW_SAMPLES:
                # short clips: the previews hear more of the same unseen files, the last 2 s of
                # each (a shorter file whole, in whole frames)
                ends = [min(sequences[i].shape[-1], PREVIEW_SAMPLES) // HOP_LENGTH * HOP_LENGTH for i in held]
                self.preview_audio = [sequences[i][..., -n:] for i, n in zip(held, ends, strict=True)]
        else:
            self.train_audio, self.val_audio = hold_out(
                sequences, cfg.val_clip_samples, cfg.val_clips, cfg.segment_samples
            )
            # the clips are all the held-out audio there is: holding out more would take it
            # from training and change what the held-out error measures
            self.preview_audio = self.val_audio
        self.vae_frames: list[torch.Tensor] | None = None
        if vae is not None and cfg.vae_aware_fraction > 0:
            # whole frames, at least one crop long: the loader crops audio and frames together
            self.train_audio = [
                fit_length(a, max(cfg.segment_samples, a.shape[-1] // HOP_LENGTH * HOP_LENGTH))
                for a in self.train_audio
            ]
            self.vae_frames = [reconstruct(vae, log_mel_spectrogram(a)) for a in self.train_audio]

    def setup(self, stage: str) -> None:
        if self.train_loader is not None:
            return
        trainer = self.trainer
        loader = RandomCropLoader(
            self.train_audio,
            self.cfg.segment_samples,
            self.cfg.batch_size,
            seed=self.cfg.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            batches_per_epoch=self.cfg.steps_per_epoch or None,
            frames=self.vae_frames,
            hop=HOP_LENGTH if self.vae_frames is not None else 1,
            start_fraction=self.cfg.start_crop_fraction,
        )
        if trainer is not None and _fits_on(trainer.strategy.root_device, loader.buffer.numel() * 4):
            loader.to(trainer.strategy.root_device)
        self._attach_loader(loader)

    def train_dataloader(self) -> RandomCropLoader:
        if self.train_loader is None:
            self.setup("fit")
        assert self.train_loader is not None
        return self.train_loader

    def val_dataloader(self) -> _HeldOutClips:
        return _HeldOutClips(torch.stack(self.val_audio))


class _HeldOutClips:
    """One validation batch, (clips, samples): every held-out clip at once.

    Not a DataLoader, so under DDP every rank validates on all clips (Lightning shards only
    DataLoaders) and the previews are always the same clips.
    """

    def __init__(self, clips: torch.Tensor) -> None:
        self.clips = clips

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield self.clips

    def __len__(self) -> int:
        return 1


class HiFiGANModule(L.LightningModule):
    """Trains a per-model HiFi-GAN V2 (generator + MPD/MSD discriminators); see the module docstring.

    Args:
        cfg: network shape and training recipe (default: the built-in ``vocoder`` recipe's
            dataclass defaults).
        total_epochs: only recorded (hyper-parameters, model file); the Trainer's
            ``max_epochs`` decides how long training runs.

    Use it with :class:`VocoderDataModule` and any Trainer (``automatic_optimization`` is
    off: the module steps its two optimizers and schedulers itself). Logged metrics:
    ``train/g_loss``, ``train/d_loss``, ``train/adv``, ``train/fm``, ``train/mel_l1``
    (``train/stft`` during the warm-up), ``lr`` and the held-out ``val/mel_l1`` and ``val/network_mel_l1``.
    ``steps_trained`` counts generator steps (Lightning's ``global_step`` counts both
    optimizers). :meth:`model_file_sections` is what
    :class:`~distillgan.callbacks.ModelFileCheckpoint` writes as the model's ``/vocoder``.
    """

    def __init__(
        self, cfg: VocoderConfig | None = None, *, total_epochs: int = 1, start: StartingWeights | None = None
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg = cfg or VocoderConfig()
        self.total_epochs = total_epochs
        with seeded(cfg.train.seed):
            self.generator = Generator(cfg.generator)
            self.discriminators = Discriminators(cfg.generator)
        self.started_from = "scratch"
        if start is not None:
            self._adopt(start)
        self.save_hyperparameters({"config": cfg_lib.to_dict(cfg), "total_epochs": total_epochs})
        self.steps_trained = 0  # generator steps (warm-up included), the user's "steps"
        self.nonfinite_skipped = 0
        self.val_history: list[float] = []  # val/mel_l1 per validated epoch
        self.val_network_history: list[float] = []  # val/network_mel_l1 per validated epoch
        # the held-out-best epoch (by val/network_mel_l1), its figures and its generator (folded,
        # CPU): what the model file's /vocoder holds
        self.best_epoch = 0
        self.best_mel_l1: float | None = None
        self.best_network_mel_l1: float | None = None
        self.best_generator: dict[str, torch.Tensor] | None = None
        # the starting generator's held-out figures (trained starts only): epoch 0 of the keep-best
        self.start_mel_l1: float | None = None
        self.start_network_mel_l1: float | None = None
        self.held_out_files: list[str] = []
        self.bigvgan_val_mel_l1: float | None = None  # BigVGAN-v2 on the same clips (BigVGANScore)
        self.last_validation_audio: torch.Tensor | None = None  # (clips, samples) on CPU, for previews
        self._stft_loss: torch.nn.Module | None = None
        self._consecutive_bad: torch.Tensor | None = None
        self._total_bad: torch.Tensor | None = None
        self._skipped_before = 0  # non-finite steps counted before a resume
        self._scaler_skipped_before = 0  # GradScaler overflow skips counted before a resume
        self._validating_this_epoch = True

    def _adopt(self, start: StartingWeights) -> None:
        """Start from another generator (and its discriminators when they have this run's width)."""
        shape = {**cfg_lib.to_dict(self.cfg.generator), "discriminator_channel_divisor": 0}
        theirs = {**cfg_lib.to_dict(start.generator_config), "discriminator_channel_divisor": 0}
        # a generator without the excitation extends to one with it: its source convs start at
        # zero, so the run opens rendering exactly as the generator it starts from
        extends = theirs["source_channels"] == 0
        if extends:
            theirs["source_channels"] = shape["source_channels"]
        if shape != theirs:
            raise ConfigError(
                f"cannot start from the {start.source}: its generator has another shape than this recipe's "
                "(start from scratch instead)"
            )
        missing, _ = self.generator.load_state_dict(
            weight_normed(start.generator, start.generator_config), strict=not extends
        )
        assert all(key.startswith("source_convs.") for key in missing)
        if (
            start.discriminators is not None
            and start.discriminator_divisor == self.cfg.generator.discriminator_channel_divisor
        ):
            self.discriminators.load_state_dict(start.discriminators)
        self.started_from = start.source

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        self.held_out_files = list(getattr(datamodule, "held_out_files", []))

    # ---------------------------------------------------------------- optimizers

    def configure_optimizers(self) -> Any:
        t = self.cfg.train
        # fused AdamW: one kernel per step, and it honours ``found_inf`` (see ``_guard``)
        common = {"betas": tuple(t.betas), "weight_decay": t.weight_decay, "fused": True}
        opt_g = torch.optim.AdamW(self.generator.parameters(), t.lr, **common)
        opt_d = torch.optim.AdamW(self.discriminators.parameters(), t.lr * t.d_lr_ratio, **common)
        sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, t.lr_decay_per_step)
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, t.lr_decay_per_step)
        return [opt_g, opt_d], [sched_g, sched_d]

    # ---------------------------------------------------------------- training

    def augment(self, audio: torch.Tensor, cpu_gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random gain (± ``gain_db``) and polarity per example, then peaks kept inside [-1, 1].

        Returns the audio and each example's overall gain (B, 1), which shifts its log-mel by log(gain).
        """
        t = self.cfg.train
        batch = audio.shape[0]
        gain_db = (torch.rand(batch, generator=cpu_gen) * 2 - 1) * t.gain_db
        scale = 10 ** (gain_db / 20)
        if t.polarity_flip:
            scale = scale * torch.where(torch.rand(batch, generator=cpu_gen) < 0.5, -1.0, 1.0)
        audio = audio * scale.to(audio.device, audio.dtype)[:, None]
        # the generator ends in tanh: boosted examples must stay reachable
        peak = audio.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
        return audio / peak, scale.abs().to(audio.device, audio.dtype)[:, None] / peak

    def _d_noise(self, x: torch.Tensor, dev_gen: torch.Generator) -> torch.Tensor:
        sigma = self.cfg.train.d_input_noise
        if sigma == 0:
            return x
        return x + sigma * torch.randn(x.shape, generator=dev_gen, device=x.device, dtype=x.dtype)

    def _guard(self, optimizer: Any, loss: torch.Tensor) -> torch.Tensor:
        """Flag, on the device, a step whose loss or gradients are non-finite, and make it a no-op.

        The fused AdamW skips a step whose ``found_inf`` is set (weights, moments and step
        count stay as they were), so nothing non-finite reaches the weights and no host sync
        is needed. Under 16-mixed the GradScaler sets ``found_inf`` itself: gradients that are
        non-finite while the loss is finite are then its scaled fp16 gradients overflowing, a
        routine skip that lowers its scale, not a broken step. Returns ``[non-finite loss or
        gradients, overflow]`` (see ``_count_bad``).
        """
        # explicit float32: "bf16-true" / "64-true" precision change the default dtype
        loss_bad = (~torch.isfinite(loss.detach())).to(torch.float32)
        grads_bad = torch.zeros_like(loss_bad)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            one = torch.ones((), device=loss_bad.device, dtype=torch.float32)
            torch._amp_foreach_non_finite_check_and_unscale_(grads, grads_bad, one)
        if self._uses_grad_scaler():
            return torch.stack([loss_bad, grads_bad])
        bad = torch.maximum(loss_bad, grads_bad)
        optimizer.optimizer.found_inf = bad
        return torch.stack([bad, torch.zeros_like(bad)])

    def _weight_dtype(self) -> torch.dtype:
        # float32 except under "bf16-true" / "64-true" precision (autocast handles the mixed ones)
        return self.generator.conv_post.bias.dtype

    def _uses_grad_scaler(self) -> bool:
        return getattr(self.trainer.precision_plugin, "scaler", None) is not None

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()  # type: ignore[misc]
        sched_g, sched_d = self.lr_schedulers()  # type: ignore[misc]
        t = self.cfg.train
        cpu_gen, dev_gen = step_generators(t.seed, self.global_rank, self.steps_trained, self.device)
        batch, vae_mel = batch if isinstance(batch, (tuple, list)) else (batch, None)
        real, gain = self.augment(batch, cpu_gen)
        mel = log_mel_spectrogram(real)  # float32 even under autocast
        real = real.unsqueeze(1)
        given = mel
        if vae_mel is not None:
            # the first examples get the VAE's version of their mel, at the example's gain
            k = round(t.vae_aware_fraction * len(mel))
            shifted = (vae_mel[:k] + gain[:k, :, None].log()).clamp(min=math.log(LOG_CLAMP))
            given = torch.cat([shifted, mel[k:]])
        fake = self.generator(given.to(self._weight_dtype()))
        mel_l1 = F.l1_loss(log_mel_spectrogram(fake.squeeze(1)), mel)
        dc = (fake.float().mean(dim=-1) - real.float().mean(dim=-1)).abs().mean()

        if self.steps_trained < t.warmup_steps:
            # reconstruction warm-up: generator only, no discriminator forward at all
            stft = self.stft_loss(fake, real)
            g_loss = t.mel_weight * mel_l1 + t.warmup_stft_weight * stft + t.dc_weight * dc
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            bad = self._guard(opt_g, g_loss)
            opt_g.step()
            sched_g.step()
            metrics = {"train/g_loss": g_loss, "train/mel_l1": mel_l1, "train/stft": stft, "train/dc": dc}
        else:
            # discriminator step: real and detached fake judged in one batched forward
            batch_size = real.shape[0]
            logits, _ = self.discriminators(self._d_noise(torch.cat([real, fake.detach()]), dev_gen))
            d_loss = discriminator_loss([x[:batch_size] for x in logits], [x[batch_size:] for x in logits])
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            bad_d = self._guard(opt_d, d_loss)
            opt_d.step()

            # generator step: the discriminators are frozen (no weight gradients) and the real
            # audio's feature targets come without a graph. (No parametrize.cached(): its cache
            # is process-wide, so two trainings in one process would share stale weights.)
            with self.toggled_optimizer(opt_g):
                with torch.no_grad():
                    _, real_features = self.discriminators(self._d_noise(real, dev_gen))
                fake_logits, fake_features = self.discriminators(self._d_noise(fake, dev_gen))
                adv = generator_adversarial_loss(fake_logits)
                fm = feature_matching_loss(real_features, fake_features)
                g_loss = adv + t.feature_matching_weight * fm + t.mel_weight * mel_l1 + t.dc_weight * dc
                if t.stft_weight:
                    stft = self.stft_loss(fake, real)
                    g_loss = g_loss + t.stft_weight * stft
                opt_g.zero_grad(set_to_none=True)
                self.manual_backward(g_loss)
            bad = torch.maximum(bad_d, self._guard(opt_g, g_loss))
            opt_g.step()
            sched_g.step()
            sched_d.step()
            metrics = {"train/g_loss": g_loss, "train/d_loss": d_loss, "train/adv": adv, "train/fm": fm}
            metrics["train/mel_l1"] = mel_l1
            metrics["train/dc"] = dc
            if t.stft_weight:
                metrics["train/stft"] = stft
        self._count_bad(bad)
        self.log_dict({k: v.detach() for k, v in metrics.items()}, prog_bar=True)
        self.log("lr", sched_g.get_last_lr()[0], prog_bar=True)
        self.steps_trained += 1

    def stft_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Multi-resolution STFT loss (auraloss) of the warm-up, in float32 under any autocast."""
        if self._stft_loss is None:
            import auraloss

            self._stft_loss = auraloss.freq.MultiResolutionSTFTLoss(
                fft_sizes=[512, 1024, 2048], hop_sizes=[128, 256, 512], win_lengths=[512, 1024, 2048]
            ).to(self.device)
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self._stft_loss(fake.float(), real.float())

    # ---------------------------------------------------------------- non-finite steps

    def _count_bad(self, flags: torch.Tensor) -> None:
        """Count a step from its ``_guard`` flags (the maximum over its optimizers): non-finite, or
        else skipped by the GradScaler. Only non-finite steps make a streak that stops training."""
        bad, overflow = flags[0], flags[1] * (1 - flags[0])
        if self._consecutive_bad is None or self._total_bad is None:
            self._consecutive_bad = torch.zeros((), device=flags.device, dtype=torch.float32)
            # [non-finite, overflow] steps
            self._total_bad = torch.zeros(2, device=flags.device, dtype=torch.float32)
        self._consecutive_bad = (self._consecutive_bad + bad) * bad
        self._total_bad = self._total_bad + torch.stack([bad, overflow])

    def _sync_nonfinite(self) -> int:
        """Read the on-device counters (a host sync): updates ``nonfinite_skipped``, returns the streak."""
        if self._consecutive_bad is None or self._total_bad is None:
            return 0
        self.nonfinite_skipped = self._skipped_before + int(self._total_bad[0])
        return int(self._consecutive_bad)

    def _scaler_skipped(self) -> int:
        counted = 0 if self._total_bad is None else int(self._total_bad[1])
        return self._scaler_skipped_before + counted

    def _check_nonfinite(self) -> None:
        streak = self._sync_nonfinite()
        if streak >= self.cfg.train.max_nonfinite_steps:
            raise TrainingError(
                f"training stopped: the last {streak} steps had non-finite losses and were skipped "
                f"({self.nonfinite_skipped} in all); the saved weights are the last finite ones. "
                "Try a lower --lr, or --precision 32"
            )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # one host sync every 25 steps, not per step
        if self.steps_trained % 25 == 0:
            self._check_nonfinite()

    def on_train_epoch_end(self) -> None:
        self._check_nonfinite()

    # ---------------------------------------------------------------- validation

    def _stopping_mid_epoch(self) -> bool:
        trainer = self.trainer
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return trainer.should_stop and done < trainer.num_training_batches

    def on_validation_epoch_start(self) -> None:
        self.last_validation_audio = None
        # Lightning validates once more when asked to stop mid-epoch; a cancelled run exits at once
        self._validating_this_epoch = not self._stopping_mid_epoch()

    def held_out_errors(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The generator on held-out clips: the level-matched render's mel L1 (as vocoding renders
        it, like BigVGAN's score on these clips), the network's own before level matching, and the render."""
        mel = log_mel_spectrogram(clips)
        network = self.generator(mel.to(self._weight_dtype())).squeeze(1)
        audio = match_to_mel(network, mel)
        rendered = F.l1_loss(log_mel_spectrogram(audio), mel)
        return rendered, F.l1_loss(log_mel_spectrogram(network.float()), mel), audio

    def on_train_start(self) -> None:
        # Trained weights (the prior, another model's vocoder) are scored before the first step and
        # kept unless an epoch beats them: fine-tuning never leaves the network's held-out error
        # above where it started. Every rank scores all clips (_HeldOutClips), so alike.
        datamodule = getattr(self.trainer, "datamodule", None)
        if (
            self.started_from == "scratch"
            or self.steps_trained
            or self.best_generator is not None
            or datamodule is None
        ):
            return
        clips = datamodule.val_dataloader().clips.to(self.device)
        with torch.no_grad(), self.trainer.precision_plugin.val_step_context():
            rendered, network, _ = self.held_out_errors(clips)
        self.start_mel_l1, self.start_network_mel_l1 = float(rendered), float(network)
        self._keep(0, self.start_mel_l1, self.start_network_mel_l1)
        if self.logger is not None:  # the held-out curves' first point, at step 0
            self.logger.log_metrics(
                {"val/mel_l1": self.start_mel_l1, "val/network_mel_l1": self.start_network_mel_l1}, step=0
            )

    def validation_step(self, clips: torch.Tensor, batch_idx: int) -> None:
        if not self._validating_this_epoch:
            return
        rendered, network, audio = self.held_out_errors(clips)
        self.log("val/mel_l1", rendered, prog_bar=True, sync_dist=True)
        self.log("val/network_mel_l1", network, prog_bar=True, sync_dist=True)
        self.last_validation_audio = audio.detach().float().cpu()

    def on_validation_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        mel_l1, network_l1 = metrics.get("val/mel_l1"), metrics.get("val/network_mel_l1")
        if (
            not self._validating_this_epoch
            or mel_l1 is None
            or network_l1 is None
            or self.trainer.sanity_checking
        ):
            return
        self.val_history.append(float(mel_l1))
        self.val_network_history.append(float(network_l1))
        best = self.best_network_mel_l1
        if self.best_generator is None or best is None or float(network_l1) <= best:
            self._keep(self.current_epoch + 1, float(mel_l1), float(network_l1))

    def _keep(self, epoch: int, mel_l1: float, network_mel_l1: float) -> None:
        """The generator as it is now becomes the kept one (``epoch`` 0: the start), with its figures."""
        self.best_epoch, self.best_mel_l1, self.best_network_mel_l1 = epoch, mel_l1, network_mel_l1
        self.best_generator = {k: v.float().cpu() for k, v in self.generator.inference_state_dict().items()}

    # ---------------------------------------------------------------- state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._sync_nonfinite()
        checkpoint["distillgan"] = {
            "steps_trained": self.steps_trained,
            "nonfinite_skipped": self.nonfinite_skipped,
            "val_history": list(self.val_history),
            "val_network_history": list(self.val_network_history),
            "grad_scaler_skipped": self._scaler_skipped(),
            "started_from": self.started_from,
            "best_epoch": self.best_epoch,
            "best_mel_l1": self.best_mel_l1,
            "best_network_mel_l1": self.best_network_mel_l1,
            "best_generator": self.best_generator,
            "start_mel_l1": self.start_mel_l1,
            "start_network_mel_l1": self.start_network_mel_l1,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._check_discriminators_fit(checkpoint.get("state_dict", {}))
        state = checkpoint.get("distillgan", {})
        self.steps_trained = int(state.get("steps_trained", 0))
        self.nonfinite_skipped = self._skipped_before = int(state.get("nonfinite_skipped", 0))
        self._scaler_skipped_before = int(state.get("grad_scaler_skipped", 0))
        self.val_history = [float(v) for v in state.get("val_history", [])]
        self.val_network_history = [float(v) for v in state.get("val_network_history", [])]
        self.started_from = str(state.get("started_from", "scratch"))
        self.best_epoch = int(state.get("best_epoch", 0))
        # None in states saved before the network's error chose: the next validated epoch replaces theirs
        self.best_mel_l1, self.best_network_mel_l1, self.start_mel_l1, self.start_network_mel_l1 = (
            None if state.get(key) is None else float(state[key])
            for key in ("best_mel_l1", "best_network_mel_l1", "start_mel_l1", "start_network_mel_l1")
        )
        best = state.get("best_generator")
        expected = {k: v.shape for k, v in self.generator.inference_state_dict().items()}
        if isinstance(best, dict) and {k: getattr(v, "shape", None) for k, v in best.items()} == expected:
            self.best_generator = {k: v.float().cpu() for k, v in best.items()}

    def _check_discriminators_fit(self, state: dict[str, Any]) -> None:
        """A training state saved by an older distillgan (MelGAN's MSD) cannot be resumed."""
        mine = {k: tuple(v.shape) for k, v in self.discriminators.state_dict().items()}
        saved = {
            k[len("discriminators.") :]: tuple(getattr(v, "shape", ()))
            for k, v in state.items()
            if k.startswith("discriminators.")
        }
        if saved and saved != mine:
            raise ModelFileError(
                "the saved training state does not fit this run: its discriminators are not this "
                "version's (older versions used MelGAN's MSD), so it cannot be resumed, but the trained "
                "vocoder stays usable; start a new run with --fresh"
            )

    def model_file_sections(self, progress: StageRecord) -> dict[str, Section]:
        """The held-out-best epoch's inference generator (weight norm folded) and the training summary.

        ``progress`` comes from :class:`~distillgan.callbacks.ModelFileCheckpoint`.
        """
        weights = self.best_generator or self.generator.inference_state_dict()
        history = self.val_history
        record = VocoderRecord(
            **progress.progress(),
            type=TYPE,
            config=cfg_lib.to_dict(self.cfg.generator),
            train_config=cfg_lib.to_dict(self.cfg.train),
            warmup_steps=self.cfg.train.warmup_steps,
            val_mel_l1_best=self.best_mel_l1,
            val_mel_l1_last=history[-1] if history else None,
            val_mel_l1_history=tuple(history[-1000:]),
            val_network_mel_l1_best=self.best_network_mel_l1,
            val_network_mel_l1_history=tuple(self.val_network_history[-1000:]),
            best_epoch=self.best_epoch,
            start_mel_l1=self.start_mel_l1,
            start_network_mel_l1=self.start_network_mel_l1,
            bigvgan_val_mel_l1=self.bigvgan_val_mel_l1,
            held_out_render=LEVEL_MATCHED,
            held_out_files=tuple(self.held_out_files),
            started_from=self.started_from,
            nonfinite_skipped=self.nonfinite_skipped,
            # steps the GradScaler skipped (16-mixed) since this run started or resumed
            grad_scaler_skipped=self._scaler_skipped(),
            trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        tensors = {f"generator/{k}": v.detach().float().cpu() for k, v in weights.items()}
        return {VOCODER: Section(attrs=record.to_attrs(), tensors=tensors)}
