"""The vocoder recipe (HiFiGANModule + VocoderDataModule) driven by a plain Lightning Trainer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from distillgan.corpus import load_corpus
from distillgan.errors import TrainingError
from distillgan.lightning_modules.hifigan import HiFiGANModule, VocoderDataModule
from distillgan.mel import log_mel_spectrogram
from distillgan.modelfile import StageRecord
from distillgan.networks.hifigan import Generator
from distillgan.recipes import VocoderConfig, load_vocoder_config
from distillgan.vocoders.mel_match import match_to_mel
from distillgan.vocoders.prior import StartingWeights

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**train: Any) -> VocoderConfig:
    return load_vocoder_config(None, {"train": train}, recipe="vocoder_tiny")


def fit(
    cfg: VocoderConfig,
    corpus: Path,
    *,
    epochs: int,
    callbacks: list[L.Callback] | None = None,
    module: HiFiGANModule | None = None,
    datamodule: VocoderDataModule | None = None,
) -> tuple[HiFiGANModule, L.Trainer]:
    """``module`` (default: a new one for ``cfg``) trained on ``corpus`` (or ``datamodule``)."""
    L.seed_everything(cfg.train.seed, verbose=False)
    module = module or HiFiGANModule(cfg, total_epochs=epochs)
    datamodule = datamodule or VocoderDataModule([f.audio for f in load_corpus(corpus).files], cfg.train)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks or [],
    )
    trainer.fit(module, datamodule=datamodule)
    return module, trainer


class Metrics(L.Callback):
    """Every logged training metric, per step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.steps.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def test_five_files_with_batch_16_still_train_and_give_a_usable_generator(tiny_corpus: Path) -> None:
    # 5 files, 6.1 s in all, minus the held-out clips: less than three batches of 16 x 8192
    cfg = tiny(batch_size=16, segment_samples=8192, steps_per_epoch=0, epochs=2, warmup_steps=1)
    datamodule = VocoderDataModule([f.audio for f in load_corpus(tiny_corpus).files], cfg.train)
    train_samples = sum(a.numel() for a in datamodule.train_audio)
    expected_per_epoch = math.ceil(train_samples / (16 * 8192))
    assert 1 <= expected_per_epoch <= 2

    module, trainer = fit(cfg, tiny_corpus, epochs=2)
    assert trainer.num_training_batches == expected_per_epoch
    assert module.steps_trained == 2 * expected_per_epoch
    assert len(module.val_history) == 2 and all(math.isfinite(v) for v in module.val_history)

    # the folded inference weights load into a plain generator that reproduces the trained one
    plain = Generator(cfg.generator, weight_norm=False)
    plain.load_state_dict(module.generator.inference_state_dict())
    mel = log_mel_spectrogram(datamodule.val_audio[0][None])
    with torch.no_grad():
        trained, folded = module.generator(mel), plain(mel)
    assert folded.shape == (1, 1, mel.shape[-1] * 512)
    torch.testing.assert_close(folded, trained, rtol=1e-4, atol=1e-5)


def test_reconstruction_and_adversarial_losses_fall_over_a_short_run(tiny_corpus: Path) -> None:
    metrics = Metrics()
    cfg = tiny(lr=0.001, warmup_steps=16, epochs=4)  # 8 steps an epoch: 2 warm-up epochs, 2 GAN epochs
    module, _ = fit(cfg, tiny_corpus, epochs=4, callbacks=[metrics])
    mel_l1 = [m["train/mel_l1"] for m in metrics.steps]
    assert len(mel_l1) == 32
    assert np.mean(mel_l1[-4:]) < 0.8 * np.mean(mel_l1[:4])
    assert module.val_history[-1] < module.val_history[0]
    gan = [m for m in metrics.steps if "train/d_loss" in m]
    assert len(gan) == 16 and all(math.isfinite(m["train/d_loss"]) for m in gan)
    assert "train/stft" in metrics.steps[0] and "train/d_loss" not in metrics.steps[0]
    assert all(math.isfinite(m["train/dc"]) for m in metrics.steps)


class CountDiscriminatorGradients(L.Callback):
    """How many times each backward pass reached a discriminator weight."""

    def __init__(self) -> None:
        self.calls = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for p in pl_module.discriminators.parameters():  # type: ignore[union-attr]
            p.register_hook(self._hook)

    def _hook(self, grad: torch.Tensor) -> None:
        self.calls += 1


def test_generator_step_leaves_the_discriminators_frozen(tiny_corpus: Path) -> None:
    counter = CountDiscriminatorGradients()
    cfg = tiny(warmup_steps=0, epochs=1)
    module, trainer = fit(cfg, tiny_corpus, epochs=1, callbacks=[counter])
    weights = sum(1 for _ in module.discriminators.parameters())
    # one discriminator backward per step reaches each weight; the generator's never does
    assert counter.calls == weights * trainer.num_training_batches
    assert all(p.requires_grad for p in module.discriminators.parameters())


class PoisonBatches(L.Callback):
    """Fill chosen batches with NaN and record whether those steps changed any weight or moment."""

    def __init__(self, steps: set[int] | None = None, from_step: int | None = None) -> None:
        self.steps = steps or set()
        self.from_step = from_step
        self.unchanged: list[bool] = []
        self._before: list[torch.Tensor] = []

    def _poisoned(self, step: int) -> bool:
        return step in self.steps or (self.from_step is not None and step >= self.from_step)

    def _state(self, trainer: L.Trainer, module: L.LightningModule) -> list[torch.Tensor]:
        tensors = [p.detach().clone() for p in module.parameters()]
        for optimizer in trainer.optimizers:
            for state in optimizer.state.values():
                tensors += [v.clone() for v in state.values() if isinstance(v, torch.Tensor)]
        return tensors

    def on_train_batch_start(self, trainer: L.Trainer, module: Any, batch: torch.Tensor, *args: Any) -> None:
        if self._poisoned(module.steps_trained):
            batch.fill_(float("nan"))
            self._before = self._state(trainer, module)

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, *args: Any) -> None:
        if self._poisoned(module.steps_trained - 1):
            after = self._state(trainer, module)
            self.unchanged.append(all(torch.equal(a, b) for a, b in zip(self._before, after, strict=True)))


def test_non_finite_steps_are_skipped_counted_and_never_reach_the_weights(tiny_corpus: Path) -> None:
    poison = PoisonBatches(steps={1, 9})  # one in the warm-up, one adversarial
    module, _ = fit(tiny(warmup_steps=4, epochs=2), tiny_corpus, epochs=2, callbacks=[poison])
    assert poison.unchanged == [True, True]
    assert module.nonfinite_skipped == 2
    assert module.steps_trained == 16
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert all(math.isfinite(v) for v in module.val_history)


def test_repeated_non_finite_steps_stop_training_with_a_clear_message(tiny_corpus: Path) -> None:
    poison = PoisonBatches(from_step=3)
    with pytest.raises(TrainingError, match=r"last 5 steps had non-finite losses.*lower --lr"):
        fit(tiny(max_nonfinite_steps=4, epochs=3), tiny_corpus, epochs=3, callbacks=[poison])
    assert poison.unchanged == [True] * 5  # stopped at the first check (end of epoch 1)


def test_grad_scaler_skips_are_counted_apart_from_non_finite_losses_and_never_stop_training(
    tiny_corpus: Path,
) -> None:
    # 16-mixed with a scale far too high: every step's scaled fp16 gradients overflow and the
    # GradScaler skips it (halving its scale), routine in fp16 training; step 6 is really non-finite
    # (one epoch: fp16 on a CPU is emulated, slow)
    poison = PoisonBatches(steps={6})
    cfg = tiny(warmup_steps=4, epochs=1, max_nonfinite_steps=3)
    L.seed_everything(0, verbose=False)
    module = HiFiGANModule(cfg)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    trainer = L.Trainer(
        accelerator="cpu",
        plugins=[MixedPrecision("16-mixed", "cpu", scaler)],
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[poison],
    )
    trainer.fit(
        module, datamodule=VocoderDataModule([f.audio for f in load_corpus(tiny_corpus).files], cfg.train)
    )
    assert module.steps_trained == 8 and poison.unchanged == [True]
    assert module.nonfinite_skipped == 1
    progress = StageRecord(status="complete", epoch=1, epochs_completed=1, total_epochs=1, steps=8)
    attrs = module.model_file_sections(progress)["vocoder"].attrs
    assert (attrs["nonfinite_skipped"], attrs["grad_scaler_skipped"]) == (1, 7)


@pytest.mark.parametrize(
    ("precision", "weights"),
    [
        ("bf16-mixed", torch.float32),
        ("16-mixed", torch.float32),
        ("bf16-true", torch.bfloat16),
        ("64-true", torch.float64),
    ],
)
def test_every_lightning_precision_trains_to_finite_losses(
    tiny_corpus: Path, precision: str, weights: torch.dtype
) -> None:
    metrics = Metrics()
    cfg = tiny(warmup_steps=1)
    L.seed_everything(0, verbose=False)
    module = HiFiGANModule(cfg)
    trainer = L.Trainer(
        accelerator="cpu",
        precision=precision,  # type: ignore[arg-type]
        max_epochs=1,
        limit_train_batches=2,  # one warm-up step, one adversarial step
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[metrics],
    )
    trainer.fit(
        module, datamodule=VocoderDataModule([f.audio for f in load_corpus(tiny_corpus).files], cfg.train)
    )
    assert module.steps_trained == 2 and module.nonfinite_skipped == 0
    assert "train/d_loss" in metrics.steps[-1] and all(math.isfinite(v) for v in metrics.steps[-1].values())
    assert {p.dtype for p in module.parameters()} == {weights}
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert math.isfinite(module.val_history[-1])


@pytest.mark.parametrize("recipe", ["vocoder", "vocoder_quick", "vocoder_tiny"])
def test_builtin_recipes_are_valid_and_share_the_v2_generator(recipe: str) -> None:
    cfg = load_vocoder_config(recipe=recipe)
    full = load_vocoder_config(recipe="vocoder")
    assert cfg.train.precision == "32"  # bf16 is far slower on CPUs without AMX
    if recipe != "vocoder_tiny":
        # the quick recipe trains the same generator as the full one; only the run differs
        assert cfg.generator.upsample_initial_channel == full.generator.upsample_initial_channel == 128
        assert cfg.generator.resblock_kernel_sizes == [3, 7, 11]
        assert cfg.generator.mpd_periods == [2, 3, 5, 7, 11]


class ScriptedValidation(HiFiGANModule):
    """Logs scripted held-out errors per epoch and keeps each epoch's generator."""

    def __init__(
        self,
        cfg: VocoderConfig,
        mel_l1: list[float],
        network: list[float],
        start: StartingWeights | None = None,
    ) -> None:
        super().__init__(cfg, start=start)
        self.scripted = list(zip(mel_l1, network, strict=True))
        self.generators: list[dict[str, torch.Tensor]] = []

    def validation_step(self, clips: torch.Tensor, batch_idx: int) -> None:
        mel_l1, network = self.scripted[self.current_epoch]
        self.log("val/mel_l1", torch.tensor(mel_l1))
        self.log("val/network_mel_l1", torch.tensor(network))
        self.generators.append(self.generator.inference_state_dict())


def test_the_model_file_keeps_the_epoch_whose_network_does_best_on_held_out_clips(tiny_corpus: Path) -> None:
    cfg = tiny(epochs=4)
    # the render's mel error prefers epoch 2, the network's own epoch 3, which is kept
    scripted = ScriptedValidation(cfg, mel_l1=[1.0, 0.5, 0.8, 0.9], network=[2.0, 1.5, 1.2, 1.3])
    module, _ = fit(cfg, tiny_corpus, epochs=4, module=scripted)
    progress = StageRecord(status="complete", epoch=4, epochs_completed=4, total_epochs=4, steps=32)
    section = module.model_file_sections(progress)["vocoder"]
    attrs = section.attrs
    assert attrs["best_epoch"] == 3 and attrs["val_mel_l1_history"] == pytest.approx([1.0, 0.5, 0.8, 0.9])
    assert attrs["val_network_mel_l1_history"] == pytest.approx([2.0, 1.5, 1.2, 1.3])
    # the stored figures are the kept epoch's (auto-selection compares its mel error with BigVGAN's)
    assert attrs["val_mel_l1_best"] == pytest.approx(0.8)
    assert attrs["val_network_mel_l1_best"] == pytest.approx(1.2)
    assert attrs["val_mel_l1_last"] == pytest.approx(0.9)
    for name, tensor in module.generators[2].items():
        assert torch.equal(section.tensors[f"generator/{name}"], tensor), name
    assert not torch.equal(
        section.tensors["generator/conv_post.weight"], module.generators[3]["conv_post.weight"]
    )

    # a resumed run keeps the best epoch of before (it travels in the training state) ...
    checkpoint: dict[str, Any] = {}
    module.on_save_checkpoint(checkpoint)
    resumed = HiFiGANModule(cfg)
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.best_epoch == 3
    assert (resumed.best_mel_l1, resumed.best_network_mel_l1) == (
        module.best_mel_l1,
        module.best_network_mel_l1,
    )
    assert resumed.val_network_history == pytest.approx([2.0, 1.5, 1.2, 1.3])
    assert torch.equal(resumed.best_generator["conv_post.weight"], module.generators[2]["conv_post.weight"])
    # ... and one saved before the network's error chose lets the next validated epoch replace it
    del checkpoint["distillgan"]["best_network_mel_l1"], checkpoint["distillgan"]["best_mel_l1"]
    older = HiFiGANModule(cfg)
    older.on_load_checkpoint(checkpoint)
    assert older.best_epoch == 3 and older.best_network_mel_l1 is None


@pytest.mark.parametrize(("scripted", "kept"), [([9e9, 9e9], 0), ([9e9, 0.0], 2)])
def test_a_trained_start_is_kept_unless_an_epoch_beats_it(
    tiny_corpus: Path, scripted: list[float], kept: int
) -> None:
    cfg = tiny(epochs=2)
    donor = Generator(cfg.generator, weight_norm=False)  # another model's vocoder
    start = StartingWeights("model donor", cfg.generator, donor.state_dict(), None, None)
    module = ScriptedValidation(cfg, mel_l1=[1.0, 1.0], network=scripted, start=start)
    datamodule = VocoderDataModule([f.audio for f in load_corpus(tiny_corpus).files], cfg.train)
    fit(cfg, tiny_corpus, epochs=2, module=module, datamodule=datamodule)
    # the start is scored before the first step, like every validated epoch
    mel = log_mel_spectrogram(datamodule.val_dataloader().clips)
    with torch.no_grad():
        network = donor(mel).squeeze(1)
    rendered = float((log_mel_spectrogram(match_to_mel(network, mel)) - mel).abs().mean())
    network_l1 = float((log_mel_spectrogram(network) - mel).abs().mean())
    assert (module.start_mel_l1, module.start_network_mel_l1) == pytest.approx(
        (rendered, network_l1), rel=1e-4
    )
    section = module.model_file_sections(StageRecord(status="complete", epochs_completed=2))["vocoder"]
    attrs = section.attrs
    assert attrs["best_epoch"] == kept and attrs["start_network_mel_l1"] == pytest.approx(
        network_l1, rel=1e-4
    )
    assert attrs["val_network_mel_l1_history"] == pytest.approx(scripted)
    if kept == 0:  # no epoch beat the start: its generator and figures are what the file holds
        assert attrs["val_network_mel_l1_best"] == pytest.approx(network_l1, rel=1e-4)
        for name, tensor in donor.state_dict().items():
            torch.testing.assert_close(section.tensors[f"generator/{name}"], tensor, rtol=1e-5, atol=1e-6)
    else:
        assert attrs["val_network_mel_l1_best"] == 0.0
        assert torch.equal(
            section.tensors["generator/conv_post.weight"], module.generators[1]["conv_post.weight"]
        )
    # the start's figures travel in the training state; a resumed run does not score again
    checkpoint: dict[str, Any] = {}
    module.on_save_checkpoint(checkpoint)
    resumed = HiFiGANModule(cfg)
    resumed.on_load_checkpoint(checkpoint)
    assert (resumed.start_network_mel_l1, resumed.best_epoch) == (module.start_network_mel_l1, kept)


def test_the_held_out_error_scores_the_level_matched_audio_vocoding_gives(tiny_corpus: Path) -> None:
    module, trainer = fit(tiny(epochs=1), tiny_corpus, epochs=1)
    clips = trainer.datamodule.val_dataloader().clips
    mel = log_mel_spectrogram(clips.float())
    with torch.no_grad():
        network = module.generator(mel).squeeze(1)
        audio = match_to_mel(network, mel)
    torch.testing.assert_close(module.last_validation_audio, audio, atol=1e-5, rtol=0)
    assert module.val_history == pytest.approx(
        [float((log_mel_spectrogram(audio) - mel).abs().mean())], rel=1e-4
    )
    # the figure that chooses the kept epoch: the network's own output, before level matching
    network_l1 = float((log_mel_spectrogram(network) - mel).abs().mean())
    assert module.val_network_history == pytest.approx([network_l1], rel=1e-4)
    assert network_l1 > module.val_history[0]  # level matching brings the render closer
    assert module.best_epoch == 1 and module.best_network_mel_l1 == module.val_network_history[0]


def test_a_training_state_with_the_old_melgan_msd_is_refused_clearly(tiny_corpus: Path) -> None:
    from distillgan.errors import ModelFileError

    module = HiFiGANModule(tiny())
    state = {f"discriminators.{k}": v for k, v in module.discriminators.state_dict().items()}
    state["discriminators.msd.discriminators.0.convs.1.parametrizations.weight.original"] = torch.zeros(
        4, 1, 41
    )
    with pytest.raises(ModelFileError, match="cannot be resumed, but the trained vocoder stays usable"):
        module.on_load_checkpoint({"state_dict": state})


def test_vae_aware_batches_feed_the_vaes_mel_of_the_same_frames(tiny_corpus: Path) -> None:
    from distillgan.networks.vae import MelVAE, reconstruct
    from distillgan.recipes import load_vae_config

    vae = MelVAE(load_vae_config().model).eval()
    cfg = tiny(vae_aware_fraction=0.5, segment_samples=2048)
    audio = [f.audio for f in load_corpus(tiny_corpus).files]
    datamodule = VocoderDataModule(audio, cfg.train, vae=vae)
    crops, frames = datamodule.train_dataloader().batch(3)
    assert crops.shape == (4, 2048) and frames.shape == (4, 128, 4)
    # each crop's frames are the VAE reconstruction of the file at the crop's (hop-aligned) place
    buffer = torch.cat(datamodule.train_audio)
    for crop, crop_frames in zip(crops[:4], frames[:4], strict=True):
        start = next(
            i for i in range(0, len(buffer) - 2048 + 1, 512) if torch.equal(buffer[i : i + 2048], crop)
        )
        offset = start
        for seq, recon in zip(datamodule.train_audio, datamodule.vae_frames, strict=True):
            if offset < len(seq):
                torch.testing.assert_close(crop_frames, recon[:, offset // 512 : offset // 512 + 4])
                break
            offset -= len(seq)
    assert (
        datamodule.vae_frames[0].shape
        == reconstruct(vae, log_mel_spectrogram(datamodule.train_audio[0])).shape
    )

    module, _ = fit(cfg, tiny_corpus, epochs=1)  # no VAE given: plain batches
    assert math.isfinite(module.val_history[-1])
    module, _ = fit(cfg, tiny_corpus, epochs=1, datamodule=datamodule)
    assert module.steps_trained == len(datamodule.train_dataloader()) and math.isfinite(
        module.val_history[-1]
    )
