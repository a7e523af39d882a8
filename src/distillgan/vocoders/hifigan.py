"""The per-model HiFi-GAN V2 vocoder, read from a model file's ``/vocoder`` stage.

The stage holds the generator's inference weights with weight norm already folded (see
``Generator.inference_state_dict``) and a training summary (status, completed epochs,
held-out mel error). :func:`read_vocoder_info` reads only the summary (cheap, for listing and
auto-selection); :func:`load_hifigan` builds the network, once per file version and device.

When does ``--vocoder auto`` pick the per-model vocoder (``HiFiGANInfo.ready``)?

* when BigVGAN-v2 was scored on the same held-out clips at the end of training
  (``bigvgan_val_mel_l1``), only if the stored weights' held-out mel error is lower;
* otherwise, when that error is at most :data:`GOOD_MEL_L1`.

The stored weights are the held-out-best epoch's. Whenever the per-model vocoder is not
ready, every use of it (chosen by hand) carries a warning, and auto never picks it, so auto
never picks a vocoder while warning about its quality.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from distillgan import config as cfg_lib
from distillgan.errors import ConfigError, ModelFileError, VocoderUnavailableError
from distillgan.filecache import FileVersion, model_file_version, once_per_file_version
from distillgan.mel import HOP_LENGTH
from distillgan.modelfile import open_model, vocoder_record
from distillgan.modelfile.records import VOCODER
from distillgan.networks.hifigan import LRELU_SLOPE, Generator, HiFiGANConfig, generator_shapes, source_kernel
from distillgan.networks.source import excitation, start_phases
from distillgan.vocoders.base import (
    Vocoder,
    context_frames_for,
    conv_half_width,
    transposed_conv_half_width,
)
from distillgan.vocoders.mel_match import LEVEL_MATCHED
from distillgan.vocoders.native import PackedStage, resblock_kernel

log = logging.getLogger(__name__)

TYPE = "hifigan_v2"

# Held-out mel L1 (natural-log mel, the training validation metric, of the level-matched render)
# at or below which a vocoder's weights count as good: a partial run this good is picked
# automatically, and no quality warning is shown. Measured on the 8 example held-out sounds
# (2026-12-02): from scratch with the quick recipe 0.79 after 50 steps, 0.40 after 200, 0.23
# after 400 (band levels within 5 dB), 0.20 after 800; the prior alone 0.175 (37 001 steps), and 0.211
# on its own 16 held-out files. 0.25 asks for a vocoder well past its first few hundred steps;
# it is a judgement, not a measurement of perceived quality.
GOOD_MEL_L1 = 0.25
# The same judgement for files written before level matching, whose figures score the network's
# output alone (about twice as high: the prior 0.446 alone, 0.211 level-matched, at 37 001 steps).
GOOD_NETWORK_MEL_L1 = 0.5


@dataclass(frozen=True)
class HiFiGANInfo:
    """The training summary of a model's per-model vocoder (no weights)."""

    status: str  # "complete" | "partial"
    epochs_completed: int
    total_epochs: int | None
    steps: int | None
    val_mel_l1: float | None  # held-out mel error of the stored (best) weights
    bigvgan_val_mel_l1: float | None  # BigVGAN-v2 on the same clips, when it was scored
    held_out_files: tuple[str, ...] | None  # None: the clips were cut from training files
    started_from: str | None
    level_matched: bool = True  # False: a file from before level matching (figures of the network alone)

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def good_mel_l1(self) -> float:
        """The held-out mel error at or below which these weights are good, for how it was scored."""
        return GOOD_MEL_L1 if self.level_matched else GOOD_NETWORK_MEL_L1

    @property
    def good(self) -> bool:
        """The stored weights' held-out mel error is at most :attr:`good_mel_l1`."""
        return self.val_mel_l1 is not None and self.val_mel_l1 <= self.good_mel_l1

    @property
    def ready(self) -> bool:
        """Auto-selection picks it: it beats BigVGAN on the held-out clips, or (not scored) it is good."""
        if self.bigvgan_val_mel_l1 is not None and self.val_mel_l1 is not None:
            return self.val_mel_l1 < self.bigvgan_val_mel_l1
        return self.good

    @property
    def held_out_where(self) -> str:
        return describe_held_out(self.held_out_files)

    def comparison(self) -> str:
        """The measured reason, e.g. "own vocoder 0.31 vs BigVGAN 0.38 on this model's 2 held-out files"."""
        where = f"on this model's {self.held_out_where}"
        if self.val_mel_l1 is None:
            return "no held-out mel error recorded"
        if self.bigvgan_val_mel_l1 is None:
            return f"held-out mel error {self.val_mel_l1:.3g} {where} (BigVGAN-v2 not scored)"
        return (
            f"own vocoder {self.val_mel_l1:.3g} vs BigVGAN {self.bigvgan_val_mel_l1:.3g} {where} (mel error)"
        )

    @property
    def warning(self) -> str | None:
        if self.ready:
            return None
        if self.bigvgan_val_mel_l1 is not None and self.val_mel_l1 is not None:
            return f"BigVGAN-v2 renders this model's held-out clips better ({self.comparison()})"
        done = self.epochs_completed
        return f"Trained for {done} epoch{'' if done == 1 else 's'} — quality may be limited"


def stored_config(config: dict[str, Any] | None, where: Path) -> HiFiGANConfig:
    """The generator config a model file stores (a record's mapping, untrusted: validated, one
    clear error; None: it stores none that can be read)."""
    try:
        return cfg_lib.from_dict(HiFiGANConfig, config)
    except ConfigError as error:
        raise ModelFileError(f"the vocoder config stored in {where} is unusable: {error}") from error


def describe_held_out(files: tuple[str, ...] | None) -> str:
    """Where a vocoder's held-out figure comes from, from the stored ``held_out_files``."""
    if files:
        return f"{len(files)} held-out file{'s' if len(files) > 1 else ''}"
    return "clips held out from its training files"


def read_vocoder_info(model_path: Path) -> HiFiGANInfo | None:
    """The per-model vocoder's summary, or None when the model has none.

    Raises :class:`ModelFileError` for a vocoder stage this version cannot use.
    """
    reader = open_model(model_path)
    if not reader.has(VOCODER):
        return None
    record = vocoder_record(reader)
    if record.type != TYPE:
        raise ModelFileError(
            f"the vocoder stored in {model_path} is of type {record.type!r}, which this distillgan cannot "
            f"use (expected {TYPE!r}; was it made by a newer version?)"
        )
    if record.status is None or record.epochs_completed is None:
        raise ModelFileError(f"the vocoder stage of {model_path} is damaged (bad status or epoch count)")
    # the stored weights' figure: a kept epoch's, or the start's when no epoch beat it (best_epoch
    # 0); files from before best-epoch keeping (no best_epoch) stored the last epoch's weights
    kept_is_scored = record.best_epoch is not None and record.val_mel_l1_best is not None
    return HiFiGANInfo(
        status=record.status,
        epochs_completed=record.epochs_completed,
        total_epochs=record.total_epochs,
        steps=record.steps,
        val_mel_l1=record.val_mel_l1_best if kept_is_scored else record.val_mel_l1_last,
        bigvgan_val_mel_l1=record.bigvgan_val_mel_l1,
        held_out_files=record.held_out_files or None,
        started_from=record.started_from,
        level_matched=record.held_out_render == LEVEL_MATCHED,
    )


def resblock_reach(cfg: HiFiGANConfig) -> int:
    """Samples (one side, at the stage's rate) a stage's parallel resblocks reach into their input.

    The resblocks of a stage run in parallel, so the widest one counts.
    """
    return math.ceil(
        max(
            sum(conv_half_width(k, d) + conv_half_width(k) for d in dilations)
            for k, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilations, strict=True)
        )
    )


def receptive_field_frames(cfg: HiFiGANConfig) -> int:
    """Mel frames of context each side that cover the generator's receptive field."""
    reach: list[tuple[float, int]] = [(conv_half_width(7), 1)]  # conv_pre, at the frame rate
    samples_per_frame = 1
    for rate, kernel in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True):
        reach.append((transposed_conv_half_width(kernel, rate), samples_per_frame))
        samples_per_frame *= rate
        reach.append((resblock_reach(cfg), samples_per_frame))
    reach.append((conv_half_width(7), samples_per_frame))  # conv_post
    if cfg.source_channels:
        # the excitation ramps each frame's amplitude to the next frame's, and each stage's
        # source conv reads it a kernel wide at the audio rate
        reach.append((HOP_LENGTH, HOP_LENGTH))
        stride = max(cfg.source_stride(i) for i in range(len(cfg.upsample_rates)))
        reach.append((conv_half_width(source_kernel(stride)), HOP_LENGTH))
    return context_frames_for(reach)


def _as_conv2d(conv: nn.Conv1d | nn.ConvTranspose1d, scale: float = 1.0) -> nn.Module:
    """The same (transposed) convolution as a ``(1, k)`` 2-D one with channels-last weights.

    ``scale`` multiplies the weight (not the bias), to fold a preceding constant factor in.
    """
    cls = nn.ConvTranspose2d if isinstance(conv, nn.ConvTranspose1d) else nn.Conv2d
    weight = conv.weight.detach()
    out = cls(
        conv.in_channels,
        conv.out_channels,
        (1, conv.kernel_size[0]),
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        dilation=(1, conv.dilation[0]),
        device=weight.device,
    )
    out.weight = nn.Parameter(
        (weight * scale).unsqueeze(2).contiguous(memory_format=torch.channels_last), requires_grad=False
    )
    out.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
    return out


# On the CPU, a stage's resblocks run over time tiles whose activations are about this size: the
# ~40 convolutions and activations of a stage then pass over data still in the cache instead of
# streaming whole-chunk activations (7 MB each at 8 channels) through memory for every one of
# them. Measured on 2 cores (10 s of audio): 10-20 % faster than untiled at 1-4 MB; at 0.5 MB
# the per-call overhead of the convolutions starts to win.
TILE_BYTES = 2 << 20
# The compiled kernel makes one call per tile (no per-convolution overhead), so its tiles are
# counted in samples: the halo recomputed at each tile edge is 2 x 60 / 8192 = 1.5 % of the work.
# Measured on 2 cores (10 s of audio): 4096-16384 samples alike, 1024 10-20 % slower.
NATIVE_TILE_SAMPLES = 8192


def _tiles(length: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(begin, start, stop, end)`` per tile: rows ``start:stop`` are kept from ``begin:end``."""
    return [
        (max(0, start - halo), start, min(length, start + tile), min(length, start + tile + halo))
        for start in range(0, length, tile)
    ]


class InferenceGenerator(nn.Module):
    """``Generator.forward`` re-laid for fast inference; same function up to float rounding.

    * Every conv runs as a ``(1, k)`` 2-D conv on channels-last (N, C, 1, T) tensors: oneDNN's
      NHWC kernels are 2-4x faster than its NCW ones for these narrow (8-64 channel) layers.
    * The first activation of a stage's parallel resblocks is computed once and shared.
    * Residual sums and activations reuse their buffers (in place) wherever the reference
      allocates a new tensor.
    * The ``/ num_kernels`` averaging of each stage is folded into the next conv's weights
      (leaky ReLU is positively homogeneous, so ``conv(lrelu(x / n)) == (W / n) * lrelu(x) + b``).
    * On the CPU, each stage's resblocks run over time tiles, every tile with
      :func:`resblock_reach` real neighbouring samples each side that are computed and dropped
      (overlap-discard, as chunking does for the whole network).
    * On the CPU, stages whose width the compiled kernel supports (``native``, see
      :mod:`distillgan.vocoders.native`) run their tiles through it; a stage whose kernel
      output disagrees with torch's on a test input falls back to torch (logged).
    """

    def __init__(self, generator: Generator, tile_bytes: int = TILE_BYTES, native: bool = True) -> None:
        super().__init__()
        n = generator.num_kernels
        self.tile_bytes = tile_bytes
        self.halo = resblock_reach(generator.cfg)
        self.conv_pre = _as_conv2d(generator.conv_pre)
        self.ups = nn.ModuleList(
            _as_conv2d(up, 1.0 if i == 0 else 1.0 / n) for i, up in enumerate(generator.ups)
        )
        self.stages = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(
                    nn.ModuleList([_as_conv2d(c1), _as_conv2d(c2)])
                    for c1, c2 in zip(block.convs1, block.convs2, strict=True)
                )
                for block in generator.resblocks[i * n : (i + 1) * n]
            )
            for i in range(len(generator.ups))
        )
        self.conv_post = _as_conv2d(generator.conv_post, 1.0 / n)
        self.source_channels = generator.cfg.source_channels
        self.source_convs = nn.ModuleList(_as_conv2d(conv) for conv in generator.source_convs)
        on_cpu = self.conv_post.weight.device.type == "cpu"
        self.kernel = resblock_kernel() if native and on_cpu else None
        # plain attributes, not buffers: the kernel reads CPU memory whatever device the module is on
        self.packed: list[PackedStage | None] = [self._pack(blocks) for blocks in self.stages]

    def _pack(self, blocks: nn.ModuleList) -> PackedStage | None:
        """The stage in the compiled kernel's layout, if the kernel supports it and agrees with torch."""
        channels = blocks[0][0][0].in_channels
        if self.kernel is None or not self.kernel.supports(channels):
            return None
        packed = PackedStage(
            [[(c1.weight[:, :, 0], c1.bias, c2.weight[:, :, 0], c2.bias) for c1, c2 in b] for b in blocks],
            [[c1.dilation[1] for c1, _ in b] for b in blocks],
        )
        # A wrongly compiled kernel must not reach anyone's audio: check it once on noise.
        length = 4 * self.halo + 64
        noise = torch.randn(1, channels, 1, length, generator=torch.Generator().manual_seed(0))
        noise = noise.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            expected = self._resblocks(blocks, noise)[0, :, 0].T.contiguous()
            got = torch.empty_like(expected)
            try:
                self.kernel(noise[0, :, 0].T, (0, length), got, packed, LRELU_SLOPE)
            except (ValueError, MemoryError) as failure:
                log.warning(
                    "the compiled resblock kernel failed at %d channels (%s); using torch's",
                    channels,
                    failure,
                )
                return None
        error = float((got - expected).abs().max())
        if not error <= 1e-4 * (1.0 + float(expected.abs().max())):
            log.warning(
                "the compiled resblock kernel is off by %.3g at %d channels; using torch's", error, channels
            )
            return None
        return packed

    def forward(self, mel: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """Mel (B, 128, T) -> waveform (B, 1, T × 512), as ``Generator.forward``."""
        source = None
        if self.source_channels:
            source = excitation(mel, self.source_channels, phase).unsqueeze(2)
            source = source.contiguous(memory_format=torch.channels_last)
        x = self.conv_pre(mel.unsqueeze(2).contiguous(memory_format=torch.channels_last))
        for i, (up, blocks, packed) in enumerate(zip(self.ups, self.stages, self.packed, strict=True)):
            x = up(F.leaky_relu_(x, LRELU_SLOPE))
            if source is not None:
                x = x.add_(self.source_convs[i](source))
            native = (
                packed is not None and x.device.type == "cpu" and x.shape[0] == 1 and x.dtype == torch.float32
            )
            x = self._native(packed, x) if native else self._tiled(blocks, x)
        # the reference uses leaky ReLU's default slope (0.01) before the last conv
        x = self.conv_post(F.leaky_relu_(x))
        return torch.tanh_(x).squeeze(2)

    def _native(self, packed: PackedStage, x: torch.Tensor) -> torch.Tensor:
        """The sum of a stage's resblocks by the compiled kernel, tile by tile (batch of one)."""
        assert self.kernel is not None
        rows = x[0, :, 0].T.contiguous()  # (T, C): a view when x is channels-last
        out = torch.empty_like(x, memory_format=torch.channels_last)
        out_rows = out[0, :, 0].T
        tile = max(self.halo, NATIVE_TILE_SAMPLES)
        for begin, start, stop, end in _tiles(rows.shape[0], tile, self.halo):
            self.kernel(
                rows[begin:end], (start - begin, stop - begin), out_rows[start:stop], packed, LRELU_SLOPE
            )
        return out

    def _tiled(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """The sum of a stage's resblocks, over time tiles on the CPU."""
        length = x.shape[-1]
        tile = max(1, self.halo, self.tile_bytes // (x.element_size() * x.shape[0] * x.shape[1]))
        if x.device.type != "cpu" or length <= tile + 2 * self.halo:
            return self._resblocks(blocks, x)
        out = torch.empty_like(x)
        for begin, start, stop, end in _tiles(length, tile, self.halo):
            out[..., start:stop] = self._resblocks(blocks, x[..., begin:end])[
                ..., start - begin : stop - begin
            ]
        return out

    @staticmethod
    def _resblocks(blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """The sum of a stage's resblocks on ``x``, which is left unchanged."""
        first = F.leaky_relu(x, LRELU_SLOPE)
        total: torch.Tensor | None = None
        for block in blocks:
            h = x
            for k, (conv1, conv2) in enumerate(block):
                # Temporaries are dropped as soon as they are used: this bounds peak memory.
                inner = conv1(first if k == 0 else F.leaky_relu(h, LRELU_SLOPE))
                h = conv2(F.leaky_relu_(inner, LRELU_SLOPE)).add_(h)
                del inner
            total = h if total is None else total.add_(h)
            del h
        assert total is not None  # a validated config has at least one resblock per stage
        return total


class HiFiGANVocoder(Vocoder):
    """A model's own HiFi-GAN V2 generator (folded weights, eval mode, no gradients)."""

    kind: ClassVar = "hifigan"
    name: ClassVar[str] = "Per-model HiFi-GAN V2"
    # 512 frames (~6 s) per chunk: vocoding 60 s with 2 workers peaks ~300 MB above the process's
    # baseline (measured); the 2 x 16 frames of context a chunk recomputes are 6 % of the work.
    default_chunk_frames: ClassVar[int] = 512

    def __init__(self, generator: Generator, device: torch.device, native: bool = True) -> None:
        """``native=False`` keeps to torch's convolutions (see :class:`InferenceGenerator`)."""
        self.generator = generator
        fast = InferenceGenerator(generator, native=native).to(device).eval()
        super().__init__(fast, context_frames=receptive_field_frames(generator.cfg), device=device)

    def _start_phases(self, mel: torch.Tensor) -> torch.Tensor | None:
        return start_phases(mel[None])[0] if self.generator.cfg.source_channels else None

    def _forward(self, mel: torch.Tensor, phase: torch.Tensor | None) -> torch.Tensor:
        return self.network(mel, phase)


def build_generator(cfg: HiFiGANConfig, state: dict[str, torch.Tensor] | None = None) -> Generator:
    """An inference generator (no weight norm): random weights, or ``state`` (folded weights) adopted.

    With ``state`` the network is laid out on the meta device and takes the given tensors as its
    weights: nothing else is allocated or initialized.
    """
    if state is None:
        network = Generator(cfg, weight_norm=False)
    else:
        with torch.device("meta"):
            network = Generator(cfg, weight_norm=False)
        network.load_state_dict(state, strict=True, assign=True)
    return network.eval().requires_grad_(False)


def load_hifigan(model_path: Path, device: str | torch.device = "cpu") -> HiFiGANVocoder:
    """The model's per-model vocoder on ``device``, built once per file version and device.

    Raises :class:`VocoderUnavailableError` when the model has no vocoder stage, and
    :class:`ModelFileError` when the stage cannot be read.
    """
    return _load_cached(model_file_version(model_path), str(torch.device(device)))


@once_per_file_version(maxsize=4)
def _load_cached(model_file: FileVersion, device: str) -> HiFiGANVocoder:
    path = model_file.path
    reader = open_model(path)
    if not reader.has(VOCODER):
        raise VocoderUnavailableError(f"model '{path.stem}' has no per-model vocoder")
    cfg = stored_config(vocoder_record(reader).config, path)
    # the stored shapes must be the ones the config implies before anything is built: a small
    # hostile file cannot make the loader allocate the large network its config describes
    state = reader.tensors(VOCODER, generator_shapes(cfg), prefix="generator", map_location=device)
    network = build_generator(cfg, {name: t.float() for name, t in state.items()})
    return HiFiGANVocoder(network, torch.device(device))
