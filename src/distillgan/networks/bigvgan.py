"""BigVGAN-v2 generator for inference, in plain torch (no CUDA extension, no ``bigvgan`` package).

The module tree mirrors NVIDIA's reference implementation so that the published
``bigvgan_generator.pt`` of ``nvidia/bigvgan_v2_44khz_128band_512x`` loads with a strict key
match: ``conv_pre``, ``ups.{i}.0``, ``resblocks.{j}.convs1|convs2.{k}``,
``resblocks.{j}.activations.{m}.act.alpha|beta``, ``...upsample.filter``,
``...downsample.lowpass.filter``, ``activation_post`` and ``conv_post``.

The convolutions are plain ``Conv1d``/``ConvTranspose1d``: the checkpoint stores weight norm as
``weight_g``/``weight_v`` pairs, which :func:`fold_weight_norm` turns into ordinary weights once at
load time, so inference never recomputes the normalisation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distillgan.errors import ConfigError

# NVIDIA adds this to the snake divisor so a learned alpha/beta of 0 cannot divide by zero.
SNAKE_EPS = 1e-9

# The anti-aliased activation resamples by 2 with 12-tap Kaiser-windowed sinc filters (as in
# BigVGAN / StyleGAN3); these are architecture constants, not config keys.
AA_RATIO = 2
AA_KERNEL_SIZE = 12

# (magnitude, direction) key suffixes of old-style and parametrization-style weight norm.
_WEIGHT_NORM_SUFFIXES = (
    (".weight_g", ".weight_v"),
    (".parametrizations.weight.original0", ".parametrizations.weight.original1"),
)


@dataclass(frozen=True)
class BigVGANConfig:
    """The architecture keys of NVIDIA's ``config.json``; defaults are ``bigvgan_v2_44khz_128band_512x``."""

    num_mels: int = 128
    upsample_rates: tuple[int, ...] = (8, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    activation: str = "snakebeta"
    snake_logscale: bool = True
    use_tanh_at_final: bool = False
    use_bias_at_final: bool = False
    sampling_rate: int = 44_100
    hop_size: int = 512

    def __post_init__(self) -> None:
        _check_int("num_mels", self.num_mels)
        _check_int("upsample_initial_channel", self.upsample_initial_channel)
        _check_int("sampling_rate", self.sampling_rate)
        _check_int("hop_size", self.hop_size)
        for name in ("snake_logscale", "use_tanh_at_final", "use_bias_at_final"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"BigVGAN config: {name} must be true or false, got {getattr(self, name)!r}"
                )
        if self.resblock != "1":
            raise ConfigError(
                f"BigVGAN config: only resblock '1' (AMPBlock1) is supported, got {self.resblock!r}"
            )
        if self.activation not in ("snake", "snakebeta"):
            raise ConfigError(
                f"BigVGAN config: activation must be 'snake' or 'snakebeta', got {self.activation!r}"
            )

        rates, kernels = self.upsample_rates, self.upsample_kernel_sizes
        _check_int_tuple("upsample_rates", rates)
        _check_int_tuple("upsample_kernel_sizes", kernels)
        if len(rates) != len(kernels):
            raise ConfigError("BigVGAN config: upsample_rates and upsample_kernel_sizes differ in length")
        for rate, kernel in zip(rates, kernels, strict=True):
            # (kernel - rate) even makes each transposed conv output exactly rate * input frames.
            if kernel < rate or (kernel - rate) % 2:
                raise ConfigError(
                    f"BigVGAN config: upsample kernel {kernel} must be >= its rate {rate} with an even difference"
                )
        if math.prod(rates) != self.hop_size:
            raise ConfigError(
                f"BigVGAN config: upsample_rates multiply to {math.prod(rates)}, not hop_size {self.hop_size}"
            )
        if self.upsample_initial_channel % 2 ** len(rates):
            raise ConfigError(
                f"BigVGAN config: upsample_initial_channel {self.upsample_initial_channel} must be divisible by "
                f"2**{len(rates)} (one halving per upsampling stage)"
            )

        _check_int_tuple("resblock_kernel_sizes", self.resblock_kernel_sizes)
        if any(k % 2 == 0 for k in self.resblock_kernel_sizes):
            # Odd kernels keep the dilated convolutions length-preserving.
            raise ConfigError("BigVGAN config: resblock_kernel_sizes must be odd")
        dilations = self.resblock_dilation_sizes
        if not isinstance(dilations, tuple) or len(dilations) != len(self.resblock_kernel_sizes):
            raise ConfigError(
                "BigVGAN config: resblock_dilation_sizes needs one list per resblock kernel size"
            )
        for entry in dilations:
            _check_int_tuple("resblock_dilation_sizes", entry)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BigVGANConfig:
        """Read NVIDIA's config mapping; training-only keys it also carries are ignored."""
        if not isinstance(data, Mapping):
            raise ConfigError("BigVGAN config must be a JSON object")
        # NVIDIA's code reads these two with a default of True for configs older than v2.
        values: dict[str, Any] = {"use_tanh_at_final": True, "use_bias_at_final": True}
        for field in fields(cls):
            if field.name in data:
                values[field.name] = _tupled(data[field.name])
            elif field.name not in values:
                raise ConfigError(f"BigVGAN config lacks the key {field.name!r}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> BigVGANConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read BigVGAN config {path}: {error}") from error
        return cls.from_dict(data)


def _tupled(value: Any) -> Any:
    """JSON lists become (nested) tuples so the frozen config is hashable and immutable."""
    if isinstance(value, list):
        return tuple(_tupled(item) for item in value)
    return value


def _check_int(name: str, value: Any) -> None:
    # bool is an int subclass; a JSON ``true`` must not pass as 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"BigVGAN config: {name} must be a positive integer, got {value!r}")


def _check_int_tuple(name: str, value: Any) -> None:
    if not isinstance(value, tuple) or not value:
        raise ConfigError(
            f"BigVGAN config: {name} must be a non-empty list of positive integers, got {value!r}"
        )
    for item in value:
        _check_int(name, item)


# Set while building a network whose weights are about to be loaded: its convolutions then skip
# their random init (seconds for the 122 M parameters of the released model) and keep
# uninitialised storage that the load replaces. A ContextVar, so other threads are unaffected.
_skip_init: ContextVar[bool] = ContextVar("bigvgan_skip_init", default=False)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` whose random init can be skipped (see :meth:`BigVGAN.for_loading`)."""

    def reset_parameters(self) -> None:
        if not _skip_init.get():
            super().reset_parameters()


class ConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` whose random init can be skipped (see :meth:`BigVGAN.for_loading`)."""

    def reset_parameters(self) -> None:
        if not _skip_init.get():
            super().reset_parameters()


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass, ``(1, 1, kernel_size)``, summing to 1.

    ``cutoff`` and ``half_width`` are in cycles per sample. The window's beta follows Kaiser's
    empirical attenuation formula, as in julius / alias-free-torch, which BigVGAN was trained with.
    """
    half_size = kernel_size // 2
    attenuation = 2.285 * (half_size - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21.0) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    if kernel_size % 2 == 0:
        # Even length: taps sit half a sample off the centre.
        time = torch.arange(-half_size, half_size) + 0.5
    else:
        time = torch.arange(kernel_size) - half_size
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    # Unit DC gain, so a constant passes through unchanged.
    return (taps / taps.sum()).view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    """Zero-stuffing upsampler followed by the low-pass (one grouped transposed conv)."""

    def __init__(self, ratio: int = AA_RATIO, kernel_size: int = AA_KERNEL_SIZE) -> None:
        super().__init__()
        self.ratio = ratio
        # Replicate-pad the input so the filter sees no artificial step at the edges, then crop
        # the transposed conv's overhang back to exactly ratio * T samples.
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        # A buffer, not a parameter: fixed, moves with .to(device), and is part of NVIDIA's state dict.
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        # Zero stuffing scales the passband by 1/ratio; the gain restores unit amplitude. It is
        # applied to the 12 taps rather than to the long output, which is cheaper.
        taps = (self.ratio * self.filter).expand(channels, -1, -1)
        x = F.conv_transpose1d(x, taps, stride=self.ratio, groups=channels)
        return x[..., self.crop_left : x.shape[-1] - self.crop_right]


class LowPassFilter1d(nn.Module):
    """Strided low-pass (the decimating half of the anti-aliased activation)."""

    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride, groups=channels)


class DownSample1d(nn.Module):
    """Wrapper that exists only so the buffer is named ``downsample.lowpass.filter`` as in NVIDIA's files."""

    def __init__(self, ratio: int = AA_RATIO, kernel_size: int = AA_KERNEL_SIZE) -> None:
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class Snake(nn.Module):
    """``x + sin²(αx)/α`` per channel; α stored as log α when ``logscale``."""

    def __init__(self, channels: int, logscale: bool) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, 1)
        if self.logscale:
            alpha = alpha.exp()
        return x + torch.sin(x * alpha).pow(2) / (alpha + SNAKE_EPS)


class SnakeBeta(nn.Module):
    """``x + sin²(αx)/β``: separate frequency (α) and magnitude (β), log-stored when ``logscale``."""

    def __init__(self, channels: int, logscale: bool) -> None:
        super().__init__()
        self.logscale = logscale
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.alpha.view(1, -1, 1), self.beta.view(1, -1, 1)
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + torch.sin(x * alpha).pow(2) / (beta + SNAKE_EPS)


def make_snake(kind: str, channels: int, logscale: bool) -> nn.Module:
    return SnakeBeta(channels, logscale) if kind == "snakebeta" else Snake(channels, logscale)


class Activation1d(nn.Module):
    """Anti-aliased activation: 2x upsample, snake, 2x downsample.

    The snake creates harmonics above Nyquist; running it at twice the rate and low-passing
    before decimation keeps them from folding back as aliasing.
    """

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d()
        self.downsample = DownSample1d()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class AMPBlock1(nn.Module):
    """Anti-aliased multi-periodicity block: residual pairs of (act, dilated conv, act, conv)."""

    def __init__(
        self, channels: int, kernel_size: int, dilations: tuple[int, ...], cfg: BigVGANConfig
    ) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            Conv1d(channels, channels, kernel_size, dilation=d, padding=get_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            Conv1d(channels, channels, kernel_size, padding=get_padding(kernel_size)) for _ in dilations
        )
        # Interleaved as NVIDIA stores them: activations[2k] precedes convs1[k], [2k + 1] convs2[k].
        self.activations = nn.ModuleList(
            Activation1d(make_snake(cfg.activation, channels, cfg.snake_logscale))
            for _ in range(2 * len(dilations))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, (c1, c2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            xt = c1(self.activations[2 * k](x))
            xt = c2(self.activations[2 * k + 1](xt))
            x = x + xt
        return x


class BigVGAN(nn.Module):
    """BigVGAN-v2 generator: ``(B, num_mels, T)`` log-mel -> ``(B, 1, T * hop_size)`` audio in [-1, 1]."""

    def __init__(self, cfg: BigVGANConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or BigVGANConfig()
        self.cfg = cfg
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        self.conv_pre = Conv1d(cfg.num_mels, cfg.upsample_initial_channel, 7, padding=3)

        # Each upsampler sits in a one-element ModuleList only to reproduce NVIDIA's "ups.{i}.0" keys.
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = cfg.upsample_initial_channel
        for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True):
            up = ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2)
            self.ups.append(nn.ModuleList([up]))
            channels //= 2
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
                self.resblocks.append(AMPBlock1(channels, k, d, cfg))

        self.activation_post = Activation1d(make_snake(cfg.activation, channels, cfg.snake_logscale))
        self.conv_post = Conv1d(channels, 1, 7, padding=3, bias=cfg.use_bias_at_final)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, (up,) in enumerate(self.ups):
            x = up(x)
            # Multi-receptive-field fusion: the mean of the stage's parallel blocks.
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(self.activation_post(x))
        # v2 checkpoints were trained without tanh; NVIDIA bounds their output with a clamp instead.
        return torch.tanh(x) if self.cfg.use_tanh_at_final else x.clamp(-1.0, 1.0)

    @classmethod
    def for_loading(cls, cfg: BigVGANConfig | None = None) -> BigVGAN:
        """A network with uninitialised convolution weights, to be filled by a state-dict load.

        Faster than building it on the meta device (whose init path imports torch's compiler
        stack) and than a random init that the load throws away.
        """
        token = _skip_init.set(True)
        try:
            return cls(cfg)
        finally:
            _skip_init.reset(token)

    def synthesize(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocode ``(num_mels, T)`` or ``(B, num_mels, T)`` without autograd, in float32 even under autocast."""
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        if mel.dim() != 3 or mel.shape[1] != self.cfg.num_mels:
            raise ValueError(f"expected a (B, {self.cfg.num_mels}, T) mel, got shape {tuple(mel.shape)}")
        # Snake's sin² of large activations loses precision in half floats.
        with torch.no_grad(), torch.autocast(device_type=mel.device.type, enabled=False):
            return self(mel.float())

    def load_nvidia_state_dict(self, state_dict: Mapping[str, torch.Tensor], *, assign: bool = False) -> None:
        """Load NVIDIA's ``generator`` state dict (weight-normed or not) with a strict key match.

        ``assign=True`` adopts the given tensors instead of copying, for a model built on the meta device.
        Raises ValueError naming the first mismatching keys (the torch message lists all 667).
        """
        folded = fold_weight_norm(state_dict)
        expected = set(self.state_dict())
        missing, unexpected = sorted(expected - folded.keys()), sorted(folded.keys() - expected)
        if missing or unexpected:
            raise ValueError(
                f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}"
            )
        self.load_state_dict(folded, strict=True, assign=assign)


def fold_weight_norm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace weight-norm pairs by plain ``weight`` tensors; other entries pass through.

    Understands both the old ``weight_g``/``weight_v`` keys (``torch.nn.utils.weight_norm``, what
    NVIDIA's published files hold) and the newer ``parametrizations.weight.original0|1`` keys.
    The magnitude ``g`` scales each slice along dim 0; the norm is taken over all other dims.
    """
    folded = dict(state_dict)
    for g_suffix, v_suffix in _WEIGHT_NORM_SUFFIXES:
        for g_key in [key for key in state_dict if key.endswith(g_suffix)]:
            prefix = g_key[: -len(g_suffix)]
            if prefix + v_suffix not in state_dict:
                continue  # an orphan is left in place so the strict load names it
            magnitude, direction = folded.pop(g_key), folded.pop(prefix + v_suffix)
            norm = direction.norm(dim=tuple(range(1, direction.dim())), keepdim=True)
            folded[prefix + ".weight"] = direction * (magnitude / norm)
    return folded
