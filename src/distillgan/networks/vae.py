"""Mel-spectrogram VAE: 1-D convolutions over time with mel bins as channels.

Fully convolutional, so it encodes and decodes mels of any length that is a multiple of
``2 ** len(channels)`` frames. Mels are normalized per bin with corpus statistics that
travel with the weights, and so do the limits decoded mels are kept within (each bin's and
the loudest frame's level in the corpus).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from distillgan.config import in_range, require
from distillgan.mel import N_MELS


@dataclass
class VAEModelConfig:
    """Mel-spectrogram VAE network: 1-D convolutions over time with the 128 mel bins as channels."""

    latent_dim: int = 32
    channels: list[int] = field(default_factory=lambda: [256, 256, 512])
    # total temporal downsampling is 2 ** len(channels); chunks must be a multiple of it
    kernel_size: int = 5

    def validate(self) -> None:
        in_range("model.latent_dim", self.latent_dim, 1, 1024)
        require(1 <= len(self.channels) <= 6, "config key 'model.channels' must list 1 to 6 layers")
        for c in self.channels:
            in_range("model.channels[]", c, 1, 4096)
        in_range("model.kernel_size", self.kernel_size, 1, 31)
        require(self.kernel_size % 2 == 1, "config key 'model.kernel_size' must be odd")

    @property
    def time_reduction(self) -> int:
        return 2 ** len(self.channels)


# The limits of a VAE saved before they were fitted: none. Such a file lacks them (CORPUS_LIMITS).
NO_LIMIT = 1e4
CORPUS_LIMITS = ("mel_ceiling", "frame_ceiling")


def frame_level(mel: torch.Tensor) -> torch.Tensor:
    """The log of each frame's root energy, (..., 128, T) -> (..., T)."""
    return torch.logsumexp(2 * mel, dim=-2) / 2


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each time step.

    Time-local on purpose: a norm over the time axis (e.g. GroupNorm) would make each frame
    depend on the length of the chunk it is decoded in, so chunked and whole decoding of a
    long trajectory would disagree.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, down: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, stride=2 if down else 1, padding=kernel_size // 2)
        self.norm = ChannelNorm(out_ch)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class UpBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int) -> None:
        super().__init__()
        # nearest upsampling + conv avoids the checkerboard artefacts of transposed convs
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
        self.norm = ChannelNorm(out_ch)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.up(x))))


class MelVAE(nn.Module):
    def __init__(self, cfg: VAEModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k = cfg.kernel_size
        chans = [N_MELS, *cfg.channels]
        self.encoder = nn.Sequential(
            *[ConvBlock(chans[i], chans[i + 1], k, down=True) for i in range(len(cfg.channels))]
        )
        self.to_stats = nn.Conv1d(chans[-1], 2 * cfg.latent_dim, 1)
        self.from_latent = nn.Conv1d(cfg.latent_dim, chans[-1], 1)
        rev = list(reversed(chans[1:]))
        self.decoder = nn.Sequential(
            *[UpBlock(rev[i], rev[min(i + 1, len(rev) - 1)], k) for i in range(len(rev))]
        )
        self.to_mel = nn.Conv1d(rev[-1], N_MELS, k, padding=k // 2)
        # per-bin normalization of log-mels and the limits of decoding, fitted on the corpus
        # before training (fit_to_corpus)
        self.register_buffer("mel_mean", torch.zeros(N_MELS, 1))
        self.register_buffer("mel_std", torch.ones(N_MELS, 1))
        self.register_buffer("mel_ceiling", torch.full((N_MELS, 1), NO_LIMIT))
        self.register_buffer("frame_ceiling", torch.full((1,), NO_LIMIT))

    @property
    def time_reduction(self) -> int:
        return self.cfg.time_reduction

    def fit_to_corpus(self, frames: torch.Tensor) -> None:
        """Fit the per-bin normalization and the limits of decoding to the corpus's log-mel
        frames (128, T)."""
        self.mel_mean.copy_(frames.mean(dim=-1, keepdim=True))
        self.mel_std.copy_(frames.std(dim=-1, keepdim=True).clamp(min=1e-3))
        self.mel_ceiling.copy_(frames.max(dim=-1, keepdim=True).values)
        self.frame_ceiling.copy_(frame_level(frames).max().reshape(1))

    def limit_to_corpus(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel`` (..., 128, T) with no bin above the corpus's loudest value for it, and no frame
        with more energy than the corpus's loudest frame (lowered whole, keeping its shape).

        A latent walk can leave the region the corpus encodes to, and the decoder then
        extrapolates: a few bins tens of dB above anything it learned, which a faithful vocoder
        renders as clipping.
        """
        mel = torch.minimum(mel, self.mel_ceiling)
        excess = (frame_level(mel) - self.frame_ceiling).clamp(min=0)
        return mel - excess.unsqueeze(-2)

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel (B, 128, T) -> latent mean and log-variance (B, latent, T / reduction)."""
        h = self.encoder((mel - self.mel_mean) / self.mel_std)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, latent, L) -> log-mel (B, 128, L * reduction)."""
        normalized = self.to_mel(self.decoder(self.from_latent(z)))
        return normalized * self.mel_std + self.mel_mean

    def forward(
        self, mel: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct through a latent sampled from the posterior (``generator`` on ``mel``'s device)."""
        mu, logvar = self.encode(mel)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + noise * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    def normalized_error(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error in normalized-mel units (what the recon loss optimizes)."""
        return (((prediction - target) / self.mel_std) ** 2).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), averaged over latent elements."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean()


def latent_trajectory(
    latent_dim: int, length: int, *, seed: int, anchor_every: int = 8, temperature: float = 1.0
) -> torch.Tensor:
    """A smooth seeded walk through the prior: (latent_dim, length).

    Gaussian anchors every ``anchor_every`` latent steps joined by spherical-style
    interpolation (cos/sin weights), which keeps the prior's unit variance between
    anchors instead of shrinking towards zero as linear interpolation would.
    """
    generator = torch.Generator().manual_seed(seed)
    n_anchors = math.ceil(length / anchor_every) + 1
    anchors = torch.randn(n_anchors, latent_dim, generator=generator) * temperature
    position = torch.arange(length, dtype=torch.float32) / anchor_every
    index = position.floor().long()
    frac = (position - index)[:, None]
    weight_a = torch.cos(frac * math.pi / 2)
    weight_b = torch.sin(frac * math.pi / 2)
    z = weight_a * anchors[index] + weight_b * anchors[index + 1]
    return z.T.contiguous()


@torch.no_grad()
def decode_trajectory(vae: MelVAE, z: torch.Tensor, *, chunk: int = 64, overlap: int = 8) -> torch.Tensor:
    """Decode a latent trajectory (latent, L) of any length in bounded memory.

    Chunks of ``chunk`` latent steps overlap by ``overlap`` steps and are joined with an
    equal-power crossfade in the mel domain, so there are no seams between chunks.
    Returns a log-mel (128, L * reduction) within the corpus's limits (``limit_to_corpus``).
    """
    length = z.shape[-1]
    r = vae.time_reduction
    if length <= chunk:
        return vae.limit_to_corpus(vae.decode(z[None])[0])
    hop = chunk - overlap
    out = torch.zeros(N_MELS, length * r, device=z.device)
    weight = torch.zeros(1, length * r, device=z.device)
    fade = torch.ones(chunk * r, device=z.device)
    ramp = torch.sin(torch.linspace(0, math.pi / 2, overlap * r, device=z.device)) ** 2
    fade[: overlap * r] = ramp
    fade[-overlap * r :] = ramp.flip(0)
    start = 0
    while True:
        stop = min(start + chunk, length)
        begin = max(0, stop - chunk)
        piece = vae.decode(z[None, :, begin:stop])[0]
        w = fade[: piece.shape[-1]].clone()
        if begin == 0:
            w[: overlap * r] = 1.0
        if stop == length:
            w[-overlap * r :] = 1.0
        out[:, begin * r : stop * r] += piece * w
        weight[:, begin * r : stop * r] += w
        if stop == length:
            break
        start += hop
    return vae.limit_to_corpus(out / weight.clamp(min=1e-6))


@torch.no_grad()
def reconstruct(vae: MelVAE, mel: torch.Tensor) -> torch.Tensor:
    """A log-mel (128, T) through the VAE and back (posterior mean, chunked decoding): what the
    vocoder gets when the model re-renders a sound it knows. Returns (128, T)."""
    frames = mel.shape[-1]
    pad = (-frames) % vae.time_reduction
    padded = F.pad(mel[None], (0, pad), mode="replicate") if pad else mel[None]
    mu, _ = vae.encode(padded)
    return decode_trajectory(vae, mu[0])[:, :frames]
