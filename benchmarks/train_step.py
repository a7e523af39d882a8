"""Time the vocoder's real training step against a straightforward baseline step.

    python benchmarks/train_step.py [--batch-size 4] [--segment 16384] [--steps N]
                                    [--precision 32|bf16-mixed] [--accelerator cpu|cuda]

"Ours" is ``HiFiGANModule.training_step`` run by a Lightning Trainer (the default V2
recipe: published generator and full MPD + MSD, adversarial phase, augmentation
included). The baseline is written below the way a HiFi-GAN training loop usually is: a
discriminator step on the detached fake, then a generator step that runs the
discriminators again on real and fake with full autograd (weight gradients included, no
freezing, feature-matching targets not detached) and plain AdamW. Both use the same
networks, initial weights, batch and process; the baseline always runs in float32, one
step after each of ours, so both see the same machine conditions.

One JSON line per precision: ``ours_samples_per_s``, ``baseline_samples_per_s`` (audio
samples trained per second, wall clock) and ``ratio``; also the per-step seconds and
``ratio_by_cpu_time`` (process CPU seconds: with ``--threads 1`` a figure that other
processes on a shared machine barely disturb). Without ``--precision`` both 32 and
bf16-mixed are measured.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from distillgan.examples import synth_bell, synth_noise_texture, synth_pluck, synth_tone
from distillgan.lightning_modules.hifigan import HiFiGANModule
from distillgan.mel import log_mel_spectrogram
from distillgan.networks.hifigan import (
    Discriminators,
    Generator,
    discriminator_loss,
    generator_adversarial_loss,
)
from distillgan.recipes import load_vocoder_config
from distillgan.training import quiet_lightning


def real_audio_batch(batch_size: int, segment: int, seed: int = 0) -> torch.Tensor:
    """Crops of the example sounds (content does not change the cost, but keeps losses realistic)."""
    rng = np.random.default_rng(seed)
    seconds = segment / 44_100 + 0.5
    makers = [
        lambda s: synth_pluck(seconds, seed=s, freq=196.0),
        lambda s: synth_bell(seconds, seed=s, freq=523.0),
        lambda s: synth_noise_texture(seconds, seed=s, kind="rain"),
        lambda s: synth_tone(seconds, seed=s, freq=110.0),
    ]
    crops = []
    for i in range(batch_size):
        audio = makers[i % len(makers)](seed + i)
        start = int(rng.integers(0, len(audio) - segment))
        crops.append(torch.from_numpy(np.ascontiguousarray(audio[start : start + segment])).float())
    return torch.stack(crops)


class SameBatch:
    """``count`` copies of one batch: the benchmark times steps, not data loading."""

    def __init__(self, batch: torch.Tensor, count: int) -> None:
        self.batch, self.count = batch, count

    def __iter__(self) -> Iterator[torch.Tensor]:
        for _ in range(self.count):
            yield self.batch

    def __len__(self) -> int:
        return self.count


def make_baseline_step(cfg: Any, state: dict[str, Any], batch: torch.Tensor, device: torch.device) -> Any:
    """A straightforward HiFi-GAN training step in float32, on its own copy of the networks."""
    t = cfg.train
    generator = Generator(cfg.generator).to(device)
    discriminators = Discriminators(cfg.generator).to(device)
    generator.load_state_dict(
        {k[len("generator.") :]: v for k, v in state.items() if k.startswith("generator.")}
    )
    discriminators.load_state_dict(
        {k[len("discriminators.") :]: v for k, v in state.items() if k.startswith("discriminators.")}
    )
    opt_g = torch.optim.AdamW(generator.parameters(), t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
    opt_d = torch.optim.AdamW(
        discriminators.parameters(), t.lr * t.d_lr_ratio, betas=tuple(t.betas), weight_decay=t.weight_decay
    )
    sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, t.lr_decay_per_step)
    sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, t.lr_decay_per_step)
    audio = batch.to(device)

    def step() -> None:
        real = audio.unsqueeze(1)
        mel = log_mel_spectrogram(audio)
        fake = generator(mel)
        mel_l1 = F.l1_loss(log_mel_spectrogram(fake.squeeze(1)), mel)

        opt_d.zero_grad()
        real_logits, _ = discriminators(real)
        fake_logits, _ = discriminators(fake.detach())
        discriminator_loss(real_logits, fake_logits).backward()
        opt_d.step()

        opt_g.zero_grad()
        _, real_features = discriminators(real)
        fake_logits, fake_features = discriminators(fake)
        fm = sum(
            (r - f).abs().mean()
            for real_maps, fake_maps in zip(real_features, fake_features, strict=True)
            for r, f in zip(real_maps, fake_maps, strict=True)
        )
        g_loss = (
            generator_adversarial_loss(fake_logits) + t.feature_matching_weight * fm + t.mel_weight * mel_l1
        )
        g_loss.backward()
        opt_g.step()
        sched_g.step()
        sched_d.step()

    return step


class Interleaved(L.Callback):
    """Times each of our steps (Lightning's loop included) and runs one timed baseline step after it,
    so both see the same machine conditions (a shared CPU drifts a lot)."""

    def __init__(self, baseline_step: Any, device: torch.device) -> None:
        self.baseline_step = baseline_step
        self.device = device
        self.ours: list[tuple[float, float]] = []  # (wall seconds, process CPU seconds) per step
        self.baseline: list[tuple[float, float]] = []
        self._start: tuple[float, float] | None = None

    def _now(self) -> tuple[float, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter(), time.process_time()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._start is None:
            self._start = self._now()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        assert self._start is not None
        end = self._now()
        self.ours.append((end[0] - self._start[0], end[1] - self._start[1]))
        self.baseline_step()  # outside the precision plugin's autocast: always float32
        done = self._now()
        self.baseline.append((done[0] - end[0], done[1] - end[1]))
        self._start = self._now()


def measure(
    cfg: Any, state: dict[str, Any], batch: torch.Tensor, args: argparse.Namespace, precision: str
) -> tuple[np.ndarray, np.ndarray]:
    """(wall, CPU) seconds per step, ours in ``precision`` and the float32 baseline, after the warm-up."""
    L.seed_everything(0, verbose=False)
    module = HiFiGANModule(cfg)
    module.load_state_dict(state)
    device = torch.device("cuda" if args.accelerator in ("cuda", "gpu") else "cpu")
    clock = Interleaved(make_baseline_step(cfg, state, batch, device), device)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    trainer.fit(module, train_dataloaders=SameBatch(batch, args.warmup + args.steps))
    return np.array(clock.ours[args.warmup :]), np.array(clock.baseline[args.warmup :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--segment", type=int, default=16384, help="samples per example (multiple of 512)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default=None, help="default: both")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_lightning()

    # the default V2 recipe (published widths, full MPD + MSD), adversarial phase only
    cfg = load_vocoder_config(None, {"train": {"segment_samples": args.segment, "warmup_steps": 0}})
    torch.manual_seed(0)
    state = HiFiGANModule(cfg).state_dict()
    batch = real_audio_batch(args.batch_size, args.segment)
    samples = args.batch_size * args.segment
    precisions = [args.precision] if args.precision else ["32", "bf16-mixed"]

    for precision in precisions:
        ours, baseline = measure(cfg, state, batch, args, precision)
        ours_rate = samples / float(np.mean(ours[:, 0]))
        base_rate = samples / float(np.mean(baseline[:, 0]))
        # with one thread, CPU time is robust to other processes on the machine
        cpu_ratio = float(np.mean(baseline[:, 1]) / np.mean(ours[:, 1]))
        print(
            json.dumps(
                {
                    "precision": precision,
                    "batch_size": args.batch_size,
                    "segment": args.segment,
                    "steps": args.steps,
                    "threads": torch.get_num_threads(),
                    "accelerator": args.accelerator,
                    "ours_s_per_step": [round(x, 3) for x in ours[:, 0]],
                    "baseline_s_per_step": [round(x, 3) for x in baseline[:, 0]],
                    "ours_samples_per_s": round(ours_rate, 1),
                    "baseline_samples_per_s": round(base_rate, 1),
                    "ratio": round(ours_rate / base_rate, 3),
                    "ratio_by_cpu_time": round(cpu_ratio, 3),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
