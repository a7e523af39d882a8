"""The universal BigVGAN-v2 vocoder (``nvidia/bigvgan_v2_44khz_128band_512x``) behind the vocoder interface.

The weights come from :mod:`distillgan.vocoders.bigvgan_weights` (a local folder, the hub
cache, or a one-time download); the network is built once per process and device there.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from distillgan.networks.bigvgan import AA_KERNEL_SIZE, AA_RATIO, BigVGAN, BigVGANConfig
from distillgan.vocoders.base import (
    Vocoder,
    context_frames_for,
    conv_half_width,
    transposed_conv_half_width,
)
from distillgan.vocoders.bigvgan_weights import ProgressCallback, load_bigvgan


def _activation_reach() -> float:
    """One-sided reach, in samples at the activation's own rate, of an anti-aliased activation."""
    up = transposed_conv_half_width(AA_KERNEL_SIZE, AA_RATIO)
    down = conv_half_width(AA_KERNEL_SIZE) / AA_RATIO  # measured at twice the rate
    return up + down + 1


def receptive_field_frames(cfg: BigVGANConfig) -> int:
    """Mel frames of context each side that cover the BigVGAN generator's receptive field."""
    act = _activation_reach()
    reach: list[tuple[float, int]] = [(conv_half_width(7), 1)]  # conv_pre
    samples_per_frame = 1
    for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True):
        reach.append((transposed_conv_half_width(kernel, rate), samples_per_frame))
        samples_per_frame *= rate
        widest = max(
            sum(2 * act + conv_half_width(k, d) + conv_half_width(k) for d in dilations)
            for k, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True)
        )
        reach.append((widest, samples_per_frame))
    reach.append((act + conv_half_width(7), samples_per_frame))  # activation_post, conv_post
    return context_frames_for(reach)


class BigVGANVocoder(Vocoder):
    """NVIDIA's BigVGAN-v2 universal vocoder (same mel as ours, 44.1 kHz output)."""

    kind: ClassVar = "bigvgan"
    name: ClassVar[str] = "BigVGAN-v2 universal"
    # 512 frames (~6 s): the widest activations of the full-size network stay under ~100 MB each.
    default_chunk_frames: ClassVar[int] = 512

    def __init__(self, network: BigVGAN, device: torch.device) -> None:
        super().__init__(network, context_frames=receptive_field_frames(network.cfg), device=device)

    def _forward(self, mel: torch.Tensor, phase: torch.Tensor | None) -> torch.Tensor:
        return self.network(mel)


def load_bigvgan_vocoder(
    local_dir: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
) -> BigVGANVocoder:
    """BigVGAN-v2 behind the vocoder interface; the shared network is loaded (or fetched) once."""
    device = torch.device(device)
    return BigVGANVocoder(load_bigvgan(local_dir, device=device, progress=progress), device)
