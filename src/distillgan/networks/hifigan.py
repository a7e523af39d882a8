"""HiFi-GAN V2 generator, its two discriminators (MPD + MSD) and the LSGAN losses.

Plain ``nn.Module``s; the training recipe lives in ``distillgan.lightning_modules.hifigan``.
The generator turns the project's one mel format (128 bins, hop 512, see
``distillgan.mel``) into 44.1 kHz audio, so its upsampling must multiply time by exactly 512.
With ``source_channels`` it also takes the band-oscillator excitation read from the same mel
(``distillgan.networks.source``), without which it cannot render a steady tone off the
86.1 Hz frame-rate comb.

Training-time weight normalization uses ``torch.nn.utils.parametrizations``; the weights the
model file stores are the folded ones (see ``Generator.inference_state_dict``), which load
into ``Generator(cfg, weight_norm=False)``.

Loss weights (LSGAN 1, feature matching ×2, mel L1 ×45) are applied by the caller: the loss
functions here return unweighted sums, and the paper's weights are exported as constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from distillgan.config import in_range, require
from distillgan.mel import HOP_LENGTH, N_MELS
from distillgan.networks.source import excitation

# Bounds on a generator config, which may come from an untrusted model file: loading must never
# be asked for gigabytes. 64 M parameters (256 MB of float32) is 4.5x HiFi-GAN V1 (14 M) and 66x
# the V2 default (0.97 M); 1024 initial channels is twice V1's width; an upsampling kernel is
# twice its rate in the published recipes (at most 16), and 64 leaves room for rate-32 stages;
# resblock kernels are 3, 7 and 11 in every published version, 31 leaves room to experiment.
MAX_GENERATOR_PARAMETERS = 64_000_000
MAX_INITIAL_CHANNELS = 1024
MAX_UPSAMPLE_KERNEL = 64
MAX_RESBLOCK_KERNEL = 31

# Slope of every leaky ReLU between convolutions, as in the paper.
LRELU_SLOPE = 0.1

# Loss weights of the HiFi-GAN paper (λ_fm = 2, λ_mel = 45), applied by the training step.
FEATURE_MATCHING_WEIGHT = 2.0
MEL_LOSS_WEIGHT = 45.0

# Published channel widths of the discriminators' convolutions (before the post conv).
MPD_CHANNELS = (32, 128, 512, 1024, 1024)
# HiFi-GAN's own scale discriminator (not MelGAN's): (out channels, kernel, stride, groups) per conv.
MSD_LAYERS = (
    (128, 15, 1, 1),
    (128, 41, 2, 4),
    (256, 41, 2, 16),
    (512, 41, 4, 16),
    (1024, 41, 4, 16),
    (1024, 41, 1, 16),
    (1024, 5, 1, 1),
)


@dataclass
class HiFiGANConfig:
    """Shape of the per-model vocoder. Defaults are HiFi-GAN V2 adapted to hop 512."""

    n_mels: int = N_MELS
    upsample_initial_channel: int = 128
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 4, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 8, 4])
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilations: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    # Channels of the band-oscillator excitation (``distillgan.networks.source``) added at every
    # upsampling stage; 0 is the published V2 without it. Files written before it existed read as 0.
    source_channels: int = 0
    mpd_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    # Divides every discriminator width (1 = published widths); tests use tiny discriminators.
    discriminator_channel_divisor: int = 1

    def validate(self) -> None:
        require(
            self.n_mels == N_MELS,
            f"config key 'n_mels' must be {N_MELS} (the project's mel), got {self.n_mels}",
        )
        require(
            1 <= len(self.upsample_rates) <= 8,
            "config key 'upsample_rates' must list 1 to 8 upsampling stages",
        )
        for rate in self.upsample_rates:
            in_range("upsample_rates[]", rate, 1, HOP_LENGTH)
        require(
            math.prod(self.upsample_rates) == HOP_LENGTH,
            f"config key 'upsample_rates' must multiply to the mel hop {HOP_LENGTH}, "
            f"got {math.prod(self.upsample_rates)}",
        )
        require(
            len(self.upsample_kernel_sizes) == len(self.upsample_rates),
            "config key 'upsample_kernel_sizes' must have one entry per upsample rate",
        )
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            in_range("upsample_kernel_sizes[]", kernel, 1, MAX_UPSAMPLE_KERNEL)
            # kernel - rate even and >= 0 makes each stage output exactly rate × its input length
            require(
                kernel >= rate and (kernel - rate) % 2 == 0,
                f"config key 'upsample_kernel_sizes' entry {kernel} must be >= its rate {rate} "
                "and differ from it by an even number",
            )
        stages = len(self.upsample_rates)
        in_range("upsample_initial_channel", self.upsample_initial_channel, 1, MAX_INITIAL_CHANNELS)
        require(
            self.upsample_initial_channel % 2**stages == 0,
            f"config key 'upsample_initial_channel' must be divisible by {2**stages} "
            "(channels halve at every upsampling stage)",
        )
        require(
            1 <= len(self.resblock_kernel_sizes) <= 8,
            "config key 'resblock_kernel_sizes' must list 1 to 8 kernels",
        )
        for kernel in self.resblock_kernel_sizes:
            in_range("resblock_kernel_sizes[]", kernel, 1, MAX_RESBLOCK_KERNEL)
            require(kernel % 2 == 1, f"config key 'resblock_kernel_sizes' entry {kernel} must be odd")
        require(
            len(self.resblock_dilations) == len(self.resblock_kernel_sizes),
            "config key 'resblock_dilations' must have one list per resblock kernel size",
        )
        for dilations in self.resblock_dilations:
            require(
                1 <= len(dilations) <= 8, "config key 'resblock_dilations' lists must hold 1 to 8 dilations"
            )
            for dilation in dilations:
                in_range("resblock_dilations[][]", dilation, 1, 64)
        in_range("source_channels", self.source_channels, 0, 8)
        require(
            self.source_channels == 0 or N_MELS % self.source_channels == 0,
            f"config key 'source_channels' must divide the {N_MELS} mel bands (1, 2, 4 or 8), "
            f"got {self.source_channels}",
        )
        parameters = self.parameter_count()
        require(
            parameters <= MAX_GENERATOR_PARAMETERS,
            f"the generator this config describes has {parameters:,} parameters, "
            f"more than the {MAX_GENERATOR_PARAMETERS:,} allowed",
        )
        require(1 <= len(self.mpd_periods) <= 16, "config key 'mpd_periods' must list 1 to 16 periods")
        for period in self.mpd_periods:
            in_range("mpd_periods[]", period, 1, 64)
        divisor = self.discriminator_channel_divisor
        in_range("discriminator_channel_divisor", divisor, 1, 1024)
        require(
            all(width % divisor == 0 for width in MPD_CHANNELS + tuple(layer[0] for layer in MSD_LAYERS)),
            f"config key 'discriminator_channel_divisor' must divide the discriminator widths "
            f"(1, 2, 4, 8 or 16), got {divisor}",
        )

    def parameter_count(self) -> int:
        """Parameters of the inference generator this config describes, counted without building it."""
        channels = self.upsample_initial_channel
        count = self.n_mels * channels * 7 + channels  # conv_pre
        for i, kernel in enumerate(self.upsample_kernel_sizes):
            channels //= 2
            count += 2 * channels * channels * kernel + channels  # the stage's transposed conv
            if self.source_channels:
                stride = self.source_stride(i)
                count += self.source_channels * channels * source_kernel(stride) + channels
            for size, dilations in zip(self.resblock_kernel_sizes, self.resblock_dilations, strict=True):
                count += 2 * len(dilations) * (channels * channels * size + channels)
        return count + channels * 7 + 1  # conv_post

    def source_stride(self, stage: int) -> int:
        """Samples of audio per sample of upsampling stage ``stage``'s output."""
        return math.prod(self.upsample_rates[stage + 1 :])


def source_kernel(stride: int) -> int:
    """Kernel of the conv that brings the excitation down to a stage's rate: two strides wide."""
    return 2 * stride if stride > 1 else 1


def generator_shapes(cfg: HiFiGANConfig) -> dict[str, tuple[int, ...]]:
    """Name and shape of every inference weight ``cfg`` implies, from a generator on the meta
    device: nothing is allocated, so a stored config can be checked against the stored weights
    before the network is built."""
    with torch.device("meta"):
        return {name: tuple(t.shape) for name, t in Generator(cfg, weight_norm=False).state_dict().items()}


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return dilation * (kernel_size - 1) // 2


def _init_weights(module: nn.Module) -> None:
    # N(0, 0.01) as in the paper; must run before weight norm splits the weight into g and v.
    # Nothing to draw on the meta device (shapes only), where normal_ imports torch's compiler.
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) and not module.weight.is_meta:
        nn.init.normal_(module.weight, 0.0, 0.01)


# ---------------------------------------------------------------------------------------------
# Generator


class ResBlock1(nn.Module):
    """Residual stack of dilated convolutions; each dilated conv is followed by an undilated one."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size)) for _ in dilations
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            # x itself feeds the residual, so the first activation cannot be in place; c1's
            # output is not needed by any backward, so the second can.
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            xt = c2(F.leaky_relu(xt, LRELU_SLOPE, inplace=True))
            x = xt + x
        return x


class Generator(nn.Module):
    """Mel (B, 128, T) -> waveform (B, 1, T × 512) in [-1, 1].

    ``weight_norm=True`` (training) wraps every conv but the source's in a weight-norm parametrization;
    ``weight_norm=False`` builds the same network with plain weights, which is what folded
    inference weights (``inference_state_dict``) load into.
    """

    def __init__(self, cfg: HiFiGANConfig, weight_norm: bool = True) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        ch = cfg.upsample_initial_channel
        # conv_pre keeps PyTorch's default init, as in the reference implementation
        self.conv_pre = nn.Conv1d(cfg.n_mels, ch, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True):
            self.ups.append(
                nn.ConvTranspose1d(ch, ch // 2, kernel, stride=rate, padding=(kernel - rate) // 2)
            )
            ch //= 2
            for k, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilations, strict=True):
                self.resblocks.append(ResBlock1(ch, k, dilations))
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3)
        self.ups.apply(_init_weights)
        self.conv_post.apply(_init_weights)
        # The excitation's way in, one strided conv per stage. Plain convs (weight norm cannot
        # start from zero) that start at zero: a generator extended with a source starts out as
        # the generator it extends, and learns to use the source from there.
        self.source_convs = nn.ModuleList()
        for i in range(len(cfg.upsample_rates) if cfg.source_channels else 0):
            stride = cfg.source_stride(i)
            kernel = source_kernel(stride)
            conv = nn.Conv1d(
                cfg.source_channels, self.ups[i].out_channels, kernel, stride, padding=(kernel - stride) // 2
            )
            if not conv.weight.is_meta:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
            self.source_convs.append(conv)
        if weight_norm:
            self.apply_weight_norm()

    def apply_weight_norm(self) -> None:
        """Weight norm on every conv but the source's; g = |w| and v = w from the current weights."""
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) and not name.startswith("source_convs"):
                parametrizations.weight_norm(module)

    def forward(self, mel: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """``phase``: the excitation's oscillator phases at the first frame (see ``source.excitation``)."""
        source = None
        if self.source_convs:
            # computed in float32 (phases need it), then in the weights' dtype like the mel
            source = excitation(mel, self.cfg.source_channels, phase).to(mel.dtype)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            # conv and mean outputs are not saved for backward, so activating in place is safe
            x = up(F.leaky_relu(x, LRELU_SLOPE, inplace=True))
            if source is not None:
                x = x + self.source_convs[i](source)
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs = xs + block(x)
            x = xs / self.num_kernels
        # the reference implementation uses the default slope (0.01) before the last conv
        x = self.conv_post(F.leaky_relu(x, inplace=True))
        return torch.tanh(x)

    def remove_weight_norm(self) -> None:
        """Fold every weight-norm parametrization into a plain ``weight`` (in place, for inference).

        Afterwards ``state_dict()`` has the same keys as ``Generator(cfg, weight_norm=False)``.
        """
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """Folded weights (detached copies) without modifying this generator.

        Keys equal ``Generator(cfg, weight_norm=False).state_dict()`` keys, e.g.
        ``conv_pre.weight``, ``ups.0.bias``, ``resblocks.4.convs1.2.weight``.
        """
        state: dict[str, torch.Tensor] = {}
        device_type = self.conv_pre.bias.device.type
        # parametrized .weight recomputes g·v/|v|; keep that in float32 under any autocast
        with torch.no_grad(), torch.autocast(device_type, enabled=False):
            for name, module in self.named_modules():
                if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                    state[f"{name}.weight"] = module.weight.detach().clone()
                    state[f"{name}.bias"] = module.bias.detach().clone()
        return state


# ---------------------------------------------------------------------------------------------
# Discriminators


class PeriodDiscriminator(nn.Module):
    """Looks at every ``period``-th sample, each of the ``period`` phases judged independently.

    The paper folds audio to (B, 1, T / period, period) and runs 2-D convs with (k, 1)
    kernels. A (k, 1) kernel never mixes columns, so this is the same network computed as
    1-D convs over the columns moved into the batch, (B · period, C, T / period): identical
    outputs and weights (a Conv1d weight is the paper's Conv2d weight without its last unit
    axis), and several times faster on CPU. Feature maps come back as free views shaped
    (B, period, C, T / period): per example, the same values as the paper's layout.
    """

    def __init__(self, period: int, channel_divisor: int = 1) -> None:
        super().__init__()
        self.period = period
        widths = [1] + [c // channel_divisor for c in MPD_CHANNELS]
        # stride 3 on the first four convs, 1 on the last, as in the paper
        strides = [3, 3, 3, 3, 1]
        self.convs = nn.ModuleList(
            parametrizations.weight_norm(nn.Conv1d(widths[i], widths[i + 1], 5, strides[i], padding=2))
            for i in range(len(strides))
        )
        self.conv_post = parametrizations.weight_norm(nn.Conv1d(widths[-1], 1, 3, padding=1))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, channels, length = y.shape
        if length % self.period:
            y = F.pad(y, (0, self.period - length % self.period), mode="reflect")
        # (B, C, T) -> (B, C, T/p, p) -> (B, p, C, T/p) -> (B·p, C, T/p)
        x = (
            y.view(batch, channels, -1, self.period)
            .permute(0, 3, 1, 2)
            .reshape(batch * self.period, channels, -1)
        )
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE, inplace=True)
            features.append(x.view(batch, self.period, *x.shape[1:]))
        x = self.conv_post(x)
        features.append(x.view(batch, self.period, *x.shape[1:]))
        return x.reshape(batch, -1), features


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: list[int], channel_divisor: int = 1) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channel_divisor) for p in periods)

    def forward(self, y: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Waveform (B, 1, T) -> per sub-discriminator logits (B, N) and feature maps."""
        logits, features = [], []
        for d in self.discriminators:
            logit, fmaps = d(y)
            logits.append(logit)
            features.append(fmaps)
        return logits, features


class ScaleDiscriminator(nn.Module):
    """Strided, grouped 1-D convs over the raw (or average-pooled) waveform (HiFi-GAN's layout)."""

    def __init__(self, channel_divisor: int = 1, spectral: bool = False) -> None:
        super().__init__()
        norm = parametrizations.spectral_norm if spectral else parametrizations.weight_norm
        convs, width = [], 1
        for out, kernel, stride, groups in MSD_LAYERS:
            out //= channel_divisor
            # narrower recipes keep the published group count where the widths allow it
            groups = math.gcd(groups, width, out)
            convs.append(norm(nn.Conv1d(width, out, kernel, stride, groups=groups, padding=kernel // 2)))
            width = out
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv1d(width, 1, 3, padding=1))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = y
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE, inplace=True)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.flatten(1), features


class MultiScaleDiscriminator(nn.Module):
    """Three scale discriminators on the waveform, ×2 and ×4 average-pooled; the first uses
    spectral norm (stabler on raw audio), the others weight norm, as in the paper."""

    def __init__(self, channel_divisor: int = 1) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            [
                ScaleDiscriminator(channel_divisor, spectral=True),
                ScaleDiscriminator(channel_divisor),
                ScaleDiscriminator(channel_divisor),
            ]
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, y: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Waveform (B, 1, T) -> per sub-discriminator logits (B, N) and feature maps."""
        logits, features = [], []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                y = self.pool(y)
            logit, fmaps = d(y)
            logits.append(logit)
            features.append(fmaps)
        return logits, features


class Discriminators(nn.Module):
    """MPD and MSD behind one call, so a training step runs one module.

    ``forward(y)`` returns the MPD's outputs followed by the MSD's: ``len(cfg.mpd_periods) + 3``
    logits and feature lists. Real and generated audio may be concatenated along the batch and
    judged in one call (then split each output with ``.chunk(2)``): the convolutions run on
    twice the batch, which is cheaper on CPU than two calls.
    """

    def __init__(self, cfg: HiFiGANConfig) -> None:
        super().__init__()
        cfg.validate()
        self.mpd = MultiPeriodDiscriminator(cfg.mpd_periods, cfg.discriminator_channel_divisor)
        self.msd = MultiScaleDiscriminator(cfg.discriminator_channel_divisor)

    def forward(self, y: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        period_logits, period_features = self.mpd(y)
        scale_logits, scale_features = self.msd(y)
        return period_logits + scale_logits, period_features + scale_features


# ---------------------------------------------------------------------------------------------
# Losses: unweighted, always float32 (inputs may be bf16 under autocast).


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN discriminator loss: Σ over sub-discriminators of mean((1 - D(y))²) + mean(D(ŷ)²)."""
    loss = real_logits[0].new_zeros((), dtype=torch.float32)
    for real, fake in zip(real_logits, fake_logits, strict=True):
        loss = loss + (1.0 - real.float()).square().mean() + fake.float().square().mean()
    return loss


def generator_adversarial_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator loss: Σ over sub-discriminators of mean((1 - D(ŷ))²)."""
    loss = fake_logits[0].new_zeros((), dtype=torch.float32)
    for fake in fake_logits:
        loss = loss + (1.0 - fake.float()).square().mean()
    return loss


def feature_matching_loss(
    real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]
) -> torch.Tensor:
    """Σ over sub-discriminators and layers of mean |D_l(y) - D_l(ŷ)|, *without* the paper's ×2.

    Multiply by ``FEATURE_MATCHING_WEIGHT`` in the training step. Real features are targets:
    they are detached here, so no gradient reaches the discriminator through them.
    """
    loss = real_features[0][0].new_zeros((), dtype=torch.float32)
    for real_maps, fake_maps in zip(real_features, fake_features, strict=True):
        for real, fake in zip(real_maps, fake_maps, strict=True):
            loss = loss + (real.detach().float() - fake.float()).abs().mean()
    return loss
