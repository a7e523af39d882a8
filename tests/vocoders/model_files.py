"""Building real model files and BigVGAN weight files for generation tests, in milliseconds.

Sections are produced by the training side's own writers (``VAEModule.model_file_sections``,
``HiFiGANModule.model_file_sections``) for tiny networks, so the tests read exactly the
layout training writes, without training anything. BigVGAN files are laid out as NVIDIA
publishes them: ``config.json`` plus ``torch.save({"generator": state_dict})`` of a
weight-normed generator (old-style ``weight_g``/``weight_v`` keys).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import http.server
import io
import json
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from distillgan.lightning_modules.hifigan import HiFiGANModule
from distillgan.lightning_modules.vae import VAEModule
from distillgan.modelfile import ModelLock, StageRecord, write_model
from distillgan.modelfile.records import Status
from distillgan.networks.bigvgan import BigVGAN, BigVGANConfig
from distillgan.networks.hifigan import HiFiGANConfig
from distillgan.networks.vae import VAEModelConfig
from distillgan.recipes import VAEConfig, VAETrainConfig, VocoderConfig, VocoderTrainConfig
from distillgan.vocoders.bigvgan_weights import REPO_ID

TINY_VAE = VAEConfig(
    model=VAEModelConfig(latent_dim=4, channels=[16, 16], kernel_size=3),
    train=VAETrainConfig(chunk_frames=64),
)
# The published V2 layout (kernels, dilations, rates) with very narrow channels.
NARROW_HIFIGAN = HiFiGANConfig(upsample_initial_channel=16, discriminator_channel_divisor=16)
# The widest resblock of V2 (kernel 11, dilations 1/3/5: the one that sets the receptive field)
# in three cheap stages: long mels in seconds.
TINY_WIDE_HIFIGAN = HiFiGANConfig(
    upsample_initial_channel=16,
    upsample_rates=[8, 8, 8],
    upsample_kernel_sizes=[16, 16, 16],
    resblock_kernel_sizes=[11],
    resblock_dilations=[[1, 3, 5]],
    discriminator_channel_divisor=16,
)
# TINY_WIDE_HIFIGAN driven by the band-oscillator excitation, as the recipes' generators are.
SOURCE_HIFIGAN = dataclasses.replace(TINY_WIDE_HIFIGAN, source_channels=4)
# Three stages and one resblock: as cheap as a hop-512 HiFi-GAN gets.
TINY_HIFIGAN = HiFiGANConfig(
    upsample_initial_channel=16,
    upsample_rates=[8, 8, 8],
    upsample_kernel_sizes=[16, 16, 16],
    resblock_kernel_sizes=[3],
    resblock_dilations=[[1]],
    discriminator_channel_divisor=16,
)

TINY_BIGVGAN_CONFIG: dict[str, Any] = {
    "resblock": "1",
    "num_gpus": 0,
    "batch_size": 4,
    "learning_rate": 0.0001,
    "upsample_rates": [8, 8, 8],
    "upsample_kernel_sizes": [16, 16, 16],
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3, 7],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
    "use_tanh_at_final": False,
    "use_bias_at_final": False,
    "activation": "snakebeta",
    "snake_logscale": True,
    "num_mels": 128,
    "n_fft": 2048,
    "hop_size": 512,
    "win_size": 2048,
    "sampling_rate": 44100,
    "fmin": 0,
    "fmax": None,
}
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def unit_gain_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Re-draw every conv weight with unit gain (std 1/sqrt(fan-in)), so random networks make
    audible, full-range output instead of the near-silence of a small init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in module.modules():
            if isinstance(conv, nn.Conv1d | nn.ConvTranspose1d):
                weight = conv.weight
                fan_in = weight.shape[1] * weight.shape[2]
                if isinstance(conv, nn.ConvTranspose1d):
                    fan_in = weight.shape[0] * weight.shape[2] // conv.stride[0]
                new = torch.randn(weight.shape, generator=generator) / math.sqrt(fan_in)
                if parametrize.is_parametrized(conv, "weight"):
                    conv.weight = new  # through weight norm's right_inverse: sets g and v
                else:
                    weight.copy_(new)
    return module


def vae_sections(cfg: VAEConfig = TINY_VAE, *, seed: int = 0) -> dict[str, Any]:
    torch.manual_seed(seed)
    module = VAEModule(cfg, total_epochs=3)
    # Plausible log-mel statistics, so decoded mels sit where real ones do.
    module.vae.fit_to_corpus(torch.randn(128, 512) * 1.5 - 5.0)
    module.val_history = [1.0, 0.8, 0.7]
    progress = StageRecord(status="complete", epoch=3, epochs_completed=3, total_epochs=3, steps=30)
    return module.model_file_sections(progress)


def vocoder_sections(
    *,
    status: Status = "complete",
    epochs: int = 40,
    total_epochs: int = 40,
    val_mel_l1: float | None = 0.2,
    cfg: HiFiGANConfig = TINY_HIFIGAN,
    seed: int = 0,
    output_gain: float = 0.1,
    output_bias: float = 0.0,
    bigvgan_val_mel_l1: float | None = None,
) -> dict[str, Any]:
    """``output_gain`` scales the last conv: 0.1 gives a moderate level, large values drive the
    final tanh to full scale (a clipping vocoder). ``output_bias`` is the last conv's bias: with
    a small gain, a vocoder that delivers mostly a constant offset (as a barely trained one can)."""
    torch.manual_seed(seed)
    module = HiFiGANModule(
        VocoderConfig(generator=cfg, train=VocoderTrainConfig()), total_epochs=total_epochs
    )
    unit_gain_(module.generator, seed)
    with torch.no_grad():
        module.generator.conv_post.parametrizations.weight.original0.mul_(output_gain)
        module.generator.conv_post.bias.fill_(output_bias)
    module.val_history = [] if val_mel_l1 is None else [val_mel_l1 + 1.0, val_mel_l1]
    module.best_epoch = epochs if val_mel_l1 is not None else 0
    module.best_mel_l1 = val_mel_l1
    module.bigvgan_val_mel_l1 = bigvgan_val_mel_l1
    progress = StageRecord(
        status=status, epoch=epochs, epochs_completed=epochs, total_epochs=total_epochs, steps=epochs * 10
    )
    return module.model_file_sections(progress)


def write_model_file(path: Path, *, vocoder: dict[str, Any] | None = None, vae: bool = True) -> Path:
    """A model file with a tiny VAE and, when ``vocoder`` holds ``vocoder_sections`` arguments, a vocoder."""
    sections: dict[str, Any] = {}
    if vae:
        sections.update(vae_sections())
    if vocoder is not None:
        sections.update(vocoder_sections(**vocoder))
    with ModelLock(path, owner="tests") as lock:
        write_model(path, sections, lock=lock, create=True)
    return path


def nvidia_files(config: dict[str, Any] | None = None, *, seed: int = 0) -> dict[str, bytes]:
    """config.json and bigvgan_generator.pt bytes, laid out as NVIDIA publishes them."""
    config = config or TINY_BIGVGAN_CONFIG
    torch.manual_seed(seed)
    model = copy.deepcopy(BigVGAN(BigVGANConfig.from_dict(config)))
    for module in list(model.modules()):
        if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
            torch.nn.utils.weight_norm(module)  # old-style weight_g / weight_v keys, as in the real file
    buffer = io.BytesIO()
    torch.save({"generator": model.state_dict()}, buffer)
    return {"config.json": json.dumps(config, indent=4).encode(), "bigvgan_generator.pt": buffer.getvalue()}


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_hub_cache(cache: Path, files: dict[str, bytes]) -> Path:
    """The standard hub cache layout: blobs, a snapshot per commit, and refs/main naming it."""
    repo = cache / f"models--{REPO_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / HUB_COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    return snapshot


@contextlib.contextmanager
def serve_hub(files: dict[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server speaking the hub's HEAD/GET protocol for our repo's files.

    Yields the endpoint URL (for ``HF_ENDPOINT``) and the list of requested file names.
    """
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def send_metadata(self) -> bytes | None:
            name = self.path.rsplit("/", 1)[-1]
            requested.append(name)
            if f"/{REPO_ID}/resolve/main/" not in self.path or name not in files:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(200)
            self.send_header("X-Repo-Commit", HUB_COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(files[name]).hexdigest()}"')
            self.send_header("Content-Length", str(len(files[name])))
            self.end_headers()
            return files[name]

        def do_HEAD(self) -> None:
            self.send_metadata()

        def do_GET(self) -> None:
            body = self.send_metadata()
            if body is not None:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requested
    finally:
        server.shutdown()
        server.server_close()
